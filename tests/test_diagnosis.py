"""The diagnosis names where a disagreement starts (step, phase, layer, tensor), who is wrong
when that can be told, and a convention that explains an update difference. Each test
injects one small, realistic bug into a copy of the textbook backend and checks the
diagnosis; the last ones check that nothing is diagnosed when nothing is wrong."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import harness
import harness.params
import harness.spec
from harness import optim
from harness.params import flatten
from harness.verify import diagnose, phases
from implementations import numpy_textbook as textbook
from implementations.numpy_textbook import NumpyTextbook

SPEC = {"name": "diag", "seed": 3, "dtype": "float64",
        "data": {"name": "spirals", "n_samples": 90, "classes": 3},
        "model": {"inputs": 2, "layers": [{"size": 6, "activation": "tanh"},
                                          {"size": 5, "activation": "tanh"},
                                          {"size": 3, "activation": "softmax"}]},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam"},
        "training": {"learning_rate": 0.01, "batch_size": 16, "steps": 12,
                     "grad_check_steps": [0]}}


def spec_with(**sections: dict) -> dict:
    return {**SPEC, **{k: {**SPEC[k], **v} for k, v in sections.items()}}


def diagnosed(spec: dict, *backends) -> tuple[dict, dict]:
    """(the summary of the only variant, the diagnosis of the last backend)."""
    summary = harness.run(spec, backends=list(backends)).summary["variants"][0]
    assert summary["verdict"] == "disagree", summary["checks"]
    return summary, summary["diagnosis"][backends[-1].name]


def where(found: dict) -> tuple:
    return found["step"], found["phase"], found["layer"], found["tensor"]


class DeepStepTwice(NumpyTextbook):
    """W0's update is applied twice; every gradient is right."""
    name: ClassVar[str] = "deep_step_twice"

    def train_step(self, batch):
        before = self.weights[0][0].copy()
        value = super().train_step(batch)
        w, b = self.weights[0]
        self.weights[0] = (2 * w - before, b)
        return value


class FrozenBiasMoves(NumpyTextbook):
    """The frozen b0 is updated with its true gradient anyway."""
    name: ClassVar[str] = "frozen_bias_moves"

    def train_step(self, batch):
        layers = self.spec.model.layers
        unfrozen = NumpyTextbook(replace(self.spec, model=replace(self.spec.model, layers=(
            replace(layers[0], trainable_bias=True), *layers[1:]))))
        unfrozen.load(self.weights)
        g = unfrozen.loss_and_grads(batch)[1]
        value = super().train_step(batch)
        w, b = self.weights[0]
        self.weights[0] = (w, b - self.spec.training.learning_rate * g[0][1])
        return value


class VelocityReset(NumpyTextbook):
    """The momentum velocity is zeroed before every step (the step count is kept): right at
    step 0, wrong after."""
    name: ClassVar[str] = "velocity_reset"

    def train_step(self, batch):
        fresh = optim.init(flatten(self.weights), self.spec.optimizer, self.trainable)
        self.state = self.state._replace(first=fresh.first)
        return super().train_step(batch)


class LossDoubled(NumpyTextbook):
    """The loss value is reported twice too large; gradients and training are right."""
    name: ClassVar[str] = "loss_doubled"

    def trace(self, batch):
        t = super().trace(batch)
        return replace(t, loss=2 * t.loss)


class EpsInside(NumpyTextbook):
    """Adam with eps inside the square root: another framework's convention."""
    name: ClassVar[str] = "eps_inside"

    def train_step(self, batch):
        value, grads = self.loss_and_grads(batch)
        opt = replace(self.spec.optimizer, eps_placement="inside")
        new, self.state = optim.update(flatten(grads), self.state, flatten(self.weights), opt,
                                       self.spec.training.learning_rate, self.trainable)
        self.weights = textbook.pairs(new)
        return value


class NoBiasInLayerOne(NumpyTextbook):
    """Layer 1 forgets its bias in the forward pass (and so in every derivative after)."""
    name: ClassVar[str] = "no_bias_layer_one"

    def forward(self, x, masks):
        saved = self.weights[1]
        self.weights[1] = (saved[0], np.zeros_like(saved[1]))
        try:
            return super().forward(x, masks)
        finally:
            self.weights[1] = saved


class ReversedRows(NumpyTextbook):
    """The batch's rows are reversed for x but not for y."""
    name: ClassVar[str] = "reversed_rows"

    def trace(self, batch):
        return super().trace(replace(batch, x=batch.x[::-1].copy()))


class CannotLoadState(NumpyTextbook):
    """A correct backend that cannot load an optimizer state."""
    name: ClassVar[str] = "cannot_load_state"

    def load_state(self, state):
        return False


def test_an_update_bug_in_a_deep_tensor_is_named_there_with_two_backends():
    _, found = diagnosed(SPEC, "numpy", DeepStepTwice)
    assert where(found) == (0, "update", 0, "W0")
    assert found["culprit"] == "deep_step_twice" and found["convention"] is None


def test_a_frozen_bias_that_moves_is_named():
    spec = spec_with(model={"layers": [{"size": 6, "activation": "tanh",
                                        "trainable_bias": False},
                                       *SPEC["model"]["layers"][1:]]},
                     optimizer={"name": "sgd"})
    _, found = diagnosed(spec, "numpy", FrozenBiasMoves)
    assert where(found) == (0, "update", 0, "b0")


def test_a_state_bug_that_shows_only_from_step_one_is_found_by_the_scan():
    spec = spec_with(optimizer={"name": "momentum"})
    summary, found = diagnosed(spec, "numpy", VelocityReset)
    assert where(found) == (1, "update", 2, "W2.first")
    assert summary["checks"][0]["check"] == "gradients"    # step 1 is not a check step


def test_a_loss_value_bug_is_the_loss_phase_and_the_oracle_names_the_culprit():
    _, found = diagnosed(SPEC, "numpy", LossDoubled)
    assert where(found) == (0, "loss", None, "loss")
    assert found["culprit"] == "loss_doubled"


def test_a_convention_swap_is_named_by_the_finder():
    _, found = diagnosed(SPEC, "numpy", EpsInside)
    assert found["phase"] == "update" and found["step"] == 0
    assert found["convention"] == "optimizer.eps_placement=inside"


def test_a_forward_bug_is_the_first_layer_that_differs_and_a_third_backend_blames_it():
    _, found = diagnosed(SPEC, "numpy", "numpy_fast", NoBiasInLayerOne)
    assert where(found) == (1, "forward", 1, "z1")        # b1 = 0 until the first update
    assert found["culprit"] == "no_bias_layer_one"
    assert "numpy_fast agrees with numpy" in found["why"]


def test_two_backends_without_a_judge_say_they_cannot_tell():
    _, found = diagnosed(SPEC, "numpy", NoBiasInLayerOne)
    assert where(found) == (1, "forward", 1, "z1")
    assert found["culprit"] is None and "third backend" in found["why"]


def test_mangled_inputs_are_the_data_phase():
    _, found = diagnosed(SPEC, "numpy", ReversedRows)
    assert where(found) == (0, "data", None, "x")
    assert found["culprit"] == "reversed_rows"


def test_nothing_is_diagnosed_when_nothing_is_wrong():
    result = harness.run(spec_with(optimizer={"name": "rmsprop"}),
                         backends=["numpy", "numpy_fast", CannotLoadState])
    summary = result.summary["variants"][0]
    assert summary["verdict"] == "agree" and summary["diagnosis"] == {}
    rows = result.tables["phases"]
    assert set(rows.phase) == set(phases.PHASES) and (rows.status == "ok").all()
    fresh = rows[rows.backend == "cannot_load_state"]
    assert fresh.note.isna().all()        # step 0: every backend starts from its own state


def test_a_backend_that_cannot_load_state_is_compared_from_a_fresh_one_and_says_so():
    spec = spec_with(training={"grad_check_steps": [0, 5]})
    rows = harness.run(spec, backends=["numpy", CannotLoadState]).tables["phases"]
    later = rows[(rows.backend == "cannot_load_state") & (rows.step == 5) &
                 (rows.phase == "update")]
    assert len(later) and later.note.str.contains("fresh optimizer state").all()


def _row(step: int, phase: str, tensor: str, status: str = "fail") -> dict:
    return {"step": step, "phase": phase, "tensor": tensor, "backend": "b",
            "compared_to": "a", "status": status, "layer": phases.layer_of(tensor),
            "max_rel_err": 1.0, "tolerance": 1e-12}


@pytest.mark.parametrize(("rows", "first"), [
    ([_row(0, "backward", "dz0"), _row(0, "backward", "dz1")], "dz1"),
    ([_row(0, "backward", "dW1"), _row(0, "backward", "dz1")], "dz1"),
    ([_row(0, "forward", "a1"), _row(0, "forward", "z1"), _row(0, "forward", "a0")], "a0"),
    ([_row(0, "update", "W1"), _row(0, "update", "W1.first"), _row(0, "update", "count")],
     "count"),
    ([_row(0, "update", "W0"), _row(0, "update", "b1")], "b1"),
    ([_row(1, "data", "x"), _row(0, "evaluate", "eval_loss")], "eval_loss"),
    ([_row(0, "forward", "z0", "ok"), _row(0, "backward", "da0")], "da0"),
])
def test_the_first_failure_follows_step_phase_and_backprop_order(rows, first):
    assert diagnose.first_failure(pd.DataFrame(rows)).tensor == first


def test_the_scan_reaches_the_latest_step_a_failing_check_names():
    checks = [{"backend": "b", "status": "fail", "first_step": 7},
              {"backend": "b", "status": "fail", "first_step": None},
              {"backend": "c", "status": "fail", "first_step": None}]
    steps = pd.DataFrame({"backend": ["b", "c", "c"], "step": [9, 3, 4]})
    from harness.parity import scan_bound
    assert scan_bound(checks[:1], steps, ["b"]) == 7
    assert scan_bound(checks[:2], steps, ["b"]) == 9
    assert scan_bound(checks[2:], steps, ["c"]) == 4


def test_the_diagnosis_figure_is_drawn_only_where_backends_disagree(tmp_path):
    from harness.plots import folder
    bad = harness.run(SPEC, backends=["numpy", EpsInside], out=tmp_path / "bad")
    good = harness.run(SPEC, backends=["numpy", "numpy_fast"], out=tmp_path / "good")
    kinds = {name: [p.kind for p in folder.plan(r.tables, r.summary)]
             for name, r in (("bad", bad), ("good", good))}
    assert "diagnosis" in kinds["bad"] and "diagnosis" not in kinds["good"]
    figure = next(p for p in folder.plan(bad.tables, bad.summary) if p.kind == "diagnosis")
    axes = figure.draw().axes
    assert "step 0, update W2" in axes[0].get_title()


def test_a_state_of_another_layout_is_refused():
    spec = harness.spec.from_dict(spec_with(optimizer={"name": "momentum"}))
    backend = NumpyTextbook(spec)
    backend.load(harness.params.initial_params(spec))
    state = backend.export_state()
    with pytest.raises(ValueError, match="`second` of tensor 0 has shape"):
        backend.load_state(state._replace(second=state.first))
    with pytest.raises(ValueError, match="shape"):
        backend.load_state(state._replace(first=(state.first[0][:1], *state.first[1:])))
    assert backend.load_state(state)
