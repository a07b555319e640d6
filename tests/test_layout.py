"""The import graph of `harness` and `implementations` has no cycle, between modules or between
packages, counting imports inside functions too (so none can hide a cycle).

`python -m pytest tests/test_layout.py` is the command that checks it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "implementations")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported(node: ast.AST, known: dict[str, Path]) -> set[str]:
    """The project modules one import statement reads names from: `from pkg import module`
    reads `module`, `from pkg import name` reads `pkg`'s `__init__`."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names} & set(known)
    if not (isinstance(node, ast.ImportFrom) and node.module and not node.level):
        return set()
    subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
    reads_init = len(subs) < len(node.names)
    return subs | ({node.module} & set(known) if reads_init else set())


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, anywhere in its body."""
    known = _modules()
    graph = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set().union(*(_imported(n, known) for n in ast.walk(tree))) - {name}
    return graph


def package_of(module: str) -> str:
    """The unit a package-level cycle is counted between: a sub-package of `harness`
    (harness.spec, harness.bench, ...), `implementations`, or a top-level module of `harness`."""
    parts = module.split(".")
    if parts[0] == "implementations":
        return "implementations"
    return ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _collapsed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v, ws in graph.items():
        pv = package_of(v)
        out.setdefault(pv, set()).update(package_of(w) for w in ws if package_of(w) != pv)
    return out


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(import_graph()) == []


def test_no_cycle_between_packages() -> None:
    assert cycles(_collapsed(import_graph())) == []


def test_the_checker_sees_a_cycle_hidden_inside_a_function(tmp_path) -> None:
    graph = import_graph()
    graph["harness.spec.types"] = graph["harness.spec.types"] | {"harness.parity"}
    assert cycles(graph)
    assert cycles(_collapsed(graph))


def test_the_graph_reads_imports_inside_functions() -> None:
    """harness.cli imports its sub-commands inside the functions that run them."""
    assert "harness.conformance.suite" in import_graph()["harness.cli"]


def test_frameworks_are_not_imported_by_the_harness() -> None:
    """Only backends import torch or jax, so `import harness` needs NumPy alone."""
    for name, path in _modules().items():
        if name.startswith("harness"):
            tree = ast.parse(path.read_text())
            roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
            roots |= {n.module.split(".")[0] for n in ast.walk(tree)
                      if isinstance(n, ast.ImportFrom) and n.module}
            assert not roots & {"torch", "jax", "jaxlib", "optax", "tensorflow"}, name
