"""The backend contract, checked for every registered backend (ids = backend names).

A backend whose framework is missing, or that declares a spec unsupported, is skipped with
the reason; everything else must hold exactly as harness/backend.py states it.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import data, gradcheck, params
from harness import tolerances as tol
from implementations.numpy_manual import NumpyManual
from tests.conftest import BACKENDS, build, first_batch, float32, mlp, spec_from

SPEC = spec_from(model=mlp([(7, "tanh"), (5, "relu")], (3, "softmax"), drop_prob=0.2),
                 loss={"name": "cross_entropy", "l2": 0.01}, optimizer={"name": "adam"},
                 training={"epochs": 5})


@pytest.fixture(params=BACKENDS)
def name(request):
    return request.param


def flat(p):
    return [t for pair in p for t in pair]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_params_roundtrip_exactly(name, dtype):
    spec = SPEC if dtype == "float64" else float32(SPEC)
    backend = build(name, spec)
    p0 = params.initial_params(spec)
    for got, want in zip(flat(backend.params()), flat(p0), strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_loss_and_grads_shapes_dtypes_and_purity(name, dtype):
    spec = SPEC if dtype == "float64" else float32(SPEC)
    backend = build(name, spec)
    batch = first_batch(spec)
    loss1, g1 = backend.loss_and_grads(batch)
    loss2, g2 = backend.loss_and_grads(batch)
    assert isinstance(loss1, float) and loss1 == loss2
    for a, b, p in zip(flat(g1), flat(g2), flat(params.initial_params(spec)), strict=True):
        assert a.shape == p.shape and a.dtype == np.dtype(dtype) and np.array_equal(a, b)
    assert backend.train_step(batch) == loss1      # returns the loss before its update


def test_gradients_match_numpy_and_finite_differences(name):
    backend = build(name, SPEC)
    batch = first_batch(SPEC)
    ref = build("numpy", SPEC).loss_and_grads(batch)[1]
    grads = backend.loss_and_grads(batch)[1]
    for a, b in zip(flat(grads), flat(ref), strict=True):
        assert gradcheck.errors(a, b)[1] <= tol.FLOAT64.grad_rtol
    f = gradcheck.loss_fn(build(name, SPEC), batch)
    checks = gradcheck.check(f, params.initial_params(SPEC), grads, [False] * 6)
    assert max(c.max_rel_err for c in checks) <= tol.FD_RTOL


def test_ten_step_trajectory_matches_numpy(name):
    backend, ref = build(name, SPEC), build("numpy", SPEC)
    ds = data.prepare(SPEC)
    plan = data.plan(SPEC, len(ds.train.x))
    for step in range(10):
        batch = data.train_batch(SPEC, ds, plan, step)
        a, b = backend.train_step(batch), ref.train_step(batch)
        assert abs(a - b) <= tol.FLOAT64.loss_rtol * abs(b)
    for x, y in zip(flat(backend.params()), flat(ref.params()), strict=True):
        assert gradcheck.errors(x, y)[1] <= tol.FLOAT64.param_rtol


def test_evaluate_has_no_dropout_and_no_penalty(name):
    backend = build(name, SPEC)
    ds = data.prepare(SPEC)
    value, out = backend.evaluate(data.eval_batch(ds.validation))
    ref_value, ref_out = build("numpy", SPEC).evaluate(data.eval_batch(ds.validation))
    assert out.shape == ds.validation.y.shape and np.allclose(out.sum(axis=1), 1.0)
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value)
    assert np.max(np.abs(out - ref_out)) <= 1e-12


def test_bit_identical_across_two_runs(name):
    """Determinism on CPU: same backend, spec and seed give the same bits."""
    runs = []
    for _ in range(2):
        backend = build(name, SPEC)
        ds = data.prepare(SPEC)
        plan = data.plan(SPEC, len(ds.train.x))
        losses = [backend.train_step(data.train_batch(SPEC, ds, plan, s)) for s in range(8)]
        runs.append((losses, flat(backend.params())))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_frozen_bias_neither_moves_nor_decays(name):
    model = mlp([(6, "sigmoid")], (3, "softmax"))
    model["layers"][0]["trainable_bias"] = False
    model["layers"][0]["bias"] = [0.5] * 6
    spec = spec_from(model=model, optimizer={"name": "momentum", "weight_decay": 0.1})
    backend = build(name, spec)
    batch = first_batch(spec)
    assert np.all(backend.loss_and_grads(batch)[1][0][1] == 0)
    backend.train_step(batch)
    assert np.all(backend.params()[0][1] == 0.5)
    assert not np.array_equal(backend.params()[0][0], params.initial_params(spec)[0][0])


def test_numpy_reference_is_the_numpy_backend():
    assert NumpyManual.name == "numpy"
