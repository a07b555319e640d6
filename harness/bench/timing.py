"""The timing protocol of `harness bench` (`harness run` times its interleaved steps the
same way in spirit: sync before the clock stops, the first, compiling step apart).

1. The first call of each backend is timed on its own: it includes JIT compilation and
   one-off allocations, and is reported apart from steady-state steps.
2. A few warm-up calls follow; they are not samples, only their median sets how many calls
   a sample needs to last `min_sample_seconds`.
3. Then rounds: every backend (A B C, next round B C A, ...) runs `repeats` calls (at least
   MIN_CALLS), each synced and timed on its own; the sample is their median. Then, untimed,
   it waits until its own threads are idle (`quiesce`): thread pools keep spinning after
   their work, and would steal the cores from the next contestant. Rotating the order means
   no backend always follows the same neighbour; interleaving means a change in the
   machine's load hits all alike. With several points (shapes), each round visits them all.
4. More rounds where needed: after `rounds`, a point whose paired ratios (every pair of its
   contestants, within rounds) are still uncertain by more than `precision` (half-width of
   a 95% confidence interval of their median, relative) gets further rounds, still
   interleaved with the other such points, until it is precise or has `max_rounds`. A
   contestant with sporadic slow calls needs more samples before its median stops moving;
   a steady point costs no extra time.
5. Statistics: median and interquartile range of the samples, and each backend's ratio to
   the fastest one *within the same round*, whose median is the reported ratio. A step time
   is therefore a typical step, not total time / steps: a cost that recurs only every few
   steps (a garbage collection) is outvoted like a stall of the machine.

The timed callables record nothing (no gradients, no copies to NumPy): a timing measures
the framework, not the harness. Contestants may live in other processes (see
harness.bench.workers): the clock then runs beside the work and only the result crosses over.
What was measured to arrive at this protocol: docs/benchmarking.md.
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
    rounds: int = 21                      # interleaved rounds; one sample per backend each
    max_rounds: int = 61                  # ... continued for a point while it is imprecise
    precision: float = 0.02               # wanted CI half-width of every paired ratio
    min_sample_seconds: float = 0.02      # repeat a call until a sample is this long


# After a sample, a contestant's process counts as idle once its threads together burn less
# than QUIET_CPU of one core over a QUIET_WINDOW: each thread pool spins for its own time after
# its work, so waiting for exactly that, per contestant, beats a fixed pause sized for the worst.
QUIET_WINDOW = 0.01                       # seconds per look at the process's CPU time
QUIET_CPU = 0.2                           # fraction of one core that still counts as idle
QUIET_LIMIT = 1.0                         # give up waiting after this many seconds
MIN_CALLS = 3         # per sample, even for slow steps: the median then outvotes a cold call
CI_Z = 1.96           # two-sided 95% normal quantile, for the median's confidence interval


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
    """One contestant: `sample(n)` runs n calls, each synced and timed on its own, and returns
    the median seconds per call, measured where they run (in another process the clock runs
    there: no IPC in a sample). It returns only once the contestant's threads are idle
    again (`quiesce`, untimed)."""
    name: str
    sample: Callable[[int], float]


def quiesce() -> float:
    """Wait until this process's threads are idle (see QUIET_CPU); returns the seconds waited.
    CPU time is the whole process's, all threads, so every framework's pool is covered."""
    start = time.perf_counter()
    while time.perf_counter() - start < QUIET_LIMIT:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(QUIET_WINDOW)
        if time.process_time() - cpu < QUIET_CPU * (time.perf_counter() - wall):
            break
    return time.perf_counter() - start


def local(name: str, call: Callable[[], object], sync: Callable[[], None] = lambda: None) -> Timed:
    """A contestant in this process. A sample's value is the median of its per-call times:
    a stall of the shared machine (another tenant, the host) lands on a call or two and is
    outvoted, where it would inflate a sample timed as one block. A training step returns
    its loss as a Python float, so each call is synchronous anyway; the extra `sync` per call
    guards a backend that returns before its work is done, at a cost of microseconds."""
    def sample(n: int) -> float:
        times = np.empty(n)
        for i in range(n):
            start = time.perf_counter()
            call()
            sync()
            times[i] = time.perf_counter() - start
        quiesce()
        return float(np.median(times))
    return Timed(name, sample)


def _prepare(contestants: list[Timed], protocol: Protocol) -> dict[str, Timing]:
    """First call (compilation) and warm-up of each contestant; sets its calls per sample."""
    out = {t.name: Timing(t.name) for t in contestants}
    for t in contestants:
        out[t.name].first_call = t.sample(1)
        estimate = t.sample(max(protocol.warmup, 1))
        out[t.name].repeats = max(MIN_CALLS, math.ceil(protocol.min_sample_seconds /
                                                       max(estimate, 1e-9)))
    return out


def median_ci(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median: the order statistics whose
    ranks lie z*sqrt(n)/2 either side of n/2 (the count of values below the median is
    binomial(n, 1/2)). No assumption on the shape: step times are skewed and often bimodal."""
    x, n = np.sort(np.asarray(values, dtype=float)), len(values)
    half = CI_Z * math.sqrt(n) / 2
    lo, hi = max(math.floor(n / 2 - half) - 1, 0), min(math.ceil(n / 2 + half), n - 1)
    return float(x[lo]), float(x[hi])


def paired_ci(numerator: list[float] | np.ndarray, denominator: list[float] | np.ndarray) -> float:
    """Half-width of the 95% CI of `paired_ratio`, relative to it: 0.02 means +-2%."""
    ratio = np.asarray(numerator) / np.asarray(denominator)
    lo, hi = median_ci(ratio)
    return (hi - lo) / (2 * float(np.median(ratio)))


def imprecision(timings: dict[str, Timing]) -> float:
    """The widest `paired_ci` among a point's paired ratios (every pair of contestants)."""
    names = list(timings)
    return max((paired_ci(timings[a].samples, timings[b].samples)
                for i, a in enumerate(names) for b in names[i + 1:]), default=0.0)


def measure_grid(points: list[list[Timed]],
                 protocol: Protocol = Protocol()) -> list[dict[str, Timing]]:
    """Run the protocol over several points (a point: contestants to compare, e.g. backends at
    one shape). Each round visits every point in turn, so one point's samples spread over the
    whole run: a slow spell of the machine costs every point a round or two, instead of all
    of one point's rounds. Within a point the order rotates (A B C, then B C A, ...). After
    `rounds`, only the points still imprecise go on, up to `max_rounds`."""
    outs = [_prepare(contestants, protocol) for contestants in points]
    active = list(range(len(points)))
    for r in range(max(protocol.rounds, protocol.max_rounds)):
        if r >= protocol.rounds:
            active = [i for i in active if imprecision(outs[i]) > protocol.precision]
            if not active:
                break
        for i in active:
            shift = r % len(points[i])
            for t in points[i][shift:] + points[i][:shift]:
                outs[i][t.name].samples.append(t.sample(outs[i][t.name].repeats))
    return outs


def measure(contestants: list[Timed], protocol: Protocol = Protocol()) -> dict[str, Timing]:
    """The protocol over one point; returns the contestants' timings by name."""
    return measure_grid([contestants], protocol)[0]


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator / denominator, both sampled in the same round."""
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))


def fastest(timings: dict[str, Timing]) -> np.ndarray:
    """The fastest contestant's sample in each round."""
    return np.min([t.samples for t in timings.values()], axis=0)


def ratios_to_fastest(timings: dict[str, Timing]) -> dict[str, float]:
    """Median over rounds of t_backend / min_b t_b, paired within each round."""
    best = fastest(timings)
    return {n: paired_ratio(t.samples, best) for n, t in timings.items()}
