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
import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.spec import init_file
from harness.spec.parse import from_dict, planned_steps
from harness.spec.reading import Document, check_tree, read_spec
from harness.spec.schema import SpecError, Table, listof, shown
from harness.spec.types import MAX_SWEEP_POINTS, MAX_SWEEP_STEPS, Spec

# A key, then any number of [i] indices or [lo:hi] slices (each end optional, may be negative;
# at most 9 digits: no list of a spec is longer, and Python refuses to convert 4300).
_END = r"-?\d{1,9}"
_PART = re.compile(rf"^([A-Za-z_][A-Za-z0-9_]*)((?:\[(?:{_END}|(?:{_END})?:(?:{_END})?)\])*)$")
_INDEX = re.compile(r"\[(-?\d*)(:?)(-?\d*)\]")
# Fields read from the first sweep point only (the results folder, the backend list).
UNSWEPT = ("name", "backends")


def _targets(node: Any, parts: list[str], path: str, where: str) -> list[tuple[dict, str]]:
    """Every (table, key) a path points at in `node`, a copy the caller may change; slices fan
    out over list elements. Each table or list on the way is copied (shallow) as it is
    entered, so the raw spec never changes and what no path reaches (inline data, weights)
    is shared by every point, not copied. `where` is the sweep key that holds the path, for
    error messages."""
    head, *rest = parts
    m = _PART.match(head)
    if not m or not isinstance(node, dict):
        raise SpecError(where, f"{shown(path)} is not a valid field path (allowed: dotted keys "
                        "with [i] or [lo:hi] after list keys, indices of at most 9 digits, e.g. "
                        "model.layers[0].size)")
    key, indices = m.group(1), m.group(2)
    if not rest and not indices:
        return [(node, key)]
    if key not in node:
        raise SpecError(where, f"{shown(path)}: the spec has no {shown(key)} here")
    node[key] = copy.copy(node[key])
    nodes = [node[key]]
    for lo, colon, hi in _INDEX.findall(indices):
        picked = []
        for n in nodes:
            if not isinstance(n, list):
                raise SpecError(where, f"{shown(path)}: {shown(key)} is not a list")
            sl = slice(int(lo) if lo else None, int(hi) if hi else None) if colon \
                else slice(int(lo), int(lo) + 1 or None)
            at = range(len(n))[sl]
            if not at:
                raise SpecError(where, f"{shown(path)}: index out of range")
            for i in at:
                n[i] = copy.copy(n[i])
                picked.append(n[i])
        nodes = picked
    if not rest:
        raise SpecError(where, f"{shown(path)} must end in a key, not an index")
    return [t for n in nodes for t in _targets(n, rest, path, where)]


def _variants(raw: dict[str, Any]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(index, label, raw spec with the sweep's values set) of every point, or (0, "", raw)
    without a sweep. Each point's copy is made only when asked for, so a sweep of a spec with
    inline data holds one copy at a time."""
    if "sweep" not in raw:
        yield 0, "", raw
        return
    t = Table(raw["sweep"], "sweep")
    fields = _fields(t)
    values = listof(t, "values")
    if not values:
        raise SpecError("sweep.values", "needs at least one value")
    if len(values) > MAX_SWEEP_POINTS:
        raise SpecError("sweep.values", f"has {len(values)} points (allowed: at most "
                        f"{MAX_SWEEP_POINTS}; each point is a whole run)")
    labels = _labels(t, len(values))
    t.finish(("field", "fields", "values", "labels"))
    points = [_point(t, i, value, len(fields)) for i, value in enumerate(values)]
    names = labels or [",".join(f"{f.rsplit('.', 1)[-1]}={v}"
                                for f, v in zip(fields, point, strict=True)) for point in points]
    first: dict[str, int] = {}
    for i, label in enumerate(names):
        if label in first:
            raise SpecError(f"sweep.values[{i}]", f"repeats sweep point {shown(label)} of "
                            f"sweep.values[{first[label]}] (allowed: distinct values)")
        first[label] = i
    for i, (label, point) in enumerate(zip(names, points, strict=True)):
        yield i, label, _with_point(raw, fields, point)


def _point(t: Table, i: int, value: Any, n_fields: int) -> list[Any]:
    """Sweep point `i`: one value per field."""
    point = [value] if t.has("field") else value
    if not isinstance(point, list) or len(point) != n_fields:
        raise SpecError(f"sweep.values[{i}]", f"expected {n_fields} values, one per field")
    return point


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
            raise SpecError(where, f"{shown(f)} is listed twice (allowed: each field once)")
        if re.split(r"[.\[]", f, maxsplit=1)[0] in UNSWEPT:
            raise SpecError(where, f"{shown(f)} cannot be swept: one run has one name and one set "
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
    """A copy of `raw` without its sweep, each field set to its value of this point (only
    the tables and lists on the fields' paths are copied, see `_targets`)."""
    variant = {key: value for key, value in raw.items() if key != "sweep"}
    for i, (field, value) in enumerate(zip(fields, point, strict=True)):
        where = "sweep.field" if len(fields) == 1 and "field" in raw["sweep"] \
            else f"sweep.fields[{i}]"
        for table, key in _targets(variant, field.split("."), field, where):
            table[key] = value
    return variant


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> list[Spec]:
    """Read (`harness.spec.reading`), expand and validate a spec file; `overrides` (e.g.
    {"dtype": "float32"}) are set on the top-level table first, as if written in the file."""
    return from_document(read_spec(path), overrides)


def from_document(doc: Document, overrides: dict[str, Any] | None = None) -> list[Spec]:
    """One validated Spec per sweep point of a spec as read, with `overrides` set first."""
    return _expand({**doc.raw, **(overrides or {})}, doc.base)


def expand(raw: Mapping[str, Any], base: Path = Path(".")) -> list[Spec]:
    """One validated Spec per sweep point of a parsed spec document (the Python API's dict
    specs, checked as the reading layer checks a file's); `base` resolves relative file
    paths."""
    check_tree(raw)
    return _expand(dict(raw), base)


def _expand(raw: dict[str, Any], base: Path) -> list[Spec]:
    """Every point validated as it is made; the points share one reading of an init file
    and, where equal, one copy of the data; together they keep within MAX_SWEEP_STEPS."""
    read_init = functools.cache(init_file.read)
    specs: list[Spec] = []
    for i, label, variant in _variants(raw):
        try:
            spec = from_dict(variant, base, read_init)
        except SpecError as err:
            if not label:
                raise
            raise SpecError(err.path, f"{err.message} (in sweep point {shown(label)}, "
                            f"sweep.values[{i}])") from None
        data = specs[0].data if specs and specs[0].data == spec.data else spec.data
        specs.append(dataclasses.replace(spec, variant=label, data=data))
    total = sum(planned_steps(spec) for spec in specs)
    if total > MAX_SWEEP_STEPS:
        raise SpecError("sweep.values", f"the {len(specs)} sweep points would take {total} "
                        f"steps in all (allowed: at most {MAX_SWEEP_STEPS} over all points)")
    return specs
