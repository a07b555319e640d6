"""The verdict can be bet on: errors injected just above each tolerance are caught with the
exact outcome, nothing vacuous is called "agree", and drift or ill-conditioning that the
reference itself shows is not called a disagreement."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from harness import parity
from harness.registry import missing_framework
from harness.spec import from_dict, sweep
from harness.verify import oracle, verdict
from harness.verify import tolerances as tol
from implementations.numpy_fast import NumpyFast
from tests.conftest import BASE, float32, mlp, spec_from

DEEP = spec_from(model=mlp([(6, "tanh"), (5, "tanh"), (4, "tanh")], (3, "softmax")),
                 training={"epochs": 2, "grad_check_steps": [0, 3]})
TORCH = missing_framework("torch") is None


def summary_of(spec, backends) -> dict:
    return parity.summarize(parity.run_variant(spec, backends, progress=False))


def checks(summary: dict, status: str) -> dict[tuple[str, str], dict]:
    return {(c["check"], c["backend"]): c for c in summary["checks"] if c["status"] == status}


class DeepTensorOff(NumpyFast):
    """W0's gradient (the deepest tensor) off by 1e-9 relative: ten times grad_rtol."""
    name: ClassVar[str] = "broken"
    error: ClassVar[float] = 10 * tol.FLOAT64.grad_rtol

    def _loss_and_grads(self, batch, scale=1.0, descend=None):
        value = super()._loss_and_grads(batch, scale, descend)
        self._grads[0] *= 1 + self.error
        return value


def test_a_1e9_error_in_one_deep_tensor_disagrees():
    summary = summary_of(DEEP, ["numpy", DeepTensorOff])
    assert summary["verdict"] == "disagree"
    grad = checks(summary, "fail")[("gradients", "broken")]
    assert (grad["first_step"], grad["first_parameter"]) == (0, "W0")
    assert set(checks(summary, "fail")) <= {("gradients", "broken"), ("loss_curve", "broken"),
                                            ("final_params", "broken")}


class LossValueOff(NumpyFast):
    """Right gradients and training, a loss value off by 1e-11 relative (ten times
    value_rtol): only the same-point loss value can see it."""
    name: ClassVar[str] = "broken"

    def loss_and_grads(self, batch):
        value, grads = super().loss_and_grads(batch)
        return value * (1 + 10 * tol.FLOAT64.value_rtol), grads


class OutputsOff(NumpyFast):
    """evaluate() outputs off by 1e-11 relative: validation metrics and early stopping read
    them, the gradients never do."""
    name: ClassVar[str] = "broken"

    def evaluate(self, batch):
        value, out = super().evaluate(batch)
        return value, out * (1 + 10 * tol.FLOAT64.value_rtol)


@pytest.mark.parametrize(("cls", "check", "quantity"),
                         [(LossValueOff, "loss_value", "loss"),
                          (OutputsOff, "evaluate", "eval_outputs")])
def test_value_only_errors_disagree(cls, check, quantity):
    summary = summary_of(DEEP, ["numpy", cls])
    assert summary["verdict"] == "disagree"
    failed = checks(summary, "fail")
    assert set(failed) == {(check, "broken")}
    assert (failed[(check, "broken")]["first_step"],
            failed[(check, "broken")]["first_parameter"]) == (0, quantity)


class Float32Off(NumpyFast):
    """A bug only float32 shows: the output bias gradient off by ten times the run's float32
    tolerance, in float32 only."""
    name: ClassVar[str] = "broken"

    def _loss_and_grads(self, batch, scale=1.0, descend=None):
        value = super()._loss_and_grads(batch, scale, descend)
        if self.dtype == np.float32:
            self._grads[-1] *= np.float32(1 + 10 * parity.tolerances(self.spec).grad_rtol)
        return value


def test_a_float32_only_error_disagrees_in_float32_alone():
    assert summary_of(DEEP, ["numpy", Float32Off])["verdict"] == "agree"
    f32 = summary_of(float32(DEEP), ["numpy", Float32Off])
    assert f32["verdict"] == "disagree"
    assert checks(f32, "fail")[("gradients", "broken")]["first_parameter"] == "b3"


def test_one_backend_is_not_compared():
    summary = summary_of(DEEP, ["numpy"])
    assert summary["verdict"] == "not_compared"
    assert summary["not_compared"][0].startswith("only 1 backend ran")


@pytest.mark.skipif(not TORCH, reason="needs torch to be skipped for a convention")
def test_every_other_backend_skipped_is_not_compared():
    spec = spec_from(optimizer={"name": "adam", "bias_correction": "folded"})
    summary = summary_of(spec, ["numpy", "torch"])
    assert summary["backends"] == ["numpy"] and "torch" in summary["skipped"]
    assert summary["verdict"] == "not_compared"


def test_early_stop_before_a_check_step_is_not_compared():
    """The check the spec asks for at the last step never runs: early stopping (a minimum
    improvement no epoch can make) ends the run after two epochs."""
    spec = spec_from(data={"name": "spirals", "n_samples": 60, "validation": 0.2},
                     training={"epochs": 6, "grad_check_steps": [0, 17],
                               "early_stopping": {"patience": 2, "min_delta": 1e9}})
    summary = summary_of(spec, ["numpy", "numpy_fast"])
    assert summary["verdict"] == "not_compared"
    grads = next(c for c in summary["checks"] if c["check"] == "gradients")
    assert grads["status"] == "not_run"
    assert grads["detail"].startswith("check step 17 never ran: early stopped at step")


def test_decide_is_one_pure_function_of_statuses():
    base = {"check": "gradients", "backend": "torch", "detail": None}
    ok, fail = {**base, "status": "ok"}, {**base, "status": "fail"}
    drift = {**base, "check": "loss_curve", "status": "drift"}
    unresolved = {**base, "check": "oracle", "status": "unresolved", "detail": "W0"}
    pair = ["numpy", "torch"]
    assert verdict.decide([ok, drift], pair, None)["verdict"] == "agree"
    assert verdict.decide([ok, fail], pair, None)["verdict"] == "disagree"
    assert verdict.decide([ok, unresolved], pair, None)["verdict"] == "not_compared"
    assert verdict.decide([unresolved, fail], pair, None)["verdict"] == "disagree"
    assert verdict.decide([ok], pair, {"kind": "some", "at": {"torch": 3}})["verdict"] == \
        "disagree"
    assert verdict.decide([ok], ["numpy"], None)["verdict"] == "not_compared"
    assert [verdict.EXIT_CODES[v] for v in verdict.VERDICTS] == [0, 1, 3]


def test_a_nan_in_the_oracle_is_a_failure_and_names_the_odd_one_out():
    rows = pd.DataFrame([{"step": 0, "parameter": "W0", "backend": "torch",
                          "compared_to": "finite_differences", "evaluated_at": "directional",
                          "max_abs_err": math.nan, "max_rel_err": math.nan, "kinks": 0,
                          "resolution": 1e-10, "tolerance": tol.FD_RTOL, "status": "ok"}])
    assert verdict._oracle(rows, "torch", None).status == "fail"


def test_an_oracle_that_cannot_resolve_says_so():
    """A gradient of 1e-9 next to a loss of 1e6: rounding of the loss (1e-10) swamps every
    finite difference, so the tensor is unresolved, not ok, and not a failure."""
    w = np.full((2, 2), 0.3)
    def f(p):
        return 1e6 + 1e-9 * float(np.sum(p[0][0]))
    [check] = oracle.check(f, [(w, np.zeros(2))], [(np.full((2, 2), 1e-9), np.zeros(2))],
                              [False, True])[:1]
    assert check.status == "unresolved" and check.resolution > tol.FD_RTOL_MAX


def test_curvature_near_a_minimum_is_not_a_kink():
    """f = sum (w - c)^2 at w = c + 1e-9: a tiny slope under a large curvature. The old
    detector called every element a kink and reported an error of exactly 0."""
    c = np.linspace(-1, 1, 6).reshape(2, 3)
    w = c + 1e-9
    def f(p):
        return float(np.sum((p[0][0] - c) ** 2))
    [check] = oracle.check(f, [(w, np.zeros(3))], [(2 * (w - c), np.zeros(3))],
                              [False, True])[:1]
    assert check.kinks == 0 and check.status == "ok"


@pytest.mark.parametrize(("analytic", "status"), [(0.0, "ok"), (0.5, "ok"), (1.5, "fail")])
def test_a_kink_on_the_point_is_a_subgradient_check(analytic, status):
    """f = sum |w| + w^2, one element at w = 0 (its kink), two smooth: any slope in [-1, 1]
    is a valid subgradient there, 1.5 is not."""
    w = np.array([[0.0, 0.4, -0.7]])
    def f(p):
        return float(np.abs(p[0][0]).sum() + (p[0][0] ** 2).sum())
    grad = np.array([[analytic, 1 + 0.8, -1 - 1.4]])
    [check] = oracle.check(f, [(w, np.zeros(3))], [(grad, np.zeros(3))], [False, True])[:1]
    assert (check.kinks, check.status) == (1, status)


SIGMOID = sweep.load(Path("experiments/vanishing_gradients.toml"))[0]


class W0Off(NumpyFast):
    """The first layer's weight gradient off by 1e-4 (the oracle's target) in a net where it
    is 1e-7 of the loss: the old 1%-of-loss floor let a 2% error pass."""
    name: ClassVar[str] = "broken"

    def loss_and_grads(self, batch):
        value, grads = super().loss_and_grads(batch)
        return value, [(grads[0][0] * (1 + 1e-4), grads[0][1]), *grads[1:]]


@pytest.mark.slow
def test_the_oracle_catches_1e4_in_vanishing_sigmoid_w0():
    assert SIGMOID.variant == "sigmoid"
    good = oracle.check_at_start(NumpyFast, SIGMOID)
    assert all(c.status == "ok" for c in good), [(c.parameter, c.status) for c in good]
    bad = {c.parameter: c.status for c in oracle.check_at_start(W0Off, SIGMOID)}
    assert bad["W0"] == "fail"


def _inline(x: np.ndarray, y: np.ndarray) -> dict:
    return {"name": "inline", "x": x.round(4).tolist(), "y": y.round(4).tolist()}


@pytest.mark.skipif(not TORCH, reason="needs a second framework")
def test_a_saturated_net_drifts_without_disagreeing():
    """tanh layers at |z| of 3 to 10: the loss curves part by 1e-8 (the old verdict said
    DISAGREE), as far as the reference parts from itself after a 4-ulp nudge."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)) * 12
    y = np.tanh(x[:, :1] + x[:, 1:2] - x[:, 2:3])
    spec = spec_from(data=_inline(x, y), loss={"name": "mse"},
                     model={"init": "xavier_normal", **mlp([(16, "tanh"), (16, "tanh")],
                                                           (1, "tanh"))},
                     training={"learning_rate": 0.5, "batch_size": 8, "epochs": 30,
                               "grad_check_steps": [0, 100]})
    summary = summary_of(spec, ["numpy", "torch"])
    assert summary["verdict"] == "agree", summary["checks"]
    curve = next(c for c in summary["checks"] if c["check"] == "loss_curve")
    assert curve["status"] == "drift" and curve["worst"] > tol.FLOAT64.loss_rtol
    assert summary["shadow_drift"][-1][1] > tol.FLOAT64.loss_rtol


@pytest.mark.skipif(not TORCH, reason="needs a second framework")
def test_an_exact_fit_agrees():
    """A linear model that fits its data exactly: the loss falls below 1e-20, where every
    relative error is rounding; measured sensitivity widens the same-point tolerances."""
    x = np.array([[0.0], [0.5], [1.0], [1.5], [2.0], [-1.0], [-0.5], [0.25]])
    spec = from_dict({**BASE, "data": _inline(x, 2 * x + 1), "loss": {"name": "mse"},
                      "model": mlp([], (1, "identity")),
                      "training": {"learning_rate": 0.3, "batch_size": "full", "steps": 400,
                                   "grad_check_steps": [0, 399]}})
    rec = parity.run_variant(spec, ["numpy", "torch"], progress=False)
    assert rec.frames()["steps"].loss.iloc[-1] < 1e-20
    summary = parity.summarize(rec)
    assert summary["verdict"] == "agree", summary["checks"]


def test_float32_tolerance_uses_the_batch_actually_used():
    small = spec_from(dtype="float32", training={"batch_size": 10**6})
    whole = spec_from(dtype="float32", training={"batch_size": "full"})
    assert parity.tolerances(small) == parity.tolerances(whole)
    assert parity.tolerances(small).grad_rtol < parity.tolerances(
        spec_from(dtype="float32", data={"name": "spirals", "n_samples": 10**5},
                  training={"batch_size": "full"})).grad_rtol


@pytest.mark.skipif(not TORCH, reason="compares with torch's cross-entropy")
def test_numpy_cross_entropy_is_as_exact_as_torchs_at_a_tiny_loss():
    import torch

    from implementations.numpy_fast import loss_and_delta
    spec = spec_from()
    out = spec.model.layers[-1]
    z = np.array([[30.0, 7.0, 5.0], [28.0, 4.0, 6.5]])
    a = np.exp(z - z.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    y = np.eye(3)[[0, 0]]
    mine = loss_and_delta("cross_entropy", z, a, y, out, np.empty_like(z), np.empty_like(z))
    theirs = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor([0, 0])).item()
    assert 0 < mine < 1e-9 and abs(mine - theirs) <= 1e-15 * theirs
