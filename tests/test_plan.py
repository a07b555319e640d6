"""The lazy batch plan: bit-identical to the eager plan it replaced, at a fraction of its memory."""

from __future__ import annotations

import copy
import itertools
import math
import tracemalloc

import numpy as np
import pytest

from harness import data
from harness.spec import Spec, from_dict, planned_steps
from tests.conftest import BASE


def eager_plan(spec: Spec, n_train: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The plan as it was before it became lazy: every step's indices materialised."""
    size = spec.training.batch_size or n_train
    per_epoch = math.ceil(n_train / size)
    epochs = spec.training.epochs or math.ceil(spec.training.steps / per_epoch)
    total = planned_steps(spec)
    full_batch = size >= n_train
    indices, epoch_of = [], []
    for epoch in range(epochs):
        shuffle = spec.training.shuffle and not full_batch
        order = data.rng_for(spec.seed, "shuffle", epoch).permutation(n_train) if shuffle \
            else np.arange(n_train)
        for start in range(0, n_train, size):
            indices.append(order[start:start + size])
            epoch_of.append(epoch)
    return np.array(epoch_of[:total]), tuple(indices[:total])


def spec_with(n_samples: int, batch: int | str, shuffle: bool, length: dict) -> Spec:
    raw = copy.deepcopy(BASE)
    raw["data"] = {"name": "spirals", "n_samples": n_samples}
    raw["training"] = {"learning_rate": 0.1, "batch_size": batch, "shuffle": shuffle,
                       **length}
    return from_dict(raw)


# 37 samples leave 27 training rows: batches of 4 and 10 end on a partial batch, 27 and more
# are one full batch (a batch above the split's size included); steps stop inside an epoch,
# at its end, and several epochs in.
SAMPLES = (20, 37)
BATCHES = (1, 4, 10, 27, 40, "full")
LENGTHS = ({"epochs": 1}, {"epochs": 3}, {"steps": 1}, {"steps": 5}, {"steps": 14},
           {"steps": 23})
GRID = list(itertools.product(SAMPLES, BATCHES, (True, False), LENGTHS))


@pytest.mark.parametrize(("n_samples", "batch", "shuffle", "length"), GRID,
                         ids=[f"n{n}-b{b}-{'shuffled' if s else 'ordered'}-{next(iter(L))}"
                              f"{next(iter(L.values()))}" for n, b, s, L in GRID])
def test_lazy_plan_equals_eager_plan(n_samples, batch, shuffle, length):
    spec = spec_with(n_samples, batch, shuffle, length)
    n_train = data.train_size(spec)
    epochs, indices = eager_plan(spec, n_train)
    lazy = data.plan(spec, n_train)
    assert lazy.steps == len(indices) == len(lazy.indices) == len(lazy.epochs)
    for step, want in enumerate(indices):
        got = lazy.indices[step]
        assert got.dtype == want.dtype and np.array_equal(got, want), step
        assert lazy.epochs[step] == epochs[step]
    assert list(lazy.epochs) == epochs.tolist()


def test_plan_for_fewer_rows_than_the_spec_splits_stops_with_its_epochs():
    """A caller may plan over fewer rows than the spec's split (the worked example plans
    over its one sample): the plan ends with the epochs' batches, as the eager one did."""
    spec = spec_with(37, 4, True, {"epochs": 3})
    _, indices = eager_plan(spec, 3)
    lazy = data.plan(spec, 3)
    assert lazy.steps == len(indices) == 3
    assert all(np.array_equal(lazy.indices[s], i) for s, i in enumerate(indices))


def test_reading_past_the_plan_is_an_index_error():
    spec = spec_with(37, 4, True, {"steps": 5})
    plan = data.plan(spec, data.train_size(spec))
    assert np.array_equal(plan.indices[-1], plan.indices[4])
    assert plan.epochs[1:3] == [plan.epochs[1], plan.epochs[2]]
    with pytest.raises(IndexError):
        plan.indices[5]
    with pytest.raises(IndexError):
        data.train_batch(spec, data.prepare(spec), plan, 5)


def test_each_epoch_is_drawn_once_when_read_in_order(monkeypatch):
    """The current epoch's permutation is cached: a run reading its steps in order draws
    each epoch once (not once per step)."""
    drawn = []
    real = data.rng_for

    def counting(seed, purpose, *extra):
        drawn.append(extra)
        return real(seed, purpose, *extra)

    monkeypatch.setattr(data, "rng_for", counting)
    spec = spec_with(37, 4, True, {"epochs": 3})
    plan = data.plan(spec, data.train_size(spec))
    for step in range(plan.steps):
        plan.indices[step]
    assert drawn == [(0,), (1,), (2,)]


BIG_SAMPLES, BIG_BATCH, BIG_EPOCHS = 1_000_000, 1_000, 1_000
# Eager, this plan held 1,000 epochs' permutations of 700,000 int64 rows (~5.6 GB); lazy, one
# epoch's permutation (5.6 MB) and the step's slice of it.
PLAN_MEMORY_LIMIT = 16 * 2**20


def test_a_plan_of_a_million_samples_and_a_thousand_epochs_stays_small():
    raw = copy.deepcopy(BASE)
    raw["data"] = {"name": "spirals", "n_samples": BIG_SAMPLES}
    raw["training"] = {"learning_rate": 0.1, "batch_size": BIG_BATCH, "epochs": BIG_EPOCHS}
    spec = from_dict(raw)
    n_train = data.train_size(spec)
    tracemalloc.start()
    try:
        plan = data.plan(spec, n_train)
        last = plan.indices[plan.steps - 1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plan.steps == planned_steps(spec) == BIG_EPOCHS * math.ceil(n_train / BIG_BATCH)
    assert len(last) == n_train - (plan.per_epoch - 1) * BIG_BATCH
    assert peak < PLAN_MEMORY_LIMIT
