"""The spec: valid files load into frozen dataclasses; every invalid one is rejected with a
one-line message naming the key path."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from harness.spec import from_dict, sweep
from harness.spec.schema import SpecError
from tests.conftest import BASE

EXPERIMENTS = sorted(Path("experiments").glob("*.toml"))


def test_base_spec_fields():
    spec = from_dict(copy.deepcopy(BASE))
    assert spec.model.inputs == 2 and [la.size for la in spec.model.layers] == [5, 3]
    assert spec.optimizer.name == "sgd" and spec.training.batch_size == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 4


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_shipped_experiments_load(path):
    specs = sweep.load(path)
    assert specs and all(s.name == path.stem for s in specs)


def _set(raw: dict, dotted: str, value) -> dict:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return raw


DELETE = object()

# (change, expected key path in the message, a fragment of the message)
REJECTIONS = [
    ("model.layers.0.activation", "relu6", "model.layers[0].activation", "is not one of"),
    ("model.layers.1.size", 4, "model.layers[1].size", "does not match the data"),
    ("model.layers.0.size", -3, "model.layers[0].size", ">= 1"),
    ("model.layers.0.size", 2.5, "model.layers[0].size", "expected an integer"),
    ("model.layers", [], "model.layers", "at least one layer"),
    ("model.inputs", 3, "model.inputs", "does not match the data"),
    ("model.init", "lecun", "model.init", "is not one of"),
    ("model.layers.0.drop_prob", 1.0, "model.layers[0].drop_prob", "outside the allowed range"),
    ("model.layers.1.drop_prob", 0.5, "model.layers[1].drop_prob", "output layer"),
    ("model.layers.0.activation", "softmax", "model.layers[0].activation", "output layer"),
    ("model.layers.0.negative_slope", 0.1, "model.layers[0].negative_slope", "leaky_relu"),
    ("loss.name", "hinge", "loss.name", "is not one of"),
    ("loss.name", "bce", "model.layers[1].activation", "sigmoid"),
    ("loss.l2", -1.0, "loss.l2", "outside the allowed range"),
    ("optimizer.name", "lbfgs", "optimizer.name", "is not one of"),
    ("optimizer.beta1", 0.9, "optimizer.beta1", "not used by sgd"),
    ("training.learning_rate", 0.0, "training.learning_rate", "outside the allowed range"),
    ("training.learning_rate", float("nan"), "training.learning_rate", "finite"),
    ("training.learning_rate", "fast", "training.learning_rate", "expected a number"),
    ("training.steps", 5, "training.epochs", "exactly one of"),
    ("training.batch_size", 0, "training.batch_size", ">= 1"),
    ("training.bogus", 1, "training.bogus", "unknown key"),
    ("data.name", "mnist", "data.name", "is not one of"),
    ("data.validation", 0.9, "data.test", "leaves no training data"),
    ("data.classes", 4, "data.classes", None),
    ("dtype", "float16", "dtype", "is not one of"),
    ("name", "../escape", "name", "may only use"),
    ("seed", -1, "seed", ">= 0"),
    ("loss", DELETE, "loss", "missing required table"),
    ("colour", "blue", "colour", "unknown key"),
]


@pytest.mark.parametrize(("field", "value", "path", "fragment"), REJECTIONS,
                         ids=[f"{r[0]}={r[1]!r}" for r in REJECTIONS])
def test_rejections_name_the_key_path(field, value, path, fragment):
    raw = _set(copy.deepcopy(BASE), field, value)
    if field == "data.classes":           # spirals accepts classes: mismatch with the output
        path, fragment = "model.layers[1].size", "does not match the data"
    with pytest.raises(SpecError) as info:
        from_dict(raw)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    assert fragment in message


def test_regression_data_rejects_classification_loss():
    raw = copy.deepcopy(BASE)
    raw["data"] = {"name": "sine"}
    raw["model"]["layers"][-1] = {"size": 1, "activation": "sigmoid"}
    raw["loss"] = {"name": "bce"}
    with pytest.raises(SpecError, match=r"^loss.name: 'bce' needs class labels"):
        from_dict(raw)


def test_sweep_expands_every_point(tmp_path):
    specs = sweep.load(Path("experiments/learning_rate.toml"))
    assert len(specs) > 1 and len({s.training.learning_rate for s in specs}) == len(specs)
    toml = tmp_path / "s.toml"
    toml.write_text('name = "s"\n[data]\nname = "xor"\n[[model.layers]]\nsize = 3\n'
                    'activation = "tanh"\n[[model.layers]]\nsize = 2\nactivation = "softmax"\n'
                    '[loss]\nname = "cross_entropy"\n[training]\nlearning_rate = 0.1\nepochs = 1\n'
                    '[sweep]\nfields = ["model.layers[:-1].activation", "training.learning_rate"]\n'
                    'values = [["relu", 0.5], ["sigmoid", 0.25]]\n')
    a, b = sweep.load(toml)
    assert (a.model.layers[0].activation, a.training.learning_rate) == ("relu", 0.5)
    assert (b.model.layers[0].activation, b.model.layers[1].activation) == ("sigmoid", "softmax")
    assert a.variant == "activation=relu,learning_rate=0.5"


def test_sweep_over_missing_field_is_rejected(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('name = "s"\n[data]\nname = "xor"\n[[model.layers]]\nsize = 2\n'
                    'activation = "softmax"\n[loss]\nname = "cross_entropy"\n[training]\n'
                    'learning_rate = 0.1\nepochs = 1\n[sweep]\nfield = "training.learnig_rate"\n'
                    'values = [0.1, 0.2]\n')
    with pytest.raises(SpecError, match=r"^training.learnig_rate: unknown key .*sweep point"):
        sweep.load(toml)
