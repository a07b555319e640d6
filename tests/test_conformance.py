"""The conformance suite of harness.conformance, for every registered backend x every case
(ids like `test_conformance[torch-params_roundtrip_float64]`), plus the runner's exit codes.

A case the backend cannot run here (framework missing, outside its declared capabilities, or
the reference compared with itself) is skipped with the reason it gives; it never passes
silently. Broken twins of the textbook backend, each with one bug (a float32-only one,
folded Adam without decoupled decay, a trace off by a millionth in one layer, an optimizer
state that loses a moment or its count), show that the case written for that bug fails it
while the cases it should not touch pass; twins that cannot trace, export or load are skipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest

from harness import optim
from harness.backend import Backend
from harness.conformance import cases
from harness.conformance import suite as conformance
from harness.params import flatten
from implementations.numpy_fast import NumpyFast
from implementations.numpy_textbook import NumpyTextbook, activation, pairs
from tests.conftest import BACKENDS

PARAMS = [pytest.param(backend, case, id=f"{backend}-{case.name}")
          for backend in BACKENDS for case in conformance.CASES]


@pytest.mark.parametrize(("backend", "case"), PARAMS)
def test_conformance(backend: str, case: conformance.Case) -> None:
    try:
        case.run(backend)
    except conformance.Skip as why:
        pytest.skip(str(why))


def test_case_names_are_unique() -> None:
    names = [case.name for case in conformance.CASES]
    assert len(names) == len(set(names))


class BrokenBiasGradient(NumpyFast):
    """NumPy backprop reporting the output bias gradient with its sign flipped."""
    name: ClassVar[str] = "broken"

    def loss_and_grads(self, batch):
        value, grads = super().loss_and_grads(batch)
        w, b = grads[-1]
        return value, [*grads[:-1], (w, -b)]


def test_a_broken_backend_fails_with_the_tensor_named(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cases, "backend_class",
                        lambda name: BrokenBiasGradient if name == "broken" else NumpyTextbook)
    for module in (conformance, cases):
        monkeypatch.setattr(module, "missing_framework", lambda name: None)
    assert conformance.run_conformance("broken") == 1
    out = capsys.readouterr().out
    failed = {line.split()[1]: line for line in out.splitlines() if line.startswith("FAIL")}
    assert "b2" in failed["grads_vs_finite_differences"]       # the output bias, named
    assert "b2" in failed["grads_vs_numpy"]
    assert "broken does NOT conform" in out.splitlines()[-1]


class Float16Gradients(NumpyTextbook):
    """The textbook backend whose float32 path rounds every gradient through float16."""
    name: ClassVar[str] = "broken"

    def loss_and_grads(self, batch):
        value, grads = super().loss_and_grads(batch)
        if self.spec.dtype == "float32":
            grads = [(w.astype(np.float16).astype(w.dtype), b.astype(np.float16).astype(b.dtype))
                     for w, b in grads]
        return value, grads


class Float16LearningRate(NumpyTextbook):
    """The textbook backend whose float32 path steps with the learning rate cast to float16."""
    name: ClassVar[str] = "broken"

    def train_step(self, batch):
        lr = self.spec.training.learning_rate
        if self.spec.dtype == "float32":
            lr = float(np.float16(lr))
        value, grads = self.loss_and_grads(batch)
        new, self.state = optim.update(flatten(grads), self.state,
                                       flatten(self.weights), self.spec.optimizer, lr,
                                       self.trainable)
        self.weights = pairs(new)
        return value


class NoOutputBiasInFloat32(NumpyTextbook):
    """The textbook backend whose float32 forward pass leaves out the output layer's bias
    (invisible at the start, where biases are zero: only a trajectory shows it)."""
    name: ClassVar[str] = "broken"

    def forward(self, x, masks):
        caches = super().forward(x, masks)
        if self.spec.dtype != "float32":
            return caches
        last, (_, b) = caches[-1], self.weights[-1]
        z = last.z - b
        return [*caches[:-1], last._replace(z=z, a=activation(self.layers[-1], z))]


FLOAT64_CASES = ("grads_vs_numpy", "optimizer_adam", "trajectory_vs_numpy")


@pytest.mark.parametrize(("broken", "caught_by"), [
    (Float16Gradients, "grads_vs_numpy_float32"),
    (Float16LearningRate, "step_vs_numpy_float32"),
    (NoOutputBiasInFloat32, "trajectory_vs_numpy_float32"),
])
def test_a_float32_only_bug_fails_the_float32_cases(monkeypatch, broken, caught_by) -> None:
    monkeypatch.setattr(cases, "backend_class",
                        lambda name: broken if name == "broken" else NumpyTextbook)
    monkeypatch.setattr(cases, "missing_framework", lambda name: None)
    by_name = {case.name: case for case in conformance.CASES}
    assert not conformance.run_case(by_name[caught_by], "broken").passed
    for name in FLOAT64_CASES:
        result = conformance.run_case(by_name[name], "broken")
        assert result.passed, f"{name}: {result.detail}"


class FoldedAdamWithoutDecay(NumpyTextbook):
    """The textbook backend whose folded Adam drops decoupled weight decay (as a backend that
    maps folded Adam onto a library without AdamW would): only optimizer_adamw_folded sees it."""
    name: ClassVar[str] = "broken"

    def __init__(self, spec, device="cpu"):
        opt = spec.optimizer
        if opt.bias_correction == "folded":
            spec = replace(spec, optimizer=replace(opt, weight_decay=0.0))
        super().__init__(spec, device)


def test_folded_adam_without_decoupled_decay_fails_adamw_folded(monkeypatch) -> None:
    monkeypatch.setattr(cases, "backend_class",
                        lambda name: FoldedAdamWithoutDecay if name == "broken" else NumpyTextbook)
    monkeypatch.setattr(cases, "missing_framework", lambda name: None)
    by_name = {case.name: case for case in conformance.CASES}
    assert not conformance.run_case(by_name["optimizer_adamw_folded"], "broken").passed
    for name in ("optimizer_adamw", "optimizer_adam_folded"):
        assert conformance.run_case(by_name[name], "broken").passed, name


def _result(monkeypatch, broken: type[Backend], case: str) -> conformance.CaseResult:
    """Case `case` run on `broken`, registered as "broken" beside the textbook reference."""
    monkeypatch.setattr(cases, "backend_class",
                        lambda name: broken if name == "broken" else NumpyTextbook)
    monkeypatch.setattr(cases, "missing_framework", lambda name: None)
    return conformance.run_case({c.name: c for c in conformance.CASES}[case], "broken")


TRACE_ERROR = 1e-6          # the smallest slip the trace cases are written to catch


class ScaledInputDelta(NumpyTextbook):
    """The textbook backend whose trace reports the first layer's dJ/dz scaled by
    1 + TRACE_ERROR; its gradients, loss and every other traced tensor stay right."""
    name: ClassVar[str] = "broken"

    def trace(self, batch):
        traced = super().trace(batch)
        return replace(traced, dz=(traced.dz[0] * (1 + TRACE_ERROR), *traced.dz[1:]))


def test_a_trace_off_by_a_millionth_in_one_layer_fails_the_trace_cases(monkeypatch) -> None:
    consistency = _result(monkeypatch, ScaledInputDelta, "trace_consistency")
    assert not consistency.passed and not consistency.skipped
    assert "dW0 vs x^T @ dz0" in consistency.detail       # caught by its own chain rule
    versus = _result(monkeypatch, ScaledInputDelta, "trace_vs_numpy")
    assert not versus.passed and "dz0 vs numpy" in versus.detail
    assert _result(monkeypatch, ScaledInputDelta, "grads_vs_numpy").passed


class StepsInTrace(NumpyFast):
    """numpy_fast whose trace advances the optimizer's step count (changes state)."""
    name: ClassVar[str] = "broken"

    def trace(self, batch):
        self._optimizer.count += 1
        return super().trace(batch)


def test_a_trace_that_changes_state_fails_trace_consistency(monkeypatch) -> None:
    result = _result(monkeypatch, StepsInTrace, "trace_consistency")
    assert not result.passed and "vs a backend never traced" in result.detail


class DropsSecondMoment(NumpyTextbook):
    """The textbook backend whose load_state loses the second moment (zeros instead)."""
    name: ClassVar[str] = "broken"

    def load_state(self, state):
        zeros = tuple(None if s is None else np.zeros_like(s) for s in state.second)
        return super().load_state(state._replace(second=zeros))


class ForgetsCount(NumpyTextbook):
    """The textbook backend whose export_state reports no steps taken."""
    name: ClassVar[str] = "broken"

    def export_state(self):
        return super().export_state()._replace(count=0)


class SharesItsState(NumpyTextbook):
    """The textbook backend whose export_state hands out its own arrays, not copies."""
    name: ClassVar[str] = "broken"

    def export_state(self):
        return self.state


@pytest.mark.parametrize(("broken", "caught_by", "named", "untouched"), [
    (DropsSecondMoment, "state_roundtrip_adam", "W1.second", "state_roundtrip_momentum"),
    (DropsSecondMoment, "state_roundtrip_rmsprop", "W1.second", "state_roundtrip_nesterov"),
    (ForgetsCount, "state_roundtrip_sgd", "count 0, expected 3", "trace_consistency"),
    (ForgetsCount, "state_roundtrip_adam", "count 0, expected 3", "optimizer_adam"),
    (SharesItsState, "state_roundtrip_momentum", "after the caller changed", "optimizer_momentum"),
])
def test_a_broken_optimizer_state_fails_state_roundtrip(monkeypatch, broken, caught_by, named,
                                                        untouched) -> None:
    result = _result(monkeypatch, broken, caught_by)
    assert not result.passed and not result.skipped
    assert named in result.detail
    assert _result(monkeypatch, broken, untouched).passed


class CannotTrace(NumpyFast):
    name: ClassVar[str] = "broken"
    trace = Backend.trace


class CannotExport(NumpyFast):
    name: ClassVar[str] = "broken"
    export_state = Backend.export_state


class CannotLoad(NumpyFast):
    name: ClassVar[str] = "broken"
    load_state = Backend.load_state


@pytest.mark.parametrize(("backend", "case", "reason"), [
    (CannotTrace, "trace_consistency", "trace returned None"),
    (CannotTrace, "trace_vs_numpy", "trace returned None"),
    (CannotExport, "state_roundtrip_adam", "export_state returned None"),
    (CannotLoad, "state_roundtrip_adam", "load_state returned False"),
])
def test_the_contract_defaults_are_skips_never_passes(monkeypatch, backend, case,
                                                      reason) -> None:
    result = _result(monkeypatch, backend, case)
    assert result.skipped and not result.passed
    assert reason in result.detail


def test_unknown_backend_is_one_line_and_exit_2(capsys) -> None:
    assert conformance.run_conformance("no-such-backend") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backend 'no-such-backend'" in err


def test_missing_framework_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(conformance, "missing_framework",
                        lambda name: f"{name}: framework 'nothing' is not installed")
    assert conformance.run_conformance("numpy") == 2
    assert "framework 'nothing' is not installed" in capsys.readouterr().err
