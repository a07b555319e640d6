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
    a = steps[steps.backend == backend].set_index("step").loss
    b = steps[steps.backend == ref].set_index("step").loss
    common = a.index.intersection(b.index)
    if common.empty:
        return Check("loss_curve", backend, ref, True, math.nan, rtol)
    rel = loss_drift(a[common].to_numpy(), b[common].to_numpy())
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


def odd_one_out(g: pd.DataFrame, backends: list[str], rtol: float) -> str | None:
    """The backend that disagrees with every other while they all agree among themselves
    (gradients at the reference's parameters, finite differences counted as a voter)."""
    if len(backends) < 3 and "finite_differences" not in set(g.compared_to):
        return None
    pairs = g[g.evaluated_at == "reference"].groupby(["backend", "compared_to"]).max_rel_err.max()
    fd = g[g.compared_to == "finite_differences"].groupby("backend").max_rel_err.max()
    agree: dict[frozenset, bool] = {}
    for (a, b), err in pairs.items():
        agree[frozenset((a, b))] = bool(err <= rtol)
    for name in backends:
        if name in fd:
            agree[frozenset((name, "finite_differences"))] = bool(fd[name] <= tol.FD_RTOL)
    voters = [*backends, *(["finite_differences"] if len(fd) else [])]
    if len(voters) < 3:
        return None
    for name in backends:
        others = [v for v in voters if v != name]
        alone = all(not agree.get(frozenset((name, o)), True) for o in others)
        rest_agree = all(agree.get(frozenset((a, b)), True)
                         for i, a in enumerate(others) for b in others[i + 1:])
        if alone and rest_agree:
            return name
    return None


def drift_profile(steps: pd.DataFrame, backend: str, ref: str) -> list[list[float]]:
    """[step, worst relative loss difference up to that step] at steps 0, 1, 10, 100, ... and
    the last: how fast the curves part (float32 drift grows; float64 should stay flat)."""
    a = steps[steps.backend == backend].set_index("step").loss
    b = steps[steps.backend == ref].set_index("step").loss
    common = a.index.intersection(b.index)
    if common.empty:
        return []
    rel = np.maximum.accumulate(loss_drift(a[common].to_numpy(), b[common].to_numpy()))
    marks = sorted({0, len(common) - 1, *(10**k for k in range(6) if 10**k < len(common))})
    return [[int(common[i]), float(rel[i])] for i in marks]


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
    return {"passed": all(c.passed for c in checks),
            "reference": ref,
            "odd_one_out": odd_one_out(g, backends, t.grad_rtol),
            "checks": [asdict(c) for c in checks],
            "drift": {name: drift_profile(steps, name, ref) for name in others}}
