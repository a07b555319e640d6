"""The conformance cases run by harness.conformance.suite, one function per property of the
backend contract (harness/backend.py), kept apart from the runner so each reads alone.

Each case takes the first spec the backend supports from the candidates of
harness.conformance.candidates, in order of preference (dropout, mixed hidden activations and
Adam first, simpler networks after), so a backend with fewer capabilities is still checked on
everything it can express. The comparisons with the reference (the textbook `numpy` backend)
skip the reference itself: comparing it with itself would prove nothing. They run in float64,
and again in float32 (same point, one step, a trajectory) at the size-aware float32
tolerances of harness.parity.tolerances, the bounds a `harness run` in float32 is judged by.

The trace and optimizer-state cases name a failing tensor as the diagnosis does (z0, da1,
W0.first, count: harness.verify.phases) and check it in the diagnosis's order, so the first
failure reported is the one a diagnosis would name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np

from harness import data, optim, params
from harness.backend import Backend, Trace, trainable_flags
from harness.conformance import candidates
from harness.parity import tolerances
from harness.registry import backend_class, missing_framework
from harness.spec import Spec, from_dict
from harness.spec.layers import param_shapes
from harness.verify import oracle, phases
from harness.verify import tolerances as tol

REFERENCE = "numpy"
TIMING_STEPS = 3
STATE_STEPS = 3                   # steps taken before the optimizer state is exported


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
    trainable = trainable_flags(spec)
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


def _traced(backend: Backend, batch: data.Batch) -> Trace:
    """The backend's trace of `batch`; Skip where it cannot trace (trace() returns None)."""
    traced = backend.trace(batch)
    if traced is None:
        raise Skip(f"{backend.name} cannot trace: Backend.trace returned None")
    return traced


def _tensor(what: str, got: np.ndarray | None, want: np.ndarray | None, rtol: float) -> float:
    """The relative error of `got` against `want`, asserted <= rtol; both None is a match
    (dJ/da of an output computed from the logits), one None is not."""
    if got is None or want is None:
        assert got is None and want is None, \
            f"{what}: {'None' if got is None else 'an array'}, expected " \
            f"{'None' if want is None else 'an array'}"
        return 0.0
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = tol.errors(got, want)[1]
    assert err <= rtol, f"{what}: rel err {err:.2e} > {rtol:g}"
    return err


def _forward_tensors(t: Trace) -> dict[str, np.ndarray]:
    """z0, a0, z1, a1, ...: the forward phase, input layer first."""
    return {f"{kind}{i}": x for i, pair in enumerate(zip(t.z, t.a, strict=True))
            for kind, x in zip("za", pair, strict=True)}


def _backward_tensors(t: Trace) -> dict[str, np.ndarray | None]:
    """da, dz, dW, db of every layer: the backward phase, output layer first."""
    layers = zip(t.da, t.dz, t.grads, strict=True)
    return {f"{kind}{i}": x for i, (da, dz, (dw, db)) in reversed(list(enumerate(layers)))
            for kind, x in zip(("da", "dz", "dW", "db"), (da, dz, dw, db), strict=True)}


def _well_formed(name: str, t: Trace, spec: Spec, batch: data.Batch) -> None:
    """One entry per layer; every array shaped as its layer makes it (z, a, da, dz: rows by
    units; dW, db: the parameter's shape) and in the run's dtype; the inputs and masks the
    harness's batch (a mask of None and one of ones are the same thing)."""
    sizes, dtype = [layer.size for layer in spec.model.layers], np.dtype(spec.dtype)
    for field in ("masks", "z", "a", "da", "dz", "grads"):
        got = len(getattr(t, field))
        assert got == len(sizes), f"trace.{field}: {got} entries for {len(sizes)} layers"
    shapes, rows = [param_shapes(layer) for layer in spec.model.layers], len(batch.x)
    assert t.x.dtype == dtype, f"x: dtype {t.x.dtype}, expected {dtype}"
    for tensor, x in {**_forward_tensors(t), **_backward_tensors(t)}.items():
        i = phases.layer_of(tensor)
        shape = {"dW": shapes[i][0], "db": shapes[i][1]}.get(tensor[:2], (rows, sizes[i]))
        assert x is None or x.shape == shape, f"{tensor}: shape {x.shape}, expected {shape}"
        assert x is None or x.dtype == dtype, f"{tensor}: dtype {x.dtype}, expected {dtype}"
    bad = [r for r in phases.data_rows(0, name, t, batch) if r["status"] != "ok"]
    assert not bad, "; ".join(f"{r['tensor']}: not the harness's batch, rel err "
                              f"{r['max_rel_err']:.2e}" for r in bad)


def _input(layer: int) -> str:
    """The name of what layer `layer` multiplies by its W: x, then h0, h1, ..."""
    return f"h{layer - 1}" if layer else "x"


def _chain_rule(t: Trace, weights: params.Params, spec: Spec, rtol: float) -> float:
    """The trace against itself, checked in the diagnosis's order: z_l = h_{l-1} W_l + b_l
    (input layer first), then from the output layer down: for a hidden layer
    da_l = (dz_{l+1} W_{l+1}^T) * mask_l, and dW_l = h_{l-1}^T dz_l (+ l2 W_l),
    db_l = sum of dz_l (zero when frozen). Returns the largest relative error."""
    hs = [t.x, *(a if m is None else a * m for a, m in zip(t.a, t.masks, strict=True))]
    errs = [_tensor(f"z{i} vs {_input(i)} @ W{i} + b{i}", t.z[i], hs[i] @ w + b, rtol)
            for i, (w, b) in enumerate(weights)]
    l2, layers = spec.loss.l2, spec.model.layers
    for i in reversed(range(len(weights))):
        w, dz = weights[i][0], t.dz[i]
        if i + 1 < len(weights):
            dh = t.dz[i + 1] @ weights[i + 1][0].T
            errs.append(_tensor(f"da{i} vs (dz{i + 1} @ W{i + 1}^T) * mask{i}", t.da[i],
                                dh if t.masks[i] is None else dh * t.masks[i], rtol))
        dw = hs[i].T @ dz + l2 * w if l2 else hs[i].T @ dz
        errs.append(_tensor(f"dW{i} vs {_input(i)}^T @ dz{i}" + (" + l2 W" if l2 else ""),
                            t.grads[i][0], dw, rtol))
        if layers[i].trainable_bias:
            errs.append(_tensor(f"db{i} vs the sum of dz{i}", t.grads[i][1], dz.sum(axis=0),
                                rtol))
        else:
            assert not np.any(t.grads[i][1]), f"db{i}: frozen, but not zero"
    return max(errs)


def trace_consistency(name: str) -> str:
    """The trace is well formed, its loss and gradients are loss_and_grads' (float64
    same-point tolerances: two compiled programs need not agree bit for bit), it agrees with
    itself by the chain rule (_chain_rule), and it changes no state: a train_step after it
    ends where a never-traced instance's ends."""
    spec = main_spec(name)
    traced_one, fresh = _fresh(name, spec), _fresh(name, spec)
    worst = 0.0
    for batch in _batches(spec, 2):
        t = _traced(traced_one, batch)
        _well_formed(name, t, spec, batch)
        value, grads = traced_one.loss_and_grads(batch)
        _close("trace loss vs loss_and_grads", t.loss, value, tol.FLOAT64.value_rtol)
        _within("trace gradients vs loss_and_grads", t.grads, grads, tol.FLOAT64.grad_rtol)
        worst = max(worst, _chain_rule(t, traced_one.params(), spec, tol.FLOAT64.grad_rtol))
        traced_one.train_step(batch)
        fresh.train_step(batch)
        _identical("params after train_step, vs a backend never traced", traced_one.params(),
                   fresh.params())
    return f"loss and gradients are loss_and_grads'; chain rule holds to {worst:.1e}; " \
           f"no state change"


def _versus(got: dict[str, np.ndarray | None], want: dict[str, np.ndarray | None],
            rtol: float) -> dict[str, float]:
    """Each named tensor against the reference's of the same name, in order."""
    return {n: _tensor(f"{n} vs {REFERENCE}", x, want[n], rtol) for n, x in got.items()}


def trace_vs_reference(name: str, dtype: str = "float64") -> str:
    """Every tensor of the trace against the reference's at the same parameters and batch
    (dropout included): data and forward (input layer first), loss, backward (output layer
    first), within the dtype's same-point tolerances."""
    _not_the_reference(name)
    return trace_against_reference(name, main_spec(name, dtype))


def trace_against_reference(name: str, spec: Spec) -> str:
    """The case of `trace_vs_reference` on any spec: backend `name`'s trace of the spec's
    first batch, every tensor against the reference's, at the spec's same-point
    tolerances."""
    dtype = spec.dtype
    bounds, batch = tolerances(spec), _batches(spec, 1)[0]
    got = _traced(_fresh(name, spec), batch)
    want = _fresh(REFERENCE, spec).trace(batch)
    _well_formed(name, got, spec, batch)
    errs = _versus(_forward_tensors(got), _forward_tensors(want), bounds.grad_rtol)
    errs["loss"] = _close(f"loss vs {REFERENCE}", got.loss, want.loss, bounds.value_rtol)
    errs.update(_versus(_backward_tensors(got), _backward_tensors(want), bounds.grad_rtol))
    where = max(errs, key=errs.__getitem__)
    return f"{dtype}: {len(errs)} tensors, max rel err {errs[where]:.1e} ({where}, " \
           f"tolerance {bounds.grad_rtol:.1e})"


def _slot_names(n: int) -> list[tuple[int, str, str]]:
    """(index in the flat order, slot, name) of every slot, in the diagnosis's update order:
    output layer first, W before b, first before second."""
    return [(2 * layer + j, slot, f"{'Wb'[j]}{layer}.{slot}")
            for layer in reversed(range(n // 2)) for j in range(2) for slot in phases.SLOTS]


def _state_close(what: str, got: optim.State, want: optim.State, dtype: np.dtype,
                 rtol: float) -> float:
    """`got` against `want`: the count exactly, every slot (None where want's is None, the
    run's dtype) within rtol. Returns the largest relative error."""
    assert got.count == want.count, f"{what}: count {got.count}, expected {want.count}"
    errs = [0.0]
    for i, slot, name in _slot_names(len(want.first)):
        mine = getattr(got, slot)[i]
        assert mine is None or mine.dtype == dtype, \
            f"{what}: {name} has dtype {mine.dtype}, expected {dtype}"
        errs.append(_tensor(f"{what}: {name}", mine, getattr(want, slot)[i], rtol))
    return max(errs)


def _exported(backend: Backend) -> optim.State:
    """The backend's optimizer state; Skip where it cannot export (export_state is None)."""
    state = backend.export_state()
    if state is None:
        raise Skip(f"{backend.name} cannot export its optimizer state: export_state returned "
                   f"None")
    return state


def _scribbled(state: optim.State) -> None:
    """Change every array of `state` in place: a backend that kept one would change too."""
    for slot in (*state.first, *state.second):
        if slot is not None:
            slot += 1


def state_roundtrip(name: str, case: str) -> str:
    """Optimizer case `case` (candidates.STATE_CASES): a fresh instance exports
    harness.optim's initial state; after STATE_STEPS steps it exports harness.optim's state
    along its own gradients (float64 param_rtol). A second instance loaded with the initial
    state steps as a fresh optimizer, bit for bit. Loaded with the parameters and state after
    STATE_STEPS, it exports that state back and its next step is the first instance's, both
    within float64 value_rtol: a backend that keeps the state in its own representation
    (sklearn keeps momentum's -lr v) may round it once on the way in; the error is reported,
    0 where the roundtrip is exact. Neither instance may share an array with the caller. A
    backend that cannot export or load is a skip, after its export is checked."""
    spec = _pick(name, candidates.state_tables(case))
    dtype, trainable = np.dtype(spec.dtype), trainable_flags(spec)
    batches = _batches(spec, STATE_STEPS + 1)
    backend, twin = _fresh(name, spec), _fresh(name, spec)
    start = optim.init(params.flatten(backend.params()), spec.optimizer, trainable)
    _state_close("export_state of a fresh instance", _exported(backend), start, dtype, 0.0)
    want, steps = start, []
    for batch in batches[:-1]:
        grads = params.flatten(backend.loss_and_grads(batch)[1])
        _, want = optim.update(grads, want, params.flatten(backend.params()), spec.optimizer,
                               spec.training.learning_rate, trainable)
        steps.append((backend.train_step(batch), backend.params()))
    exported = _exported(backend)
    err = _state_close("exported state vs harness.optim", exported, want, dtype,
                       tol.FLOAT64.param_rtol)
    if not twin.load_state(start):
        raise Skip(f"{name} cannot load an optimizer state: load_state returned False (its "
                   f"export matches harness.optim to {err:.1e})")
    assert twin.train_step(batches[0]) == steps[0][0], \
        "loss returned after loading the initial state differs from a fresh optimizer's"
    _identical("params one step after loading the initial state, vs a fresh optimizer",
               twin.params(), steps[0][1])
    saved = optim.copy_state(exported)
    twin.load(backend.params())
    assert twin.load_state(exported), "load_state returned False, having loaded a state before"
    _scribbled(exported)
    rtol = tol.FLOAT64.value_rtol
    reload = _state_close("export_state after load_state", twin.export_state(), saved, dtype,
                          rtol)
    _state_close("export_state after the caller changed an exported copy",
                 backend.export_state(), saved, dtype, 0.0)
    assert twin.train_step(batches[-1]) == backend.train_step(batches[-1]), \
        "loss returned after load_state differs"
    reload = max(reload, _within("params one step after load_state", twin.params(),
                                 backend.params(), rtol),
                 _state_close("state one step after load_state", twin.export_state(),
                              backend.export_state(), dtype, rtol))
    return f"count {saved.count}, state vs harness.optim {err:.1e}; loaded back and one " \
           f"step on: {reload:.1e} (the initial state loads as fresh)"
