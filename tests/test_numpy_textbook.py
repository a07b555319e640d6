"""The textbook `numpy` backend, the reference of every comparison: its gradients are the slope
of its loss (the finite-difference oracle) on every activation, loss, dropout, L2 and a frozen
bias; `numpy_fast` tracks it step for step under every optimizer convention; and a chain-rule
error injected into it is caught by the conformance case meant to catch it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness import data, params
from harness.conformance import cases
from harness.spec import Spec, from_dict
from harness.verify import oracle
from harness.verify import tolerances as tol
from implementations import numpy_fast, numpy_textbook
from implementations.numpy_fast import NumpyFast
from implementations.numpy_textbook import NumpyTextbook

STEPS = 10


def spec(data_name: str, hidden: list[dict], out: dict, loss: str, l2: float = 0.0,
         optimizer: dict | None = None, dtype: str = "float64", batch: int = 16) -> Spec:
    return from_dict({"name": "textbook", "seed": 5, "dtype": dtype,
                      "data": {"name": data_name, "n_samples": 80},
                      "model": {"layers": [*hidden, out]},
                      "loss": {"name": loss, "l2": l2},
                      "optimizer": optimizer or {"name": "sgd"},
                      "training": {"learning_rate": 0.05, "batch_size": batch, "steps": STEPS}})


def layer(size: int, activation: str, **extra) -> dict:
    return {"size": size, "activation": activation, **extra}


# name -> (data set, hidden layers, output layer, loss, l2): together every activation (leaky
# with its slope, softmax at the output), every loss, dropout, L2 and a frozen bias
NETWORKS = {
    "tanh_leaky_softmax_ce_dropout": ("spirals", [layer(6, "tanh", drop_prob=0.25),
                                                  layer(5, "leaky_relu", negative_slope=0.2)],
                                      layer(3, "softmax"), "cross_entropy", 0.01),
    "relu_sigmoid_bce_l2": ("moons", [layer(7, "relu", bias=[0.1] * 7)], layer(1, "sigmoid"),
                            "bce", 0.02),
    "sigmoid_tanh_mse": ("sine", [layer(5, "sigmoid")], layer(1, "tanh"), "mse", 0.0),
    "identity_leaky_half_sse_frozen": ("sine", [layer(4, "identity", trainable_bias=False,
                                                      bias=[0.3] * 4)],
                                       layer(1, "leaky_relu", negative_slope=0.1), "half_sse",
                                       0.0),
    "sigmoid_relu_mse_dropout": ("sine", [layer(6, "sigmoid", drop_prob=0.3)],
                                 layer(1, "relu", bias=[0.2]), "mse", 0.01),
}
# every optimizer and convention of the spec, the first one taking the BLAS-free fast path of
# numpy_fast's plain SGD
OPTIMIZERS = {
    "sgd": {"name": "sgd"},
    "nesterov_decay": {"name": "momentum", "momentum": 0.8, "nesterov": True,
                       "weight_decay": 0.1},
    "rmsprop_inside": {"name": "rmsprop", "rho": 0.9, "eps": 1e-3, "eps_placement": "inside"},
    "adam": {"name": "adam", "beta1": 0.8, "beta2": 0.95, "eps": 1e-3},
    "adam_folded_decay": {"name": "adam", "bias_correction": "folded", "weight_decay": 0.1},
}


def network(name: str, **kw) -> Spec:
    data_name, hidden, out, loss, l2 = NETWORKS[name]
    return spec(data_name, hidden, out, loss, l2, **kw)


def batches(sp: Spec) -> list[data.Batch]:
    ds = data.prepare(sp)
    plan = data.plan(sp, len(ds.train.x))
    return [data.train_batch(sp, ds, plan, s) for s in range(STEPS)]


def loaded(cls: type, sp: Spec):
    backend = cls(sp)
    backend.load(params.initial_params(sp))
    return backend


def worst(a: params.Params, b: params.Params) -> float:
    return max(tol.errors(x, y)[1]
               for x, y in zip(params.flatten(a), params.flatten(b), strict=True))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_gradients_are_the_slope_of_the_loss(name):
    checks = oracle.check_at_start(NumpyTextbook, network(name))
    assert [c.status for c in checks] == ["ok"] * len(checks), checks


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(NETWORKS))
def test_numpy_fast_tracks_the_textbook_in_float64(name, optimizer):
    sp = network(name, optimizer=OPTIMIZERS[optimizer])
    book, fast = loaded(NumpyTextbook, sp), loaded(NumpyFast, sp)
    for batch in batches(sp):
        (value, grads), (fast_value, fast_grads) = book.loss_and_grads(batch), \
            fast.loss_and_grads(batch)
        assert abs(fast_value - value) <= tol.FLOAT64.value_rtol * abs(value)
        assert worst(fast_grads, grads) <= tol.FLOAT64.grad_rtol
        assert fast.train_step(batch) == fast_value and book.train_step(batch) == value
    assert worst(fast.params(), book.params()) <= tol.FLOAT64.param_rtol
    evaluation = data.eval_batch(data.prepare(sp).validation)
    (value, out), (fast_value, fast_out) = book.evaluate(evaluation), fast.evaluate(evaluation)
    assert abs(fast_value - value) <= tol.FLOAT64.value_rtol * abs(value)
    assert tol.errors(fast_out, out)[1] <= tol.FLOAT64.value_rtol


@pytest.mark.parametrize("name", list(NETWORKS))
def test_numpy_fast_tracks_the_textbook_in_float32(name):
    sp = network(name, optimizer=OPTIMIZERS["adam"], dtype="float32")
    depth = len(sp.model.layers)
    rtol = tol.for_run("float32", longest_sum=16, depth=depth)
    book, fast = loaded(NumpyTextbook, sp), loaded(NumpyFast, sp)
    for batch in batches(sp):
        grads, fast_grads = book.loss_and_grads(batch)[1], fast.loss_and_grads(batch)[1]
        assert {g.dtype for g in params.flatten(grads)} == {np.dtype("float32")}
        assert worst(fast_grads, grads) <= rtol.grad_rtol
        book.train_step(batch)
        fast.train_step(batch)
    assert worst(fast.params(), book.params()) <= rtol.param_rtol


def test_numpy_fast_descending_in_blas_tracks_the_textbook():
    """A 128 x 128 weight matrix: numpy_fast's SGD step happens inside its GEMM."""
    descend = numpy_fast.blas.accumulator(np.dtype("float64"))
    if descend is None:
        pytest.skip("NumPy's BLAS is not reachable here: numpy_fast uses np.matmul")
    sp = spec("spirals", [layer(128, "tanh"), layer(128, "relu")], layer(3, "softmax"),
              "cross_entropy", batch=32)
    assert numpy_fast.descends_in_gemm(params.initial_params(sp)[1][0], descend)
    book, fast = loaded(NumpyTextbook, sp), loaded(NumpyFast, sp)
    for batch in batches(sp):
        value = book.train_step(batch)
        assert abs(fast.train_step(batch) - value) <= tol.FLOAT64.loss_rtol * abs(value)
    assert worst(fast.params(), book.params()) <= tol.FLOAT64.param_rtol


def failing_tensors(message: str) -> set[str]:
    """The tensors a grads_vs_* assertion names, e.g. {'W0', 'b0'}."""
    return set(re.findall(r"\b([Wb]\d+): ", message))


def test_a_missing_tanh_derivative_is_caught_by_finite_differences(monkeypatch):
    """The conformance main spec's first hidden layer is tanh: without f' there, only the
    tensors below it (W0, b0) are wrong, and the oracle names exactly those."""
    right = numpy_textbook.activation_derivative

    def forgets_tanh(layer, z, a):
        return np.ones_like(z) if layer.activation == "tanh" else right(layer, z, a)

    assert cases.main_spec(cases.REFERENCE).model.layers[0].activation == "tanh"
    monkeypatch.setattr(numpy_textbook, "activation_derivative", forgets_tanh)
    with pytest.raises(AssertionError) as caught:
        cases.grads_vs_finite_differences(cases.REFERENCE)
    assert failing_tensors(str(caught.value)) == {"W0", "b0"}


def test_a_chain_rule_error_in_numpy_fast_is_caught_against_the_textbook(monkeypatch):
    """numpy_fast forgetting relu's derivative (the main spec's second hidden layer) differs
    from the textbook reference: grads_vs_numpy fails."""
    right = numpy_fast.activation_grad

    def forgets_relu(layer, delta, z, a, scratch):
        if layer.activation != "relu":
            right(layer, delta, z, a, scratch)

    monkeypatch.setattr(numpy_fast, "activation_grad", forgets_relu)
    with pytest.raises(AssertionError, match=r"gradient: [Wb][01] rel err"):
        cases.grads_vs_reference("numpy_fast")
