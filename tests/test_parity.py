"""The parity run: all backends agree on a small spec, and a deliberately broken backend is
named, with the parameter and the first step where it left tolerance."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from harness import parity
from harness.registry import missing_framework
from harness.verify.verdict import early_stop_check
from implementations.numpy_fast import NumpyFast
from tests.conftest import mlp, spec_from

SPEC = spec_from(model=mlp([(6, "tanh")], (3, "softmax")),
                 training={"epochs": 3, "grad_check_steps": [0, 4]})


class BrokenBias(NumpyFast):
    """NumPy backprop with the sign of the output bias gradient flipped (injected by the test)."""
    name: ClassVar[str] = "broken"

    def _loss_and_grads(self, batch, scale=1.0, descend=None):
        value = super()._loss_and_grads(batch, scale, descend)
        self._grads[3] *= -1                      # [dW0, db0, dW1, db1]: db1's sign flipped
        return value


def available(*names: str) -> list[str]:
    return [n for n in names if missing_framework(n) is None]


def test_all_backends_agree_in_float64():
    names = available("numpy", "torch", "jax")
    summary = parity.summarize(parity.run_variant(SPEC, names, progress=False))
    assert summary["verdict"] == "agree", summary
    assert summary["odd_one_out"] is None
    assert {c["check"] for c in summary["checks"]} == {
        "gradients", "loss_value", "evaluate", "oracle", "update", "loss_curve", "final_params",
        "early_stop"}
    assert {c["status"] for c in summary["checks"]} == {"ok"}


def test_broken_backend_is_named_with_parameter_and_first_step():
    rec = parity.run_variant(SPEC, ["numpy", *available("torch"), BrokenBias], progress=False)
    summary = parity.summarize(rec)
    assert summary["verdict"] == "disagree"
    failed = {(c["check"], c["backend"]): c for c in summary["checks"] if c["status"] == "fail"}
    assert {b for _, b in failed} == {"broken"}
    grad = failed[("gradients", "broken")]
    assert (grad["first_step"], grad["first_parameter"]) == (0, "b1")
    assert failed[("oracle", "broken")]["first_parameter"] == "b1"
    # step 0's loss is computed before any update, so the curves part at step 1
    assert failed[("loss_curve", "broken")]["first_step"] == 1
    assert summary["odd_one_out"] == "broken"


def test_broken_reference_is_the_odd_one_out():
    """When the reference itself is wrong, the others and finite differences outvote it."""
    backends = [BrokenBias, "numpy", *available("torch")]
    summary = parity.summarize(parity.run_variant(SPEC, backends, progress=False))
    assert summary["odd_one_out"] == "broken"


def test_float32_runs_and_reports_drift():
    names = available("numpy", "torch", "jax")
    spec = spec_from(model=mlp([(6, "tanh")], (3, "softmax")), dtype="float32",
                     training={"epochs": 3})
    rec = parity.run_variant(spec, names, progress=False)
    frames = rec.frames()
    loss = frames["steps"].pivot(index="step", columns="backend", values="loss")
    assert loss.dtypes.iloc[0] == np.float64 and len(loss) == rec_steps(rec)
    summary = parity.summarize(rec)
    curve = [c for c in summary["checks"] if c["check"] == "loss_curve"]
    assert all(c["tolerance"] > 1e-6 for c in curve)


def rec_steps(rec) -> int:
    return int(rec.frames()["steps"].step.max()) + 1


def test_divergence_in_every_backend_is_the_specs_fault():
    names = available("numpy", "torch")
    spec = spec_from(model=mlp([(6, "relu")], (3, "identity")), loss={"name": "mse"},
                     training={"learning_rate": 1e6, "epochs": 3})
    summary = parity.summarize(parity.run_variant(spec, names, progress=False))
    div = summary["divergence"]
    assert div["kind"] == "all" and len(set(div["at"].values())) == 1


class ExplodesAtStep3(NumpyFast):
    name: ClassVar[str] = "broken"
    steps = 0

    def train_step(self, batch):
        self.steps += 1
        return float("nan") if self.steps == 4 else super().train_step(batch)


def test_divergence_in_one_backend_is_that_backends_fault():
    summary = parity.summarize(parity.run_variant(SPEC, ["numpy", ExplodesAtStep3],
                                                  progress=False))
    assert summary["divergence"] == {"kind": "some", "at": {"broken": 3}}
    assert summary["verdict"] == "disagree"


class NoAdam(NumpyFast):
    """A backend whose capabilities leave out Adam."""
    name: ClassVar[str] = "no_adam"
    capabilities: ClassVar = dataclasses.replace(NumpyFast.capabilities,
                                                 optimizers=frozenset({"sgd"}))


def test_unsupported_backend_is_skipped_with_reason():
    spec = spec_from(optimizer={"name": "adam"}, model=mlp([(4, "tanh")], (3, "softmax")))
    rec = parity.run_variant(spec, ["numpy", NoAdam], progress=False)
    assert rec.backends == ["numpy"]
    assert rec.skipped == {"no_adam": "no_adam does not support optimizer 'adam'"}
    skipped = rec.frames()["events"].query("event == 'skipped'")
    assert skipped[["backend", "step"]].values.tolist() == [["no_adam", -1]]


def test_a_class_under_a_name_already_given_is_refused():
    """A class runs under its own `name`: one that repeats another backend's name would merge
    two backends into one column of every table."""
    class Shadowing(NumpyFast):
        name: ClassVar[str] = "numpy"

    with pytest.raises(ValueError, match="backend 'numpy' is given twice"):
        parity.run_variant(SPEC, ["numpy", Shadowing], progress=False)


class ScaledLoss(NumpyFast):
    """Right gradients, a wrong loss returned by train_step (x 1.001): only the loss curve
    can catch it, and rounding (the shadow run) does not explain it."""
    name: ClassVar[str] = "broken"

    def train_step(self, batch):
        return 1.001 * super().train_step(batch)


def test_odd_one_out_from_the_loss_curve():
    backends = ["numpy", "numpy_fast", ScaledLoss]
    summary = parity.summarize(parity.run_variant(SPEC, backends, progress=False))
    grads = [c for c in summary["checks"] if c["check"] == "gradients"]
    assert all(c["status"] == "ok" for c in grads)
    curve = next(c for c in summary["checks"] if c["check"] == "loss_curve"
                 and c["backend"] == "broken")
    assert (curve["status"], curve["first_step"]) == ("fail", 0)
    assert summary["verdict"] == "disagree"
    assert summary["odd_one_out"] == "broken"


def test_early_stopping_at_different_steps_is_drift():
    """The harness applies the rule to each backend's validation loss, which the evaluate
    check compares at the same point: stop steps that differ are drift, said so."""
    events = pd.DataFrame([{"backend": "numpy", "step": 30, "event": "early_stopped"},
                           {"backend": "torch", "step": 42, "event": "early_stopped"}])
    check = early_stop_check(events, ["numpy", "torch"], "numpy")
    assert (check.status, check.first_step) == ("drift", 30)
    assert "torch step 42" in check.detail
    same = events.assign(step=30)
    assert early_stop_check(same, ["numpy", "torch"], "numpy").status == "ok"
