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

A sweep over seeds repeats the run (or every point of a field sweep: a grid, values outer,
seeds inner) under several seeds:

    seeds = 64              # seeds seed, seed + 1, ..., seed + 63 (`seed` is the spec's)
    seeds = [0, 7, 42]      # or these seeds

Each seed point is labelled `seed=<k>` (`lr=0.1,seed=<k>` in a grid) and is the spec run with
`seed = k`: every random number derives from k alone, so point `seed=k` is the same run
whichever sweep it is part of (`harness.stats` reads the label).
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
from harness.spec.schema import SpecError, Table, integer, listof, shown
from harness.spec.types import MAX_SEED, MAX_SWEEP_POINTS, MAX_SWEEP_STEPS, Spec

# A key, then any number of [i] indices or [lo:hi] slices (each end optional, may be negative;
# at most 9 digits: no list of a spec is longer, and Python refuses to convert 4300).
_END = r"-?\d{1,9}"
_PART = re.compile(rf"^([A-Za-z_][A-Za-z0-9_]*)((?:\[(?:{_END}|(?:{_END})?:(?:{_END})?)\])*)$")
_INDEX = re.compile(r"\[(-?\d*)(:?)(-?\d*)\]")
# Fields read from the first sweep point only (the results folder, the backend list).
UNSWEPT = ("name", "backends")
SEED_KEY = "seed"


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
    seeds = _seeds(t, integer(Table(raw, ""), SEED_KEY, 0, low=0, high=MAX_SEED)
                   if "seeds" in raw["sweep"] else 0)
    fields, names, points = _grid(t, seeds is not None)
    t.finish(("field", "fields", "values", "labels", "seeds"))
    if len(points) * len(seeds or [0]) > MAX_SWEEP_POINTS:
        raise SpecError("sweep.seeds" if seeds else "sweep.values",
                        f"has {len(points) * len(seeds or [0])} points (allowed: at most "
                        f"{MAX_SWEEP_POINTS}; each point is a whole run)")
    if seeds and any(f.split(".")[0] == SEED_KEY for f in fields):
        raise SpecError("sweep.seeds", "cannot be combined with a sweep of the seed field "
                        "(allowed: one of them)")
    i = 0
    for label, point in zip(names, points, strict=True):
        variant = _with_point(raw, fields, point)
        for seed in seeds or [None]:
            if seed is None:
                yield i, label, variant
            else:
                yield i, ",".join((*([label] if label else []), f"seed={seed}")), \
                    {**variant, SEED_KEY: seed}
            i += 1


def _grid(t: Table, seeded: bool) -> tuple[list[str], list[str], list[list[Any]]]:
    """The swept fields, the points' labels and the points (one value per field). With seeds
    and no field: one point that changes nothing."""
    if seeded and not any(t.has(k) for k in ("field", "fields", "values", "labels")):
        return [], [""], [[]]
    fields = _fields(t)
    values = listof(t, "values")
    if not values:
        raise SpecError("sweep.values", "needs at least one value")
    if len(values) > MAX_SWEEP_POINTS:
        raise SpecError("sweep.values", f"has {len(values)} points (allowed: at most "
                        f"{MAX_SWEEP_POINTS}; each point is a whole run)")
    labels = _labels(t, len(values))
    points = [_point(t, i, value, len(fields)) for i, value in enumerate(values)]
    names = labels or [",".join(f"{f.rsplit('.', 1)[-1]}={v}"
                                for f, v in zip(fields, point, strict=True)) for point in points]
    first: dict[str, int] = {}
    for i, label in enumerate(names):
        if label in first:
            raise SpecError(f"sweep.values[{i}]", f"repeats sweep point {shown(label)} of "
                            f"sweep.values[{first[label]}] (allowed: distinct values)")
        first[label] = i
    return fields, names, points


def _seeds(t: Table, base: int) -> list[int] | None:
    """`seeds = N` (the spec's seed `base` and the N - 1 after it) or `seeds = [k, ...]`
    (distinct seeds); None without `seeds`."""
    value = t.get("seeds")
    if value is None:
        return None
    allowed = (f"allowed: a count 1..{MAX_SWEEP_POINTS}, or a list of distinct integers "
               f"0..{MAX_SEED}")
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SWEEP_POINTS:
            raise SpecError("sweep.seeds", f"{shown(value)} is out of range ({allowed})")
        if base + value - 1 > MAX_SEED:
            raise SpecError("sweep.seeds", f"seed {base} + {value} seeds passes {MAX_SEED} "
                            f"({allowed})")
        return list(range(base, base + value))
    if not isinstance(value, list) or not value:
        raise SpecError("sweep.seeds", f"expected a count or a list, got {shown(value)} "
                        f"({allowed})")
    for i, seed in enumerate(value):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise SpecError(f"sweep.seeds[{i}]", f"{shown(seed)} is not a seed ({allowed})")
        if seed in value[:i]:
            raise SpecError(f"sweep.seeds[{i}]", f"seed {seed} is listed twice ({allowed})")
    return value


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
    for i, label in enumerate(labels):
        if any(part.startswith(f"{SEED_KEY}=") for part in label.split(",")):
            raise SpecError(f"sweep.labels[{i}]", f"{shown(label)} has a seed= part, which "
                            "the statistics across seeds read as the point's seed (allowed: "
                            "labels without one; sweep seeds with seeds = [...])")
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
                            f"point {i} of the sweep)") from None
        data = specs[0].data if specs and specs[0].data == spec.data else spec.data
        specs.append(dataclasses.replace(spec, variant=label, data=data))
    total = sum(planned_steps(spec) for spec in specs)
    if total > MAX_SWEEP_STEPS:
        raise SpecError("sweep.values", f"the {len(specs)} sweep points would take {total} "
                        f"steps in all (allowed: at most {MAX_SWEEP_STEPS} over all points)")
    return specs
