"""`harness run` and `harness.run`: every variant of a spec (a file, or a dict with the file's
structure), every backend, one results folder (or, from the Python API, none)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness import cluster, params, parity, preflight, provenance, results, stats
from harness.backend import Backend
from harness.registry import registry
from harness.spec import Spec, read_spec, sweep
from harness.spec.schema import SpecError

DEFAULT_BACKENDS = ("numpy", "torch", "jax")
RESULTS_ROOT = Path("results")
CPU = "cpu"
DEVICES = (CPU, "cuda")
MAX_REASON = 200                  # characters of a framework's own explanation in a message
# A spec as a caller gives it: a TOML file, or a dict with the file's structure (sweep included).
Source = str | Path | Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """Everything one run produced: the tables, summary and provenance a results folder holds."""
    tables: dict[str, pd.DataFrame]
    summary: dict
    meta: dict


def backend_names(requested: Sequence[parity.BackendRef] | None, spec: Spec,
                  option: str = "--backends") -> list[parity.BackendRef]:
    """`option`'s backends (registered names or Backend subclasses), else the spec's
    `backends`, else the defaults; unknown names are errors naming where they came from."""
    names = list(requested or spec.backends or DEFAULT_BACKENDS)
    known = registry()
    where = option if requested else "backends"
    seen: list[str] = []
    for i, backend in enumerate(names):
        at = where if requested else f"{where}[{i}]"
        name = _checked_name(backend, known, at)
        if name in seen:
            raise SpecError(at, f"{name!r} is listed twice (allowed: each backend once)")
        seen.append(name)
    return names


def _checked_name(backend: Any, known: dict[str, str], at: str) -> str:
    """The table key of one requested backend: a registered name, or a Backend subclass's
    `name`."""
    if isinstance(backend, type) and issubclass(backend, Backend):
        return backend.name
    if not isinstance(backend, str) or backend not in known:
        raise SpecError(at, f"{backend!r} is not one of {', '.join(known)}")
    return backend


def load(source: Source, dtype: str | None) -> tuple[list[Spec], provenance.Origin]:
    """Every variant of a spec file (standard input for "-") or dict, with `dtype` (if given)
    set as if written in it; and its Origin: the text read, once, and the overrides, for the
    provenance. A dict's relative file paths resolve from the working directory."""
    overrides = {"dtype": dtype} if dtype else {}
    if isinstance(source, Mapping):
        specs = sweep.expand({**source, **overrides})
        return specs, provenance.origin_of_dict(source, overrides)
    doc = read_spec(source)
    specs = sweep.from_document(doc, overrides)
    return specs, provenance.Origin(doc.name, doc.text, overrides)


def conduct(specs: list[Spec], origin: provenance.Origin, backends: Sequence[parity.BackendRef],
            out: Path | None = None, force: bool = False, device: str = "cpu",
            progress: bool = True,
            max_minutes: float = preflight.DEFAULT_MAX_MINUTES, workers: int = 1,
            scheduler: str | None = None) -> Outcome:
    """Run every variant on every backend; with `out`, refuse an unwritable target before
    any work and write the results folder atomically after it. Refuse, before any training,
    a run in which no backend could run a variant, a device a backend cannot use, and a run
    that cannot fit this machine's memory or the time limit (harness.preflight). The points
    run in this process (`workers` 1), on a local Dask cluster of `workers` processes, or on
    the cluster at `scheduler` (harness.cluster); only this process writes. A sweep in which
    every point failed writes nothing (PointsFailed). The one path of `harness run` and of
    `harness.run`."""
    if out is not None:
        results.guard_target(out, force, spec=_spec_file(origin))
    usable_here(specs, backends, device)
    here = 1 if scheduler is not None else max(1, min(workers, len(specs)))
    preflight.check(specs, backends, device, max_minutes, parallel=here)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0, submitted = time.perf_counter(), time.time()
    points = cluster.run_points(specs, backends, device, workers, scheduler, progress)
    failed = [p for p in points if p.failed]
    if len(failed) == len(points):
        raise PointsFailed(f"every sweep point failed, nothing was written ({len(points)} "
                           f"point{'s' * (len(points) > 1)}; the first: {failed[0].error})")
    frames: dict[str, list[pd.DataFrame]] = {}
    variants = []
    for spec, point in zip(specs, points, strict=True):
        tables, point_summary = cluster.outcome(spec, point)
        for name, df in tables.items():
            frames.setdefault(name, []).append(df.assign(variant=spec.variant, dtype=spec.dtype))
        variants.append(point_summary)
    merged = {name: _ordered(pd.concat(dfs, ignore_index=True)) for name, dfs in frames.items()}
    wall = time.perf_counter() - t0
    summary = {"experiment": specs[0].name, "verdict": overall([v["verdict"] for v in variants]),
               "device": device, "variants": variants,
               "time": time_breakdown(merged["timings"], wall, points, submitted)}
    seeds = stats.block(variants, merged["steps"])
    if seeds is not None:
        summary["seeds"] = seeds
    meta = provenance.collect(origin, specs[0].seed, started, wall)
    if out is not None:
        results.write(out, merged, summary, meta, force, spec=_spec_file(origin))
    return Outcome(merged, summary, meta)


class PointsFailed(Exception):
    """Every sweep point failed (each point's error is its first line): one line for the
    command line, and no results folder written."""


def usable_here(specs: list[Spec], backends: Sequence[parity.BackendRef], device: str) -> None:
    """Before any training: some backend can run some variant (else the run would replace
    results with nothing), and every backend that will run on `device` can use it here."""
    plans = [parity.runnable(spec, backends, device) for spec in specs]
    if not any(ok for ok, _ in plans):
        reasons = dict(item for _, skipped in plans for item in skipped.items())
        raise SpecError("backends", f"no backend can run here ({'; '.join(reasons.values())}); "
                        "nothing was trained or written (allowed: a backend that supports this "
                        f"spec on {device})")
    if device == CPU:
        return
    probed: set[str] = set()
    for spec, (ok, _) in zip(specs, plans, strict=True):
        for name, cls in ok.items():
            if name not in probed:
                probed.add(name)
                _probe_device(name, cls, spec, device)


def _probe_device(name: str, cls: type[Backend], spec: Spec, device: str) -> None:
    """`device` is usable by a backend when it can hold the run's initial parameters there:
    what the run does first, done before any training (the framework is imported only for a
    backend that will run on that device anyway)."""
    try:
        cls(spec, device).load(params.initial_params(spec))
    except Exception as err:  # a framework says in its own words why the device is missing
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SpecError("device", f"{device!r} is not usable by {name} here: "
                        f"{type(err).__name__}: {reason[:MAX_REASON]} (allowed: {CPU}, or a "
                        f"machine where {name} has a {device} device)") from None


def overall(verdicts: list[str]) -> str:
    """A sweep disagrees if any point does; it agrees only if every point does."""
    for v in ("disagree", "not_compared"):
        if v in verdicts:
            return v
    return "agree"


PHASES = ("step", "first_step", "setup", "checks", "evaluate", "data")


def time_breakdown(timings: pd.DataFrame, wall: float,
                   points: Sequence[cluster.PointResult] = (),
                   submitted: float = 0.0) -> dict[str, float | int]:
    """Seconds per phase over all backends and variants; `overhead` is whatever no phase
    accounts for: the harness's own bookkeeping between the timed calls. With points run
    side by side (workers), the phases add up to more than the wall time: the overhead is
    then taken from the points' own seconds (`point_seconds`, over `workers` processes), and
    the executor's own cost is stated apart (`executor_startup`, `executor_per_point`:
    `cluster.executor_seconds` of the points submitted at `submitted`, time.time())."""
    spent = {phase: float(timings.seconds[timings.phase == phase].sum()) for phase in PHASES}
    workers = len({(p.worker, p.pid) for p in points}) or 1
    busy = sum(p.seconds for p in points) if workers > 1 else wall
    overhead = busy - sum(spent.values())
    out = {"wall": wall, **spent, "overhead": overhead,
           "overhead_fraction": overhead / busy if busy > 0 else 0.0}
    if workers > 1:
        cost = cluster.executor_seconds(points, submitted)
        out.update(workers=workers, point_seconds=busy, executor_startup=cost["startup"],
                   executor_per_point=cost["per_point"])
    return out


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """variant and dtype first: every table reads as a tidy long-format table."""
    lead = ["variant", "dtype"]
    return df[lead + [c for c in df.columns if c not in lead]]


def _spec_file(origin: provenance.Origin) -> Path | None:
    """The spec's file (its folder is never replaced, even with --force); None for a dict."""
    return None if origin.spec_path == provenance.DICT_SOURCE else Path(origin.spec_path)
