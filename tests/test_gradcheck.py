"""The textbook NumPy reference's gradients agree with central finite differences in float64
(every other backend is compared with it: tests/test_properties.py, the conformance suite)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from harness import params
from harness.registry import backend_class
from harness.verify import oracle
from implementations.numpy_textbook import NumpyTextbook
from tests.conftest import first_batch, mlp, spec_from

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
# (loss, output activation, data set, output size)
HEADS = [("cross_entropy", "softmax", "spirals", 3), ("bce", "sigmoid", "moons", 1),
         *((loss, out, "spirals", 3) for loss in ("mse", "half_sse")
           for out in ("sigmoid", "tanh", "relu", "leaky_relu", "identity"))]


def fd_errors(spec, cls: type = NumpyTextbook) -> list[oracle.TensorCheck]:
    return oracle.check_at_start(cls, spec)


def assert_close(checks):
    """Every tensor ok: within its tolerance, at a resolution finer than FD_RTOL_MAX."""
    assert all(c.status == "ok" for c in checks), \
        [(c.parameter, c.status, c.max_rel_err, c.resolution) for c in checks]


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("loss", "out", "dataset", "size"), HEADS,
                         ids=[f"{h[0]}-{h[1]}" for h in HEADS])
def test_every_activation_and_loss(hidden, loss, out, dataset, size):
    spec = spec_from(data={"name": dataset, "n_samples": 40}, loss={"name": loss},
                     model=mlp([(6, hidden), (4, hidden)], (size, out)))
    assert_close(fd_errors(spec))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "half_sse"])
def test_depths(depth, loss):
    out = "softmax" if loss == "cross_entropy" else "sigmoid"
    spec = spec_from(loss={"name": loss},
                     model=mlp([(5, "tanh")] * depth, (3, out)))
    assert_close(fd_errors(spec))


def test_dropout_l2_and_frozen_bias():
    model = mlp([(8, "relu"), (6, "sigmoid")], (3, "softmax"), drop_prob=0.3)
    model["layers"][0]["trainable_bias"] = False
    spec = spec_from(model=model, loss={"name": "cross_entropy", "l2": 0.05})
    checks = fd_errors(spec)
    assert_close(checks)
    assert checks[1].parameter == "b0" and checks[1].max_abs_err == 0.0


def test_large_net_uses_directions():
    spec = spec_from(data={"name": "digits"}, model=mlp([(512, "tanh")], (10, "softmax")),
                     training={"batch_size": 8})
    checks = fd_errors(spec)
    assert {c.method for c in checks} == {"directional"}
    assert_close(checks)


class SigmoidSlopeOff(NumpyTextbook):
    """Every hidden layer's f'(z) off: the backward pass takes sigmoid' = a (1 - a) from the
    cached a, which is scaled by 1.01 after the forward pass has used the right one."""
    name: ClassVar[str] = "sigmoid_slope_off"

    def forward(self, x, masks):
        caches = super().forward(x, masks)
        return [c._replace(a=c.a * 1.01) for c in caches[:-1]] + caches[-1:]


def test_oracle_catches_a_wrong_derivative():
    """A sigmoid derivative off by a factor must fail the check (the test can fail)."""
    spec = spec_from(model=mlp([(5, "sigmoid")], (3, "softmax")))
    assert_close(fd_errors(spec))
    failed = {c.parameter for c in fd_errors(spec, SigmoidSlopeOff) if c.status == "fail"}
    assert failed == {"W0", "b0"}


@pytest.mark.parametrize("name", ["numpy", "numpy_fast"])
@pytest.mark.parametrize(("loss", "out", "dataset", "size"), HEADS[:2],
                         ids=[h[0] for h in HEADS[:2]])
def test_large_logits_stay_finite(name, loss, out, dataset, size):
    """Cross-entropy and BCE from logits: no NaN or Inf at |z| ~ 1000, in both NumPy backends."""
    spec = spec_from(data={"name": dataset, "n_samples": 40}, loss={"name": loss},
                     model=mlp([(4, "identity")], (size, out)))
    backend = backend_class(name)(spec)
    backend.load([(w * 400, b) for w, b in params.initial_params(spec)])
    value, grads = backend.loss_and_grads(first_batch(spec))
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for p in grads for g in p)


def test_kinks_are_counted_only_where_central_differences_fail():
    """Zero biases put a dead row's next-layer ReLU exactly at its kink: counted and accepted
    as a subgradient. A smooth net has no element excused as a kink."""
    relu = fd_errors(spec_from(data={"name": "spirals", "n_samples": 40},
                               model=mlp([(6, "relu"), (4, "relu")], (3, "softmax"))))
    assert sum(c.kinks for c in relu) > 0
    assert_close(relu)
    smooth = fd_errors(spec_from(data={"name": "digits"}, model=mlp([(16, "tanh")],
                                                                    (10, "softmax"))))
    assert sum(c.kinks for c in smooth) == 0
    assert_close(smooth)
