"""Everything random about a run, drawn once in NumPy from seeds derived by purpose.

The split, the batch order of every epoch and the dropout masks of every step are produced here
and handed to every backend as plain arrays, so all backends see exactly the same numbers.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.spec import Spec, datasets, planned_steps


def derive_seed(seed: int, purpose: str) -> int:
    """A 64-bit seed for one purpose ("init", "data", "split", "shuffle", "dropout").

    Hashing keeps the streams independent: changing the dropout draws never moves the weights.
    """
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(seed: int, purpose: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng([derive_seed(seed, purpose), *extra])


@dataclass(frozen=True)
class Batch:
    """What one step consumes. masks[i] multiplies layer i's output (already scaled by
    1/(1 - drop_prob): inverted dropout); None where a layer has no dropout. An empty tuple
    means evaluation mode: no dropout anywhere."""
    x: np.ndarray
    y: np.ndarray
    masks: tuple[np.ndarray | None, ...] = ()


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray                         # encoded targets: one-hot, (n, 1) labels, or values
    labels: np.ndarray | None             # int class labels, None for regression


@dataclass(frozen=True)
class Dataset:
    train: Split
    validation: Split
    test: Split


class Plan:
    """The batch order of a whole run, computed one step at a time: step s belongs to epoch
    s // per_epoch and takes the next `size` rows of that epoch's order (a fresh permutation
    per epoch from rng_for(seed, "shuffle", epoch), or the data's own order without
    shuffling or with a full batch). Only the current epoch's permutation is kept: every
    step's indices of a million samples over a thousand epochs would take gigabytes.

    `indices[step]` and `epochs[step]` read like the arrays they replace (len, iteration,
    negative indices, slices as lists)."""

    def __init__(self, seed: int, n_train: int, size: int, shuffle: bool, steps: int) -> None:
        self.seed, self.n_train, self.size, self.steps = seed, n_train, size, steps
        self.shuffle = shuffle and size < n_train        # a full batch keeps the data order
        self.per_epoch = math.ceil(n_train / size)
        self._drawn: tuple[int, np.ndarray] | None = None   # (epoch, its permutation)

    @property
    def indices(self) -> PerStep:
        return PerStep(self.steps, self.rows)

    @property
    def epochs(self) -> PerStep:
        return PerStep(self.steps, self.epoch)

    def epoch(self, step: int) -> int:
        return step // self.per_epoch

    def rows(self, step: int) -> np.ndarray:
        """The train-set rows of `step`: a slice of its epoch's order."""
        start = step % self.per_epoch * self.size
        stop = min(start + self.size, self.n_train)
        if not self.shuffle:
            return np.arange(start, stop)
        return self._order(self.epoch(step))[start:stop]

    def _order(self, epoch: int) -> np.ndarray:
        if self._drawn is None or self._drawn[0] != epoch:
            self._drawn = epoch, rng_for(self.seed, "shuffle", epoch).permutation(self.n_train)
        return self._drawn[1]


class PerStep(Sequence):
    """One value per step of a Plan, computed when read."""

    def __init__(self, steps: int, at: Callable[[int], Any]) -> None:
        self._steps, self._at = steps, at

    def __len__(self) -> int:
        return self._steps

    def __getitem__(self, step: int | slice) -> Any:
        if isinstance(step, slice):
            return [self._at(s) for s in range(*step.indices(self._steps))]
        step = operator.index(step)
        if step < 0:
            step += self._steps
        if not 0 <= step < self._steps:
            raise IndexError(f"step {step} is outside the plan's {self._steps} steps")
        return self._at(step)


def prepare(spec: Spec) -> Dataset:
    """Generate, split, standardize (train statistics only) and encode the data set."""
    x, y = datasets.generate(spec.data, rng_for(spec.seed, "data"))
    order = rng_for(spec.seed, "split").permutation(len(x))
    n_train, n_val, _ = datasets.split_sizes(spec.data)
    parts = np.split(order, [n_train, n_train + n_val])
    if spec.data.standardize:
        mean, std = x[parts[0]].mean(axis=0), x[parts[0]].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)   # constant pixels (digits) stay 0
    dtype = np.dtype(spec.dtype)
    return Dataset(*(_split(x[idx], y[idx], spec, dtype) for idx in parts))


def train_size(spec: Spec) -> int:
    """Rows in the training split, without generating the data."""
    return datasets.split_sizes(spec.data)[0]


def _split(x: np.ndarray, y: np.ndarray, spec: Spec, dtype: np.dtype) -> Split:
    if datasets.dims(spec.data).classes is None:
        return Split(x.astype(dtype), y.astype(dtype), None)
    if spec.loss.name == "bce":
        return Split(x.astype(dtype), y[:, None].astype(dtype), y)
    classes = spec.model.layers[-1].size
    return Split(x.astype(dtype), np.eye(classes, dtype=dtype)[y], y)


def plan(spec: Spec, n_train: int) -> Plan:
    """Per-epoch shuffled batch order; `steps` runs as many epochs as it needs, then truncates
    (never beyond the epochs' batches: `n_train` may be smaller than the spec's split)."""
    size = spec.training.batch_size or n_train
    per_epoch = math.ceil(n_train / size)
    epochs = spec.training.epochs or math.ceil(spec.training.steps / per_epoch)
    steps = min(planned_steps(spec), epochs * per_epoch)
    return Plan(spec.seed, n_train, size, spec.training.shuffle, steps)


def dropout_masks(spec: Spec, step: int, rows: int) -> tuple[np.ndarray | None, ...]:
    """The inverted-dropout masks of one step: keep with probability 1 - drop_prob, scale the
    kept units by 1 / (1 - drop_prob). Drawn from (seed, step) so any step can be redrawn alone."""
    dtype = np.dtype(spec.dtype)
    rng = rng_for(spec.seed, "dropout", step)
    masks = []
    for layer in spec.model.layers:
        if layer.drop_prob == 0.0:
            masks.append(None)
            continue
        keep = rng.random((rows, layer.size)) >= layer.drop_prob
        masks.append(keep.astype(dtype) * dtype.type(1.0 / (1.0 - layer.drop_prob)))
    return tuple(masks)


def train_batch(spec: Spec, data: Dataset, batches: Plan, step: int) -> Batch:
    idx = batches.indices[step]
    masks = dropout_masks(spec, step, len(idx))
    has_dropout = any(m is not None for m in masks)
    return Batch(data.train.x[idx], data.train.y[idx], masks if has_dropout else ())


def eval_batch(split: Split) -> Batch:
    return Batch(split.x, split.y)
