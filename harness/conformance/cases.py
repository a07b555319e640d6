"""The conformance cases run by harness.conformance.suite, one function per property of the
backend contract (harness/backend.py), kept apart from the runner so each reads alone.

Each case takes the first spec the backend supports from the candidates of
harness.conformance.candidates, in order of preference (dropout, mixed hidden activations and
Adam first, simpler networks after), so a backend with fewer capabilities is still checked on
everything it can express. The comparisons with the reference (the textbook `numpy` backend)
skip the reference itself: comparing it with itself would prove nothing. They run in float64,
and again in float32 (same point, one step, a trajectory) at the size-aware float32
tolerances of harness.parity.tolerances, the bounds a `harness run` in float32 is judged by.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np

from harness import data, optim, params
from harness.backend import Backend, trainable_mask
from harness.conformance import candidates
from harness.parity import tolerances
from harness.registry import backend_class, missing_framework
from harness.spec import Spec, from_dict
from harness.verify import oracle
from harness.verify import tolerances as tol

REFERENCE = "numpy"
TIMING_STEPS = 3


class Skip(Exception):
    """The check cannot run for this backend here; the message says why."""


def _class(name: str) -> type[Backend]:
    """The backend's class, or Skip when its framework is not installed here."""
    why = missing_framework(name)
    if why:
        raise Skip(why)
    return backend_class(name)


def _pick(name: str, raws: Iterable[dict], dtype: str = "float64") -> Spec:
    """The first candidate backend `name` supports; else Skip with the last (simplest) one's
    reason, which names what the check needs and the backend lacks."""
    cls, reason = _class(name), "no candidate spec"
    for raw in raws:
        spec = from_dict({**raw, "dtype": dtype})
        reason = cls.unsupported(spec)
        if reason is None:
            return spec
    raise Skip(reason)


def main_spec(name: str, dtype: str = "float64") -> Spec:
    """The richest spec the backend supports: dropout, mixed activations, L2, Adam first."""
    return _pick(name, candidates.main_tables(), dtype)


def _not_the_reference(name: str) -> None:
    """Skip a comparison with the reference when `name` is the reference itself."""
    if name == REFERENCE:
        raise Skip(f"{name} is the reference: comparing it with itself would prove nothing")


def _fresh(name: str, spec: Spec) -> Backend:
    """A new instance loaded with the spec's initial parameters."""
    backend = _class(name)(spec)
    backend.load(params.initial_params(spec))
    return backend


def _batches(spec: Spec, steps: int) -> list[data.Batch]:
    """The first `steps` training batches of the spec's plan (masks included)."""
    ds = data.prepare(spec)
    plan = data.plan(spec, len(ds.train.x))
    return [data.train_batch(spec, ds, plan, s) for s in range(steps)]


def _within(what: str, a: params.Params, b: params.Params, rtol: float) -> float:
    """The largest relative error between matching tensors of `a` and `b`, asserted <= rtol."""
    names = oracle.parameter_names(len(a))
    pairs = zip(names, params.flatten(a), params.flatten(b), strict=True)
    errs = {n: tol.errors(x, y)[1] for n, x, y in pairs}
    where = max(errs, key=errs.__getitem__)
    assert errs[where] <= rtol, f"{what}: {where} rel err {errs[where]:.2e} > {rtol:g}"
    return errs[where]


def _close(what: str, value: float, want: float, rtol: float) -> float:
    err = abs(value - want) / max(abs(want), tol.TINY)
    assert err <= rtol, f"{what}: {value!r} vs {want!r}, rel err {err:.2e} > {rtol:g}"
    return err


def _identical(what: str, a: params.Params, b: params.Params) -> None:
    """Every tensor of `a` equals `b`'s bit for bit, dtype included."""
    names = oracle.parameter_names(len(a))
    for n, x, y in zip(names, params.flatten(a), params.flatten(b), strict=True):
        assert x.dtype == y.dtype, f"{what}: {n} has dtype {x.dtype}, expected {y.dtype}"
        assert np.array_equal(x, y), f"{what}: {n} differs"


def params_roundtrip(name: str, dtype: str) -> str:
    """params() after load(p) is p exactly, and hands out copies, not the backend's state."""
    spec = main_spec(name, dtype)
    p0 = params.initial_params(spec)
    backend = _fresh(name, spec)
    _identical("params() after load(p)", backend.params(), p0)
    backend.params()[0][0][...] += 1.0            # the caller's copy, not the backend's state
    _identical("params() after mutating a returned array", backend.params(), p0)
    return f"{len(params.flatten(p0))} tensors returned exactly, {dtype}"


def grad_shapes(name: str, dtype: str) -> str:
    """loss_and_grads returns a float and one gradient per parameter, same shape and dtype."""
    spec = main_spec(name, dtype)
    value, grads = _fresh(name, spec).loss_and_grads(_batches(spec, 1)[0])
    assert isinstance(value, float), f"loss is {type(value).__name__}, expected float"
    for n, g, p in zip(oracle.parameter_names(len(grads)), params.flatten(grads),
                       params.flatten(params.initial_params(spec)), strict=True):
        assert (g.shape, g.dtype) == (p.shape, p.dtype), \
            f"{n}: gradient {g.shape} {g.dtype}, parameter {p.shape} {p.dtype}"
    return f"shapes and {dtype} dtypes match the parameters"


def loss_and_grads_pure(name: str) -> str:
    """loss_and_grads twice gives the same answer and leaves no trace: the train_step after it
    returns that same (pre-update) loss and ends where a never-probed instance ends."""
    spec = main_spec(name)
    batches = _batches(spec, 2)
    probed, fresh = _fresh(name, spec), _fresh(name, spec)
    for batch in batches:
        first, second = probed.loss_and_grads(batch), probed.loss_and_grads(batch)
        assert first[0] == second[0], f"loss {first[0]!r} then {second[0]!r}"
        _identical("gradients of a repeated call", second[1], first[1])
        returned = probed.train_step(batch)
        assert returned == first[0], f"train_step returned {returned!r}, not the loss before " \
                                     f"its update {first[0]!r}"
        fresh.train_step(batch)
        _identical("params after train_step, vs a backend never asked for gradients",
                   probed.params(), fresh.params())
    return "repeatable, no state change; train_step returns the pre-update loss"


def grads_vs_finite_differences(name: str) -> str:
    """The gradient is the slope of the backend's own loss (harness.verify.oracle, float64)."""
    checks = oracle.check_at_start(backend_class(name), main_spec(name))
    bad = [c for c in checks if c.status != "ok"]
    assert not bad, "; ".join(f"{c.parameter}: {c.status}, rel err {c.max_rel_err:.2e}, "
                              f"resolution {c.resolution:.1e}, tolerance {c.tolerance:.1e}"
                              for c in bad)
    worst = max(checks, key=lambda c: c.max_rel_err)
    return f"max rel err {worst.max_rel_err:.1e} ({worst.parameter}, {worst.method}, " \
           f"resolution {max(c.resolution for c in checks):.1e})"


def grads_vs_reference(name: str, dtype: str = "float64") -> str:
    """Loss and gradients at the same parameters and batch as the reference's, within the
    dtype's same-point tolerances (size-aware in float32: harness.parity.tolerances)."""
    _not_the_reference(name)
    spec = main_spec(name, dtype)
    bounds, batch = tolerances(spec), _batches(spec, 1)[0]
    value, grads = _fresh(name, spec).loss_and_grads(batch)
    ref_value, ref_grads = _fresh(REFERENCE, spec).loss_and_grads(batch)
    _close(f"loss vs {REFERENCE}", value, ref_value, bounds.value_rtol)
    err = _within("gradient", grads, ref_grads, bounds.grad_rtol)
    return f"{dtype}: max rel err {err:.1e} (tolerance {bounds.grad_rtol:.1e})"


def step_vs_reference(name: str, dtype: str) -> str:
    """One train_step from the same parameters and batch as the reference's: the loss it
    returns and the parameters it leaves. Those are same-point quantities (the step's error is
    the gradient's, scaled by the step, plus one rounding of each parameter), so the
    dtype's grad_rtol bounds them; this is where an optimizer's arithmetic in `dtype` (a
    hyper-parameter rounded to a narrower type, a moment kept in one) shows."""
    _not_the_reference(name)
    spec = main_spec(name, dtype)
    bounds, batch = tolerances(spec), _batches(spec, 1)[0]
    backend, ref = _fresh(name, spec), _fresh(REFERENCE, spec)
    _close(f"loss returned vs {REFERENCE}", backend.train_step(batch), ref.train_step(batch),
           bounds.value_rtol)
    err = _within(f"params after one {spec.optimizer.name} step", backend.params(),
                  ref.params(), bounds.grad_rtol)
    return f"{dtype}, one {spec.optimizer.name} step: max rel err {err:.1e} " \
           f"(tolerance {bounds.grad_rtol:.1e})"


def optimizer_steps(spec: Spec, p0: params.Params,
                    gradients: list[params.Params]) -> params.Params:
    """Where `harness.optim` (the definition) takes p0, given the gradient of every step."""
    trainable = [t for pair in trainable_mask(spec) for t in pair]
    p = tuple(params.flatten(p0))
    state = optim.init(p, spec.optimizer, trainable)
    for g in gradients:
        p, state = optim.update(params.flatten(g), state, p, spec.optimizer,
                                spec.training.learning_rate, trainable)
    return list(zip(p[0::2], p[1::2], strict=True))


def optimizer_case(name: str, case: str) -> str:
    """Two steps of optimizer convention `case` land where `harness.optim` says, given the
    reference's gradients at the backend's own parameters before each step."""
    spec = _pick(name, candidates.optimizer_tables(case))
    backend, probe = _fresh(name, spec), _fresh(REFERENCE, spec)
    p0, gradients = params.initial_params(spec), []
    for batch in _batches(spec, 2):
        probe.load(backend.params())
        gradients.append(probe.loss_and_grads(batch)[1])
        backend.train_step(batch)
    err = _within("params after two steps vs harness.optim", backend.params(),
                  optimizer_steps(spec, p0, gradients), tol.FLOAT64.grad_rtol)
    return f"two steps, max rel err {err:.1e}"


def trajectory_vs_reference(name: str, dtype: str = "float64") -> str:
    """Every step's loss and the final parameters track the reference within the dtype's
    trajectory tolerances (loss_rtol, param_rtol of harness.parity.tolerances)."""
    _not_the_reference(name)
    spec = main_spec(name, dtype)
    bounds = tolerances(spec)
    backend, ref = _fresh(name, spec), _fresh(REFERENCE, spec)
    worst = max(_close(f"step {step} loss vs {REFERENCE}", backend.train_step(batch),
                       ref.train_step(batch), bounds.loss_rtol)
                for step, batch in enumerate(_batches(spec, candidates.STEPS)))
    err = _within("final params", backend.params(), ref.params(), bounds.param_rtol)
    return f"{dtype}, {candidates.STEPS} steps: loss rel err {worst:.1e}, params {err:.1e}"


def evaluate_consistency(name: str) -> str:
    """evaluate is pure and repeatable, and is the training loss without L2 and dropout."""
    spec = main_spec(name)
    batch = data.eval_batch(data.prepare(spec).validation)
    backend = _fresh(name, spec)
    value, out = backend.evaluate(batch)
    again = backend.evaluate(batch)
    assert again[0] == value and np.array_equal(again[1], out), "evaluate is not repeatable"
    assert out.shape == batch.y.shape, f"outputs {out.shape}, targets {batch.y.shape}"
    _identical("params after evaluate", backend.params(), params.initial_params(spec))
    penalty = 0.5 * spec.loss.l2 * sum(float(np.sum(w * w)) for w, _ in backend.params())
    err = _close("evaluate + l2 penalty vs the training loss of a maskless batch",
                 value + penalty, backend.loss_and_grads(batch)[0], tol.FLOAT64.loss_rtol)
    return f"repeatable, no state change; + l2 penalty = training loss, rel err {err:.1e}"


def evaluate_vs_reference(name: str) -> str:
    """evaluate's loss and outputs match the reference's on the validation split."""
    _not_the_reference(name)
    spec = main_spec(name)
    batch = data.eval_batch(data.prepare(spec).validation)
    value, out = _fresh(name, spec).evaluate(batch)
    ref_value, ref_out = _fresh(REFERENCE, spec).evaluate(batch)
    loss_err = _close(f"loss vs {REFERENCE}", value, ref_value, tol.FLOAT64.loss_rtol)
    err = tol.errors(out, ref_out)[1]
    assert err <= tol.FLOAT64.grad_rtol, f"outputs vs {REFERENCE}: rel err {err:.2e}"
    return f"loss rel err {loss_err:.1e}, outputs rel err {err:.1e}"


def deterministic(name: str) -> str:
    """Two fresh instances on the same batches give the same bits (no hidden randomness)."""
    spec = main_spec(name)
    batches = _batches(spec, candidates.STEPS)
    runs = []
    for _ in range(2):
        backend = _fresh(name, spec)
        runs.append(([backend.train_step(b) for b in batches], backend.params()))
    assert runs[0][0] == runs[1][0], "two fresh instances gave different losses"
    _identical("final params of two fresh instances", runs[1][1], runs[0][1])
    return f"{candidates.STEPS} steps bit-identical across two instances"


def frozen_bias(name: str) -> str:
    """A frozen bias reports a zero gradient and neither moves nor decays; its weights train."""
    spec = _pick(name, candidates.frozen_tables())
    backend = _fresh(name, spec)
    for batch in _batches(spec, 2):
        assert np.all(backend.loss_and_grads(batch)[1][0][1] == 0), "frozen b0 has a gradient"
        backend.train_step(batch)
    assert np.all(backend.params()[0][1] == candidates.FROZEN_BIAS), "frozen b0 moved"
    assert not np.array_equal(backend.params()[0][0], params.initial_params(spec)[0][0]), \
        "W0 did not move"
    return f"b0 stays {candidates.FROZEN_BIAS} through two {spec.optimizer.name} steps"


def timing_smoke(name: str) -> str:
    """train_step then sync() can be timed: every time finite and positive."""
    spec = main_spec(name)
    backend, seconds = _fresh(name, spec), []
    for batch in _batches(spec, TIMING_STEPS):
        start = time.perf_counter()
        backend.train_step(batch)
        backend.sync()
        seconds.append(time.perf_counter() - start)
    assert all(math.isfinite(s) and s > 0 for s in seconds), f"step times {seconds}"
    return f"{TIMING_STEPS} timed steps, fastest {min(seconds) * 1e3:.2f} ms"
