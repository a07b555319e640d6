"""Every tolerance of the harness, in one place, with the numerical reason for each.

All errors are *relative to the tensor's scale*: |a - b|_max / max(|a|_max, |b|_max, TINY).
An element-wise relative error is meaningless for entries that are zero up to rounding
(dead ReLU units, gradients that cancel), so the largest entry sets the scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Floor of every relative-error denominator: below it, two tensors are both "zero".
TINY = 1e-30

# Finite differences (always run in float64): harness.verify.oracle. Every tensor's check states
# its resolution (rounding + truncation of its finite differences, relative to the tensor's
# gradient scale); the check's tolerance is FD_RTOL, or that resolution where it is coarser.
# FD_RTOL: a Richardson-extrapolated slope at a well-chosen step resolves ~1e-10 of the scale
# on ordinary tensors, so 1e-7 leaves three orders for the analytic side's own rounding.
FD_RTOL = 1e-7
# A check whose resolution is coarser than this is `unresolved`, never "ok": it could not have
# seen a 1e-4 error (the oracle's target) with a factor 10 to spare.
FD_RTOL_MAX = 1e-5
# Full finite differences cost four loss evaluations per parameter (+-h, +-2h; +-4h where the
# error bound needs sharpening); beyond this
# size the oracle checks random directions per tensor instead (jax check_grads style).
FD_FULL_MAX_PARAMS = 5_000
FD_DIRECTIONS = 6
# The rounding error of one loss evaluation is measured from third differences at steps of
# FD_NOISE_STEP times the tensor's parameter scale (their true third difference, ~step^3 f''',
# is nil), never taken below FD_NOISE_ULPS ulps of |f|, and bounded at FD_NOISE_SAFETY sigma
# (the worst of thousands of probes is judged against it).
FD_NOISE_STEP = 1e-9
FD_NOISE_ULPS = 2.0
FD_NOISE_SAFETY = 4.0
FLOAT64_UNIT_ROUNDOFF = 2.0**-53
# A tensor's parameter scale is its RMS, at least this (biases start at zero).
FD_PARAM_SCALE_FLOOR = 0.1
# Step: a ladder from FD_LADDER_TOP times the parameter scale, halving FD_LADDER_RUNGS times,
# on FD_LADDER_PROBES probes, picks the step where truncation (estimated from the rung above)
# plus rounding is least; the check then uses a step FD_STEP_SHRINK smaller, since other
# elements can have larger higher derivatives than the probes (digits' W0: inputs up to 16
# make some elements' truncation 100 times the probes'). Every probe's own truncation is
# then bounded (the central difference's own O(h^2) error, or, where that bound is above
# FD_RTOL, from +-4h evaluations) and counted FD_TRUNCATION_SAFETY times.
FD_LADDER_TOP = 1.0
FD_LADDER_RUNGS = 24
FD_LADDER_PROBES = 3
FD_STEP_SHRINK = 2.0
FD_TRUNCATION_SAFETY = 2.0
# Kinks: on a smooth stretch 2 gap(h) - gap(2h), with gap(t) = (f(t) - 2 f0 + f(-t)) / t, is
# -h^3 f''''/2; across a kink within the stencil it is of the size of the slope's jump, at
# every step that still holds the kink. A probe whose bend exceeds its target and
# KINK_NOISE_SAFETY times its rounding (10 noise / h) is retried at steps KINK_RETRY_FACTOR
# smaller, up to KINK_RETRIES times: a kink near the point drops out, a smooth h^3 term
# shrinks 512-fold. Bent at every step, the kink is on the point, and the analytic value is
# judged as a subgradient: between the one-sided slopes, within their rounding
# (ONE_SIDED_NOISE noise / h) and their truncation (how far each moves from h to 2h,
# FD_TRUNCATION_SAFETY times).
KINK_NOISE_SAFETY = 4.0
KINK_RETRIES = 2
KINK_RETRY_FACTOR = 8.0
ONE_SIDED_NOISE = 4.0


@dataclass(frozen=True)
class Tolerances:
    """Agreement thresholds between two backends for one dtype.

    grad_rtol and value_rtol judge quantities at the same point (same parameters, same batch):
    they decide whether implementations disagree. loss_rtol and param_rtol bound how far whole
    trajectories may drift before the drift needs explaining (see DRIFT_SAFETY)."""
    grad_rtol: float        # gradients at the same parameters and batch
    value_rtol: float       # loss value and evaluate() outputs at the same parameters
    loss_rtol: float        # loss at every step of the run, relative to |loss|
    param_rtol: float       # final parameters, relative to each tensor's scale


# float64 (unit roundoff 1.1e-16): the same maths summed in a different order (BLAS blocking,
# XLA fusion) differs by ~1e-16 * sqrt(terms) per op, ~1e-14 through a few layers. A loss
# value or an output is one forward pass: 1e-12 leaves two orders above that. The loss and
# parameters accumulate differences over hundreds of steps, so they get slack that grows with
# the run, but still six orders below anything a wrong derivative produces.
FLOAT64 = Tolerances(grad_rtol=1e-10, value_rtol=1e-12, loss_rtol=1e-9, param_rtol=1e-8)

# float32 (unit roundoff u = 2^-24 = 6e-8). A sum of K terms in a different order differs by
# ~u * sqrt(K) (random-walk rounding), so a gradient through `depth` layers whose longest sum
# (fan-in, fan-out or the rows of the batch actually used) is K differs by
# ~depth * u * sqrt(K); the tolerance allows FLOAT32_GRAD_SAFETY times that (measured: 1.1e-6
# on digits 64-64-10, batch 64, against a tolerance of 9.6e-6); loss values and outputs get
# the same bound. Loss curves and parameters then drift apart over the run (SGD feeds rounding
# differences back in); within these bounds the drift is only reported (measured on digits
# over 600 steps: loss 2e-6, parameters 4e-7), beyond them it must be explained.
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
FLOAT32_GRAD_SAFETY = 10.0
FLOAT32_LOSS_RTOL = 1e-4
FLOAT32_PARAM_RTOL = 1e-3
UNIT_ROUNDOFF = {"float64": FLOAT64_UNIT_ROUNDOFF, "float32": FLOAT32_UNIT_ROUNDOFF}

# Ill-conditioned points. Where a tanh saturates (1 - a^2 from a rounded a), softmax sits
# within 1e-12 of 1, or the loss is near zero (a - y cancels), correct backends agree only to
# 1e-10..1e-5 in float64. Their tolerance there is measured: the reference's parameters and
# inputs are nudged by SENSITIVITY_STEP (relative, random signs, both ways), and the second
# difference of its answers, rounding noise alone, times SENSITIVITY_SAFETY, becomes the
# tolerance where it exceeds the dtype's. The step is large enough to re-round every
# intermediate (a tanh saturated at z = 10 moves by (1 - a^2) z step = 8e-8 step, above
# ulp(a) = 1.1e-16 from a step of 1.4e-9 on), small enough that the smooth second-order
# response (~step^2 times the relative curvature; 1e-7 measured 1e-13 on digits' loss)
# stays below the dtype's tolerance. float32: ~sqrt(u).
SENSITIVITY_STEP = {"float64": 1e-8, "float32": 3e-4}
SENSITIVITY_SAFETY = 10.0

# Drift. A loss curve or final parameter beyond loss_rtol / param_rtol is explained when the
# reference itself moves as far from a rounding-level nudge: a shadow run of the reference,
# its initial parameters and every batch's inputs nudged by SHADOW_ULPS units of rounding,
# measures how fast this run amplifies rounding (chaos at a large learning rate, float32
# over many steps). Within DRIFT_SAFETY times the shadow's distance it is drift; beyond, the
# trajectories part for a reason rounding does not explain, and that is a disagreement. The
# factor allows for the shadow being one sample of the growth (exponential growth shifts by
# a few steps for a 100-fold head start).
SHADOW_ULPS = 4.0
DRIFT_SAFETY = 100.0


def for_run(dtype: str, longest_sum: int, depth: int) -> Tolerances:
    """The tolerances of a run: fixed in float64, size-aware in float32."""
    if dtype == "float64":
        return FLOAT64
    grad = FLOAT32_GRAD_SAFETY * depth * FLOAT32_UNIT_ROUNDOFF * longest_sum**0.5
    return Tolerances(grad_rtol=grad, value_rtol=grad, loss_rtol=FLOAT32_LOSS_RTOL,
                      param_rtol=FLOAT32_PARAM_RTOL)


def diverged_errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """`errors`, where an entry that is NaN or Inf in both counts as equal: both diverged
    there, as the loss curve counts two non-finite losses. An entry finite in one only is
    an infinite difference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = ~np.isfinite(a) & ~np.isfinite(b)
    one = np.isfinite(a) != np.isfinite(b)
    if one.any():
        return np.inf, np.inf
    return errors(np.where(both, 0.0, a), np.where(both, 0.0, b))


def errors(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / (max(|a|_max, |b|_max) + floor)): the
    metric every tolerance in this module bounds.
    `floor` is an absolute scale below which differences are not resolvable."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):   # Inf - Inf: NaN, a failure anyway
        diff = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b)))) + floor
    return diff, diff / max(scale, TINY)


# Phases (harness.verify.phases). The data phase compares what a backend computed with against
# the arrays the harness handed it: a copy in the run's dtype is exact, so any difference is a
# change the backend made.
DATA_RTOL = 0.0
# The update phase compares one optimizer step of a backend, from the same parameters, state
# and (its own) gradients, with harness.optim's. Both round the same few operations, but a
# moment's (1 - decay) computed from a decay rounded to the dtype (1 - 0.999 in float32) vs
# from the exact decay differs by ulp(decay) / (1 - decay): 6e-5 relative in float32 for
# beta2 = 0.999, and the step inherits half of it through the square root.
# UPDATE_DECAY_SAFETY covers that, and the rest of the step's rounding, with room.
UPDATE_DECAY_SAFETY = 4.0


def update_rtol(base: Tolerances, dtype: str, decays: tuple[float, ...]) -> float:
    """The update phase's tolerance: value_rtol, plus the rounding of (1 - decay) amplified
    by 1 / (1 - decay) for the optimizer's closest-to-one decay (none for sgd)."""
    closest = max((d for d in decays if d < 1.0), default=0.0)
    return base.value_rtol + UPDATE_DECAY_SAFETY * UNIT_ROUNDOFF[dtype] / (1.0 - closest)
