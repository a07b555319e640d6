"""The shipped experiments, over all their sweep points, exercise everything in the spec's
vocabulary that a backend implements: every activation, loss, optimizer and dtype, every value
of each optimizer option with a fixed set of values (per optimizer that reads it), L2 and
decoupled decay, dropout, a frozen bias, and NumPy's fast path that takes plain SGD's step
inside the BLAS GEMM. The vocabulary comes from `harness.spec`, so a value added there fails
here until an experiment runs it. Parsing only: nothing is trained.

Left out on purpose: the init schemes and the data sets are drawn by the harness in NumPy
(tests/test_data.py covers each); batch size, shuffling, steps and early stopping are
applied by the harness too. No backend sees any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from harness.spec import (
    ACTIVATIONS,
    BIAS_CORRECTIONS,
    DTYPES,
    EPS_PLACEMENTS,
    LOSSES,
    OPTIMIZER_KEYS,
    OPTIMIZERS,
    Spec,
    sweep,
)
from implementations.numpy_fast import BLAS_DESCENT_MIN_SIZE

EXPERIMENTS = sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.toml"))
SPECS = [spec for path in EXPERIMENTS for spec in sweep.load(path)]

# Optimizer keys with a fixed set of values, each of which must run; the other keys are
# numbers, where any value exercises the same code.
OPTION_VALUES: dict[str, tuple] = {"nesterov": (False, True), "eps_placement": EPS_PLACEMENTS,
                                   "bias_correction": BIAS_CORRECTIONS}
NUMERIC_OPTIONS = {"momentum", "rho", "beta1", "beta2", "eps"}


def _option(opt: str, key: str) -> Callable[[Spec], set]:
    return lambda s: {getattr(s.optimizer, key)} if s.optimizer.name == opt else set()


# (what, the values that must each occur, the values one sweep point uses)
VOCABULARY: list[tuple[str, tuple, Callable[[Spec], set]]] = [
    ("activation", ACTIVATIONS, lambda s: {layer.activation for layer in s.model.layers}),
    ("loss", LOSSES, lambda s: {s.loss.name}),
    ("optimizer", OPTIMIZERS, lambda s: {s.optimizer.name}),
    ("dtype", DTYPES, lambda s: {s.dtype}),
    *((f"{opt}.{key}", OPTION_VALUES[key], _option(opt, key))
      for opt, keys in OPTIMIZER_KEYS.items() for key in keys if key in OPTION_VALUES),
    ("loss.l2 > 0", (True,), lambda s: {s.loss.l2 > 0}),
    ("optimizer.weight_decay > 0", (True,), lambda s: {s.optimizer.weight_decay > 0}),
    ("drop_prob > 0", (True,), lambda s: {any(la.drop_prob for la in s.model.layers)}),
    ("trainable_bias = false", (True,),
     lambda s: {not all(la.trainable_bias for la in s.model.layers)}),
]


def _where(spec: Spec) -> str:
    return f"{spec.name}[{spec.variant}]" if spec.variant else spec.name


def test_every_optimizer_key_is_classified():
    """A new optimizer key must be listed above: as one with fixed values or as a number."""
    keys = {key for keys in OPTIMIZER_KEYS.values() for key in keys}
    assert keys == set(OPTION_VALUES) | NUMERIC_OPTIONS


@pytest.mark.parametrize(("what", "values", "used"), VOCABULARY,
                         ids=[what for what, _, _ in VOCABULARY])
def test_experiments_cover(what, values, used):
    covered = set().union(*(used(s) for s in SPECS))
    missing = [v for v in values if v not in covered]
    assert not missing, f"no shipped experiment runs {what} = {missing}"


def _blas_descents(spec: Spec) -> list[str]:
    """The weight matrices NumPy updates inside its GEMM: plain SGD (no weight decay, no L2,
    see NumpyFast.train_step) on W with at least BLAS_DESCENT_MIN_SIZE entries."""
    opt = spec.optimizer
    plain = opt.name == "sgd" and not opt.weight_decay and not spec.loss.l2
    fans = [spec.model.inputs, *(layer.size for layer in spec.model.layers)]
    return [f"{_where(spec)} W{i} {a}x{b}" for i, (a, b) in enumerate(pairwise(fans))
            if plain and a * b >= BLAS_DESCENT_MIN_SIZE]


def test_experiments_cover_sgd_inside_blas():
    found = [w for s in SPECS for w in _blas_descents(s)]
    assert found, (f"no shipped experiment trains a weight matrix of >= {BLAS_DESCENT_MIN_SIZE} "
                   "entries with plain SGD (NumPy's step inside the BLAS GEMM)")
