"""NumPy's BLAS reached for C += alpha A B, and the NumPy step that descends inside it."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data, params
from harness.verify import tolerances
from implementations import blas, numpy_fast
from implementations.numpy_fast import NumpyFast
from tests.conftest import mlp, spec_from

DTYPES = ["float32", "float64"]
ACCUMULATOR = blas.accumulator                      # before any test replaces it


def reachable(dtype: str) -> blas.AddProduct:
    add_product = ACCUMULATOR(np.dtype(dtype))
    if add_product is None:
        pytest.skip("NumPy's BLAS is not scipy-openblas here: the NumPy step uses np.matmul")
    return add_product


def operands(layout: str, rng: np.random.Generator, dtype: str) -> np.ndarray:
    """A 5 x 4 operand stored C-contiguous, as a transposed view, or strided (needs a copy)."""
    if layout == "c":
        return rng.standard_normal((5, 4)).astype(dtype)
    if layout == "t":
        return rng.standard_normal((4, 5)).astype(dtype).T
    return rng.standard_normal((10, 8)).astype(dtype)[::2, ::2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout_a", ["c", "t", "strided"])
@pytest.mark.parametrize("layout_b", ["c", "t", "strided"])
def test_add_product_is_c_plus_alpha_a_b(dtype, layout_a, layout_b):
    add_product, rng = reachable(dtype), np.random.default_rng(0)
    a, b = operands(layout_a, rng, dtype), operands(layout_b, rng, dtype).T
    c = rng.standard_normal((5, 5)).astype(dtype)
    expected = c - 0.5 * (a @ b)
    add_product(c, a, b, -0.5)
    rtol = 10 * np.finfo(dtype).eps                 # 4-term dot products, one rounding each
    np.testing.assert_allclose(c, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize(("c_shape", "c_dtype"), [((5, 6), "float64"), ((5, 5), "float32")])
def test_add_product_refuses_mismatched_operands(c_shape, c_dtype):
    add_product = reachable("float64")
    a = np.ones((5, 4))
    with pytest.raises(ValueError, match="needs matching shapes, one dtype"):
        add_product(np.zeros(c_shape, c_dtype), a, a.T, 1.0)


@pytest.mark.parametrize("dtype", ["float16", "int64", "complex128"])
def test_no_accumulator_for_other_dtypes(dtype):
    assert blas.accumulator(np.dtype(dtype)) is None


def train(spec, monkeypatch, in_blas: bool) -> tuple[list, int, int]:
    """Parameters after the run's NumPy SGD steps, the steps, and the products done in BLAS."""
    found, calls = ACCUMULATOR(np.dtype(spec.dtype)), []

    def counted(c, a, b, alpha):
        calls.append(c.shape)
        found(c, a, b, alpha)

    monkeypatch.setattr(blas, "accumulator", lambda dtype: counted if in_blas else None)
    backend = NumpyFast(spec)
    backend.load(params.initial_params(spec))
    ds = data.prepare(spec)
    plan = data.plan(spec, len(ds.train.x))
    for step in range(len(plan.indices)):
        backend.train_step(data.train_batch(spec, ds, plan, step))
    return backend.params(), len(plan.indices), len(calls)


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_descending_in_blas_matches_the_plain_step(dtype, monkeypatch):
    reachable(dtype)
    monkeypatch.setattr(numpy_fast, "BLAS_DESCENT_MIN_SIZE", 0)   # these W are tiny
    model = mlp([(16, "relu"), (8, "tanh")], (3, "softmax"), drop_prob=0.25)
    model["layers"][1]["trainable_bias"] = False
    spec = spec_from(dtype=dtype, model=model, training={"learning_rate": 0.2, "epochs": 4})
    fused, steps, calls = train(spec, monkeypatch, in_blas=True)
    plain, _, none = train(spec, monkeypatch, in_blas=False)
    assert steps >= 8 and (calls, none) == (3 * steps, 0)   # every W of every step
    # the same products summed in another order (BLAS K-blocking) at most: parameter tolerance
    rtol = tolerances.for_run(dtype, longest_sum=16, depth=3).param_rtol
    for (w, b), (w0, b0) in zip(fused, plain, strict=True):
        np.testing.assert_allclose(w, w0, rtol=rtol, atol=rtol * np.abs(w0).max())
        assert np.array_equal(b, b0)                # biases are updated the same way in both


def test_l2_keeps_the_plain_step(monkeypatch):
    reachable("float64")
    spec = spec_from(loss={"l2": 1e-3})
    _, _, calls = train(spec, monkeypatch, in_blas=True)
    assert calls == 0                               # the L2 term is not a product


def test_small_weight_matrices_keep_the_plain_step(monkeypatch):
    """Below BLAS_DESCENT_MIN_SIZE the ctypes call costs more than the update pass it saves."""
    reachable("float64")
    model = mlp([(128, "relu"), (8, "relu")], (3, "softmax"))      # W: 2x128, 128x8, 8x3
    spec = spec_from(model=model, training={"epochs": 1})
    _, _, calls = train(spec, monkeypatch, in_blas=True)
    assert calls == 0
    spec = spec_from(model=mlp([(128, "relu"), (128, "relu")], (3, "softmax")),
                     training={"epochs": 1})
    _, steps, calls = train(spec, monkeypatch, in_blas=True)
    assert calls == steps                           # only the 128 x 128 matrix
