"""The resource pre-flight: refusals name the estimate and the limit, before anything is timed
or trained; accepted specs' estimates lie within ESTIMATE_FACTOR of measured runs."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness import data, experiment, params, preflight
from harness.backend import frozen_flags
from harness.preflight import memory, pace
from harness.registry import backend_class, missing_framework
from harness.spec import SpecError, from_dict
from harness.verify import oracle
from tests.conftest import BASE

ROOT = Path(__file__).resolve().parents[1]
GB = 2**30


def specs_of(raw: dict) -> list:
    return experiment.load(copy.deepcopy(raw), None)[0]


def experiment_raw(name: str) -> dict:
    return tomllib.loads((ROOT / "experiments" / f"{name}.toml").read_text())


def fixed(step: float = 1e-3, evaluate: float = 1e-3, oracle_eval: float = 1e-3):
    """A pace that measures nothing: every call takes the given seconds on the whole batch."""
    def measured(cls, spec, device):
        sh = memory.Shape.of(spec)
        return pace.Pace(step, evaluate, oracle_eval, sh.batch, max(sh.rows))
    return measured


def never(cls, spec, device):
    raise AssertionError("a spec that cannot fit in memory must be refused before timing")


WIDE = {"name": "wide", "data": {"name": "spirals", "n_samples": 1_000_000},
        "model": {"layers": [{"size": 1000, "activation": "tanh"},
                             {"size": 1000, "activation": "tanh"},
                             {"size": 3, "activation": "softmax"}]},
        "loss": {"name": "cross_entropy"},
        "training": {"learning_rate": 0.1, "batch_size": 100, "steps": 10}}


def test_a_spec_within_the_limits_that_cannot_fit_in_memory_is_refused_before_timing():
    """A million samples through two 1000-unit layers: every spec limit holds, but a forward
    pass over the 700,000 training rows holds ~32 GB."""
    with pytest.raises(SpecError) as err:
        preflight.check(specs_of(WIDE), ["numpy"], available=8 * GB, pace=never)
    text = str(err.value)
    assert err.value.path == "data"
    assert text.startswith("data: estimated peak memory 3")
    assert "a forward pass over a split of 700000 rows" in text
    assert "exceeds 80% of the 8.0 GB this machine has available" in text
    assert "\n" not in text


def test_the_same_spec_fits_a_machine_with_the_memory():
    found = preflight.check(specs_of(WIDE), ["numpy"], available=64 * GB, pace=fixed())
    assert 30 * GB < found.peak_bytes < 40 * GB and found.fits


def test_a_run_longer_than_max_minutes_is_refused_with_the_estimate():
    specs = specs_of(experiment_raw("digits_mlp"))
    slow = fixed(step=0.5, oracle_eval=0.2)
    found = preflight.check(specs, ["numpy", "numpy_fast"], max_minutes=1e9, pace=slow)
    assert found.seconds > 3600 and found.oracle_seconds > 3600 and found.steps == 600
    with pytest.raises(SpecError) as err:
        preflight.check(specs, ["numpy", "numpy_fast"], max_minutes=60, pace=slow)
    assert str(err.value) == (f"training: estimated {preflight.duration(found.seconds)} "
                              f"(oracle {preflight.duration(found.oracle_seconds)}, 600 steps) "
                              "exceeds --max-minutes 60: raise it or shrink the run (epochs "
                              "or steps, the data, the layers, the sweep)")


def test_the_time_limit_is_the_users_to_raise():
    specs = specs_of(experiment_raw("digits_mlp"))
    slow = fixed(step=0.5, oracle_eval=0.2)
    found = preflight.check(specs, ["numpy"], max_minutes=1e9, pace=slow)
    limit = found.seconds / 60
    preflight.check(specs, ["numpy"], max_minutes=limit * 1.01, pace=slow)
    with pytest.raises(SpecError, match="exceeds --max-minutes"):
        preflight.check(specs, ["numpy"], max_minutes=limit * 0.99, pace=slow)


def test_a_sweep_counts_every_point():
    """Three learning rates: three times the steps and the time of one (scikit-learn, for the
    data, is imported once)."""
    raw = experiment_raw("learning_rate")
    one = {k: v for k, v in raw.items() if k != "sweep"}
    whole = preflight.check(specs_of(raw), ["numpy"], pace=fixed())
    single = preflight.check(specs_of(one), ["numpy"], pace=fixed())
    once = pace.data_seconds(specs_of(one))
    assert whole.steps == 3 * single.steps
    assert whole.seconds - once == pytest.approx(3 * (single.seconds - once))


def test_a_sweep_is_timed_once_per_shape():
    calls = []

    def counting(cls, spec, device):
        calls.append(cls.name)
        return fixed()(cls, spec, device)

    pace._paces.clear()
    specs = specs_of(experiment_raw("learning_rate"))
    preflight.check(specs, ["numpy"], pace=lambda c, s, d: pace.cached_measure(c, s, d))
    assert pace._paces and len(pace._paces) == 1
    preflight.check(specs, ["numpy"], pace=counting)
    assert calls == ["numpy"] * 3                  # a pace given is asked every point


def test_skipped_backends_cost_nothing():
    specs = specs_of(experiment_raw("digits_mlp"))
    alone = preflight.check(specs, ["numpy"], pace=fixed())
    with_missing = preflight.check(specs, ["numpy", Unsupported], pace=fixed())
    assert with_missing.seconds == alone.seconds and with_missing.peak_bytes == alone.peak_bytes


class Unsupported(backend_class("numpy")):
    name = "unsupported"

    @classmethod
    def unsupported(cls, spec, device="cpu"):
        return "never runs"


def test_inline_data_counts_its_values():
    """1000 rows of 2 + 1 values written in the spec: each a Python float in a tuple, beside
    the arrays made from them."""
    x = [[float(i), 1.0] for i in range(1000)]
    raw = copy.deepcopy(BASE)
    raw["data"] = {"name": "inline", "x": x, "y": [[v[0]] for v in x]}
    raw["model"] = {"layers": [{"size": 4, "activation": "tanh"},
                               {"size": 1, "activation": "identity"}]}
    raw["loss"] = {"name": "mse"}
    parts = memory.variant_memory(from_dict(raw), 1)
    held = sum(p.bytes for p in parts if p.what.startswith("the 1000 rows of data"))
    arrays = 8 * 1000 * (2 + 1) + 8 * 1000
    assert held >= memory.INLINE_VALUE_BYTES * 3000 + arrays


def test_harness_check_is_refused_with_its_oracle_estimate():
    specs = specs_of(experiment_raw("digits_mlp"))
    found = preflight.check_oracle(specs, "numpy", max_minutes=1e9, pace=fixed(oracle_eval=0.5))
    assert found.oracle_seconds > 3600
    with pytest.raises(SpecError, match=r"^training: estimated .* \(oracle .*\) exceeds "
                                        r"--max-minutes 60"):
        preflight.check_oracle(specs, "numpy", pace=fixed(oracle_eval=0.5))
    with pytest.raises(SpecError, match="estimated peak memory"):
        preflight.check_oracle(specs_of(WIDE), "numpy", available=GB // 4, pace=never)


# (experiment, sweep point, every element or directions, how far the count may lie above the
# oracle's): tiny tensors' ladder probes often coincide (the oracle draws them with
# repetition), so worked_example's 4-element tensors cost fewer than counted.
ORACLE_CASES = [("digits_mlp", 0, True, 1.05), ("digits_mlp", 0, False, 1.05),
                ("breast_cancer", 0, True, 1.05), ("vanishing_gradients", 0, True, 1.05),
                ("vanishing_gradients", 1, True, 1.05), ("worked_example", 0, True, 1.5)]


@pytest.mark.parametrize(("name", "point", "full", "above"), ORACLE_CASES,
                         ids=[f"{n}-{p}-{'full' if f else 'directions'}"
                              for n, p, f, _ in ORACLE_CASES])
def test_the_oracle_evaluations_are_counted_as_the_oracle_makes_them(name, point, full, above):
    """The count the time estimate multiplies, against the oracle's own counter."""
    spec = specs_of(experiment_raw(name))[point]
    ds = data.prepare(spec)
    batch = oracle.as_float64(data.train_batch(spec, ds, data.plan(spec, len(ds.train.x)), 0))
    probe = oracle.float64_backend(backend_class("numpy"), spec)
    p0 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params.initial_params(spec)]
    probe.load(p0)
    grads = probe.loss_and_grads(batch)[1]
    oracle.Line.evaluations = 0
    assert oracle.check(oracle.loss_fn(probe, batch), p0, grads, frozen_flags(spec), full=full)
    want = pace.oracle_evaluations(memory.Shape.of(spec).tensors, full)
    assert oracle.Line.evaluations / above <= want <= above * oracle.Line.evaluations


# A run measured in a child process: its peak resident memory (VmHWM, which exec resets:
# ru_maxrss would inherit the parent's) and wall time, and the pre-flight's estimate made in
# the same process just before. One BLAS thread: on a small, shared machine oversubscribed
# thread pools swing a run's time tenfold from one second to the next, which no estimate
# made a second earlier can follow.
CHILD = """
import copy, json, sys, time
import harness
from harness import experiment, preflight
raw, backends = json.loads(sys.argv[1]), sys.argv[2].split(",")
found = preflight.check(experiment.load(copy.deepcopy(raw), None)[0], backends, bound=False)
t0 = time.perf_counter()
harness.run(raw, backends=backends)
wall = time.perf_counter() - t0
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"peak": found.peak_bytes, "seconds": found.seconds, "hwm": hwm,
                  "wall": wall}))
"""
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

SPIRALS = {"name": "spirals_memory", "seed": 0, "data": {"name": "spirals", "n_samples": 200_000},
           "model": {"layers": [{"size": 128, "activation": "tanh"},
                                {"size": 128, "activation": "tanh"},
                                {"size": 3, "activation": "softmax"}]},
           "loss": {"name": "cross_entropy"},
           "training": {"learning_rate": 0.1, "batch_size": 200, "steps": 50}}
MEASURED = [("digits_mlp", experiment_raw("digits_mlp"), "numpy,numpy_fast"),
            ("spirals_memory", SPIRALS, "numpy,numpy_fast"),
            ("float32_drift", experiment_raw("float32_drift"), "numpy,torch")]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (VmHWM)")
@pytest.mark.parametrize(("name", "raw", "backends"), MEASURED, ids=[m[0] for m in MEASURED])
def test_estimates_lie_within_the_stated_factor_of_a_measured_run(name, raw, backends):
    """digits_mlp (libraries and the oracle dominate), 200,000 spirals (a forward pass over
    the training split dominates the memory: ~1 GB), float32_drift on torch (a sweep, a
    framework, float64 probes and the shadow run)."""
    for backend in backends.split(","):
        if missing_framework(backend):
            pytest.skip(missing_framework(backend))
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(raw), backends],
                         capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, **ONE_THREAD})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    factor = preflight.ESTIMATE_FACTOR
    assert 1 / factor <= got["peak"] / got["hwm"] <= factor, got
    assert 1 / factor <= got["seconds"] / got["wall"] <= factor, got


def test_a_run_far_within_the_limit_is_accepted_on_a_pessimistic_bound_without_timing(
        monkeypatch):
    monkeypatch.setattr(pace, "measure", never)
    specs = specs_of(experiment_raw("digits_mlp"))
    found = preflight.check(specs, ["numpy", "numpy_fast"])
    assert 0 < found.seconds <= 60 * preflight.DEFAULT_MAX_MINUTES


def test_a_run_near_the_limit_is_timed_not_accepted_on_the_bound(monkeypatch):
    timed = []

    def measured(cls, spec, device):
        timed.append(cls.name)
        return fixed()(cls, spec, device)
    monkeypatch.setattr(pace, "measure", measured)
    pace._paces.clear()
    specs = specs_of(experiment_raw("digits_mlp"))
    preflight.check(specs, ["numpy"], max_minutes=0.5)     # the bound alone is 30 s of compile
    assert timed == ["numpy"]


@pytest.mark.parametrize(("limit", "says"), [("0", "--max-minutes"), ("nan", "--max-minutes"),
                                              ("0.001", "exceeds --max-minutes 0.001")])
def test_the_command_line_refuses_before_training_in_one_line(tmp_path, capsys, limit, says):
    from harness import cli
    code = cli.main(["run", str(ROOT / "experiments" / "worked_example.toml"),
                     "--backends", "numpy", "--quiet", "--out", str(tmp_path / "out"),
                     "--max-minutes", limit])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0]
    assert not (tmp_path / "out").exists()
