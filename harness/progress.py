"""Progress during training: one tqdm bar per backend on a terminal; elsewhere (a log file, a CI
job, a pipe) a plain line every LINE_INTERVAL_S seconds, so a run of hours shows it is alive
and when it will end; nothing at all when progress is off (--quiet)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from harness import escape
from harness.spec import Spec, planned_steps

# Off a terminal, one line this often: a long run stays visibly alive in a log without
# flooding it (a run of hours writes a few hundred lines); a short run writes none.
LINE_INTERVAL_S = 10.0
Clock = Callable[[], float]


@dataclass(frozen=True)
class Position:
    """Where one sweep point sits in its run, for the plain lines' totals and ETA."""
    point: int = 0                        # index of this point among the run's points
    points: int = 1
    steps_before: int = 0                 # planned steps of the points before it
    steps_total: int = 0                  # planned steps of every point; 0: this point's own
    started: float | None = None          # the clock when the run began; None: this point


def positions(specs: Sequence[Spec], clock: Clock = time.monotonic) -> list[Position]:
    """One Position per sweep point of a run that starts now."""
    planned = [planned_steps(spec) for spec in specs]
    started = clock()
    return [Position(i, len(specs), sum(planned[:i]), sum(planned), started)
            for i in range(len(specs))]


def duration(seconds: float) -> str:
    """1 h 02 min, 4 min 05 s, 12 s."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class Lines:
    """The plain progress of one sweep point: counts each backend's steps and, at most every
    LINE_INTERVAL_S, writes how far the run is and its ETA (the run's pace so far, setup and
    checks included, over the steps it has left)."""

    def __init__(self, total: int, label: str, position: Position, stream: TextIO,
                 clock: Clock) -> None:
        self.total, self.position, self.stream, self.clock = total, position, stream, clock
        self.label = escape.terminal(label)
        now = clock()
        self.started = now if position.started is None else position.started
        self.last = now
        self.done: dict[str, int] = {}

    def update(self, name: str) -> None:
        self.done[name] = self.done.get(name, 0) + 1
        now = self.clock()
        if now - self.last >= LINE_INTERVAL_S:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        """harness: point 2/5 [lr=0.1]: step 120/300 (all points 420/1500), elapsed 1 min
        40 s, ETA 4 min 10 s."""
        pos, step = self.position, max(self.done.values(), default=0)
        run_total = pos.steps_total or self.total
        run_done = pos.steps_before + step
        elapsed = now - self.started
        where = f"point {pos.point + 1}/{pos.points}" if pos.points > 1 else ""
        if self.label:
            where = f"{where} [{self.label}]".strip()
        head = f"harness: {where}: " if where else "harness: "
        text = f"{head}step {step}/{self.total}"
        if run_total != self.total:
            text += f" (all points {run_done}/{run_total})"
        text += f", elapsed {duration(elapsed)}"
        if run_done:
            text += f", ETA {duration(elapsed / run_done * (run_total - run_done))}"
        return text


class Bars:
    """Advance one bar per backend (each shows that backend's latest loss) on a terminal, or
    count toward the plain lines elsewhere; nothing when not `enabled`."""

    def __init__(self, names: list[str], total: int, enabled: bool, label: str,
                 position: Position | None = None, stream: TextIO | None = None,
                 clock: Clock = time.monotonic) -> None:
        stream = sys.stderr if stream is None else stream
        self._bars = {}
        self._lines = None
        if enabled and stream.isatty():
            from tqdm import tqdm

            prefix = f"{escape.terminal(label)}: " if label else ""
            self._bars = {name: tqdm(total=total, desc=f"{prefix}{name}", position=i,
                                     leave=False, unit="step", file=stream)
                          for i, name in enumerate(names)}
        elif enabled:
            self._lines = Lines(total, label, position or Position(), stream, clock)

    def update(self, name: str, loss: float) -> None:
        if self._lines is not None:
            self._lines.update(name)
        bar = self._bars.get(name)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


@contextlib.contextmanager
def bars(names: list[str], total: int, enabled: bool, label: str = "",
         position: Position | None = None, stream: TextIO | None = None,
         clock: Clock = time.monotonic) -> Iterator[Bars]:
    b = Bars(names, total, enabled, label, position, stream, clock)
    try:
        yield b
    finally:
        b.close()
