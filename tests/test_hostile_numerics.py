"""Hostile hyper-parameters: the tuned NumPy path stays finite wherever the plain maths is,
and a run whose every backend diverges at the same step is the spec's fault, not a
disagreement, whatever the parameters hold afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness import data, params
from harness.spec import from_dict
from implementations import numpy_fast
from implementations.numpy_fast import NumpyFast
from implementations.numpy_textbook import NumpyTextbook

STEPS = 6


def hostile(lr: float, activation: str = "sigmoid") -> dict:
    return {"name": "hostile", "seed": 0, "dtype": "float64",
            "data": {"name": "spirals", "n_samples": 90, "classes": 3},
            "model": {"inputs": 2, "layers": [{"size": 8, "activation": activation},
                                              {"size": 8, "activation": activation},
                                              {"size": 3, "activation": "softmax"}]},
            "loss": {"name": "cross_entropy"}, "optimizer": {"name": "sgd"},
            "training": {"learning_rate": lr, "batch_size": 16, "steps": STEPS,
                         "grad_check_steps": [0]}}


def finite_losses(cls: type, raw: dict) -> tuple[bool, ...]:
    spec = from_dict(raw)
    ds = data.prepare(spec)
    plan = data.plan(spec, len(ds.train.x))
    backend = cls(spec)
    backend.load(params.initial_params(spec))
    with np.errstate(all="ignore"):
        return tuple(bool(np.isfinite(backend.train_step(data.train_batch(spec, ds, plan, k))))
                     for k in range(STEPS))


@pytest.mark.parametrize("lr", [1e300, 1e307])
def test_the_fast_sgd_path_is_finite_where_the_textbook_is(lr):
    raw = hostile(lr)
    assert finite_losses(NumpyFast, raw) == finite_losses(NumpyTextbook, raw)


def test_folding_a_huge_learning_rate_would_overflow(monkeypatch):
    """The guard is what keeps it finite: folding every lr diverges earlier than the maths."""
    monkeypatch.setattr(numpy_fast, "FOLD_LR_MAX", np.inf)
    raw = hostile(1e307)
    assert finite_losses(NumpyFast, raw) != finite_losses(NumpyTextbook, raw)


def test_every_backend_diverging_at_one_step_is_the_spec_not_a_disagreement():
    summary = harness.run(hostile(1e300, "relu"),
                          backends=["numpy", "numpy_fast", "torch", "jax"]).summary
    v = summary["variants"][0]
    assert v["divergence"]["kind"] == "all"
    assert v["verdict"] == "agree" and v["diagnosis"] == {}
    after = [c for c in v["checks"] if c["check"] == "final_params" and c["status"] != "ok"]
    assert after, "torch and jax propagate the overflow differently from NumPy"
    assert all(c["status"] == "drift" and "the spec's fault" in c["detail"] for c in after)
