"""`harness backends`: every registered backend, whether it can run here, and what it supports."""

from __future__ import annotations

import importlib.metadata

from harness.registry import BUILTIN, backend_class, missing_framework, registry
from harness.spec import ACTIVATIONS, DTYPES, LOSSES, OPTIMIZERS

# What a newcomer should take a built-in for: the one to read, and the one to time.
ROLES = {"numpy": "textbook: read it to learn the maths; the reference of every comparison",
         "numpy_fast": "tuned: the same maths rewritten for speed, proven equal to numpy"}


def _version(module: str | None) -> str:
    if module is None:
        return "-"
    dist = {"sklearn": "scikit-learn"}.get(module, module)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _subset(have: frozenset[str], every: tuple[str, ...]) -> str:
    if set(every) <= have:
        return "all"
    return ",".join(x for x in every if x in have) or "none"


def describe(name: str, target: str) -> list[str]:
    source = "built-in" if BUILTIN.get(name) == target else "plug-in"
    try:
        cls = backend_class(name)
    except Exception as err:  # a broken plug-in must not hide the others
        return [f"{name} ({source}, {target}): cannot be loaded: {type(err).__name__}: {err}"]
    missing = missing_framework(name)
    caps = cls.capabilities
    status = f"not installed ({cls.framework})" if missing else \
        f"{cls.framework or '-'} {_version(cls.framework)}"
    role = f" - {ROLES[name]}" if source == "built-in" and name in ROLES else ""
    lines = [f"{name} ({source}, {target}): {status}{role}",
             f"    dtypes {_subset(caps.dtypes, DTYPES)}; devices {','.join(sorted(caps.devices))};"
             f" dropout {'yes' if caps.dropout else 'no'}",
             f"    activations {_subset(caps.activations, ACTIVATIONS)}; losses "
             f"{_subset(caps.losses, LOSSES)}; optimizers {_subset(caps.optimizers, OPTIMIZERS)}"]
    lines += [f"    cannot express {path} = {value!r}: {why}"
              for (path, value), why in caps.conventions.items()]
    lines += [f"    limit: {limit}" for limit in caps.limits]
    return lines


def list_backends() -> str:
    return "\n".join(line for name, target in registry().items()
                     for line in describe(name, target))
