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

from harness.schema import SpecError, Table, listof
from harness.spec import Spec, from_dict, read_toml

_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[-?\d*(?::-?\d*)?\])*)$")
_INDEX = re.compile(r"\[(-?\d*)(:?)(-?\d*)\]")


def _targets(node: Any, parts: list[str], path: str) -> list[tuple[dict, str]]:
    """Every (table, key) a path points at; slices fan out over list elements."""
    head, *rest = parts
    m = _PART.match(head)
    if not m or not isinstance(node, dict):
        raise SpecError("sweep.field", f"{path!r} is not a valid field path")
    key, indices = m.group(1), m.group(2)
    if not rest and not indices:
        return [(node, key)]
    if key not in node:
        raise SpecError("sweep.field", f"{path!r}: the spec has no {key!r} here")
    nodes = [node[key]]
    for lo, colon, hi in _INDEX.findall(indices):
        picked = []
        for n in nodes:
            if not isinstance(n, list):
                raise SpecError("sweep.field", f"{path!r}: {key!r} is not a list")
            sl = slice(int(lo) if lo else None, int(hi) if hi else None) if colon \
                else slice(int(lo), int(lo) + 1 or None)
            if not n[sl]:
                raise SpecError("sweep.field", f"{path!r}: index out of range")
            picked.extend(n[sl])
        nodes = picked
    if not rest:
        raise SpecError("sweep.field", f"{path!r} must end in a key, not an index")
    return [t for n in nodes for t in _targets(n, rest, path)]


def _variants(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(label, raw spec with the sweep's values set)], or [("", raw)] without a sweep."""
    if "sweep" not in raw:
        return [("", raw)]
    t = Table(raw["sweep"], "sweep")
    single = t.has("field")
    fields = [t.get("field")] if single else listof(t, "fields")
    if not fields or not all(isinstance(f, str) for f in fields):
        raise SpecError("sweep.fields" if not single else "sweep.field",
                        "expected a field path string (or fields = a list of them)")
    values = listof(t, "values")
    labels = t.get("labels")
    t.finish(("field", "fields", "values", "labels"))
    if not values:
        raise SpecError("sweep.values", "needs at least one value")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(values)
                               or len(set(map(str, labels))) != len(labels)):
        raise SpecError("sweep.labels", f"needs {len(values)} distinct labels, one per value")
    out = []
    for i, value in enumerate(values):
        point = [value] if single else value
        if not isinstance(point, list) or len(point) != len(fields):
            raise SpecError(f"sweep.values[{i}]", f"expected {len(fields)} values, one per field")
        variant = copy.deepcopy(raw)
        del variant["sweep"]
        for field, v in zip(fields, point, strict=True):
            for table, key in _targets(variant, field.split("."), field):
                table[key] = v
        label = str(labels[i]) if labels else ",".join(
            f"{f.rsplit('.', 1)[-1]}={v}" for f, v in zip(fields, point, strict=True))
        out.append((label, variant))
    return out


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> list[Spec]:
    """Read, expand and validate a spec file; `overrides` (e.g. {"dtype": "float32"}) are set
    on the top-level table first, as if written in the file."""
    path = Path(path)
    raw = read_toml(path)
    raw.update(overrides or {})
    specs = []
    for label, variant in _variants(raw):
        try:
            spec = from_dict(variant, base=path.parent)
        except SpecError as err:
            if not label:
                raise
            raise SpecError(err.path, f"{str(err).split(': ', 1)[-1]} (in sweep point "
                            f"{label!r})") from None
        specs.append(dataclasses.replace(spec, variant=label))
    return specs
