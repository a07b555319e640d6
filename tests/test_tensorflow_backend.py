"""The TensorFlow plug-in (plugins/tensorflow_backend): Keras's optimizer conventions as
docs/optimizers.md's TF / Keras column states them, the float32 hyper-parameter trap, its
declared conventions, its quiet start and its thread hook; and what the diagnosis sees of it,
its trace and its optimizer state, with the checks of tests/test_sklearn_state.py. The
backend's agreement with the reference is checked by the conformance suite like every
registered backend's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import optim
from harness.params import flatten
from harness.spec import Optimizer
from harness.verify import tolerances as tol
from tests.conftest import build, mlp, spec_from
from tests.test_conventions import GRADS, LR, P0, spec_maths
from tests.test_sklearn_state import (
    ROUND_TRIP_RTOL,
    STEPS_BEFORE,
    TRACE_NUDGE,
    Scenario,
    failing,
    mismatches,
    nudged,
    nudged_state,
    scenario,
    state_error,
    traces,
)

tensorflow_backend = pytest.importorskip("tensorflow_backend")
tensorflow_backend.quiet()
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

F64 = np.float64
ULP = tol.FLOAT64_UNIT_ROUNDOFF
# Agreement of two float64 update orders after three steps, in units of the roundoff; an
# injected float32-rounded hyper-parameter (relative error ~1e-8) is thousands of times more.
ULPS = 16.0
ROOT = Path(__file__).resolve().parent.parent
# A float64 run with fresh instances (conformance's pattern), printing nothing itself.
QUIET_RUN = """
from harness import params
from tests.conftest import first_batch, spec_from
from tensorflow_backend import TensorflowTape
spec = spec_from(optimizer={"name": "momentum"})
for _ in range(8):
    backend = TensorflowTape(spec)
    backend.load(params.initial_params(spec))
    backend.loss_and_grads(first_batch(spec))
    backend.train_step(first_batch(spec))
"""


def keras_steps(optimizer) -> np.ndarray:
    """Three float64 steps of a Keras optimizer from P0 with GRADS."""
    p = tf.Variable(P0, dtype=tf.float64)
    for g in GRADS:
        optimizer.apply_gradients([(tf.constant(g, tf.float64), p)])
    return p.numpy()


def rate():
    """The learning rate as the backend passes it: a callable returning a float64 constant."""
    value = tf.constant(LR, tf.float64)
    return lambda: value


def err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def adam(**extra) -> np.ndarray:
    return keras_steps(keras.optimizers.Adam(rate(), beta_1=F64(0.9), beta_2=F64(0.999),
                                             epsilon=F64(1e-7), **extra))


def test_keras_defaults_are_the_documented_ones():
    rmsprop, adam_ = keras.optimizers.RMSprop(), keras.optimizers.Adam()
    assert (rmsprop.rho, rmsprop.epsilon, adam_.epsilon) == (0.9, 1e-7, 1e-7)


def test_momentum_and_nesterov_equal_the_spec_at_constant_lr():
    for nesterov in (False, True):
        ours = spec_maths(Optimizer("momentum", momentum=0.9, nesterov=nesterov))
        theirs = keras_steps(keras.optimizers.SGD(rate(), momentum=F64(0.9), nesterov=nesterov))
        assert err(theirs, ours) <= ULPS * ULP


def test_rmsprop_eps_is_inside_the_square_root():
    theirs = keras_steps(keras.optimizers.RMSprop(rate(), rho=F64(0.9), epsilon=F64(1e-7)))
    inside = spec_maths(Optimizer("rmsprop", rho=0.9, eps=1e-7, eps_placement="inside"))
    outside = spec_maths(Optimizer("rmsprop", rho=0.9, eps=1e-7))
    assert err(theirs, inside) <= ULPS * ULP
    assert err(theirs, outside) > tol.FLOAT64.param_rtol


def test_adam_is_folded_with_eps_outside_and_nothing_else():
    theirs = adam()
    forms = {(bc, place): spec_maths(Optimizer("adam", eps=1e-7, bias_correction=bc,
                                               eps_placement=place))
             for bc in ("standard", "folded") for place in ("outside", "inside")}
    assert err(theirs, forms.pop(("folded", "outside"))) <= ULPS * ULP
    assert all(err(theirs, other) > tol.FLOAT64.param_rtol for other in forms.values())


def test_weight_decay_is_decoupled_before_the_step():
    theirs = adam(weight_decay=F64(0.1))
    decoupled = Optimizer("adam", eps=1e-7, bias_correction="folded", weight_decay=0.1)
    assert err(theirs, spec_maths(decoupled)) <= ULPS * ULP
    assert err(theirs, spec_maths(Optimizer("adam", eps=1e-7, bias_correction="folded"))) \
        > tol.FLOAT64.param_rtol


def test_python_float_hyper_parameters_are_rounded_through_float32():
    """The trap the backend avoids: the same momentum step with a Python float momentum, or
    a Python float learning rate (a float32 variable), misses the float64 maths by far more
    than the roundoff; with float64 scalars it does not."""
    ours = spec_maths(Optimizer("momentum", momentum=0.9))
    assert err(keras_steps(keras.optimizers.SGD(rate(), momentum=F64(0.9))), ours) <= ULPS * ULP
    assert err(keras_steps(keras.optimizers.SGD(rate(), momentum=0.9)), ours) > 1000 * ULP
    assert err(keras_steps(keras.optimizers.SGD(LR, momentum=F64(0.9))), ours) > 1000 * ULP


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backend_hands_keras_hyper_parameters_in_the_run_dtype(dtype):
    spec = spec_from(dtype=dtype, training={"learning_rate": 0.1},
                     optimizer={"name": "adam", "bias_correction": "folded",
                                "weight_decay": 0.01})
    optimizer = build("tensorflow", spec)._optimizer
    scalars = [optimizer.learning_rate, optimizer.beta_1, optimizer.beta_2, optimizer.epsilon,
               optimizer.weight_decay]
    assert [np.dtype(tf.as_dtype(s.dtype).as_numpy_dtype) for s in scalars] == [dtype] * 5
    exact = np.dtype(dtype).type
    assert [exact(np.asarray(s)) for s in scalars] == \
        [exact(0.1), exact(0.9), exact(0.999), exact(spec.optimizer.eps), exact(0.01)]


@pytest.mark.parametrize(("optimizer", "said"), [
    ({"name": "rmsprop"}, "g / sqrt(s + epsilon)"),
    ({"name": "adam", "bias_correction": "folded", "eps_placement": "inside"},
     "m / (sqrt(v) + epsilon)"),
    ({"name": "adam"}, "folds the bias correction"),
])
def test_inexpressible_conventions_are_declared_with_the_reason(optimizer, said):
    reason = tensorflow_backend.TensorflowTape.unsupported(spec_from(optimizer=optimizer))
    assert reason.startswith("tensorflow cannot express") and said in reason


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd"}, {"name": "momentum", "nesterov": True},
    {"name": "rmsprop", "eps_placement": "inside"},
    {"name": "adam", "bias_correction": "folded", "weight_decay": 0.01}])
def test_expressible_specs_are_not_refused(optimizer):
    assert tensorflow_backend.TensorflowTape.unsupported(spec_from(optimizer=optimizer)) is None


def run_quietly(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", QUIET_RUN], cwd=ROOT, capture_output=True,
                          text=True, env={**_base_env(), **env}, check=True)


def _base_env() -> dict[str, str]:
    """This process's environment without TF_* settings, so each run chooses its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_")}


def test_no_tensorflow_log_line_reaches_the_console():
    """Fresh instances (conformance's pattern: each traces its own tf.function) print
    nothing; the same run with oneDNN switched on shows that the capture sees TF's C++
    log (its start-up notice ignores TF_CPP_MIN_LOG_LEVEL)."""
    quiet = run_quietly({})
    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert "oneDNN" in run_quietly({"TF_ENABLE_ONEDNN_OPTS": "1"}).stderr


def test_set_threads_after_start_does_not_crash():
    """TF is running in this process (tests above): a new count is refused by TF and
    ignored, the current count accepted."""
    current = tf.config.threading.get_intra_op_parallelism_threads()
    tensorflow_backend.TensorflowTape.set_threads(current + 1)
    tensorflow_backend.TensorflowTape.set_threads(current)
    assert tf.config.threading.get_intra_op_parallelism_threads() == current


def test_set_threads_before_start_sizes_both_pools():
    code = ("from tensorflow_backend import TensorflowTape as T; T.set_threads(3); "
            "import tensorflow as tf; t = tf.config.threading; "
            "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env=_base_env())
    assert out.stdout.split() == ["3", "3"]


def test_gemm_products_equal_numpy():
    rng = np.random.default_rng(0)
    h, w, d = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    call, sync = tensorflow_backend.TensorflowTape.gemm([(h, w, d), (h, w, d)])
    (z0, dw0, dh0), (z1, dw1, dh1) = call()
    sync()
    assert dh0 is None
    got = [np.asarray(t) for t in (z0, dw0, z1, dw1, dh1)]
    want = [h @ w, h.T @ d, h @ w, h.T @ d, d @ w.T]
    assert max(err(a, b) for a, b in zip(got, want, strict=True)) <= ULPS * ULP


# --- the diagnosis's view: trace and optimizer state ----------------------------------------

# dropout, L2, two hidden activations and a frozen bias; and a squared loss, whose output dJ/da
# the trace reports, through a leaky_relu (its slope must not be rounded through float32)
RICH_MODEL = {"layers": [
    {"size": 6, "activation": "tanh", "drop_prob": 0.3},
    {"size": 5, "activation": "relu", "drop_prob": 0.2, "trainable_bias": False},
    {"size": 3, "activation": "softmax"}]}
RICH = spec_from(model=RICH_MODEL, loss={"l2": 0.01})
SQUARED = spec_from(model=mlp([(4, "sigmoid"), (4, "leaky_relu")], (1, "identity")),
                    loss={"name": "mse"}, data={"name": "sine", "n_samples": 40})
TF_OPTIMIZERS = {
    "sgd": {"name": "sgd"},
    "momentum": {"name": "momentum"},
    "nesterov": {"name": "momentum", "nesterov": True},
    "rmsprop": {"name": "rmsprop", "eps_placement": "inside"},
    "adam": {"name": "adam", "bias_correction": "folded", "weight_decay": 0.01},
}


@pytest.fixture(scope="module", params=["rich", "squared"])
def tf_traces(request) -> tuple[dict, dict]:
    return traces("tensorflow", {"rich": RICH, "squared": SQUARED}[request.param])


@pytest.fixture(scope="module", params=list(TF_OPTIMIZERS))
def tf_scenario(request) -> Scenario:
    return scenario("tensorflow", spec_from(model=RICH_MODEL, loss={"l2": 0.01},
                                            optimizer=TF_OPTIMIZERS[request.param]))


def test_trace_equals_the_textbook_at_the_same_point(tf_traces):
    mine, ref = tf_traces
    assert failing(mismatches(mine, ref)) == []


@pytest.mark.parametrize(("tf_traces", "entry"), [
    *(("rich", entry) for entry in ("mask0", "z1", "a2", "da1", "dz2", "dW0", "loss")),
    ("squared", "da2")], indirect=["tf_traces"])
def test_one_nudged_trace_entry_is_caught_and_named(tf_traces, entry):
    mine, ref = tf_traces
    assert failing(mismatches({**mine, entry: nudged(mine[entry], TRACE_NUDGE)}, ref)) == [entry]


def test_state_survives_export_and_load_into_a_fresh_instance(tf_scenario):
    s = tf_scenario
    assert s.loaded and s.exported.count == STEPS_BEFORE
    assert state_error(s.reloaded, s.exported) <= ROUND_TRIP_RTOL
    assert state_error(nudged_state(s.exported), s.exported) > ROUND_TRIP_RTOL


def test_the_step_after_load_state_is_harness_optims(tf_scenario):
    s = tf_scenario
    assert s.step_error(s.exported) <= s.tolerance()
    assert s.step_error(nudged_state(s.exported)) > s.tolerance()


def test_a_state_of_another_layout_is_refused(tf_scenario):
    """A moment for the frozen bias b1, which harness.optim never keeps."""
    s = tf_scenario
    first = list(optim.init(flatten(s.at), Optimizer("momentum")).first)
    with pytest.raises(ValueError, match="layout"):
        s.probe.load_state(optim.State(0, tuple(first), s.exported.second))


def test_momentum_zero_keeps_no_state_to_export_or_load():
    """Keras's SGD keeps no velocity at momentum 0; harness.optim's v (the last gradient)
    cannot be read back, so the backend says so instead of approximating it."""
    backend = build("tensorflow", spec_from(optimizer={"name": "momentum", "momentum": 0.0}))
    fresh = optim.init(flatten(backend.params()), backend.spec.optimizer)
    assert backend.export_state() is None
    assert backend.load_state(fresh) is False
