"""The conformance suite of harness.conformance, for every registered backend x every case
(ids like `test_conformance[torch-params_roundtrip_float64]`), plus the runner's exit codes.

A case the backend cannot run here (framework missing, outside its declared capabilities, or
the reference compared with itself) is skipped with the reason it gives; it never passes
silently. Broken twins of the textbook backend, each with one bug (a float32-only one, or
folded Adam without decoupled decay), show that the case written for that bug fails it while
the cases it should not touch pass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest

from harness import optim
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


def test_unknown_backend_is_one_line_and_exit_2(capsys) -> None:
    assert conformance.run_conformance("no-such-backend") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backend 'no-such-backend'" in err


def test_missing_framework_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(conformance, "missing_framework",
                        lambda name: f"{name}: framework 'nothing' is not installed")
    assert conformance.run_conformance("numpy") == 2
    assert "framework 'nothing' is not installed" in capsys.readouterr().err
