"""The spec: valid files load into frozen dataclasses; every invalid one is rejected with a
one-line message naming the key path."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness import experiment
from harness.spec import from_dict, sweep
from harness.spec.datasets import DATA_LIMIT, MAX_SAMPLES
from harness.spec.schema import SpecError, shown
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
    ("seed", 2**63, "seed", "allowed: integer <= 9223372036854775807"),
    ("training.batch_size", 10**400, "training.batch_size", "allowed: integer <= 1000000"),
    ("data.noise", 1e300, "data.noise", "outside the allowed range"),
    ("training.learning_rate", [0.1] * 10**5, "training.learning_rate", "got list [0.1, 0.1"),
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


def test_an_error_shows_keys_and_values_escaped_and_short():
    assert str(SpecError("a\x1bb", "c\nd\r")) == "a\\x1bb: c\\nd\\r"
    assert len(shown("x" * 10**6)) < 100 and len(shown(list(range(10**6)))) < 100
    assert shown(10**5000) == "<int too long to show>"


FLOAT32 = np.finfo(np.float32)


def _learning_rate(value: float, dtype: str) -> dict:
    return _set(_set(copy.deepcopy(BASE), "training.learning_rate", value), "dtype", dtype)


@pytest.mark.parametrize("value", [float(FLOAT32.max), float(FLOAT32.smallest_subnormal)])
def test_a_float32_run_takes_the_extremes_float32_holds(value):
    assert from_dict(_learning_rate(value, "float32")).training.learning_rate == value


@pytest.mark.parametrize(("value", "fragment"), [
    (2 * float(FLOAT32.max), "beyond float32's range in this float32 run"),
    (float(FLOAT32.smallest_subnormal) / 2, "becomes 0.0 in this float32 run")])
def test_a_float32_run_reads_each_number_as_float32(value, fragment):
    from_dict(_learning_rate(value, "float64"))
    with pytest.raises(SpecError, match=f"^training.learning_rate: .*{fragment}"):
        from_dict(_learning_rate(value, "float32"))


def test_the_dtype_override_is_checked_like_a_written_dtype(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('name = "s"\n[data]\nname = "xor"\n[[model.layers]]\nsize = 2\n'
                    'activation = "softmax"\n[loss]\nname = "cross_entropy"\n[training]\n'
                    "learning_rate = 1e39\nepochs = 1\n")
    experiment.load(toml, None)
    with pytest.raises(SpecError, match="beyond float32's range in this float32 run"):
        experiment.load(toml, "float32")


def _inline(x: list, y: list, dtype: str = "float64") -> dict:
    raw = copy.deepcopy(BASE)
    raw.update(dtype=dtype, data={"name": "inline", "x": x, "y": y}, loss={"name": "mse"})
    raw["model"]["layers"] = [{"size": 3, "activation": "tanh"},
                              {"size": 1, "activation": "identity"}]
    return raw


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inline_data_is_limited_to_what_the_run_can_square_and_sum(dtype):
    limit = DATA_LIMIT[dtype]
    y = [[0.0], [1.0], [0.0], [1.0]]
    from_dict(_inline([[limit], [0.0], [1.0], [-limit]], y, dtype))
    over = float(np.nextafter(limit, np.inf))
    with pytest.raises(SpecError, match=r"^data.x\[3\]\[0\]: .* too large in magnitude"):
        from_dict(_inline([[limit], [0.0], [1.0], [-over]], y, dtype))


def test_inline_data_has_the_sample_limit_of_every_data_set():
    rows = [[0.0]] * (MAX_SAMPLES + 1)
    with pytest.raises(SpecError, match=f"^data.x: has {MAX_SAMPLES + 1} rows \\(allowed: at "
                                        f"most {MAX_SAMPLES}"):
        from_dict(_inline(rows, rows))


def test_expanding_a_sweep_leaves_the_document_unchanged():
    """Each point copies only the tables and lists on its fields' paths."""
    raw = copy.deepcopy(BASE)
    raw["sweep"] = {"fields": ["model.layers[:-1].activation", "training.learning_rate"],
                    "values": [["relu", 0.5], ["sigmoid", 0.25]]}
    before = copy.deepcopy(raw)
    a, b = sweep.expand(raw)
    assert raw == before
    assert (a.model.layers[0].activation, b.model.layers[0].activation) == ("relu", "sigmoid")
    assert (a.training.learning_rate, b.training.learning_rate) == (0.5, 0.25)
