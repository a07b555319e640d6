"""The finite-difference oracle: gradients any backend returns, checked against the slope of
its own loss, in float64, with the resolution of every check stated.

Along a probe d (one element e_i, or a random unit direction within a tensor) the oracle
evaluates f(p + t d) at t = +-h and +-2h and forms
    D(h) = (f(h) - f(-h)) / 2h                    central difference, error O(h^2)
    R    = (4 D(h) - D(2h)) / 3                   Richardson extrapolation, error O(h^4)
Each tensor gets its own step h, taken from a ladder of steps on a few probes: the step where
the extrapolated slope stops changing (truncation) before rounding (|f| u / h) takes over.
The noise of one loss evaluation is measured, not assumed (third differences at tiny steps).

Resolution: a bound on |R - true slope| / scale, from the measured noise and the ladder's
truncation estimate. The tensor's tolerance is FD_RTOL, or its resolution when that is worse;
a tensor whose resolution is worse than FD_RTOL_MAX is `unresolved`: the oracle cannot tell
a correct gradient from one off by that much, and says so instead of printing "ok".

Kinks (ReLU units at z = 0): on a smooth stretch the one-sided slopes part linearly in h, so
their gap at 2h is twice the gap at h; across a kink the gap stays the size of the kink. A
probe whose gaps break that rule is retried at smaller steps (a kink near the point, not at
it, then drops out); one that still breaks it is at a kink, and its analytic value passes when
it lies between the one-sided slopes, as a valid subgradient does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness import data, params
from harness.backend import frozen_flags
from harness.data import Batch
from harness.params import Params
from harness.spec import Spec
from harness.verify import tolerances as tol

LossFn = Callable[[Params], float]
STATUSES = ("ok", "fail", "unresolved")


@dataclass(frozen=True)
class TensorCheck:
    parameter: str          # "W0", "b0", "W1", ...
    max_abs_err: float
    max_rel_err: float      # max |analytic - numeric| / the tensor's scale
    resolution: float       # the smallest relative error this check could have detected
    method: str             # "central" (every element) or "directional"
    kinks: int = 0          # probes at a ReLU kink, judged as subgradients
    step: float = 0.0       # the step h used for this tensor
    zero: bool = False      # analytic exactly zero, every slope zero within its bound (a dead
                            # unit's tensor): judged absolutely, no relative error exists

    @property
    def tolerance(self) -> float:
        """FD_RTOL, or the check's resolution where that is coarser."""
        return max(tol.FD_RTOL, self.resolution)

    @property
    def status(self) -> str:
        """fail (error beyond what the oracle can excuse), unresolved (the oracle could not
        have seen an error of FD_RTOL_MAX), or ok. NaN anywhere is a failure."""
        if not self.max_rel_err <= self.tolerance:
            return "fail"
        return "unresolved" if self.resolution > tol.FD_RTOL_MAX and not self.zero else "ok"


def parameter_names(n_layers: int) -> list[str]:
    return [f"{kind}{i}" for i in range(n_layers) for kind in ("W", "b")]


class Line:
    """f along probes of one tensor: f(p + t d), d an element index or a dense direction."""

    evaluations = 0                       # over all lines: the oracle's cost

    def __init__(self, f: LossFn, params: Params, flat_index: int) -> None:
        self.f = f
        self.work = [[w.copy(), b.copy()] for w, b in params]
        self.base = params[flat_index // 2][flat_index % 2]
        self.target = self.work[flat_index // 2][flat_index % 2]

    def __call__(self, probe: int | np.ndarray, t: float) -> float:
        Line.evaluations += 1
        view = self.target.reshape(-1)
        if isinstance(probe, np.ndarray):
            np.copyto(self.target, self.base + t * probe)
            value = self.f(self.work)
            np.copyto(self.target, self.base)
            return value
        orig = view[probe]
        view[probe] = orig + t
        value = self.f(self.work)
        view[probe] = orig
        return value

    def moved(self, probe: int | np.ndarray, t: float) -> float:
        """How far p actually moves for a step t: (p + t) - p, exact, for an element (p + t
        rounds); t for a direction."""
        if isinstance(probe, np.ndarray):
            return t
        orig = self.base.reshape(-1)[probe]
        return float((orig + t) - orig)


@dataclass(frozen=True)
class Stencil:
    """f at +-h, +-2h (and +-4h once refined) along one probe, and how far p really moved
    for each (an element's p + t rounds); f0 is shared."""
    h: float
    minus: tuple[float, ...]     # f(-h), f(-2h)[, f(-4h)]
    plus: tuple[float, ...]      # f(h), f(2h)[, f(4h)]
    back: tuple[float, ...]      # the actual |steps| of `minus`
    ahead: tuple[float, ...]     # the actual steps of `plus`

    @classmethod
    def at(cls, line: Line, probe: int | np.ndarray, h: float,
           multiples: tuple[int, ...] = (1, 2)) -> Stencil:
        ts = [m * h for m in multiples]
        return cls(h, tuple(line(probe, -t) for t in ts), tuple(line(probe, t) for t in ts),
                   tuple(-line.moved(probe, -t) for t in ts),
                   tuple(line.moved(probe, t) for t in ts))

    def refined(self, line: Line, probe: int | np.ndarray) -> Stencil:
        """The same stencil with +-4h added, for a sharper truncation estimate."""
        wide = Stencil.at(line, probe, self.h, (4,))
        return Stencil(self.h, self.minus + wide.minus, self.plus + wide.plus,
                       self.back + wide.back, self.ahead + wide.ahead)

    def _central(self, k: int) -> float:
        return (self.plus[k] - self.minus[k]) / (self.ahead[k] + self.back[k])

    def _extrapolated(self, k: int) -> float:
        return (4 * self._central(k) - self._central(k + 1)) / 3

    @property
    def slope(self) -> float:
        """Richardson's slope from h and 2h: error O(h^4)."""
        return self._extrapolated(0)

    @property
    def truncation(self) -> float:
        """A bound on its truncation error: with +-4h, from the same slope taken from 2h and 4h
        (16 times the error); without, the central difference's own error, O(h^2)."""
        if len(self.plus) > 2:
            return abs(self._extrapolated(0) - self._extrapolated(1)) / 15
        return abs(self._central(0) - self._extrapolated(0))

    def one_sided(self, f0: float, k: int = 0) -> tuple[float, float]:
        """The backward and forward slopes at step h 2^k."""
        return (f0 - self.minus[k]) / self.back[k], (self.plus[k] - f0) / self.ahead[k]

    def one_sided_truncation(self, f0: float) -> float:
        """Their truncation at h, h f''/2 on either side of a kink: how far each moves from h
        to 2h."""
        return float(np.max(np.abs(np.subtract(self.one_sided(f0, 1), self.one_sided(f0)))))

    def bend(self, f0: float) -> float:
        """2 gap(h) - gap(2h), gap(t) = forward - backward slope at t: -h^3 f''''/2 where f is
        smooth, of the size of the slope's jump where a kink lies within the stencil."""
        def gap(k: int) -> float:
            back, ahead = self.one_sided(f0, k)
            return ahead - back
        return 2 * gap(0) - gap(1)

    def bent(self, f0: float, noise: float, target: float) -> bool:
        """The bend exceeds `target` and its own rounding."""
        return abs(self.bend(f0)) > max(target, bend_rounding(noise, self.h))


def bend_rounding(noise: float, h: float) -> float:
    """What rounding alone can make of a bend at step h: 10 noise / h, KINK_NOISE_SAFETY
    times."""
    return tol.KINK_NOISE_SAFETY * 10 * noise / h


def rounding(noise: float, h: float | np.ndarray) -> float | np.ndarray:
    """Bound on the rounding error of the extrapolated slope: (4 D(h) - D(2h)) / 3 with each f
    off by `noise` gives (4 noise / h + noise / 2h) / 3."""
    return 1.5 * noise / h


def measured_noise(line: Line, probe: np.ndarray, f0: float, delta: float) -> float:
    """A bound on the rounding error of one loss evaluation near p: third differences of f at
    steps so small that the function's own third difference (delta^3 f''') is nil are pure
    rounding noise, of variance 20 sigma^2. The steps go one way only (0, delta, ..., 6 delta),
    so a kink at p itself is not crossed. Never below a few ulps of |f0|."""
    values = np.array([f0, *(line(probe, k * delta) for k in range(1, 7))])
    third = np.diff(values, 3)
    sigma = float(np.sqrt(np.mean(third ** 2) / 20))
    return max(tol.FD_NOISE_SAFETY * sigma, noise_floor([f0]))


def noise_floor(values) -> float:
    """The least rounding error of loss values this large: a few ulps of the largest."""
    return tol.FD_NOISE_SAFETY * tol.FD_NOISE_ULPS * tol.FLOAT64_UNIT_ROUNDOFF * \
        float(np.max(np.abs(values)))


def choose_step(line: Line, probes: list, noise: float, top: float, target: float) -> float:
    """A step from a ladder top, top/2, top/4, ... (two evaluations a rung, on a few probes).
    Where the central difference's own error bound can reach `target` (most tensors), the
    rung where that bound plus rounding is least, FD_STEP_SHRINK smaller for elements whose
    higher derivatives are larger than the probes'. Otherwise (a gradient tiny next to the
    loss: rounding needs a long step) the rung where the extrapolated slope's error is least."""
    ladder = top * 2.0 ** -np.arange(tol.FD_LADDER_RUNGS)
    central = np.array([[(line(p, h) - line(p, -h)) / (2 * h) for p in probes] for h in ladder])
    extrapolated = (4 * central[1:] - central[:-1]) / 3        # at ladder[1:]
    first = np.max(np.abs(central[1:] - extrapolated), axis=1)
    total = tol.FD_TRUNCATION_SAFETY * first + rounding(noise, ladder[1:])
    best = int(np.argmin(total))
    if total[best] <= target:
        return float(ladder[1 + best]) / tol.FD_STEP_SHRINK
    sharp = np.max(np.abs(np.diff(extrapolated, axis=0)), axis=1) / 15   # at ladder[2:]
    total = tol.FD_TRUNCATION_SAFETY * sharp + rounding(noise, ladder[2:])
    return float(ladder[2 + int(np.argmin(total))])


def _subgradient(s: Stencil, f0: float, noise: float, analytic: float) -> tuple[float, ...]:
    """At a kink on the point: the analytic value must lie between the one-sided slopes,
    within their rounding and truncation."""
    lo, hi = sorted(s.one_sided(f0))
    band = tol.ONE_SIDED_NOISE * noise / s.h + \
        tol.FD_TRUNCATION_SAFETY * s.one_sided_truncation(f0)
    return (lo + hi) / 2, band, max(lo - band - analytic, analytic - hi - band, 0.0), True


def _smooth(s: Stencil, line: Line, probe, noise: float, analytic: float,
            target: float) -> tuple[float, ...]:
    """The extrapolated slope and its bound, sharpened with +-4h when above `target`."""
    if tol.FD_TRUNCATION_SAFETY * s.truncation + rounding(noise, s.h) > target \
            and len(s.plus) == 2:
        s = s.refined(line, probe)
    bound = tol.FD_TRUNCATION_SAFETY * s.truncation + rounding(noise, s.h)
    return s.slope, bound, abs(analytic - s.slope), False


def _judge(line: Line, probe, h: float, f0: float, noise: float, analytic: float,
           target: float) -> tuple[float, float, float, bool]:
    """(numeric slope, its error bound, |analytic - numeric|, at a kink) along one probe.

    A bent stencil is retried at steps KINK_RETRY_FACTOR smaller. Smooth there, the larger
    step is kept if both slopes agree within their bounds (it was f's own h^3 term, and the
    larger step rounds less), else the smaller (a kink lay near the point). Bent at every
    step, or at the last one whose rounding could still show that bend, the kink is on the
    point: a subgradient check at the step where it is sharpest."""
    first = Stencil.at(line, probe, h)
    noise = max(noise, noise_floor([*first.plus, *first.minus]))   # |f| may grow along the probe
    if not first.bent(f0, noise, target):
        return _smooth(first, line, probe, noise, analytic, target)
    tried = [first]
    for _ in range(tol.KINK_RETRIES):
        h = tried[-1].h / tol.KINK_RETRY_FACTOR
        if abs(tried[-1].bend(f0)) <= bend_rounding(noise, h):
            break
        s = Stencil.at(line, probe, h)
        if not s.bent(f0, noise, target):
            small = _smooth(s, line, probe, noise, analytic, target)
            if len(tried) == 1:
                large = _smooth(first, line, probe, noise, analytic, target)
                if abs(large[0] - small[0]) <= large[1] + small[1]:
                    return min(large, small, key=lambda r: r[1])
            return small
        tried.append(s)
    return min((_subgradient(t, f0, noise, analytic) for t in tried), key=lambda r: r[1])


def ties_unresolvable(spec: Spec) -> bool:
    """Whether the network's gradient at a tied max-pool window is one finite differences
    cannot check: any network with a max-pool, under either rule. The central difference of
    a max at a tie is the mean of its extreme one-sided slopes. `first` takes one input's
    slope per window; `split` the mean over all tied inputs, which is the central difference
    only for a tie of two. Where several windows tie at once with the loss pulling them
    different ways, the sum of either rule's choices can lie outside the loss's one-sided
    slopes (autodiff's value at a non-differentiable point is not always a subgradient; for
    split, slopes {1, 0, 0} and {0, 1, 1} pulled +1 and -1 give one-sided slopes 0 and 0 but
    split's -1/3). So there a kink probe that fails its bracket is unresolved, not failed."""
    return any(layer.kind == "maxpool2d" for layer in spec.model.layers)


def check_tensor(line: Line, analytic: np.ndarray, probes: list, f0: float, name: str,
                 method: str, rng: np.random.Generator, ties: bool = False) -> TensorCheck:
    """One tensor: its noise, its step, every probe judged, the resolution stated. With
    `ties` (`ties_unresolvable`), a tensor that fails only at kink probes is unresolved."""
    size = line.target.size
    scale_p = max(float(np.sqrt(np.mean(line.base ** 2))), tol.FD_PARAM_SCALE_FLOOR)
    direction = rng.normal(size=line.target.shape)
    direction /= np.linalg.norm(direction)
    noise = measured_noise(line, direction, f0, tol.FD_NOISE_STEP * scale_p)
    ladder_probes = probes[:tol.FD_LADDER_PROBES] if method == "directional" else \
        list(dict.fromkeys([int(np.argmax(np.abs(analytic))),
                            *rng.integers(0, size, tol.FD_LADDER_PROBES - 1).tolist()]))
    target = tol.FD_RTOL * float(np.max(np.abs(analytic)))
    # steps are powers of two (the ladder halves, the shrink and retry factors are powers of
    # two), so that p + h and p - h are exact for most elements: an inexact step displaces p
    # by ulp(p), which a tiny slope under a large curvature cannot afford
    top = 2.0 ** np.floor(np.log2(tol.FD_LADDER_TOP * scale_p))
    h = choose_step(line, ladder_probes, noise, top, target)
    judged = np.array([_judge(line, probe, h, f0, noise, float(a), target)
                       for probe, a in zip(probes, analytic.reshape(-1), strict=True)])
    numeric, bounds, diffs = judged[:, 0], judged[:, 1], judged[:, 2]
    if not np.any(analytic) and np.all(np.abs(numeric) <= bounds):
        return TensorCheck(name, float(np.max(diffs)), 0.0, 0.0, method,
                           int(judged[:, 3].sum()), h, zero=True)
    scale = max(float(np.max(np.abs(analytic))), float(np.max(np.abs(numeric))), tol.TINY)
    abs_err = float(np.max(diffs))
    # kink probes pass a bracket test, not a resolution one: they do not set the tensor's
    # resolution unless the tensor has nothing but kinks
    smooth = judged[:, 3] == 0
    resolution = float(np.max(bounds[smooth] if smooth.any() else bounds)) / scale
    smooth_err = float(np.max(diffs[smooth], initial=0.0)) / scale
    if ties and abs_err / scale > max(tol.FD_RTOL, resolution) >= smooth_err:
        resolution = math.inf                 # only a tied max-pool's kinks fail: see above
    return TensorCheck(name, abs_err, abs_err / scale, resolution, method,
                       int(judged[:, 3].sum()), h)


def check(f: LossFn, params: Params, grads: Params, frozen: list[bool], seed: int = 0,
          full: bool = True, ties: bool = False) -> list[TensorCheck]:
    """Compare `grads` (analytic, at `params`) with finite differences of `f` per tensor:
    every element when `full` and the net is small, else random directions.
    Frozen tensors are constants: their reported gradient must be exactly zero. The empty
    tensors of a layer without parameters (a pool, flatten) have nothing to check: no row."""
    params = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params]
    flat_grads = [np.asarray(g, np.float64) for pair in grads for g in pair]
    total = sum(g.size for g in flat_grads)
    method = "central" if full and total <= tol.FD_FULL_MAX_PARAMS else "directional"
    rng = np.random.default_rng(seed)
    f0 = f(params)
    out = []
    for i, (name, g) in enumerate(zip(parameter_names(len(params)), flat_grads, strict=True)):
        if frozen[i] and g.size == 0:
            continue
        if frozen[i]:
            abs_err, rel_err = tol.errors(g, np.zeros_like(g))
            out.append(TensorCheck(name, abs_err, rel_err, 0.0, "exact zero"))
            continue
        line = Line(f, params, i)
        if method == "central":
            out.append(check_tensor(line, g, list(range(g.size)), f0, name, method, rng, ties))
            continue
        dirs = [v / np.linalg.norm(v) for v in rng.normal(size=(tol.FD_DIRECTIONS, *g.shape))]
        analytic = np.array([float(np.sum(g * v)) for v in dirs])
        out.append(check_tensor(line, analytic, dirs, f0, name, method, rng, ties))
    return out


def check_at_start(backend_cls: type, spec: Spec) -> list[TensorCheck]:
    """The backend's float64 gradient at the initial parameters on the first training batch
    (its dropout masks included, so both sides of every difference see the same network),
    against finite differences of its own loss."""
    ds = data.prepare(spec)
    batch = as_float64(data.train_batch(spec, ds, data.plan(spec, len(ds.train.x)), 0))
    backend = float64_backend(backend_cls, spec)
    p0 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params.initial_params(spec)]
    backend.load(p0)
    grads = backend.loss_and_grads(batch)[1]
    return check(loss_fn(backend, batch), p0, grads, frozen_flags(spec),
                 ties=ties_unresolvable(spec))


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
