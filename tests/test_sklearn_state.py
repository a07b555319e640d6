"""What the diagnosis sees of the scikit-learn plug-in: its `trace` against the textbook
reference at the same point, and its optimizer state (`export_state`, `load_state` into a
fresh instance, the step that follows) against harness.optim, the definition. Every check is
also shown failing on the smallest error it is meant to catch.

The helpers (`named`, `mismatches`, `Scenario`, ...) are shared with
tests/test_tensorflow_backend.py, which runs the same checks on the TensorFlow plug-in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness import data, optim
from harness.backend import Trace
from harness.params import Params, flatten
from harness.registry import registry
from harness.spec import Spec
from harness.verify import tolerances as tol
from harness.verify.phases import decays, expected_update
from tests.conftest import build, first_batch, mlp, spec_from

# An entry of a trace off by ten times the tolerance of a same-point comparison.
TRACE_NUDGE = 10 * tol.FLOAT64.grad_rtol
# A moment off by one part in a million: invisible in a loss curve, still to be caught.
STATE_NUDGE = 1e-6
# export -> load -> export converts a velocity by -lr and back: one rounding each way.
ROUND_TRIP_ULPS = 4.0
ROUND_TRIP_RTOL = ROUND_TRIP_ULPS * tol.FLOAT64_UNIT_ROUNDOFF
STEPS_BEFORE = 2                          # train_steps before the state is exported

pytestmark = pytest.mark.skipif("sklearn" not in registry(),
                                reason="the sklearn plug-in is not installed")


def named(trace: Trace) -> dict[str, np.ndarray | None]:
    """A trace's entries under the diagnosis's names (x, mask0, z0, a0, da0, dz0, dW0, ...)."""
    out: dict[str, np.ndarray | None] = {"x": trace.x, "loss": np.float64(trace.loss)}
    for layer, (mask, z, a, da, dz, (dw, db)) in enumerate(zip(
            trace.masks, trace.z, trace.a, trace.da, trace.dz, trace.grads, strict=True)):
        out |= {f"mask{layer}": mask, f"z{layer}": z, f"a{layer}": a, f"da{layer}": da,
                f"dz{layer}": dz, f"dW{layer}": dw, f"db{layer}": db}
    return out


def mismatch(mine: np.ndarray | None, want: np.ndarray | None) -> float:
    """Relative error to the larger tensor's scale; inf where one is None or the shapes
    differ, 0 where both are None."""
    if mine is None or want is None:
        return 0.0 if mine is None and want is None else np.inf
    mine, want = np.asarray(mine), np.asarray(want)
    return tol.errors(mine, want)[1] if mine.shape == want.shape else np.inf


def mismatches(mine: dict, want: dict) -> dict[str, float]:
    return {name: mismatch(mine.get(name), want[name]) for name in want}


def limit(name: str) -> float:
    """The data a backend computed with is the harness's own, exactly; the rest is float64
    maths at the same point."""
    return tol.DATA_RTOL if name == "x" or name.startswith("mask") else tol.FLOAT64.grad_rtol


def failing(errors: dict[str, float]) -> list[str]:
    return [name for name, err in errors.items() if err > limit(name)]


def nudged(x: np.ndarray, by: float) -> np.ndarray:
    """A copy of x with its largest entry scaled by 1 + by."""
    out = np.array(x)
    out.flat[np.argmax(np.abs(out))] *= 1 + by
    return out


def traces(name: str, spec: Spec) -> tuple[dict, dict]:
    """`name`'s trace and the textbook's, named, at the spec's initial parameters and first
    batch."""
    batch = first_batch(spec)
    return named(build(name, spec).trace(batch)), named(build("numpy", spec).trace(batch))


def state_error(mine: optim.State, want: optim.State) -> float:
    """The largest relative error over the slots; inf for a different count or layout."""
    if mine.count != want.count:
        return np.inf
    pairs = zip(mine.first + mine.second, want.first + want.second, strict=True)
    return max((mismatch(a, b) for a, b in pairs), default=0.0)


def nudged_state(state: optim.State) -> optim.State:
    """`state` with its first kept slot scaled by 1 + STATE_NUDGE; with no slot (sgd), one
    step more."""
    slots = [*state.first, *state.second]
    kept = [i for i, s in enumerate(slots) if s is not None]
    if not kept:
        return optim.State(state.count + 1, state.first, state.second)
    slots[kept[0]] = nudged(slots[kept[0]], STATE_NUDGE)
    n = len(state.first)
    return optim.State(state.count, tuple(slots[:n]), tuple(slots[n:]))


@dataclasses.dataclass
class Scenario:
    """One instance trained STEPS_BEFORE steps, its state exported; a fresh instance (the
    probe) loaded with its parameters and that state, and the probe's gradients there."""
    spec: Spec
    probe: object
    at: Params
    batch: data.Batch
    exported: optim.State
    loaded: bool
    reloaded: optim.State
    grads: Params

    def step_from(self, state: optim.State) -> tuple[list[np.ndarray], optim.State]:
        """The probe's parameters and state after one train_step from `at` and `state`."""
        self.probe.load(self.at)
        assert self.probe.load_state(state)
        self.probe.train_step(self.batch)
        return flatten(self.probe.params()), self.probe.export_state()

    def step_error(self, state: optim.State) -> float:
        """The probe's step from `state` against harness.optim's from the exported state
        along the probe's own gradients: parameters, moments and count."""
        params, after = self.step_from(state)
        want, want_state = expected_update(self.spec, self.at, self.grads, self.exported)
        return max(state_error(after, want_state),
                   *(mismatch(p, w) for p, w in zip(params, want, strict=True)))

    def tolerance(self) -> float:
        return tol.update_rtol(tol.FLOAT64, self.spec.dtype, decays(self.spec))


def scenario(name: str, spec: Spec) -> Scenario:
    ds = data.prepare(spec)
    order = data.plan(spec, len(ds.train.x))
    batches = [data.train_batch(spec, ds, order, i) for i in range(STEPS_BEFORE + 1)]
    trained = build(name, spec)
    for batch in batches[:STEPS_BEFORE]:
        trained.train_step(batch)
    exported, at = trained.export_state(), trained.params()
    probe = build(name, spec)
    probe.load(at)
    loaded = probe.load_state(exported)
    reloaded = probe.export_state()
    _, grads = probe.loss_and_grads(batches[-1])
    return Scenario(spec, probe, at, batches[-1], exported, loaded, reloaded, grads)


# --- scikit-learn ---------------------------------------------------------------------------

SK_MODEL = mlp([(6, "tanh"), (5, "tanh")], (3, "softmax"))
SK_TRACE = {
    "cross_entropy": spec_from(model=SK_MODEL, loss={"l2": 0.01}),
    "mse": spec_from(model=mlp([(4, "relu"), (4, "relu")], (1, "identity")),
                     loss={"name": "mse", "l2": 0.1}, data={"name": "sine", "n_samples": 40}),
    "half_sse": spec_from(model=mlp([(4, "sigmoid")], (1, "identity")),
                          loss={"name": "half_sse"}, data={"name": "sine", "n_samples": 40}),
    "bce": spec_from(model=mlp([(4, "identity")], (1, "sigmoid")), loss={"name": "bce"},
                     data={"name": "xor", "n_samples": 40}),
}
SK_OPTIMIZERS = {
    "sgd": {"name": "sgd"},
    "momentum": {"name": "momentum"},
    "nesterov": {"name": "momentum", "nesterov": True},
    "momentum_zero": {"name": "momentum", "momentum": 0.0},
    "adam": {"name": "adam", "bias_correction": "folded"},
}
# the optimizers whose state the next step reads (at momentum 0 the velocity is never read)
SK_STATEFUL = [name for name in SK_OPTIMIZERS if name != "momentum_zero"]


@pytest.fixture(scope="module", params=list(SK_TRACE))
def sk_traces(request) -> tuple[dict, dict]:
    return traces("sklearn", SK_TRACE[request.param])


@pytest.fixture(scope="module", params=list(SK_OPTIMIZERS))
def sk_scenario(request) -> Scenario:
    return scenario("sklearn", spec_from(model=SK_MODEL, loss={"l2": 0.01},
                                         optimizer=SK_OPTIMIZERS[request.param]))


def test_trace_equals_the_textbook_at_the_same_point(sk_traces):
    mine, ref = sk_traces
    assert failing(mismatches(mine, ref)) == []


@pytest.mark.parametrize("entry", ["x", "z0", "a1", "da0", "dz1", "dW2", "db0", "loss"])
def test_one_nudged_trace_entry_is_caught_and_named(entry):
    mine, ref = traces("sklearn", SK_TRACE["cross_entropy"])
    assert failing(mismatches({**mine, entry: nudged(mine[entry], TRACE_NUDGE)}, ref)) == [entry]


def test_state_survives_export_and_load_into_a_fresh_instance(sk_scenario):
    s = sk_scenario
    assert s.loaded and s.exported.count == STEPS_BEFORE
    assert state_error(s.reloaded, s.exported) <= ROUND_TRIP_RTOL
    assert state_error(nudged_state(s.exported), s.exported) > ROUND_TRIP_RTOL


@pytest.mark.parametrize("sk_scenario", SK_STATEFUL, indirect=True)
def test_the_step_after_load_state_is_harness_optims(sk_scenario):
    s = sk_scenario
    assert s.step_error(s.exported) <= s.tolerance()
    assert s.step_error(nudged_state(s.exported)) > s.tolerance()


def test_a_state_of_another_layout_is_refused(sk_scenario):
    s = sk_scenario
    other = "sgd" if s.spec.optimizer.name == "adam" else "adam"
    wrong = optim.init(flatten(s.at), spec_from(optimizer={"name": other}).optimizer)
    with pytest.raises(ValueError, match="layout"):
        s.probe.load_state(wrong)
