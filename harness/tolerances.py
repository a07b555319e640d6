"""Every tolerance of the harness, in one place, with the numerical reason for each.

All errors are *relative to the tensor's scale*: |a - b|_max / max(|a|_max, |b|_max, TINY).
An element-wise relative error is meaningless for entries that are zero up to rounding
(dead ReLU units, gradients that cancel), so the largest entry sets the scale.
"""

from __future__ import annotations

from dataclasses import dataclass

# Floor of every relative-error denominator: below it, two tensors are both "zero".
TINY = 1e-30

# Finite differences (always run in float64). Central differences have truncation error
# O(h^2 f''') ~ 1e-12 and rounding error O(ulp(f) / h) ~ 1e-10 relative to f at h = 1e-6,
# the step torch.autograd.gradcheck uses.
FD_STEP = 1e-6
# Full central differences cost two loss evaluations per parameter (10,000 evaluations at this
# size: ~1 s for the default digits net); beyond it the oracle checks random directions per
# tensor instead (jax check_grads style), two evaluations per direction.
FD_FULL_MAX_PARAMS = 5_000
FD_DIRECTIONS = 6
# FD gradient error is dominated by the rounding term above (~1e-10 |f| / |g|), so 1e-7
# leaves three orders of margin for losses up to ~1000x the gradient scale.
FD_RTOL = 1e-7
# ...but no central difference resolves better than its own rounding: each loss evaluation is
# off by a few ulps of |f|, so the quotient is off by ~FD_ROUNDING_ULPS * u * |f| / h. A tensor
# whose gradients are that small (the worked example's first layer: |g| ~ 4e-4 at |f| ~ 0.3,
# measured error 8e-11 against u |f| / h = 3.3e-11) is judged against that floor, not FD_RTOL.
FD_ROUNDING_ULPS = 10.0
FLOAT64_UNIT_ROUNDOFF = 2.0**-53
# A probe straddles a kink (a ReLU unit at z = 0, common at step 0 where biases are zero and a
# sample's whole previous layer is dead) when its forward and backward one-sided slopes differ
# by more than this fraction of the tensor's gradient scale; on smooth stretches they differ
# by h * f''. Only an element that fails its central difference is then re-judged as a
# subgradient (between the one-sided slopes, within ONE_SIDED_RTOL), so a smooth element is
# never excused by mistake.
KINK_RTOL = 1e-6
# One-sided slopes carry truncation error O(h f'') ~ 1e-6 of the scale (not O(h^2) like the
# central one), so a subgradient is accepted within this band around the one-sided bracket.
ONE_SIDED_RTOL = 1e-5


@dataclass(frozen=True)
class Tolerances:
    """Agreement thresholds between two backends for one dtype."""
    grad_rtol: float        # gradients at the same parameters and batch
    loss_rtol: float        # loss at every step of the run, relative to |loss|
    param_rtol: float       # final parameters, relative to each tensor's scale


# float64 (unit roundoff 1.1e-16): the same maths summed in a different order (BLAS blocking,
# XLA fusion) differs by ~1e-16 * sqrt(terms) per op, ~1e-14 through a few layers. The loss and
# parameters accumulate that over hundreds of steps, so they get slack that grows with the run,
# but still six orders below anything a wrong derivative produces.
FLOAT64 = Tolerances(grad_rtol=1e-10, loss_rtol=1e-9, param_rtol=1e-8)

# float32 (unit roundoff u = 2^-24 = 6e-8). A sum of K terms in a different order differs by
# ~u * sqrt(K) (random-walk rounding), so a gradient through `depth` layers whose longest sum
# (fan-in, fan-out or batch rows) is K differs by ~depth * u * sqrt(K); the tolerance allows
# FLOAT32_GRAD_SAFETY times that (measured: 1.1e-6 on digits 64-64-10, batch 64, against a
# tolerance of 9.6e-6). Loss curves and parameters then drift apart over the run (SGD feeds
# rounding differences back in); the drift is plotted and reported, and these bounds only
# catch curves that have left each other entirely (measured on digits over 600 steps:
# loss 2e-6, parameters 4e-7).
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
FLOAT32_GRAD_SAFETY = 10.0
FLOAT32_LOSS_RTOL = 1e-4
FLOAT32_PARAM_RTOL = 1e-3


def for_run(dtype: str, longest_sum: int, depth: int) -> Tolerances:
    """The tolerances of a run: fixed in float64, size-aware in float32."""
    if dtype == "float64":
        return FLOAT64
    grad = FLOAT32_GRAD_SAFETY * depth * FLOAT32_UNIT_ROUNDOFF * longest_sum**0.5
    return Tolerances(grad_rtol=grad, loss_rtol=FLOAT32_LOSS_RTOL, param_rtol=FLOAT32_PARAM_RTOL)
