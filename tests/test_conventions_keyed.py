"""A backend's declared conventions apply only where the spec reads the field (Backend.unsupported
with harness.backend.read_values): a backend that cannot do Adam's standard bias correction still
runs every SGD spec, and is still skipped, with the reason, on Adam."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from harness import backend, experiment
from harness.backend import Capabilities
from harness.spec import Spec
from implementations.numpy_fast import NumpyFast
from tests.conftest import mlp, spec_from

EXPERIMENTS = sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.toml"))
NO_STANDARD_ADAM = "has only the folded bias correction"


# numpy_fast's layer types (conv and pools among them), which the subclasses keep
LAYERS = NumpyFast.capabilities.layer_types


class AdamFoldedOnly(NumpyFast):
    """Declares one Adam convention and nothing else."""
    name: ClassVar[str] = "adam_folded_only"
    capabilities: ClassVar[Capabilities] = Capabilities(
        layer_types=LAYERS,
        conventions={("optimizer.bias_correction", "standard"): NO_STANDARD_ADAM})


def declaring(path: str, value: object) -> type[NumpyFast]:
    """A backend that declares the one convention (path, value)."""
    return type("Declares", (NumpyFast,), {"name": "declares", "capabilities": Capabilities(
        layer_types=LAYERS, conventions={(path, value): "reason"})})


def experiment_specs() -> list[Spec]:
    return [spec for path in EXPERIMENTS for spec in experiment.load(path, None)[0]]


def skipped_without_adam(specs: list[Spec]) -> list[str]:
    """The specs that do not use Adam on which AdamFoldedOnly is skipped (should be none)."""
    return [f"{s.name}/{s.variant}" for s in specs
            if s.optimizer.name != "adam" and AdamFoldedOnly.unsupported(s) is not None]


def old_read_values(spec: Spec, path: str) -> list[object]:
    """The behaviour this replaced: the field's value whether or not anything reads it."""
    section, _, key = path.partition(".")
    return [getattr(getattr(spec, section), key)]


def test_every_experiment_without_adam_runs_on_an_adam_only_convention():
    specs = experiment_specs()
    sgd = [s for s in specs if s.optimizer.name == "sgd"]
    assert len({s.name for s in sgd}) >= 5          # the check below is over real experiments
    assert skipped_without_adam(specs) == []


def test_the_old_unkeyed_conventions_are_caught(monkeypatch):
    monkeypatch.setattr(backend, "read_values", old_read_values)
    assert len(skipped_without_adam(experiment_specs())) > 0


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop"])
def test_small_specs_of_other_optimizers_run(optimizer):
    assert AdamFoldedOnly.unsupported(spec_from(optimizer={"name": optimizer})) is None


def test_adam_with_standard_bias_correction_is_skipped_with_the_reason():
    reason = AdamFoldedOnly.unsupported(spec_from(optimizer={"name": "adam"}))
    assert reason == ("adam_folded_only cannot express optimizer.bias_correction = 'standard': "
                      f"{NO_STANDARD_ADAM}")
    folded = spec_from(optimizer={"name": "adam", "bias_correction": "folded"})
    assert AdamFoldedOnly.unsupported(folded) is None


def test_adam_experiments_are_still_skipped():
    adam = [s for s in experiment_specs()
            if s.optimizer.name == "adam" and s.optimizer.bias_correction == "standard"]
    assert adam
    assert all(NO_STANDARD_ADAM in (AdamFoldedOnly.unsupported(s) or "") for s in adam)


@pytest.mark.parametrize(("optimizer", "applies"), [
    ("sgd", False), ("momentum", True), ("rmsprop", False), ("adam", False)])
def test_an_option_applies_to_the_optimizer_that_reads_it(optimizer, applies):
    cls = declaring("optimizer.nesterov", False)
    assert (cls.unsupported(spec_from(optimizer={"name": optimizer})) is not None) == applies


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
def test_an_option_of_every_optimizer_applies_to_each(optimizer):
    cls = declaring("optimizer.weight_decay", 0.0)
    assert "weight_decay" in (cls.unsupported(spec_from(optimizer={"name": optimizer})) or "")


def test_a_loss_option_applies():
    assert "loss.l2" in (declaring("loss.l2", 0.0).unsupported(spec_from()) or "")


def test_a_layer_option_applies_only_to_the_layers_that_read_it(monkeypatch):
    cls = declaring("layer.negative_slope", 0.01)
    leaky = spec_from(model=mlp([(5, "leaky_relu")], (3, "softmax")))
    assert "layer.negative_slope = 0.01" in (cls.unsupported(leaky) or "")
    assert cls.unsupported(spec_from()) is None                   # tanh and softmax layers
    monkeypatch.setattr(backend, "LAYER_KEYS", {})                 # every layer reads it
    assert cls.unsupported(spec_from()) is not None


def test_a_layer_option_every_layer_reads():
    frozen = spec_from(model=mlp([(5, "tanh")], (3, "softmax"), trainable_bias=False))
    cls = declaring("layer.trainable_bias", False)
    assert "trainable_bias" in (cls.unsupported(frozen) or "")
    assert cls.unsupported(spec_from()) is None
