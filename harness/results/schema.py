"""The shapes of summary.json and meta.json, as far as `plot`, `report` and `harness.load` read
them, and the check that a file read back has them: a key of the wrong type, a missing one or
a value out of its set is a one-line error naming the file and the key's path
(`variants[0].checks[2].status`), never a traceback further on.

Keys no command reads are not checked: a newer harness may add some.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness import escape
from harness.spec.types import DTYPES, LAYER_TYPES

MAX_SHOWN = 40                        # characters of a bad value quoted in an error


class SchemaError(Exception):
    """`at`: where in the file; the message: what was expected and found."""

    def __init__(self, at: str, message: str) -> None:
        super().__init__(f"{at}: {message}" if at else message)


def _shown(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."
    return escape.terminal(text)


class Shape:
    """What one value must be."""
    what = "a value"

    def check(self, value: Any, at: str) -> None:
        if not self.fits(value):
            got = "null" if value is None else type(value).__name__
            raise SchemaError(at, f"expected {self.what}, got {got} {_shown(value)}")

    def fits(self, value: Any) -> bool:
        return True


@dataclass(frozen=True)
class Of(Shape):
    """A JSON scalar of one of `types`; bool is never a number."""
    types: tuple[type, ...]
    what: str

    def fits(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (
            isinstance(value, bool) and bool not in self.types) and not (
            isinstance(value, float) and not math.isfinite(value))


@dataclass(frozen=True)
class Maybe(Shape):
    """`inner`, or null."""
    inner: Shape

    def check(self, value: Any, at: str) -> None:
        if value is not None:
            self.inner.check(value, at)


@dataclass(frozen=True)
class OneOf(Shape):
    """One of a fixed set of strings."""
    values: tuple[str, ...]

    def check(self, value: Any, at: str) -> None:
        if value not in self.values:
            raise SchemaError(at, f"{_shown(value)} is not one of {', '.join(self.values)}")


@dataclass(frozen=True)
class ListOf(Shape):
    inner: Shape
    what: str = "a list"

    def check(self, value: Any, at: str) -> None:
        Of((list,), self.what).check(value, at)
        for i, item in enumerate(value):
            self.inner.check(item, f"{at}[{i}]")


@dataclass(frozen=True)
class MapOf(Shape):
    """An object with any keys, every value `inner`."""
    inner: Shape

    def check(self, value: Any, at: str) -> None:
        Of((dict,), "an object").check(value, at)
        for key, item in value.items():
            self.inner.check(item, f"{at}.{escape.terminal(key)}" if at else key)


@dataclass(frozen=True)
class Obj(Shape):
    """An object with these keys (`required` must be there); others are not checked."""
    required: dict[str, Shape]
    optional: dict[str, Shape] = field(default_factory=dict)

    def check(self, value: Any, at: str) -> None:
        Of((dict,), "an object").check(value, at)
        for key, shape in {**self.required, **self.optional}.items():
            where = f"{at}.{key}" if at else key
            if key in value:
                shape.check(value[key], where)
            elif key in self.required:
                raise SchemaError(where, "missing")


STR = Of((str,), "a string")
INT = Of((int,), "an integer")
NUM = Of((int, float), "a finite number")
BOOL = Of((bool,), "true or false")
ANY = Shape()                         # shown as its text, whatever it is
STATUSES = ("ok", "fail", "drift", "unresolved", "not_run")
VERDICTS = ("agree", "disagree", "not_compared")

CHECK = Obj({"check": STR, "backend": STR, "status": OneOf(STATUSES)},
            {"worst": Maybe(NUM), "tolerance": Maybe(NUM), "first_step": Maybe(INT),
             "first_parameter": Maybe(STR), "resolution": Maybe(NUM), "detail": Maybe(STR),
             "compared_to": Maybe(STR)})
DIAGNOSIS = Obj({"why": STR}, {"phase": Maybe(STR), "step": Maybe(INT), "layer": Maybe(INT),
                               "tensor": Maybe(STR), "convention": Maybe(STR),
                               "culprit": Maybe(STR)})
PROFILE = ListOf(ListOf(Maybe(NUM), "a [step, drift] pair"))
VARIANT = Obj({"dtype": OneOf(DTYPES)},
              {"variant": Maybe(STR), "backends": ListOf(STR), "skipped": MapOf(STR),
               "verdict": OneOf(VERDICTS), "not_compared": ListOf(STR),
               "reference": Maybe(STR), "tolerances": MapOf(Maybe(NUM)),
               "odd_one_out": Maybe(STR), "checks": ListOf(CHECK), "drift": MapOf(PROFILE),
               "shadow_drift": PROFILE,
               "divergence": Maybe(Obj({"kind": OneOf(("all", "some")), "at": MapOf(INT)})),
               "diagnosis": MapOf(DIAGNOSIS), "error": STR,
               "layers": ListOf(OneOf(LAYER_TYPES))})
SEED_CHECK = Obj({"check": STR, "backend": STR, "compared_to": STR, "seeds": INT,
                  "median": Maybe(NUM), "p95": Maybe(NUM), "worst": Maybe(NUM),
                  "worst_seed": Maybe(INT), "agree": NUM, "fail": NUM,
                  "tolerance": Maybe(NUM)})
SEED_GROUP = Obj({"group": STR, "seeds": INT, "verdicts": MapOf(NUM),
                  "checks": ListOf(SEED_CHECK)},
                 {"drift_bands": MapOf(ListOf(ListOf(Maybe(NUM), "a [step, seeds, q05, q50, "
                                                                 "q95] row")))})
SEEDS = Obj({"quantile": NUM, "groups": ListOf(SEED_GROUP)}, {"bands": ListOf(NUM)})
SUMMARY = Obj({"experiment": STR, "variants": ListOf(VARIANT)},
              {"verdict": OneOf(VERDICTS), "device": STR, "time": MapOf(Maybe(NUM)),
               "seeds": SEEDS})

ORIGIN = Obj({}, {"error": STR, "framework": Maybe(STR), "framework_version": Maybe(STR),
                  "framework_distribution": Maybe(STR), "plugin_distribution": Maybe(STR),
                  "plugin_version": Maybe(STR)})
POOL = Obj({}, {"internal_api": Maybe(STR), "version": Maybe(STR), "num_threads": Maybe(INT)})
META = Obj({}, {"tool": STR, "harness_version": STR, "command": ListOf(STR),
                "spec_path": STR, "spec_text": STR, "overrides": MapOf(ANY),
                "started": STR, "wall_seconds": Maybe(NUM), "python": STR, "platform": STR,
                "cpu": STR, "cpu_count": Maybe(INT), "packages": MapOf(Maybe(STR)),
                "backends": MapOf(ORIGIN),
                "blas": Obj({}, {"numpy_blas": Maybe(Obj({}, {"name": Maybe(STR),
                                                              "version": Maybe(STR)})),
                                 "threadpools": ListOf(POOL)}),
                "frameworks": MapOf(MapOf(ANY)),
                "git": Maybe(Obj({}, {"commit": Maybe(STR), "dirty": Maybe(BOOL)})),
                "seed": INT, "derived_seeds": MapOf(INT)})


def check_summary(summary: dict) -> None:
    """summary.json's shape, and what the shape cannot say: a diagnosis that names a phase
    names its step and tensor; the reference is one of the backends."""
    SUMMARY.check(summary, "")
    for i, v in enumerate(summary["variants"]):
        at = f"variants[{i}]"
        backends = v.get("backends") or []
        if v.get("reference") is not None and backends and v["reference"] != backends[0]:
            raise SchemaError(f"{at}.reference", f"{_shown(v['reference'])} is not the first "
                                                 "of its backends")
        for name, found in (v.get("diagnosis") or {}).items():
            if found.get("phase") is not None and (found.get("step") is None or
                                                   found.get("tensor") is None):
                raise SchemaError(f"{at}.diagnosis.{escape.terminal(name)}",
                                  "names a phase but no step or tensor")


def check_meta(meta: dict) -> None:
    META.check(meta, "")

TARGET = Obj({"passed": Maybe(BOOL), "worst": NUM, "target": Maybe(NUM), "shape": STR,
              "dtype": STR},
             {"ratio": STR, "within": INT, "compared": INT, "baseline": STR,
              "renamed": MapOf(STR), "met": INT, "tie": INT, "miss": INT, "not judged": INT,
              "backend": STR})
BENCH_SUMMARY = Obj({"threads": INT, "in_process": BOOL, "targets": MapOf(Maybe(TARGET))},
                    {"precision": NUM, "device": STR, "skipped": MapOf(STR)})
BENCH_META = Obj({}, {"started": STR, "cpu": STR, "cpu_count": Maybe(INT),
                      "packages": MapOf(Maybe(STR)), "gemm_libraries": MapOf(STR),
                      "cpu_peak": Maybe(Obj({"gflops": Obj({"float32": NUM, "float64": NUM}),
                                             "cores": INT, "clock_ghz": NUM,
                                             "simd_bits": INT, "fma_units_assumed": INT}))})


def check_bench_summary(summary: dict) -> None:
    BENCH_SUMMARY.check(summary, "")


def check_bench_meta(meta: dict) -> None:
    BENCH_META.check(meta, "")
