"""Statistics across seeds, from synthetic summaries and steps whose answers are worked out by
hand: the quantiles, which seed was worst, the fractions that agree, the drift bands; and the
figures drawn from them."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from harness import stats
from harness.plots import seeds as seed_plots


def check(name: str, worst: float, status: str = "ok", backend: str = "torch",
          tolerance: float = 1e-10) -> dict:
    return {"check": name, "backend": backend, "compared_to": "numpy", "status": status,
            "worst": worst, "tolerance": tolerance, "first_step": None}


def point(label: str, checks: list[dict], verdict: str = "agree", **extra) -> dict:
    return {"variant": label, "dtype": "float64", "backends": ["numpy", "torch"],
            "reference": "numpy", "verdict": verdict, "checks": checks, **extra}


# Seeds 10..14 out of order of their errors: sorted 1, 2, 3, 5, 9 (e-15); the worst is seed 13,
# the fourth point, so an index taken for a seed is caught; seed 12 fails its check.
GRAD = {10: 1e-15, 11: 5e-15, 12: 2e-15, 13: 9e-15, 14: 3e-15}
SWEEP = [point(f"seed={s}", [check("gradients", e, "fail" if s == 12 else "ok"),
                             check("loss_value", e / 10)]) for s, e in GRAD.items()]


@pytest.mark.parametrize(("label", "found"), [
    ("seed=3", ("", 3)), ("lr=0.1,seed=3", ("lr=0.1", 3)), ("seed=7,dtype=float32",
                                                             ("dtype=float32", 7)),
    ("lr=0.1", None), ("", None), ("myseed=3", None), ("seed=3,seed=4", None),
    ("seed=-1", None)])
def test_a_label_gives_its_group_and_seed(label, found):
    assert stats.seed_of(label) == found


def test_median_95th_percentile_and_worst_seed():
    s = stats.check_stats(stats.check_errors(SWEEP))
    g = s[s.check == "gradients"].iloc[0]
    assert (g.group, g.backend, g.compared_to, g.seeds) == ("", "torch", "numpy", 5)
    assert g["median"] == pytest.approx(3e-15, rel=1e-12)
    assert g.p95 == pytest.approx(5e-15 + 0.8 * 4e-15, rel=1e-12)   # at 0.95 * 4 = 3.8
    assert (g.worst, g.worst_seed) == (9e-15, 13)
    assert (g.agree, g.fail) == (0.8, 1)
    lv = s[s.check == "loss_value"].iloc[0]
    assert (lv.worst_seed, lv.agree, lv.fail) == (13, 1.0, 0)


def test_the_first_seed_in_sweep_order_is_worst_on_a_tie():
    tied = [point(f"seed={s}", [check("gradients", 1e-15 if s == 5 else 4e-15)])
            for s in (5, 2, 9)]
    assert stats.check_stats(stats.check_errors(tied)).worst_seed.iloc[0] == 2


def test_a_diverged_seed_is_worse_than_any_and_unmeasured_seeds_are_left_out():
    pts = [point(f"seed={s}", [check("final_params", e)])
           for s, e in enumerate([1e-9, math.nan, 3e-9, math.inf])]
    g = stats.check_stats(stats.check_errors(pts)).iloc[0]
    assert g["median"] == pytest.approx(3e-9)          # of 1e-9, 3e-9, inf
    assert (g.p95, g.worst, g.worst_seed, g.seeds) == (math.inf, math.inf, 3, 4)


def test_no_seed_is_worst_where_every_error_is_0():
    zeros = [point(f"seed={s}", [check("update", 0.0)]) for s in (4, 5)]
    g = stats.check_stats(stats.check_errors(zeros)).iloc[0]
    assert g.worst == 0.0 and pd.isna(g.worst_seed)


def test_nothing_measured_has_no_worst_seed():
    g = stats.check_stats(stats.check_errors(
        [point("seed=0", [check("oracle", math.nan, "not_run")])])).iloc[0]
    assert math.isnan(g.worst) and pd.isna(g.worst_seed) and g.agree == 0.0


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([4.0, 1.0, 3.0, 2.0], 0.5, 2.5), ([1.0, 2.0, 3.0, 4.0, 5.0], 0.95, 4.8),
    ([1.0, math.inf], 0.5, math.inf), ([1.0, 2.0, math.inf], 0.5, 2.0),
    ([math.inf], 0.05, math.inf), ([math.nan], 0.5, math.nan)])
def test_quantile(values, q, expected):
    assert stats.quantile(values, q) == pytest.approx(expected, nan_ok=True)


def test_groups_are_kept_apart_and_points_without_a_seed_left_out():
    pts = [point("lr=0.1,seed=0", [check("gradients", 1e-15)]),
           point("lr=1,seed=0", [check("gradients", 7e-15)]),
           point("lr=0.1,seed=1", [check("gradients", 3e-15)]),
           point("baseline", [check("gradients", 1.0)])]
    s = stats.check_stats(stats.check_errors(pts))
    assert list(s.group) == ["lr=0.1", "lr=1"]
    assert list(s.worst) == [3e-15, 7e-15] and list(s.worst_seed) == [1, 0]


def test_verdict_fractions_count_a_failed_point_as_failed():
    pts = [point("seed=0", []), point("seed=1", []), point("seed=2", [], "disagree"),
           point("seed=3", [], "not_compared", error="MemoryError")]
    v = stats.verdicts(pts).iloc[0]
    assert (v.group, v.seeds, v.agree, v.disagree, v.not_compared, v.failed) == \
        ("", 4, 0.5, 0.25, 0.0, 0.25)


# Per-step drift of torch from numpy per seed (numpy's loss 2.0, so the drift is relative):
# running worsts 0, 1e-7, 1e-7 | 0, 2e-7, 5e-7 | 1e-7, 1e-7 (seed 2 stopped after step 1).
DRIFT = {0: [0.0, 1e-7, 0.0], 1: [0.0, 2e-7, 5e-7], 2: [1e-7, 0.0]}


def drift_steps(group: str = "") -> tuple[pd.DataFrame, list[dict]]:
    """The steps table and summaries of DRIFT's seeds, labelled `<group>,seed=<k>`."""
    label = {s: f"{group},seed={s}" if group else f"seed={s}" for s in DRIFT}
    rows = [{"variant": label[s], "backend": b, "step": i,
             "loss": 2.0 * (1 + d) if b == "torch" else 2.0}
            for s, ds in DRIFT.items() for b in ("numpy", "torch") for i, d in enumerate(ds)]
    return pd.DataFrame(rows), [point(label[s], [check("loss_curve", max(d))])
                                for s, d in DRIFT.items()]


def test_drift_bands_are_quantiles_of_the_running_worst_over_seeds():
    steps, pts = drift_steps()
    bands = stats.drift_bands(stats.seed_drift(steps, pts)).set_index("step")
    assert list(bands.seeds) == [3, 3, 2]
    assert list(bands.q50) == pytest.approx([0.0, 1e-7, 3e-7], rel=1e-6)
    assert bands.q95[1] == pytest.approx(1e-7 + 0.9 * 1e-7, rel=1e-6)
    assert bands.q05[0] == 0.0 and bands.q95[0] == pytest.approx(0.9e-7, rel=1e-6)
    assert set(bands.backend) == {"torch"} and set(bands.compared_to) == {"numpy"}


def test_the_summary_block_is_json_with_marks_and_the_report_escapes_labels():
    steps, pts = drift_steps("lr=<b>")
    block = stats.block(pts, steps)
    back = json.loads(json.dumps(block))
    (g,) = back["groups"]
    assert (g["group"], g["seeds"], g["verdicts"]["agree"]) == ("lr=<b>", 3, 1.0)
    assert g["checks"][0]["worst_seed"] == 1
    assert [m[:2] for m in g["drift_bands"]["torch"]] == [[0, 3], [1, 3], [2, 2]]
    text = "\n".join(stats.markdown(block))
    assert "lr=&lt;b&gt;" in text and "<b>" not in text
    assert "| loss\\_curve | torch | numpy | 3 | 1.00e-07 | 4.60e-07 | 5.00e-07 (1) | 100% | " \
        "1e-10 |" in text
    assert stats.block([point("lr=0.1", [])], steps) is None


def test_the_spread_figure_has_one_axes_per_error_check_with_the_tolerance():
    errors = stats.check_errors([*SWEEP, point("seed=15", [check("early_stop", 2.0)])])
    fig = seed_plots.check_spread(errors, stats.check_stats(errors), "float64", "t")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["gradients (vs numpy)", "loss value (vs numpy)"]
    assert all(ax.get_yscale() == "log" for ax in shown)
    assert "seed 13" in [t.get_text() for t in shown[0].texts]
    (tol,) = shown[0].collections[-1].get_segments()
    assert tol[0][1] == 1e-10


@pytest.mark.parametrize(("errors", "floor"), [([0.0, 3e-7], 1e-9), ([0.0, 2e-10], 1e-11),
                                              ([0.0], 1e-9), ([math.inf, 5e-8], 1e-9)])
def test_zero_is_drawn_below_every_error(errors, floor):
    """The float32 floor is 1e-9; the oracle's float64 errors can lie below it."""
    assert seed_plots.zero_floor(pd.Series(errors), "float32") == pytest.approx(floor)


def test_the_band_figure_shades_each_backend_on_a_log_axis():
    steps, pts = drift_steps()
    bands = stats.drift_bands(stats.seed_drift(steps, pts))
    fig = seed_plots.drift_bands(bands, ["numpy", "torch"], "float32", "t")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1
    assert "torch: median over seeds" in ax.get_legend_handles_labels()[1]
