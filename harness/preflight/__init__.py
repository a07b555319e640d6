"""Resource pre-flight: before any training, what a run will need (peak memory, optimizer steps
over every sweep point, and time for training, checks and the finite-difference oracle), and a
one-line refusal of a run that cannot fit in this machine's memory or would take longer than
the user allows (`--max-minutes`).

The memory model is harness.preflight.memory (counted from the shapes), the time model
harness.preflight.pace (each backend's calls timed on the spec's shapes, times the run's
counts). tests/test_preflight.py holds both within ESTIMATE_FACTOR of measured runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import parity
from harness.backend import Backend
from harness.preflight.memory import MB, Part, oracle_memory, run_memory, total
from harness.preflight.pace import (
    COMPILE_CEILING_S,
    Measure,
    cached_measure,
    data_seconds,
    oracle_seconds,
    pessimistic,
    variant_seconds,
)
from harness.spec import Spec, planned_steps
from harness.spec.schema import SpecError

# The time a run may take unless the user allows more (--max-minutes): an hour is a long
# interactive run; a longer one should be asked for, not stumbled into.
DEFAULT_MAX_MINUTES = 60.0
# Of the memory the machine has available, what a run may plan to use: the rest is for the
# operating system, other programs and the estimate's own error.
USABLE_MEMORY_FRACTION = 0.8
# The stated accuracy of both estimates (tests/test_preflight.py measures it): a run's
# measured peak memory and wall time lie within this factor of the estimate, either way.
ESTIMATE_FACTOR = 3.0
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Estimate:
    """What a run needs: peak resident memory (and what holds it), steps (per backend, over
    every sweep point), and time, the oracle's share stated apart."""
    parts: tuple[Part, ...]
    available_bytes: int
    steps: int
    seconds: float
    oracle_seconds: float

    @property
    def peak_bytes(self) -> int:
        return total(self.parts)

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= USABLE_MEMORY_FRACTION * self.available_bytes

    def __str__(self) -> str:
        return (f"peak memory {size(self.peak_bytes)} of {size(self.available_bytes)} "
                f"available, {self.steps} steps, {duration(self.seconds)} (oracle "
                f"{duration(self.oracle_seconds)})")


def size(n: float) -> str:
    """2.1 GB, 340.0 MB, 12 kB."""
    for unit, scale in (("GB", 2**30), ("MB", MB)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**10:.0f} kB"


def duration(seconds: float) -> str:
    """3.2 h, 25 min, 40 s."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def available_memory() -> int:
    """Bytes the machine can give a program now (MemAvailable), or its free pages where
    /proc/meminfo is missing."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def refuse(found: Estimate, max_minutes: float) -> None:
    """SpecError, naming the estimate and the limit, where `found` does not fit this
    machine's memory or `max_minutes`; the memory's error names the spec key that sizes its
    largest part."""
    if not found.fits:
        part = max(found.parts, key=lambda p: p.bytes)
        raise SpecError(part.key, f"estimated peak memory {size(found.peak_bytes)} (the "
                        f"largest part: {part.what}, {size(part.bytes)}) exceeds "
                        f"{USABLE_MEMORY_FRACTION:.0%} of the {size(found.available_bytes)} "
                        "this machine has available: shrink the data, the batch or the layers")
    if found.seconds > 60 * max_minutes:
        raise SpecError("training", f"estimated {duration(found.seconds)} (oracle "
                        f"{duration(found.oracle_seconds)}, {found.steps} steps) exceeds "
                        f"--max-minutes {max_minutes:g}: raise it or shrink the run (epochs "
                        "or steps, the data, the layers, the sweep)")


def at_once(parts: tuple[Part, ...], parallel: int) -> tuple[Part, ...]:
    """The memory of `parallel` worker processes that each hold the largest point: every
    part but the merged tables (held by this process alone) counted `parallel` times."""
    if parallel == 1:
        return parts
    return tuple(p if p.key == "sweep" else
                 Part(f"{p.what}, in each of {parallel} workers", p.key, p.bytes * parallel)
                 for p in parts)


def _ran(specs: Sequence[Spec], backends: Sequence[parity.BackendRef],
         device: str) -> list[list[type[Backend]]]:
    """Per sweep point, the classes of the backends that will run it here."""
    return [list(parity.runnable(spec, backends, device)[0].values()) for spec in specs]


def check(specs: Sequence[Spec], backends: Sequence[parity.BackendRef], device: str = "cpu",
          max_minutes: float = DEFAULT_MAX_MINUTES, pace: Measure = cached_measure,
          available: int | None = None, bound: bool = True, parallel: int = 1) -> Estimate:
    """What `harness run` of these sweep points on these backends needs here. SpecError (one
    line: the estimate and the limit) where it cannot fit in memory, which is counted before
    anything is timed, or would take longer than `max_minutes`. A run that a pessimistic
    pace (pace.pessimistic: slower than any CPU here, compiling included) finishes in time is
    accepted on that upper bound without timing anything (unless `bound` is False, or the
    caller gives its own `pace`); only one near the limit is timed. `parallel` sweep points
    run at once on this machine (a local cluster's workers): each holds its own point, and the
    sweep takes its total time over `parallel` (each worker keeps its frameworks' compiled
    code, so compiling is counted once per worker at most as often as in one process)."""
    classes = _ran(specs, backends, device)
    free = available_memory() if available is None else available
    parts = at_once(run_memory(specs, classes), parallel)
    steps = sum(planned_steps(spec) for spec in specs)
    refuse(Estimate(parts, free, steps, 0.0, 0.0), max_minutes)
    upper = _seconds(specs, classes, lambda cls, spec, device: pessimistic(spec), device)
    compiling = COMPILE_CEILING_S * sum(len(ran) for ran in classes)
    if bound and pace is cached_measure and \
            (upper[0] + compiling) / parallel <= 60 * max_minutes:
        return Estimate(parts, free, steps, (upper[0] + compiling) / parallel, upper[1])
    seconds, fd = _seconds(specs, classes, pace, device)
    found = Estimate(parts, free, steps, seconds / parallel, fd / parallel)
    refuse(found, max_minutes)
    return found


def _seconds(specs: Sequence[Spec], classes: list[list[type[Backend]]], pace: Measure,
             device: str) -> tuple[float, float]:
    """(all of it, the oracle's share) over every sweep point at `pace`."""
    seconds, fd = data_seconds(specs), 0.0
    for spec, ran in zip(specs, classes, strict=True):
        every, share = variant_seconds(spec, [pace(cls, spec, device) for cls in ran])
        seconds, fd = seconds + every, fd + share
    return seconds, fd


def check_oracle(specs: Sequence[Spec], backend: parity.BackendRef,
                 max_minutes: float = DEFAULT_MAX_MINUTES, pace: Measure = cached_measure,
                 available: int | None = None) -> Estimate:
    """What `harness check` needs (the oracle alone on one backend, every element of a small
    net, each sweep point); SpecError as `check`."""
    classes = _ran(specs, [backend], "cpu")
    free = available_memory() if available is None else available
    parts = oracle_memory(specs, classes)
    refuse(Estimate(parts, free, 0, 0.0, 0.0), max_minutes)
    fd = sum(oracle_seconds(spec, pace(cls, spec, "cpu"), full=True)
             for spec, ran in zip(specs, classes, strict=True) for cls in ran)
    found = Estimate(parts, free, 0, data_seconds(specs) + fd, fd)
    refuse(found, max_minutes)
    return found
