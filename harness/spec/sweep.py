"""Loading a spec file, with its optional sweep, into one validated Spec per variant.

A sweep sets one field, or several together, to a list of values:

    [sweep]
    field = "training.learning_rate"
    values = [0.001, 0.1, 5.0]
    labels = ["too_small", "good", "overshoot"]   # optional

or several fields set together, one list of values per point:

    fields = ["loss.l2", "model.layers[:-1].drop_prob"]
    values = [[0.0, 0.0], [0.001, 0.0], [0.0, 0.2]]

Paths are dotted keys with list indices or slices (`model.layers[:-1]` = every hidden layer).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

from harness.spec import init_file
from harness.spec.parse import from_dict, read_toml
from harness.spec.schema import SpecError, Table, listof
from harness.spec.types import Spec

# A key, then any number of [i] indices or [lo:hi] slices (each end optional, may be negative).
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[(?:-?\d+|(?:-?\d+)?:(?:-?\d+)?)\])*)$")
_INDEX = re.compile(r"\[(-?\d*)(:?)(-?\d*)\]")
# Fields read from the first sweep point only (the results folder, the backend list).
UNSWEPT = ("name", "backends")


def _targets(node: Any, parts: list[str], path: str, where: str) -> list[tuple[dict, str]]:
    """Every (table, key) a path points at; slices fan out over list elements. `where` is the
    sweep key that holds the path, for error messages."""
    head, *rest = parts
    m = _PART.match(head)
    if not m or not isinstance(node, dict):
        raise SpecError(where, f"{path!r} is not a valid field path (allowed: dotted keys with "
                        "[i] or [lo:hi] after list keys, e.g. model.layers[0].size)")
    key, indices = m.group(1), m.group(2)
    if not rest and not indices:
        return [(node, key)]
    if key not in node:
        raise SpecError(where, f"{path!r}: the spec has no {key!r} here")
    nodes = [node[key]]
    for lo, colon, hi in _INDEX.findall(indices):
        picked = []
        for n in nodes:
            if not isinstance(n, list):
                raise SpecError(where, f"{path!r}: {key!r} is not a list")
            sl = slice(int(lo) if lo else None, int(hi) if hi else None) if colon \
                else slice(int(lo), int(lo) + 1 or None)
            if not n[sl]:
                raise SpecError(where, f"{path!r}: index out of range")
            picked.extend(n[sl])
        nodes = picked
    if not rest:
        raise SpecError(where, f"{path!r} must end in a key, not an index")
    return [t for n in nodes for t in _targets(n, rest, path, where)]


def _variants(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(label, raw spec with the sweep's values set)], or [("", raw)] without a sweep."""
    if "sweep" not in raw:
        return [("", raw)]
    t = Table(raw["sweep"], "sweep")
    fields = _fields(t)
    values = listof(t, "values")
    if not values:
        raise SpecError("sweep.values", "needs at least one value")
    labels = _labels(t, len(values))
    t.finish(("field", "fields", "values", "labels"))
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, value in enumerate(values):
        point = [value] if t.has("field") else value
        if not isinstance(point, list) or len(point) != len(fields):
            raise SpecError(f"sweep.values[{i}]", f"expected {len(fields)} values, one per field")
        label = labels[i] if labels else ",".join(
            f"{f.rsplit('.', 1)[-1]}={v}" for f, v in zip(fields, point, strict=True))
        if label in out:
            raise SpecError(f"sweep.values[{i}]", f"repeats sweep point {label!r} of "
                            f"sweep.values[{out[label][0]}] (allowed: distinct values)")
        out[label] = (i, _with_point(raw, fields, point))
    return [(label, variant) for label, (_, variant) in out.items()]


def _fields(t: Table) -> list[str]:
    """The swept field paths: `field = "a.b"` or `fields = [...]`, exactly one of them, each
    path once."""
    if t.has("field") == t.has("fields"):
        raise SpecError("sweep.field", "give exactly one of field (one path) or fields (a list "
                        "of paths)")
    single = t.has("field")
    key = "sweep.field" if single else "sweep.fields"
    fields = [t.get("field")] if single else listof(t, "fields")
    if not fields or not all(isinstance(f, str) for f in fields):
        raise SpecError(key, "expected a field path string (or fields = a list of them)")
    for i, f in enumerate(fields):
        where = key if single else f"{key}[{i}]"
        if f in fields[:i]:
            raise SpecError(where, f"{f!r} is listed twice (allowed: each field once)")
        if re.split(r"[.\[]", f, maxsplit=1)[0] in UNSWEPT:
            raise SpecError(where, f"{f!r} cannot be swept: one run has one name and one set "
                            f"of backends (allowed: any field but {', '.join(UNSWEPT)})")
    return fields


def _labels(t: Table, n: int) -> list[str] | None:
    """The optional `labels`: n distinct non-empty strings, one per sweep point."""
    labels = t.get("labels")
    if labels is None:
        return None
    if (not isinstance(labels, list) or len(labels) != n
            or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != n):
        raise SpecError("sweep.labels", f"needs {n} distinct non-empty strings, one per value")
    return labels


def _with_point(raw: dict[str, Any], fields: list[str], point: list[Any]) -> dict[str, Any]:
    """A copy of `raw` without its sweep, each field set to its value of this point."""
    variant = copy.deepcopy(raw)
    del variant["sweep"]
    for i, (field, value) in enumerate(zip(fields, point, strict=True)):
        where = "sweep.field" if len(fields) == 1 and "field" in raw["sweep"] \
            else f"sweep.fields[{i}]"
        for table, key in _targets(variant, field.split("."), field, where):
            table[key] = value
    return variant


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> list[Spec]:
    """Read, expand and validate a spec file; `overrides` (e.g. {"dtype": "float32"}) are set
    on the top-level table first, as if written in the file."""
    path = Path(path)
    return expand({**read_toml(path), **(overrides or {})}, path.parent)


def expand(raw: dict[str, Any], base: Path = Path(".")) -> list[Spec]:
    """One validated Spec per sweep point of a parsed spec document (the Python API's dict
    specs); `base` resolves relative file paths."""
    specs = []
    for i, (label, variant) in enumerate(_variants(raw)):
        try:
            spec = _validated(variant, base)
        except SpecError as err:
            if not label:
                raise
            raise SpecError(err.path, f"{str(err).split(': ', 1)[-1]} (in sweep point "
                            f"{label!r}, sweep.values[{i}])") from None
        specs.append(dataclasses.replace(spec, variant=label))
    return specs


def _validated(raw: dict[str, Any], base: Path) -> Spec:
    """`from_dict`, then the checks that read files beside the spec (the init_file's arrays),
    so every problem is reported before anything runs or is written."""
    spec = from_dict(raw, base=base)
    if spec.model.init_file is not None:
        init_file.load(spec)
    return spec
