"""Progress off a terminal: a plain line every LINE_INTERVAL_S on a fake clock, none when quiet."""

from __future__ import annotations

import io

import pytest

from harness import progress
from harness.progress import LINE_INTERVAL_S, Position
from tests.conftest import spec_from


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def steps(bar: progress.Bars, clock: FakeClock, names: list[str], n: int, dt: float) -> None:
    """`n` rounds of one step per backend, `dt` seconds a round."""
    for _ in range(n):
        clock.now += dt
        for name in names:
            bar.update(name, 0.5)


def test_a_line_every_interval_with_steps_elapsed_and_eta():
    clock, out, names, dt = FakeClock(), io.StringIO(), ["numpy", "torch"], LINE_INTERVAL_S / 32
    with progress.bars(names, 100, True, stream=out, clock=clock) as bar:
        steps(bar, clock, names, 31, dt)
        assert out.getvalue() == ""                       # 9.7 s: not yet
        steps(bar, clock, names, 1, dt)
        # 32 of 100 steps in 10 s: 68 left at the same pace take 21 s
        assert out.getvalue() == "harness: step 32/100, elapsed 10 s, ETA 21 s\n"
        steps(bar, clock, names, 31, dt)
        assert out.getvalue().count("\n") == 1            # the next one 10 s after it
        steps(bar, clock, names, 1, dt)
    assert out.getvalue().splitlines()[-1] == "harness: step 64/100, elapsed 20 s, ETA 11 s"


def test_quiet_prints_nothing_however_long():
    clock, out = FakeClock(), io.StringIO()
    with progress.bars(["numpy"], 10, False, stream=out, clock=clock) as bar:
        steps(bar, clock, ["numpy"], 10, 10 * LINE_INTERVAL_S)
    assert out.getvalue() == ""


def test_a_terminal_gets_bars_not_lines():
    clock, out = FakeClock(), Terminal()
    with progress.bars(["numpy"], 10, True, stream=out, clock=clock) as bar:
        steps(bar, clock, ["numpy"], 10, LINE_INTERVAL_S)
    assert "harness: step" not in out.getvalue() and "numpy" in out.getvalue()


def test_sweep_points_count_toward_the_run_and_its_eta():
    """The second of three points (100 steps each), 50 steps in, 150 s after the run began:
    150 of 300 steps done, 150 left at 1 s a step."""
    clock = FakeClock()
    specs = [spec_from(training={"batch_size": b}) for b in (42, 21, 16)]   # 2, 4, 6 steps
    at = progress.positions(specs, clock)
    assert [(p.point, p.points, p.steps_before) for p in at] == [(0, 3, 0), (1, 3, 2),
                                                                 (2, 3, 6)]
    assert {p.steps_total for p in at} == {12}
    out = io.StringIO()
    clock.now = 100.0
    here = Position(1, 3, 100, 300, started=0.0)
    with progress.bars(["numpy"], 100, True, "lr=0.1", here, out, clock) as bar:
        steps(bar, clock, ["numpy"], 50, 1.0)
    assert out.getvalue().splitlines()[-1] == ("harness: point 2/3 [lr=0.1]: step 50/100 "
                                               "(all points 150/300), elapsed 2 min 30 s, "
                                               "ETA 2 min 30 s")


def test_a_label_from_the_spec_cannot_drive_the_terminal():
    clock, out = FakeClock(), io.StringIO()
    with progress.bars(["numpy"], 10, True, "a\x1b[2Jb\n", stream=out, clock=clock) as bar:
        steps(bar, clock, ["numpy"], 1, LINE_INTERVAL_S)
    assert out.getvalue() == "harness: [a\\x1b[2Jb\\n]: step 1/10, elapsed 10 s, ETA 1 min 30 s\n"


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59.6, "1 min 00 s"),
                                               (3725, "1 h 02 min"), (-3, "0 s")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text
