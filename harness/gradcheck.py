"""The finite-difference oracle: gradients any backend returns, checked against the slope of
its own loss, in float64.

Small nets: central differences on every parameter, (f(p + h e_i) - f(p - h e_i)) / 2h.
Large nets: per tensor, a few random unit directions v, comparing (f(p + hv) - f(p - hv)) / 2h
with grad . v (jax.test_util.check_grads does the same), two evaluations per direction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness import tolerances as tol
from harness.data import Batch
from harness.params import Params
from harness.spec import Spec

LossFn = Callable[[Params], float]


@dataclass(frozen=True)
class TensorCheck:
    parameter: str          # "W0", "b0", "W1", ...
    max_abs_err: float
    max_rel_err: float      # relative to the tensor's scale plus the oracle's resolution
    method: str             # "central" or "directional"
    kinks: int = 0          # elements (or directions) failing central differences at a ReLU
                            # kink, accepted as subgradients


def errors(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / (max(|a|_max, |b|_max) + floor)): see harness.tolerances.
    `floor` is the smallest scale the comparison can resolve (0 between two backends)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):   # Inf - Inf: NaN, a failure anyway
        diff = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b)))) + floor
    return diff, diff / max(scale, tol.TINY)


def resolution(f0: float) -> float:
    """The gradient scale below which central differences at f0 cannot judge to FD_RTOL:
    a rounding error of FD_ROUNDING_ULPS * u * |f0| / h must still pass."""
    rounding = tol.FD_ROUNDING_ULPS * tol.FLOAT64_UNIT_ROUNDOFF * abs(f0) / tol.FD_STEP
    return rounding / tol.FD_RTOL


def parameter_names(n_layers: int) -> list[str]:
    return [f"{kind}{i}" for i in range(n_layers) for kind in ("W", "b")]


@dataclass(frozen=True)
class Slopes:
    """Numerical slopes along each probe: central, and the one-sided pair around it."""
    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray


def _slopes(f0: float, plus: np.ndarray, minus: np.ndarray, h: float) -> Slopes:
    return Slopes((plus - minus) / (2 * h), (plus - f0) / h, (f0 - minus) / h)


def _central(f: LossFn, params: Params, flat_index: int, h: float, f0: float) -> Slopes:
    work = [[w.copy(), b.copy()] for w, b in params]
    target = work[flat_index // 2][flat_index % 2]
    plus, minus = np.empty(target.size), np.empty(target.size)
    view = target.reshape(-1)
    for j in range(target.size):
        orig = view[j]
        view[j] = orig + h
        plus[j] = f(work)
        view[j] = orig - h
        minus[j] = f(work)
        view[j] = orig
    s = _slopes(f0, plus, minus, h)
    return Slopes(*(a.reshape(target.shape) for a in (s.central, s.forward, s.backward)))


def _directional(f: LossFn, params: Params, grad: np.ndarray, flat_index: int, h: float,
                 f0: float, rng: np.random.Generator) -> tuple[np.ndarray, Slopes]:
    analytic, plus, minus = [], [], []
    for _ in range(tol.FD_DIRECTIONS):
        v = rng.normal(size=grad.shape)
        v /= np.linalg.norm(v)
        for sign, out in ((1.0, plus), (-1.0, minus)):
            work = [[w.copy(), b.copy()] for w, b in params]
            work[flat_index // 2][flat_index % 2] += sign * h * v
            out.append(f(work))
        analytic.append(float(np.sum(grad * v)))
    return np.array(analytic), _slopes(f0, np.array(plus), np.array(minus), h)


def _at_kinks(analytic: np.ndarray, s: Slopes, floor: float) -> tuple[np.ndarray, int]:
    """The numerical value to compare against, treating kinks as subgradient checks.

    An element is judged by its central difference. Only where that fails *and* the probe
    straddles a kink (its one-sided slopes differ by more than KINK_RTOL of the tensor's scale:
    a ReLU unit with z = 0, where the central difference averages two slopes and means
    nothing) does the analytic value pass if it lies between the one-sided slopes, within
    their truncation error, as a valid subgradient does."""
    scale = max(float(np.max(np.abs(analytic), initial=0.0)),
                float(np.max(np.abs(s.central), initial=0.0)))
    central_ok = np.abs(analytic - s.central) <= tol.FD_RTOL * (scale + floor)
    lo, hi = np.minimum(s.forward, s.backward), np.maximum(s.forward, s.backward)
    kink = (hi - lo) > tol.KINK_RTOL * max(scale, tol.TINY)
    band = tol.ONE_SIDED_RTOL * max(scale, tol.TINY)
    inside = (analytic >= lo - band) & (analytic <= hi + band)
    subgradient = ~central_ok & kink & inside
    return np.where(subgradient, analytic, s.central), int(subgradient.sum())


def check(f: LossFn, params: Params, grads: Params, frozen: list[bool], seed: int = 0,
          full: bool = True) -> list[TensorCheck]:
    """Compare `grads` (analytic, at `params`) with finite differences of `f` per tensor:
    every element when `full` and the net is small, else random directions.
    Frozen tensors are constants: their reported gradient must be exactly zero."""
    params = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params]
    flat_grads = [np.asarray(g, np.float64) for pair in grads for g in pair]
    total = sum(g.size for g in flat_grads)
    method = "central" if full and total <= tol.FD_FULL_MAX_PARAMS else "directional"
    rng = np.random.default_rng(seed)
    f0 = f(params)
    out = []
    for i, (name, g) in enumerate(zip(parameter_names(len(params)), flat_grads, strict=True)):
        if frozen[i]:
            out.append(TensorCheck(name, *errors(g, np.zeros_like(g)), method))
            continue
        if method == "central":
            analytic, slopes = g, _central(f, params, i, tol.FD_STEP, f0)
        else:
            analytic, slopes = _directional(f, params, g, i, tol.FD_STEP, f0, rng)
        floor = resolution(f0)
        numeric, kinks = _at_kinks(analytic, slopes, floor)
        out.append(TensorCheck(name, *errors(analytic, numeric, floor), method, kinks))
    return out


def check_at_start(backend_cls: type, spec: Spec) -> list[TensorCheck]:
    """The backend's float64 gradient at the initial parameters on the first training batch
    (its dropout masks included, so both sides of every difference see the same network),
    against finite differences of its own loss."""
    from harness import data, params
    from harness.backend import frozen_flags

    ds = data.prepare(spec)
    batch = as_float64(data.train_batch(spec, ds, data.plan(spec, len(ds.train.x)), 0))
    backend = float64_backend(backend_cls, spec)
    p0 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params.initial_params(spec)]
    backend.load(p0)
    grads = backend.loss_and_grads(batch)[1]
    return check(loss_fn(backend, batch), p0, grads, frozen_flags(spec))


def as_float64(batch: Batch) -> Batch:
    return Batch(batch.x.astype(np.float64), batch.y.astype(np.float64),
                 tuple(None if m is None else m.astype(np.float64) for m in batch.masks))


def float64_backend(backend_cls: type, spec: Spec):
    """A float64 instance of a backend: the oracle always differentiates in float64."""
    return backend_cls(dataclasses.replace(spec, dtype="float64"))


def loss_fn(backend64, batch64: Batch) -> LossFn:
    """f(params) = the backend's own loss on `batch64` (the instance's state is overwritten)."""
    def f(params: Params) -> float:
        backend64.load([(np.asarray(w), np.asarray(b)) for w, b in params])
        return backend64.loss_and_grads(batch64)[0]
    return f
