"""`harness run`: every variant of a spec file, every backend, one results folder."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness import parity, provenance, results
from harness.registry import registry
from harness.spec import Spec, sweep
from harness.spec.schema import SpecError

DEFAULT_BACKENDS = ("numpy", "torch", "jax")
RESULTS_ROOT = Path("results")


def backend_names(requested: list[str] | None, spec: Spec,
                  option: str = "--backends") -> list[str]:
    """`option`'s names, else the spec's `backends`, else the defaults; unknown names are
    errors naming where they came from."""
    names = list(requested or spec.backends or DEFAULT_BACKENDS)
    known = registry()
    where = option if requested else "backends"
    for i, name in enumerate(names):
        at = where if requested else f"{where}[{i}]"
        if name not in known:
            raise SpecError(at, f"{name!r} is not one of {', '.join(known)}")
        if name in names[:i]:
            raise SpecError(at, f"{name!r} is listed twice (allowed: each backend once)")
    return names


def load(path: Path, dtype: str | None) -> tuple[list[Spec], dict]:
    overrides = {"dtype": dtype} if dtype else {}
    return sweep.load(path, overrides), overrides


def execute(path: Path, specs: list[Spec], overrides: dict, names: list[str], out: Path,
            force: bool, device: str = "cpu", progress: bool = True) -> dict:
    """Run every variant, then write the results folder atomically; returns the summary."""
    results.guard_target(out, force)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    frames: dict[str, list[pd.DataFrame]] = {}
    variants = []
    for spec in specs:
        rec = parity.run_variant(spec, names, device, progress)
        for name, df in rec.frames().items():
            frames.setdefault(name, []).append(df.assign(variant=spec.variant, dtype=spec.dtype))
        variants.append(parity.summarize(rec))
    merged = {name: _ordered(pd.concat(dfs, ignore_index=True)) for name, dfs in frames.items()}
    summary = {"experiment": specs[0].name, "verdict": overall([v["verdict"] for v in variants]),
               "device": device, "variants": variants,
               "time": time_breakdown(merged["timings"], time.perf_counter() - t0)}
    meta = provenance.collect(path, overrides, specs[0].seed, started, time.perf_counter() - t0)
    results.write(out, merged, summary, meta, force)
    return summary


def overall(verdicts: list[str]) -> str:
    """A sweep disagrees if any point does; it agrees only if every point does."""
    for v in ("disagree", "not_compared"):
        if v in verdicts:
            return v
    return "agree"


PHASES = ("step", "first_step", "setup", "checks", "evaluate", "data")


def time_breakdown(timings: pd.DataFrame, wall: float) -> dict[str, float]:
    """Seconds per phase over all backends and variants; `overhead` is whatever no phase
    accounts for: the harness's own bookkeeping between the timed calls."""
    spent = {phase: float(timings.seconds[timings.phase == phase].sum()) for phase in PHASES}
    overhead = wall - sum(spent.values())
    return {"wall": wall, **spent, "overhead": overhead,
            "overhead_fraction": overhead / wall if wall > 0 else 0.0}


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """variant and dtype first: every table reads as a tidy long-format table."""
    lead = ["variant", "dtype"]
    return df[lead + [c for c in df.columns if c not in lead]]
