"""The Python API: run an experiment or read a results folder from a script or a notebook.

`run` takes the path `harness run` takes, or a dict with the TOML file's structure, goes
through the same code as the command line (`harness.experiment.conduct`) and returns a
`Result`; with `out` it also writes the results folder the command line writes, which `load`
reads back into an equal `Result`. Bad input raises `SpecError` with the one line the command
line prints after the spec's file name. docs/python-api.md is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import experiment, preflight, results
from harness.backend import Backend
from harness.results import ResultsError
from harness.spec import SpecError

__all__ = ["Result", "ResultsError", "SpecError", "load", "run"]


@dataclass(frozen=True, repr=False)
class Result:
    """One experiment's outcome, as its results folder holds it.

    `summary` is the dict of summary.json (NaN and Inf stored as None), `tables` the tidy
    long-format DataFrames by name (steps, gradients, same_point, ...: one CSV each in the
    folder), `meta` the provenance of meta.json, `folder` where it was written or read
    (None for a run that wrote nothing)."""
    summary: dict
    tables: dict[str, pd.DataFrame]
    meta: dict
    folder: Path | None = None

    @property
    def verdict(self) -> str:
        """"agree", "disagree" or "not_compared" (fewer than two backends ran, or a check that
        was asked for never ran or could not resolve its tolerance), over every sweep point."""
        return self.summary["verdict"]

    def __repr__(self) -> str:
        return (f"Result(experiment={self.summary['experiment']!r}, verdict={self.verdict!r}, "
                f"variants={len(self.summary['variants'])}, folder={self.folder!r})")


def run(spec: str | Path | Mapping[str, Any],
        backends: Sequence[str | type[Backend]] | None = None, dtype: str | None = None,
        out: str | Path | None = None, *, force: bool = False, device: str = "cpu",
        progress: bool = False, max_minutes: float = preflight.DEFAULT_MAX_MINUTES,
        workers: int = 1, scheduler: str | None = None) -> Result:
    """Train every backend on every sweep point of `spec` and compare them.

    `backends`: registered names or Backend subclasses, the first is the reference (default:
    the spec's `backends`, else numpy, torch, jax). `dtype` overrides the spec's. `out=None`
    writes nothing; a path writes the results folder there (replacing one the harness wrote,
    or any folder with `force`). Raises SpecError on bad input (a device no backend can use
    here, a run in which no backend can run, a run that cannot fit this machine's memory or
    whose estimated time exceeds `max_minutes` included), ResultsError when `out` cannot be
    written, both before anything is trained.

    `workers` > 1 runs the sweep's points on a local Dask cluster of that many processes (a
    script doing so must run it under `if __name__ == "__main__":`), `scheduler`
    ("tcp://host:port") on that running Dask cluster; ClusterError when it cannot be used,
    PointsFailed when every point failed (docs/cluster.md)."""
    _check_arguments(spec, backends, device)
    specs, origin = experiment.load(spec, dtype)
    names = experiment.backend_names(backends, specs[0], option="backends")
    folder = None if out is None else Path(out)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1 \
            or (workers > 1 and scheduler is not None):
        raise SpecError("workers", f"{workers!r} is not allowed (allowed: an integer >= 1, "
                        "and 1 with a scheduler)")
    done = experiment.conduct(specs, origin, names, folder, force, device, progress,
                              max_minutes, workers, scheduler)
    return Result(results.as_stored(done.summary), done.tables, results.as_stored(done.meta),
                  folder)


def load(folder: str | Path) -> Result:
    """The Result stored in a results folder written by `run(..., out=...)` or `harness run`;
    ResultsError (one line) when it is not one or is damaged."""
    tables, summary, meta = results.read(Path(folder))
    return Result(summary, tables, meta, Path(folder))


def _check_arguments(spec: Any, backends: Any, device: Any) -> None:
    """The arguments the spec's own validation does not see, named as the caller wrote them."""
    if not isinstance(spec, str | Path | Mapping):
        raise SpecError("spec", f"expected a path or a dict, got {type(spec).__name__}")
    if isinstance(backends, str):
        raise SpecError("backends", f"expected a list of backends, got the string {backends!r} "
                        f"(write [{backends!r}])")
    if device not in experiment.DEVICES:
        raise SpecError("device", f"{device!r} is not one of {', '.join(experiment.DEVICES)}")
