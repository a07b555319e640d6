"""Backends from other packages: the `backprop_harness.backends` entry-point group.

A throwaway distribution is written into tmp_path (a module and its .dist-info with an
entry_points.txt) and put on sys.path, so importlib.metadata finds it as it would an
installed package. The scikit-learn plug-in (plugins/sklearn_backend) is the real example.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from harness import experiment, listing, parity
from harness.conformance import suite as conformance
from harness.registry import BUILTIN, ENTRY_POINT_GROUP, backend_class, registry
from harness.verify import tolerances as tol
from tests.conftest import mlp, spec_from

MODULE = '''from implementations.numpy_fast import NumpyFast


class Throwaway(NumpyFast):
    name = "throwaway"
'''
DIGITS = Path(__file__).resolve().parent.parent / "experiments" / "digits_mlp.toml"
PARITY_EPOCHS = 2


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    """A distribution registering throwaway_backend:Throwaway under `name`; returns its target."""
    target = "throwaway_backend:Throwaway"
    (tmp_path / "throwaway_backend.py").write_text(MODULE)
    info = tmp_path / "throwaway-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return target


@pytest.fixture
def forget_module():
    yield
    sys.modules.pop("throwaway_backend", None)


def test_plugin_is_discovered_listed_and_conforms(tmp_path, monkeypatch, capsys, forget_module):
    target = install(tmp_path, monkeypatch, "throwaway")
    assert registry()["throwaway"] == target
    assert f"throwaway (plug-in, {target}): numpy" in listing.list_backends()
    assert conformance.run_conformance("throwaway") == 0
    assert "throwaway conforms" in capsys.readouterr().out


def test_plugin_claiming_a_builtin_name_is_dropped_with_a_warning(tmp_path, monkeypatch,
                                                                  forget_module):
    target = install(tmp_path, monkeypatch, "numpy")
    with pytest.warns(UserWarning, match="numpy") as caught:
        names = registry()
    assert names["numpy"] == BUILTIN["numpy"]
    message = str(caught[0].message)
    assert target in message and BUILTIN["numpy"] in message


def test_sklearn_plugin_matches_numpy_on_digits_sgd_float64():
    """The worked example: scikit-learn's own backprop and SGDOptimizer, driven with our
    batches, agree with the NumPy reference on the default experiment (shortened)."""
    if "sklearn" not in registry():
        pytest.skip("plug-in not installed: pip install -e plugins/sklearn_backend")
    spec = experiment.load(DIGITS, "float64")[0][0]
    spec = dataclasses.replace(spec, training=dataclasses.replace(
        spec.training, epochs=PARITY_EPOCHS, grad_check_steps=(0,)))
    summary = parity.summarize(parity.run_variant(spec, ["numpy", "sklearn"], progress=False))
    worst = {c["check"]: c["worst"] for c in summary["checks"]}
    assert summary["verdict"] == "agree", summary["checks"]
    assert worst["loss_curve"] <= tol.FLOAT64.loss_rtol
    assert worst["gradients"] <= tol.FLOAT64.grad_rtol


def test_sklearn_declares_adam_conventions_and_still_runs_every_other_optimizer():
    """Its Adam-only convention (standard bias correction) is keyed to Adam: the plug-in no
    longer overrides `unsupported` for it."""
    if "sklearn" not in registry():
        pytest.skip("plug-in not installed: pip install -e plugins/sklearn_backend")
    cls = backend_class("sklearn")
    assert cls.unsupported(spec_from(optimizer={"name": "sgd"})) is None
    assert cls.unsupported(spec_from(optimizer={"name": "momentum"})) is None
    reason = cls.unsupported(spec_from(optimizer={"name": "adam"})) or ""
    assert "optimizer.bias_correction = 'standard'" in reason
    assert cls.unsupported(spec_from(optimizer={"name": "adam",
                                                "bias_correction": "folded"})) is None
    frozen = spec_from(model=mlp([(5, "tanh")], (3, "softmax"), trainable_bias=False))
    assert "layer.trainable_bias = False" in (cls.unsupported(frozen) or "")
