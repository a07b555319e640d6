"""`harness bench --shapes` within a spec's bounds, and a bench that cannot fit in memory
refused before anything is built: one line each, never a traceback."""

from __future__ import annotations

import pytest

from harness.bench import suite
from harness.cli import main
from harness.spec import MAX_PARAMS, MAX_UNITS
from harness.spec.datasets import MAX_SAMPLES

GB = 2**30
DEEPEST = "-".join(["2"] * (suite.MAX_LAYERS + 1))
# (shape, the words of its error): each bound one past its limit.
TOO_BIG = [
    (f"{MAX_UNITS + 1}-3:4", f"has {MAX_UNITS + 1} units in a layer (allowed: at most "
                             f"{MAX_UNITS})"),
    (f"2-{DEEPEST}:4", f"has {suite.MAX_LAYERS + 1} layers (allowed: at most "
                       f"{suite.MAX_LAYERS})"),
    (f"4-3:{MAX_SAMPLES + 1}", f"has {MAX_SAMPLES + 1} rows in the batch (allowed: at most "
                               f"{MAX_SAMPLES})"),
    ("5000-2000-10:4", f"has {5001 * 2000 + 2001 * 10} parameters (allowed: at most "
                       f"{MAX_PARAMS})"),
]


@pytest.mark.parametrize(("text", "words"), TOO_BIG, ids=["units", "layers", "batch", "params"])
def test_a_shape_beyond_a_bound_is_one_line(text, words):
    with pytest.raises(ValueError) as err:
        suite.Shape.parse(text)
    assert words in str(err.value) and str(err.value).startswith("--shapes: ")
    assert "\n" not in str(err.value)


AT_THE_LIMIT = [f"{MAX_UNITS}-1:1", f"{DEEPEST[2:]}:4", f"4-3:{MAX_SAMPLES}",
                "9999-1000:1"]             # (9999 + 1) x 1000 = MAX_PARAMS


@pytest.mark.parametrize("text", AT_THE_LIMIT, ids=["units", "layers", "batch", "params"])
def test_a_shape_at_each_bound_is_accepted(text):
    shape = suite.Shape.parse(text)
    assert shape.params <= MAX_PARAMS and shape.label == text


def test_a_shape_within_the_bounds_too_big_for_memory_is_refused():
    """3000-3000-10 on a million rows: within every bound, ~24 GB per activation array."""
    shapes = [suite.Shape.parse("3000-3000-10:1000000")]
    with pytest.raises(ValueError) as err:
        suite.check_memory(shapes, ["float64"], ["numpy_fast"], True, available=64 * GB)
    assert str(err.value).startswith("--shapes: the bench would hold an estimated ")
    assert "more than 80% of the 64.0 GB this machine has available" in str(err.value)


def test_the_default_grid_fits_a_small_machine():
    shapes = [suite.Shape.parse(s) for s in suite.DEFAULT_SHAPES]
    need = suite.check_memory(shapes, ["float32", "float64"], list(suite.DEFAULT_BACKENDS),
                              False, available=8 * GB)
    assert need < 8 * GB


def test_every_contestant_keeps_every_point():
    one = [suite.Shape.parse("1024-1024-10:512")]
    single = suite.bench_memory(one, ["float64"], ["numpy_fast"], True)
    twice = suite.bench_memory(one * 2, ["float64"], ["numpy_fast"], True)
    held = suite.contestant_bytes(one[0], "float64", True) + \
        suite.contestant_bytes(one[0], "float64", False)
    assert twice - single == held
    assert suite.bench_memory(one, ["float32"], ["numpy_fast"], True) < single


def test_the_command_line_refuses_a_shape_beyond_a_bound(capsys):
    assert main(["bench", "--shapes", f"{MAX_UNITS + 1}-3:4", "--backends", "numpy_fast"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: --shapes: ") and err.count("\n") == 1
