"""The timing protocol's logic and the bench command's outputs. No assertion here depends on
how fast anything ran (timing tests in CI are flaky): performance claims come from
`harness bench`, not from tests."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import bench, timing
from harness.cli import main


def test_ratios_are_paired_within_rounds():
    """A drifting machine (every round slower) must not change the ratio."""
    t = {"a": timing.Timing("a", samples=[1.0, 2.0, 4.0]),
         "b": timing.Timing("b", samples=[2.0, 4.0, 8.0]),
         "c": timing.Timing("c", samples=[1.5, 1.0, 12.0])}
    ratios = timing.ratios_to_fastest(t)
    assert ratios["b"] == 2.0
    assert ratios["a"] == 1.0 and ratios["c"] == 1.5


def test_measure_rotates_order_and_separates_the_first_call():
    calls: list[str] = []

    def contestant(name):
        return timing.local(name, lambda: calls.append(name))

    protocol = timing.Protocol(warmup=2, rounds=3, min_sample_seconds=0.0)
    out = timing.measure([contestant("a"), contestant("b"), contestant("c")], protocol)
    assert all(len(t.samples) == 3 and t.repeats == 1 for t in out.values())
    assert calls[:9] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3     # first call + 2 warm-up each
    assert calls[9:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_flops_and_shape_parsing():
    shape = bench.Shape.parse("784-256-256-10:128")
    assert shape.flops == 6 * 128 * (784 * 256 + 256 * 256 + 256 * 10)
    with pytest.raises(ValueError, match="SIZES:BATCH"):
        bench.Shape.parse("784x256")


def test_bench_command_writes_results(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--shapes", "16-8-3:4", "--dtypes", "float64", "--rounds", "3",
                 "--backends", "numpy", "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out / "bench.csv")
    assert set(df.backend) == {"numpy", "roofline"} and (df.median_s > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threads"] >= 1 and "numpy_roofline_at_large_shapes" in summary["targets"]
    assert (out / "bench.png").stat().st_size > 10_000
    assert "GFLOP/s" in capsys.readouterr().out


def test_bad_shape_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "--shapes", "abc", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SIZES:BATCH" in err[0]
