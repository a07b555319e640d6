"""Same-point records, taken at a check step before that step's update: what decides whether
implementations disagree, free of any drift between their trajectories.

Every backend is evaluated at the reference backend's parameters (through a second instance,
the probe): its gradients, its loss value on the step's batch, and its evaluate() outputs and
loss on held-out data. Each pair is compared per quantity. The tolerance of each comparison is
the dtype's, or, at an ill-conditioned point (saturated units, a loss near zero), what the
reference's own sensitivity to a rounding-level perturbation measured there, times
SENSITIVITY_SAFETY: correct implementations cannot agree better than that.

Each backend's own gradients (at its own parameters) are also recorded, to spot NaN/Inf and
for the gradient-norm plots; the finite-difference oracle runs at the first check step. The
same points also feed the phase rows (harness.verify.phases): each backend's layer trace
against the others', its data against the harness's, its update against harness.optim's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness import optim
from harness.backend import Backend, Trace, frozen_flags
from harness.data import Batch
from harness.params import Params, flatten
from harness.spec import Spec
from harness.verify import oracle, phases
from harness.verify import oracle as oracle_module
from harness.verify import tolerances as tol

Row = dict[str, object]
VALUES = ("loss", "eval_loss", "eval_outputs")    # the same-point quantities besides gradients


@dataclass(frozen=True)
class Point:
    """What one backend computes at one set of parameters."""
    loss: float
    grads: Params
    eval_loss: float
    outputs: np.ndarray
    trace: Trace | None = None            # None: the backend cannot trace

    def quantities(self) -> dict[str, np.ndarray]:
        """Every compared quantity by name: the gradient tensors, VALUES, then the trace's
        forward and backward tensors (z0, a0, ..., da0, dz0, ...)."""
        names = oracle.parameter_names(len(self.grads))
        return {**dict(zip(names, flatten(self.grads), strict=True)),
                "loss": np.array(self.loss), "eval_loss": np.array(self.eval_loss),
                "eval_outputs": self.outputs, **phases.traced(self.trace)}


def evaluate_at(backend: Backend, params: Params, batch: Batch, held_out: Batch) -> Point:
    """Load `params` and observe: loss_and_grads (what training uses: its numbers are the
    ones compared), the layer trace where the backend has one, evaluate() on `held_out`."""
    backend.load(params)
    loss, grads = backend.loss_and_grads(batch)
    trace = backend.trace(batch)
    eval_loss, outputs = backend.evaluate(held_out)
    return Point(loss, grads, eval_loss, outputs, trace)


def finite(grads: Params) -> bool:
    return all(np.all(np.isfinite(g)) for g in flatten(grads))


def nudged(a: np.ndarray, signs: np.ndarray, rel: float) -> np.ndarray:
    """a * (1 + rel * signs), in a's dtype: a relative nudge with the given signs."""
    return (a * (1 + rel * signs)).astype(a.dtype)


def sensitivity(probe: Backend, params: Params, batch: Batch, held_out: Batch,
                rng: np.random.Generator, center: Point) -> dict[str, float]:
    """Per quantity, how much the reference's answer moves, relative to its scale, when its
    parameters and inputs are nudged by SENSITIVITY_STEP (random signs, both ways): the
    second difference (p(+) + p(-)) / 2 - p(0) cancels the smooth first-order response
    (its truncation is ~SENSITIVITY_STEP^2) and leaves the rounding noise of this point."""
    rel = tol.SENSITIVITY_STEP[np.dtype(batch.x.dtype).name]
    p_signs = [(rng.choice([-1.0, 1.0], w.shape), rng.choice([-1.0, 1.0], b.shape))
               for w, b in params]
    x_signs = rng.choice([-1.0, 1.0], batch.x.shape)
    h_signs = rng.choice([-1.0, 1.0], held_out.x.shape)
    sides = []
    for sign in (1.0, -1.0):
        p = [(nudged(w, sw, sign * rel), nudged(b, sb, sign * rel))
             for (w, b), (sw, sb) in zip(params, p_signs, strict=True)]
        moved = Batch(nudged(batch.x, x_signs, sign * rel), batch.y, batch.masks)
        held = Batch(nudged(held_out.x, h_signs, sign * rel), held_out.y)
        sides.append(evaluate_at(probe, p, moved, held).quantities())
    mid = center.quantities()
    return {k: tol.errors((np.asarray(sides[0][k], np.float64) +
                                 np.asarray(sides[1][k], np.float64)) / 2, v)[1]
            for k, v in mid.items() if k in sides[0] and k in sides[1]}


def pair_rows(step: int, a: str, b: str, qa: dict[str, np.ndarray], qb: dict[str, np.ndarray],
              tolerances: dict[str, float], sens: dict[str, float]) -> tuple[list[Row], ...]:
    """Backend `a` against backend `b`, both at the same point: (gradient rows, one per tensor;
    value rows, one per VALUES quantity)."""
    grads, values = [], []
    for name, x in qa.items():
        if name in phases.traced_names(qa):
            continue                      # a trace tensor: a phase row, not a check
        abs_err, rel_err = tol.errors(x, qb[name])
        row = {"step": step, "backend": a, "compared_to": b, "max_abs_err": abs_err,
               "max_rel_err": rel_err, "sensitivity": sens[name],
               "tolerance": tolerances[name]}
        if name in VALUES:
            values.append({"quantity": name, **row})
        else:
            grads.append({"parameter": name, "evaluated_at": "reference", **row})
    return grads, values


def own_rows(step: int, a: str, b: str, ga: Params, gb: Params) -> list[Row]:
    """Gradients at each backend's own parameters against the reference's: drift + error."""
    names = oracle.parameter_names(len(ga))
    return [{"step": step, "parameter": name, "backend": a, "compared_to": b,
             "evaluated_at": "own", **dict(zip(("max_abs_err", "max_rel_err"),
                                               tol.errors(x, y), strict=True))}
            for name, x, y in zip(names, flatten(ga), flatten(gb), strict=True)]


def norm_rows(step: int, backend: str, grads: Params) -> list[Row]:
    names = oracle.parameter_names(len(grads))
    return [{"backend": backend, "step": step, "parameter": name,
             "norm": float(np.linalg.norm(np.asarray(g, np.float64)))}
            for name, g in zip(names, flatten(grads), strict=True)]


def tolerances_at(base: tol.Tolerances, sens: dict[str, float]) -> dict[str, float]:
    """Each quantity's tolerance here: the dtype's (value_rtol for values and the forward
    pass, grad_rtol for every derivative), or the measured sensitivity times
    SENSITIVITY_SAFETY where that is larger (an ill-conditioned point)."""
    def rtol(k: str) -> float:
        forward = k in VALUES or phases.phase_of(k) == "forward"
        return base.value_rtol if forward else base.grad_rtol
    return {k: max(rtol(k), tol.SENSITIVITY_SAFETY * s) for k, s in sens.items()}


@dataclass(frozen=True)
class SamePoint:
    """Every backend observed at one point, with the tolerances measured there."""
    points: dict[str, Point]
    sens: dict[str, float]
    limits: dict[str, float]


def observe(lanes: list, params: Params, batch: Batch, held_out: Batch, base: tol.Tolerances,
            rng: np.random.Generator) -> SamePoint:
    """Every lane's probe at `params`; the reference's (lanes[0]) sensitivity there."""
    points = {lane.name: evaluate_at(lane.probe, params, batch, held_out) for lane in lanes}
    sens = sensitivity(lanes[0].probe, params, batch, held_out, rng, points[lanes[0].name])
    return SamePoint(points, sens, tolerances_at(base, sens))


def phase_rows(step: int, batch: Batch, lanes: list, seen: SamePoint, params: Params,
               state: optim.State | None, spec: Spec, base: tol.Tolerances) -> list[Row]:
    """The phase rows of one point: data, each pair's trace, gradients and values, and each
    backend's update and reported loss (harness.verify.phases)."""
    update = tol.update_rtol(base, spec.dtype, phases.decays(spec))
    rows: list[Row] = []
    for i, lane in enumerate(lanes):
        mine = seen.points[lane.name]
        rows += phases.data_rows(step, lane.name, mine.trace, batch)
        for other in lanes[:i]:
            pairs = phases.pair_rows(step, lane.name, other.name, mine.quantities(),
                                     seen.points[other.name].quantities(), seen.limits)
            rows += phases.tie_convention(pairs, spec, params, batch, mine.quantities(),
                                          seen.limits)
        outcome = phases.stepped(lane.probe, params, state, batch)
        rows.append(phases.step_loss_row(step, lane.name, outcome[0], mine.loss,
                                         seen.limits["loss"]))
        rows += phases.update_rows(step, lane.name, outcome, spec, params, mine.grads, state,
                                   update)
    return rows


@dataclass
class StepRecord:
    """What one check step adds to the run's tables."""
    same_point: list[Row]
    gradients: list[Row]
    norms: list[Row]
    own: dict[str, Params]
    phases: list[Row]


def compare_at_step(step: int, batch: Batch, held_out: Batch, lanes: list, spec: Spec,
                    oracle: bool, base: tol.Tolerances,
                    rng: np.random.Generator) -> StepRecord:
    """`lanes` are the active run lanes, the reference first; each has .name, .backend,
    .probe (a second instance) and .probe64 (a float64 one, for the oracle)."""
    own = {lane.name: lane.backend.loss_and_grads(batch)[1] for lane in lanes}
    ref, ref_params = lanes[0], lanes[0].backend.params()
    seen = observe(lanes, ref_params, batch, held_out, base, rng)
    at_ref = {name: point.quantities() for name, point in seen.points.items()}
    sens, limits = seen.sens, seen.limits
    rec = StepRecord([], [], [], own, phase_rows(step, batch, lanes, seen, ref_params,
                                                 ref.backend.export_state(), spec, base))
    frozen = frozen_flags(spec)
    for i, a in enumerate(lanes):
        rec.norms += norm_rows(step, a.name, own[a.name])
        if a.name != ref.name:
            rec.gradients += own_rows(step, a.name, ref.name, own[a.name], own[ref.name])
        for b in lanes[:i]:
            grads, values = pair_rows(step, a.name, b.name, at_ref[a.name], at_ref[b.name],
                                      limits, sens)
            rec.gradients += grads
            rec.same_point += values
        if oracle:
            rec.gradients += oracle_rows(step, a.probe64, a.backend.params(), batch, frozen,
                                         a.name, full=a.name == ref.name,
                                         ties=oracle_module.ties_unresolvable(spec))
    return rec


def oracle_rows(step: int, probe64: Backend, params: Params, batch: Batch,
                frozen: list[bool], name: str, full: bool, ties: bool = False) -> list[Row]:
    """The backend's float64 gradient vs finite differences of its own float64 loss: every
    element for the reference (`full`, on small nets), random directions otherwise (a few
    loss evaluations per direction instead of per parameter: any wrong derivative shows)."""
    batch64 = oracle.as_float64(batch)
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    probe64.load(p64)
    grads = probe64.loss_and_grads(batch64)[1]
    checks = oracle.check(oracle.loss_fn(probe64, batch64), p64, grads, frozen,
                             full=full, ties=ties)
    return [{"step": step, "parameter": c.parameter, "backend": name,
             "compared_to": "finite_differences", "evaluated_at": c.method,
             "max_abs_err": c.max_abs_err, "max_rel_err": c.max_rel_err, "kinks": c.kinks,
             "resolution": c.resolution, "tolerance": c.tolerance, "status": c.status,
             "fd_step": c.step}
            for c in checks]
