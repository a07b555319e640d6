"""The conformance suite of harness.conformance, for every registered backend x every case
(ids like `test_conformance[torch-params_roundtrip_float64]`), plus the runner's exit codes.

A case the backend cannot run here (framework missing, outside its declared capabilities, or
the reference compared with itself) is skipped with the reason it gives; it never passes
silently.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from harness.conformance import cases
from harness.conformance import suite as conformance
from implementations.numpy_fast import NumpyFast
from implementations.numpy_textbook import NumpyTextbook
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


def test_unknown_backend_is_one_line_and_exit_2(capsys) -> None:
    assert conformance.run_conformance("no-such-backend") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backend 'no-such-backend'" in err


def test_missing_framework_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(conformance, "missing_framework",
                        lambda name: f"{name}: framework 'nothing' is not installed")
    assert conformance.run_conformance("numpy") == 2
    assert "framework 'nothing' is not installed" in capsys.readouterr().err
