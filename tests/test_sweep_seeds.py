"""Seeds as a sweep axis, and what a sweep run through `harness.experiment` makes of its
points: the statistics across seeds in summary.json, the report and the figures; a failed
point reported beside the others; a sweep whose every point failed writing nothing; the time
and memory of points run side by side. (The executors' byte-identity is tests/test_cluster.py.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import ClassVar

import pytest

import harness
from harness import cli, cluster, experiment, preflight
from harness.spec import SpecError
from implementations.numpy_textbook import NumpyTextbook
from tests.test_preflight import GB, WIDE, fixed

BASE = {"name": "seeds", "seed": 5, "backends": ["numpy", "numpy_fast"],
        "data": {"name": "spirals", "n_samples": 60},
        "model": {"layers": [{"size": 4, "activation": "tanh"},
                             {"size": 3, "activation": "softmax"}]},
        "loss": {"name": "cross_entropy"},
        "training": {"learning_rate": 0.1, "batch_size": 16, "epochs": 2}}


def specs_of(sweep: dict, base: dict = BASE) -> list:
    return experiment.load({**copy.deepcopy(base), "sweep": sweep}, None)[0]


def test_a_count_of_seeds_counts_up_from_the_spec_seed():
    specs = specs_of({"seeds": 3})
    assert [(s.variant, s.seed) for s in specs] == [("seed=5", 5), ("seed=6", 6), ("seed=7", 7)]


def test_a_list_of_seeds_is_run_in_its_order():
    specs = specs_of({"seeds": [42, 0, 7]})
    assert [(s.variant, s.seed) for s in specs] == [("seed=42", 42), ("seed=0", 0),
                                                    ("seed=7", 7)]


def test_a_grid_has_the_values_outer_and_the_seeds_inner():
    specs = specs_of({"field": "training.learning_rate", "values": [0.1, 0.2],
                      "labels": ["slow", "fast"], "seeds": [1, 2]})
    assert [(s.variant, s.seed, s.training.learning_rate) for s in specs] == [
        ("slow,seed=1", 1, 0.1), ("slow,seed=2", 2, 0.1),
        ("fast,seed=1", 1, 0.2), ("fast,seed=2", 2, 0.2)]


def test_point_k_is_the_same_run_in_a_sweep_of_any_length():
    """A point's spec is the plain spec with that seed: nothing depends on the sweep's size."""
    short, long = specs_of({"seeds": 2}), specs_of({"seeds": 50})
    alone = experiment.load({**copy.deepcopy(BASE), "seed": 6}, None)[0][0]
    assert short[1] == long[1]
    assert dataclasses.replace(long[1], variant="") == alone


def test_a_seed_sweep_counts_against_the_sweep_limits():
    with pytest.raises(SpecError, match=r"^sweep\.values: the 400 sweep points would take"):
        specs_of({"seeds": 400}, {**BASE, "training": {**BASE["training"], "epochs": 1000}})


class FailsOnSeed6(NumpyTextbook):
    name: ClassVar[str] = "fails_on_seed_6"

    def train_step(self, batch):
        if self.spec.seed == 6:
            raise MemoryError("out of memory\nin a framework")
        return super().train_step(batch)


class AlwaysFails(NumpyTextbook):
    name: ClassVar[str] = "always_fails"

    def train_step(self, batch):
        raise RuntimeError("broken")


@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory):
    """A 3-seed sweep (numpy vs a copy failing on seed 6) written, plotted and reported."""
    out = tmp_path_factory.mktemp("seeds") / "run"
    result = harness.run({**BASE, "sweep": {"seeds": 3}}, ["numpy", FailsOnSeed6], out=out)
    cli.main(["plot", str(out)])
    cli.main(["report", str(out)])
    return result, out


def test_a_failed_point_is_reported_and_the_others_complete(seed_folder):
    result, _ = seed_folder
    verdicts = [(v["variant"], v["verdict"], v.get("error")) for v in result.summary["variants"]]
    assert verdicts == [("seed=5", "agree", None),
                        ("seed=6", "not_compared", "MemoryError: out of memory"),
                        ("seed=7", "agree", None)]
    assert result.verdict == "not_compared"


def test_the_summary_gives_each_check_over_the_seeds(seed_folder):
    _, out = seed_folder
    stored = json.loads((out / "summary.json").read_text())["seeds"]
    (group,) = stored["groups"]
    assert (group["group"], group["seeds"]) == ("", 3)
    assert group["verdicts"]["agree"] == pytest.approx(2 / 3)
    grads = next(c for c in group["checks"] if c["check"] == "gradients")
    assert (grads["backend"], grads["compared_to"], grads["seeds"]) == \
        ("fails_on_seed_6", "numpy", 2)       # the failed seed measured nothing
    assert grads["agree"] == 1.0 and grads["worst"] == 0.0 and grads["worst_seed"] is None


def test_the_report_and_figures_summarise_the_seeds(seed_folder):
    _, out = seed_folder
    report = (out / "report.md").read_text()
    assert "## Across seeds" in report and "Verdicts: agree 67%, failed 33%." in report
    assert "![Errors over the seeds](seed_errors.png)" in report
    assert "## Points that agree\n\n2 points: `seed=5`, `seed=7`." in report
    assert "## Sweep point `seed=6` (float64): NOT COMPARED" in report
    assert "## Sweep point `seed=5`" not in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"seed_errors.png", "seed_drift.png"} <= set(pngs)
    # the points that agree are summarised: no figures of their own
    assert not [p for p in pngs if p.endswith(("seed-5.png", "seed-7.png"))]


def test_a_sweep_in_which_every_point_failed_writes_nothing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(experiment.PointsFailed, match=r"^every sweep point failed, nothing "
                       r"was written \(2 points; the first: RuntimeError: broken\)$"):
        harness.run({**BASE, "sweep": {"seeds": 2}}, ["numpy", AlwaysFails], out=out)
    assert not out.exists()


def test_one_point_that_fails_raises_as_it_always_did():
    """Without other points to complete, a run of one point keeps its traceback."""
    with pytest.raises(RuntimeError, match=r"^broken$"):
        harness.run(BASE, ["numpy", AlwaysFails])


def test_points_on_workers_take_the_overhead_from_their_own_seconds():
    import pandas as pd

    timings = pd.DataFrame({"phase": ["step", "step", "checks"], "seconds": [3.0, 3.0, 1.0]})
    points = [cluster.PointResult(i, "", seconds=s, worker=w, pid=i, started=t)
              for i, (s, w, t) in enumerate([(4.0, "a", 100.5), (4.0, "b", 100.7)])]
    parallel = experiment.time_breakdown(timings, 5.0, points, 100.0)
    assert (parallel["overhead"], parallel["workers"], parallel["point_seconds"]) == \
        (1.0, 2, 8.0)
    assert parallel["executor_startup"] == pytest.approx(0.5)
    assert parallel["overhead_fraction"] == pytest.approx(1 / 8)
    alone = experiment.time_breakdown(timings, 8.0, points[:1])
    assert alone["overhead"] == 1.0 and "workers" not in alone


def test_the_executor_cost_per_point_is_the_gap_between_points_on_a_worker():
    def at(worker: str, started: float, seconds: float, error: str | None = None):
        return cluster.PointResult(0, "", seconds=seconds, started=started, worker=worker,
                                   pid=1, error=error)

    points = [at("a", 10.0, 2.0), at("b", 10.5, 1.0), at("a", 12.1, 2.0), at("b", 11.8, 1.0),
              at("a", 14.4, 1.0), at("?", 0.0, 0.0, error="KilledWorker")]
    cost = cluster.executor_seconds(points, since=9.0)
    # gaps: a 12.0 -> 12.1 and 14.1 -> 14.4, b 11.5 -> 11.8
    assert cost["startup"] == pytest.approx(1.0)
    assert cost["per_point"] == pytest.approx((0.1 + 0.3 + 0.3) / 3)
    assert cluster.executor_seconds(points[-1:], 0.0) == {"startup": None, "per_point": None}
    one_each = cluster.executor_seconds(points[:2], since=9.0)     # a and b ran one point each
    assert one_each == {"startup": pytest.approx(1.0), "per_point": None}


def test_points_side_by_side_need_their_memory_each_and_a_share_of_the_time():
    """WIDE needs ~32 GB for one point: 64 GB holds it once, not on two workers at once."""
    specs = experiment.load(copy.deepcopy(WIDE), None)[0]
    one = preflight.check(specs, ["numpy"], available=64 * GB, pace=fixed(), bound=False)
    with pytest.raises(SpecError, match=r"in each of 2 workers, [\d.]+ GB\) exceeds 80% of "
                       r"the 64\.0 GB"):
        preflight.check(specs, ["numpy"], available=64 * GB, pace=fixed(), parallel=2)
    two = preflight.check(specs, ["numpy"], available=128 * GB, pace=fixed(), bound=False,
                          parallel=2)
    assert two.seconds == pytest.approx(one.seconds / 2)


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "--workers: 0 is not allowed (allowed: an integer >= 1)"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "--workers: cannot be combined with --scheduler"),
])
def test_bad_executor_options_are_one_line_errors(argv, message, tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[data]\nname = "xor"\n[[model.layers]]\nsize = 2\n'
                    'activation = "softmax"\n[loss]\nname = "cross_entropy"\n[training]\n'
                    'learning_rate = 0.1\nbatch_size = 4\nepochs = 1\n')
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("workers", [0, 2.0, True])
def test_the_api_refuses_a_bad_worker_count(workers):
    with pytest.raises(SpecError, match=r"^workers: .* is not allowed"):
        harness.run(BASE, workers=workers)


class FailsFast(NumpyTextbook):
    name: ClassVar[str] = "fails_fast"

    def train_step(self, batch):
        if self.spec.training.learning_rate == 0.5:
            raise RuntimeError("diverged")
        return super().train_step(batch)


def test_a_group_whose_every_point_failed_gets_no_empty_figures(tmp_path):
    out = tmp_path / "grid"
    harness.run({**BASE, "sweep": {"field": "training.learning_rate", "values": [0.1, 0.5],
                                   "labels": ["slow", "fast"], "seeds": 2}},
                ["numpy", FailsFast], out=out)
    assert cli.main(["plot", str(out)]) == 0
    seed_figures = sorted(p.name for p in out.glob("seed_*.png"))
    assert seed_figures == ["seed_drift__slow.png", "seed_errors__slow.png"]
