"""The timing protocol shared by `harness run` and `harness bench`.

1. The first call of each backend is timed on its own: it includes JIT compilation and
   one-off allocations, and is reported apart from steady-state steps.
2. A few untimed warm-up calls follow.
3. Then rounds: every backend (A B C, next round B C A, ...) runs `repeats` calls and
   `sync()`s before the clock stops, then pauses briefly, untimed, so that its spinning
   threads do not steal the cores from the next one. Rotating the order means no backend
   always follows the same neighbour; interleaving means a change in the machine's load hits
   all alike.
4. Statistics: median and interquartile range of the per-call time, and each backend's ratio
   to the fastest one *within the same round*, whose median is the reported ratio.

The timed callables record nothing (no gradients, no copies to NumPy): a timing measures
the framework, not the harness. Contestants may live in other processes (see
harness.workers): the clock then runs beside the work and only the result crosses over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Protocol:
    warmup: int = 3                       # untimed calls after the first
    rounds: int = 15                      # interleaved rounds; one sample per backend each
    min_sample_seconds: float = 0.02      # repeat a call until a sample is this long
    settle_seconds: float = 0.3           # untimed pause after each sample: thread pools that
                                          # spin after their work (OpenMP, Eigen) go idle
                                          # before the next contestant's clock starts


@dataclass
class Timing:
    name: str
    first_call: float = math.nan          # includes compilation / first allocation
    repeats: int = 1
    samples: list[float] = field(default_factory=list)   # seconds per call, one per round

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def iqr(self) -> float:
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q3 - q1)


@dataclass(frozen=True)
class Timed:
    """One contestant: `sample(n)` runs n calls, syncs, and returns the seconds they took,
    measured where they run (in another process, the clock runs there: no IPC in a sample)."""
    name: str
    sample: Callable[[int], float]


def local(name: str, call: Callable[[], object], sync: Callable[[], None] = lambda: None) -> Timed:
    """A contestant in this process."""
    def sample(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            call()
        sync()
        return time.perf_counter() - start
    return Timed(name, sample)


def measure(contestants: list[Timed], protocol: Protocol = Protocol()) -> dict[str, Timing]:
    """Run the protocol over `contestants`; returns their timings by name."""
    out = {t.name: Timing(t.name) for t in contestants}
    for t in contestants:
        out[t.name].first_call = t.sample(1)
        warm = max(protocol.warmup, 1)
        estimate = t.sample(warm) / warm
        out[t.name].repeats = max(1, math.ceil(protocol.min_sample_seconds / max(estimate, 1e-9)))
    for r in range(protocol.rounds):
        shift = r % len(contestants)
        for t in contestants[shift:] + contestants[:shift]:
            n = out[t.name].repeats
            out[t.name].samples.append(t.sample(n) / n)
            time.sleep(protocol.settle_seconds)
    return out


def ratios_to_fastest(timings: dict[str, Timing]) -> dict[str, float]:
    """Median over rounds of t_backend / min_b t_b, paired within each round."""
    names = list(timings)
    table = np.array([timings[n].samples for n in names])       # backends x rounds
    per_round = table / table.min(axis=0, keepdims=True)
    return {n: float(np.median(per_round[i])) for i, n in enumerate(names)}
