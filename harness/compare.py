"""Verdicts: do the backends agree? Pure functions of the run's tidy tables (pandas DataFrames).

Checks, each per backend against the reference backend (the first one run):
- `gradients`:    gradients of every tensor, both evaluated at the reference's parameters
                  (pure gradient error, no drift), at every gradient-check step;
- `oracle`:       each backend's gradient vs finite differences of its own loss (float64);
- `loss_curve`:   the loss at every step, |l - l_ref| / |l_ref|;
- `final_params`: the parameters at the end of the run.
When something disagrees the verdict names the first step out of tolerance, the first tensor
whose gradient disagreed (in backprop order: output layer first, where an error is born), and,
with three or more backends, the odd one out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harness import tolerances as tol


@dataclass(frozen=True)
class Check:
    check: str
    backend: str
    compared_to: str
    passed: bool
    worst: float                          # worst relative error seen
    tolerance: float
    first_step: int | None = None         # first step out of tolerance
    first_parameter: str | None = None    # first tensor (backprop order) out of tolerance


DRIFT_MARKS = (1, 10, 100, 1_000, 10_000, 100_000)   # steps at which the drift is reported


def backprop_order(names: list[str]) -> list[str]:
    """W2, b2, W1, b1, ...: the order in which backprop computes the gradients."""
    return sorted(names, key=lambda n: (-int(n[1:]), n[0] != "W"))


def _grad_check(g: pd.DataFrame, backend: str, ref: str, rtol: float) -> Check:
    rows = g[(g.backend == backend) & (g.compared_to == ref) & (g.evaluated_at == "reference")]
    return _worst_of(rows, "gradients", backend, ref, rtol)


def _worst_of(rows: pd.DataFrame, check: str, backend: str, ref: str, rtol: float) -> Check:
    if rows.empty:
        return Check(check, backend, ref, True, math.nan, rtol)
    bad = rows[~(rows.max_rel_err <= rtol)]           # NaN errors count as failures
    worst = float(rows.max_rel_err.max(skipna=False))
    if bad.empty:
        return Check(check, backend, ref, True, worst, rtol)
    step = int(bad.step.min())
    first = backprop_order(list(bad[bad.step == step].parameter))[0]
    return Check(check, backend, ref, False, worst, rtol, step, first)


def _loss_check(steps: pd.DataFrame, backend: str, ref: str, rtol: float) -> Check:
    common, a, b = _losses(steps, backend, ref)
    if common.empty:
        return Check("loss_curve", backend, ref, True, math.nan, rtol)
    rel = loss_drift(a, b)
    bad = np.flatnonzero(rel > rtol)
    worst = float(rel.max())
    if bad.size == 0:
        return Check("loss_curve", backend, ref, True, worst, rtol)
    return Check("loss_curve", backend, ref, False, worst, rtol, int(common[bad[0]]))


def loss_drift(loss: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|l - l_ref| / max(|l_ref|, TINY) per step. Where both are NaN/Inf they agree (both
    diverged: 0); where only one is, they do not (inf)."""
    ok_a, ok_b = np.isfinite(loss), np.isfinite(ref)
    with np.errstate(invalid="ignore"):
        rel = np.abs(loss - ref) / np.maximum(np.abs(ref), tol.TINY)
    return np.where(ok_a & ok_b, rel, np.where(~ok_a & ~ok_b, 0.0, np.inf))


def _losses(steps: pd.DataFrame, a: str, b: str) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """The steps both backends ran, with each one's loss there."""
    la = steps[steps.backend == a].set_index("step").loss
    lb = steps[steps.backend == b].set_index("step").loss
    common = la.index.intersection(lb.index)
    return common, la[common].to_numpy(), lb[common].to_numpy()


def _pair_agrees(g: pd.DataFrame, steps: pd.DataFrame, a: str, b: str,
                 t: tol.Tolerances) -> bool:
    """Gradients at the same parameters and the loss curve agree between a and b."""
    rows = g[(g.evaluated_at == "reference") & (((g.backend == a) & (g.compared_to == b)) |
                                                 ((g.backend == b) & (g.compared_to == a)))]
    _, la, lb = _losses(steps, a, b)
    return bool((rows.max_rel_err <= t.grad_rtol).all() and
                (loss_drift(la, lb) <= t.loss_rtol).all())


def odd_one_out(g: pd.DataFrame, steps: pd.DataFrame, backends: list[str],
                t: tol.Tolerances) -> str | None:
    """The backend that disagrees (gradients or loss curve) with every other one while they
    all agree among themselves; with two backends, the one whose gradient alone fails its
    own finite differences."""
    agree = {frozenset((a, b)): _pair_agrees(g, steps, a, b, t)
             for i, a in enumerate(backends) for b in backends[i + 1:]}
    if all(agree.values()):
        return None
    if len(backends) >= 3:
        for name in backends:
            others = [b for b in backends if b != name]
            if not any(agree[frozenset((name, o))] for o in others) and \
                    all(agree[frozenset((a, b))] for i, a in enumerate(others)
                        for b in others[i + 1:]):
                return name
    fd = g[g.compared_to == "finite_differences"].groupby("backend").max_rel_err.max()
    failing = [name for name in backends if name in fd and not fd[name] <= tol.FD_RTOL]
    return failing[0] if len(failing) == 1 else None


def drift_profile(steps: pd.DataFrame, backend: str, ref: str) -> list[list[float]]:
    """[step, worst relative loss difference up to that step] at steps 0, 1, 10, 100, ... and
    the last: how fast the curves part (float32 drift grows; float64 should stay flat)."""
    common, a, b = _losses(steps, backend, ref)
    if common.empty:
        return []
    rel = np.maximum.accumulate(loss_drift(a, b))
    marks = sorted({0, len(common) - 1, *(m for m in DRIFT_MARKS if m < len(common))})
    return [[int(common[i]), float(rel[i])] for i in marks]


def early_stop_check(events: pd.DataFrame, backends: list[str], ref: str) -> Check:
    """Early stopping is one rule applied to each backend: all must stop at the same step
    (or none). `worst` is the spread of the stop steps; first_step is the earliest stop."""
    stops = events[events.event == "early_stopped"] if len(events) else events
    at = dict(zip(stops.backend, stops.step.astype(int), strict=True)) if len(stops) else {}
    if not at:
        return Check("early_stop", "all", ref, True, 0.0, 0.0)
    same = set(at) == set(backends) and len(set(at.values())) == 1
    spread = float(max(at.values()) - min(at.values())) if same else math.inf
    return Check("early_stop", "all", ref, same, spread, 0.0,
                 None if same else min(at.values()))


def verdict(tables: dict[str, pd.DataFrame], backends: list[str],
            t: tol.Tolerances) -> dict:
    """The summary of one variant: every check, pass/fail, and the diagnosis."""
    ref, others = backends[0], backends[1:]
    g, steps = tables["gradients"], tables["steps"]
    checks = []
    for name in others:
        checks.append(_grad_check(g, name, ref, t.grad_rtol))
    for name in backends:
        fd = g[(g.backend == name) & (g.compared_to == "finite_differences")]
        checks.append(_worst_of(fd, "oracle", name, "finite_differences", tol.FD_RTOL))
    for name in others:
        checks.append(_loss_check(steps, name, ref, t.loss_rtol))
        p = tables["final_params"]
        rows = p[(p.backend == name) & (p.compared_to == ref)].assign(step=-1)
        c = _worst_of(rows, "final_params", name, ref, t.param_rtol)
        checks.append(Check(**{**asdict(c), "first_step": None}))
    checks.append(early_stop_check(tables["events"], backends, ref))
    return {"passed": all(c.passed for c in checks),
            "reference": ref,
            "odd_one_out": odd_one_out(g, steps, backends, t),
            "checks": [asdict(c) for c in checks],
            "drift": {name: drift_profile(steps, name, ref) for name in others}}
