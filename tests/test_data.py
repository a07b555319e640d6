"""Data and randomness: deterministic per seed, different across seeds, independent streams."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from harness import data, params
from harness.spec import from_dict
from tests.conftest import BASE, mlp, spec_from

DATASETS = [("xor", 2), ("spirals", 3), ("moons", 2), ("digits", 10), ("breast_cancer", 2)]


@pytest.mark.parametrize(("name", "classes"), DATASETS, ids=[d[0] for d in DATASETS])
def test_split_and_batches_deterministic(name, classes):
    spec = spec_from(data={"name": name}, model=mlp([(4, "tanh")], (classes, "softmax")))
    a, b = data.prepare(spec), data.prepare(spec)
    for s1, s2 in zip((a.train, a.validation, a.test), (b.train, b.validation, b.test),
                      strict=True):
        assert np.array_equal(s1.x, s2.x) and np.array_equal(s1.y, s2.y)
    p1, p2 = data.plan(spec, len(a.train.x)), data.plan(spec, len(a.train.x))
    assert all(np.array_equal(i, j) for i, j in zip(p1.indices, p2.indices, strict=True))
    other = spec_from(seed=spec.seed + 1, data={"name": name},
                      model=mlp([(4, "tanh")], (classes, "softmax")))
    p3 = data.plan(other, len(a.train.x))
    assert not np.array_equal(p1.indices[0], p3.indices[0])


def test_digits_shape_and_standardization():
    spec = spec_from(data={"name": "digits"}, model=mlp([(4, "tanh")], (10, "softmax")))
    ds = data.prepare(spec)
    assert len(ds.train.x) + len(ds.validation.x) + len(ds.test.x) == 1797
    assert ds.train.x.shape[1] == 64 and ds.train.y.shape[1] == 10
    assert np.allclose(ds.train.x.mean(axis=0), 0.0, atol=1e-12)


def test_every_epoch_is_a_permutation_and_steps_truncate():
    spec = spec_from(training={"learning_rate": 0.1, "batch_size": 16, "epochs": 3})
    n = len(data.prepare(spec).train.x)
    plan = data.plan(spec, n)
    for epoch in range(3):
        idx = np.concatenate([i for i, e in zip(plan.indices, plan.epochs, strict=True)
                              if e == epoch])
        assert sorted(idx) == list(range(n))
    assert not np.array_equal(plan.indices[0], plan.indices[len(plan.indices) // 3])
    raw = copy.deepcopy(BASE)
    raw["training"] = {"learning_rate": 0.1, "batch_size": 16, "steps": 5}
    assert data.plan(from_dict(raw), n).steps == 5


def test_full_batch_keeps_data_order():
    spec = spec_from(training={"learning_rate": 0.1, "batch_size": "full", "epochs": 2})
    n = len(data.prepare(spec).train.x)
    assert all(np.array_equal(i, np.arange(n)) for i in data.plan(spec, n).indices)


def test_dropout_masks_are_inverted_and_reproducible():
    spec = spec_from(model=mlp([(200, "tanh")], (3, "softmax"), drop_prob=0.25))
    m1 = data.dropout_masks(spec, 7, 50)
    assert np.array_equal(m1[0], data.dropout_masks(spec, 7, 50)[0]) and m1[1] is None
    assert set(np.unique(m1[0])) == {0.0, 1 / 0.75}
    assert abs((m1[0] == 0).mean() - 0.25) < 0.02
    assert not np.array_equal(m1[0], data.dropout_masks(spec, 8, 50)[0])


def test_seed_streams_are_independent():
    """Changing the dropout stream must not move the initial weights (purpose-derived seeds)."""
    assert data.derive_seed(0, "init") != data.derive_seed(0, "dropout")
    a = params.initial_params(spec_from())
    b = params.initial_params(spec_from(model=mlp([(5, "tanh")], (3, "softmax"),
                                                  drop_prob=0.5)))
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))


@pytest.mark.parametrize("init", ["xavier_normal", "xavier_uniform", "he_normal", "he_uniform"])
def test_init_scale(init):
    spec = spec_from(data={"name": "digits"}, model={**mlp([(400, "relu")], (10, "softmax")),
                                                     "init": init})
    w = params.initial_params(spec)[0][0]
    fan_in, fan_out = w.shape
    want = 2.0 / (fan_in + fan_out) if init.startswith("xavier") else 2.0 / fan_in
    assert w.shape == (64, 400) and abs(w.var() / want - 1) < 0.05
