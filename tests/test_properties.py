"""Property-based: random architectures, losses and seeds. The textbook NumPy reference
agrees with finite differences, and every other installed backend agrees with it, in float64.
The example count is bounded so the suite stays fast.

Every run draws fresh examples; CI pins the seed (.ci/run runs `make test HYPOTHESIS_SEED=N`,
and that command repeats CI's examples anywhere). A failure prints the failing spec and a
`@reproduce_failure(...)` decorator that replays it when added to the test (tests/conftest.py's
profile), and any later run on the same checkout replays it first, from the .hypothesis/
example database."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import params
from harness.registry import backend_class, missing_framework
from harness.spec import from_dict
from harness.verify import oracle
from harness.verify import tolerances as tol
from tests.conftest import first_batch

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
# loss -> (output activations it allows, data set, outputs)
HEADS = {"cross_entropy": (["softmax"], "spirals", 3), "bce": (["sigmoid"], "moons", 1),
         "mse": (["sigmoid", "tanh", "identity"], "sine", 1),
         "half_sse": (["sigmoid", "identity", "leaky_relu"], "spirals", 3)}
REFERENCE = backend_class("numpy")
OTHERS = [n for n in ("numpy_fast", "torch", "jax") if missing_framework(n) is None]
# Biases bounded away from 0 for the finite-difference property. With zero biases a dropped
# or dead row puts the next layer's pre-activations exactly at 0: several ReLUs sit on their
# kinks at once, autodiff's relu'(0) = 0 is then not between the one-sided slopes, and
# "equals finite differences" is undefined there (the single-kink case is covered in
# test_gradcheck.py). Agreement between backends is still tested at zero biases.
BIAS = st.floats(0.05, 0.5).flatmap(lambda b: st.sampled_from([b, -b]))
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def specs(draw, away_from_kinks: bool = False):
    loss = draw(st.sampled_from(sorted(HEADS)))
    outs, dataset, size = HEADS[loss]
    depth = draw(st.integers(1, 3))
    layers = [{"size": draw(st.integers(1, 6)), "activation": draw(st.sampled_from(HIDDEN)),
               "drop_prob": draw(st.sampled_from([0.0, 0.0, 0.25]))} for _ in range(depth)]
    layers.append({"size": size, "activation": draw(st.sampled_from(outs))})
    for layer in layers if away_from_kinks else ():
        layer["bias"] = draw(st.lists(BIAS, min_size=layer["size"], max_size=layer["size"]))
    raw = {"name": "prop", "seed": draw(st.integers(0, 2**31)),
           "data": {"name": dataset, "n_samples": 40},
           "model": {"layers": layers, "init": draw(st.sampled_from(
               ["xavier_normal", "xavier_uniform", "he_normal", "he_uniform"]))},
           "loss": {"name": loss, "l2": draw(st.sampled_from([0.0, 0.01]))},
           "optimizer": {"name": draw(st.sampled_from(["sgd", "momentum", "rmsprop", "adam"]))},
           "training": {"learning_rate": 0.05, "batch_size": 8, "epochs": 1}}
    return from_dict(raw)


@SETTINGS
@given(specs(away_from_kinks=True))
def test_numpy_gradients_match_finite_differences(spec):
    checks = oracle.check_at_start(REFERENCE, spec)
    assert all(c.status == "ok" for c in checks), checks


@SETTINGS
@given(specs())
def test_installed_backends_agree_with_numpy(spec):
    batch = first_batch(spec)
    p0 = params.initial_params(spec)
    ref = REFERENCE(spec)
    ref.load(p0)
    loss_ref, grads_ref = ref.loss_and_grads(batch)
    for name in OTHERS:
        cls = backend_class(name)
        if cls.unsupported(spec):
            continue
        other = cls(spec)
        other.load(p0)
        loss, grads = other.loss_and_grads(batch)
        assert abs(loss - loss_ref) <= tol.FLOAT64.loss_rtol * abs(loss_ref)
        for a, b in zip([g for p in grads for g in p], [g for p in grads_ref for g in p],
                        strict=True):
            assert tol.errors(a, b)[1] <= tol.FLOAT64.grad_rtol, name


def test_bce_gradient_at_an_exactly_zero_logit():
    """Found by the property test above: a dropped hidden row with zero biases makes the logit
    exactly 0, where a max/abs-written BCE has kinks that autodiff does not pair up."""
    raw = {"name": "z0", "seed": 0, "data": {"name": "moons", "n_samples": 40},
           "model": {"layers": [{"size": 1, "activation": "sigmoid", "drop_prob": 0.25},
                                {"size": 1, "activation": "sigmoid"}]},
           "loss": {"name": "bce"}, "optimizer": {"name": "sgd"},
           "training": {"learning_rate": 0.05, "batch_size": 8, "epochs": 1}}
    spec = from_dict(raw)
    batch = first_batch(spec)
    assert any(m == 0 for m in batch.masks[0][:, 0])          # some rows are dropped
    p0 = params.initial_params(spec)
    ref = REFERENCE(spec)
    ref.load(p0)
    want = ref.loss_and_grads(batch)[1][1][1]
    for name in OTHERS:
        other = backend_class(name)(spec)
        other.load(p0)
        assert tol.errors(other.loss_and_grads(batch)[1][1][1], want)[1] <= 1e-12, name
