"""Verdicts: do the backends agree? Pure functions of the run's tidy tables (pandas DataFrames).

Same-point checks decide whether implementations disagree; each backend against the reference
backend (the first one run), both evaluated at the reference's parameters at every check step:
- `gradients`:   every tensor's gradient;
- `loss_value`:  the loss on the step's batch;
- `evaluate`:    evaluate()'s loss and outputs on held-out data;
- `oracle`:      each backend's gradient vs finite differences of its own loss (float64), at
                 the resolution the oracle states per tensor;
- `update`:      each backend's optimizer step from the reference's parameters and state vs
                 harness.optim's step along the backend's own gradients (phases.py).
Trajectory checks measure drift: `loss_curve` (the loss at every step), `final_params` and
`early_stop`. Beyond their fixed bounds, drift that a shadow run of the reference explains
(rounding amplified by this run: chaos, float32 over many steps) is `drift`, not a failure.

Every check has a status: ok, fail, drift, unresolved (the check could not have seen an error
of the size it is meant to catch) or not_run (asked for, never done, with the reason). One
pure function, `decide`, turns them into agree / disagree / not_compared.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from harness.verify import tolerances as tol
from harness.verify.phases import DEFINITION, order

VERDICTS = ("agree", "disagree", "not_compared")
EXIT_CODES = {"agree": 0, "disagree": 1, "not_compared": 3}
SAME_POINT = ("gradients", "loss_value", "evaluate", "oracle", "update")


@dataclass(frozen=True)
class Check:
    check: str
    backend: str
    compared_to: str
    status: str                           # ok, fail, drift, unresolved, not_run
    worst: float                          # worst relative error seen (NaN: nothing seen)
    tolerance: float                      # the widest tolerance applied
    first_step: int | None = None         # first step out of tolerance
    first_parameter: str | None = None    # first tensor (backprop order) or quantity failing
    resolution: float | None = None       # the oracle's: the smallest error it could see
    detail: str | None = None             # why not run; how a drift is explained


DRIFT_MARKS = (1, 10, 100, 1_000, 10_000, 100_000)   # steps at which the drift is reported


def backprop_order(names: list[str]) -> list[str]:
    """W2, b2, W1, b1, ...: the order in which backprop computes the gradients; quantities
    that are not tensors (loss, eval_outputs) keep their order after them."""
    tensors = [n for n in names if n[:1] in "Wb" and n[1:].isdigit()]
    rest = [n for n in names if n not in tensors]
    return sorted(tensors, key=lambda n: (-int(n[1:]), n[0] != "W")) + rest


def _judged(rows: pd.DataFrame, base: float) -> pd.Series:
    """Per row: within its own tolerance (the base where a row has none). NaN fails."""
    limit = rows.tolerance.fillna(base) if "tolerance" in rows else base
    return rows.max_rel_err <= limit


def _same_point(rows: pd.DataFrame, check: str, backend: str, ref: str, base: float,
                missing: str | None, key: str) -> Check:
    """One same-point check over its rows; `missing` says which asked-for steps never ran."""
    if rows.empty:
        return Check(check, backend, ref, "not_run", math.nan, base,
                     detail=missing or "no check step ran")
    ok = _judged(rows, base)
    worst = float(rows.max_rel_err.max(skipna=False))
    widest = float(rows.tolerance.max()) if "tolerance" in rows and \
        rows.tolerance.notna().any() else base
    if ok.all():
        status, detail = ("not_run", missing) if missing else ("ok", None)
        return Check(check, backend, ref, status, worst, max(widest, base), detail=detail)
    bad = rows[~ok]
    step = int(bad.step.min())
    first = backprop_order(list(bad[bad.step == step][key]))[0]
    return Check(check, backend, ref, "fail", worst, max(widest, base), step, first)


def _oracle(rows: pd.DataFrame, backend: str, missing: str | None) -> Check:
    """Finite differences: failing, unresolved or ok per tensor, as the oracle judged."""
    if rows.empty:
        return Check("oracle", backend, "finite_differences", "not_run", math.nan, tol.FD_RTOL,
                     detail=missing or "the oracle did not run")
    status = rows.status if "status" in rows else \
        pd.Series(np.where(rows.max_rel_err <= tol.FD_RTOL, "ok", "fail"), index=rows.index)
    status = status.where(rows.max_rel_err.notna(), "fail")
    worst = float(rows.max_rel_err.max(skipna=False))
    resolution = float(rows.resolution.max()) if "resolution" in rows else None
    widest = float(rows.tolerance.max()) if "tolerance" in rows else tol.FD_RTOL
    kinks = int(rows.kinks.sum()) if "kinks" in rows else 0
    detail = f"{kinks} probes at ReLU kinks judged as subgradients" if kinks else None
    for verdict in ("fail", "unresolved"):
        hit = rows[status == verdict]
        if len(hit):
            first = backprop_order(list(hit.parameter))[0]
            if verdict == "unresolved":
                res = float(hit.resolution.max())
                names = ', '.join(backprop_order(list(hit.parameter)))
                detail = f"{names}: finite differences resolve only {res:.0e} (needed " \
                         f"{tol.FD_RTOL_MAX:g})" if math.isfinite(res) else \
                    f"{names}: only at kinks, max-pool ties, where neither tie rule's " \
                    "gradient need lie between the loss's one-sided slopes (several tied " \
                    "windows, or a tie of three or more), so finite differences cannot check it"
            return Check("oracle", backend, "finite_differences", verdict, worst, widest,
                         int(hit.step.min()), first, resolution, detail)
    return Check("oracle", backend, "finite_differences", "ok", worst, widest,
                 resolution=resolution, detail=detail)


def _update(rows: pd.DataFrame, backend: str, missing: str | None) -> Check:
    """The update phase of one backend at every step compared: ok, or the first step and
    tensor (in the phase's order) where its step differs from harness.optim's."""
    if rows.empty:
        return Check("update", backend, DEFINITION, "not_run", math.nan, math.nan,
                     detail=missing or "no update was compared")
    worst = float(rows.max_rel_err.max(skipna=False))
    widest = float(rows.tolerance.max())
    bad = rows[rows.status != "ok"]
    if bad.empty:
        return Check("update", backend, DEFINITION, "ok", worst, widest)
    step = int(bad.step.min())
    here = bad[bad.step == step]
    first = min(here.tensor, key=lambda t: order("update", t))
    conv = here.convention.dropna() if "convention" in here else pd.Series([], dtype=object)
    return Check("update", backend, DEFINITION, "fail", worst, widest, step, first,
                 detail=f"matches harness.optim with {conv.iloc[0]}" if len(conv) else None)


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


def shadow_envelope(steps: pd.DataFrame, shadow: pd.DataFrame, ref: str,
                    at: pd.Index) -> np.ndarray:
    """Running maximum of the shadow run's loss drift from the reference, at steps `at`;
    past the shadow's last step, its last value (inf once it diverged alone)."""
    if shadow.empty:
        return np.zeros(len(at))
    mine = steps[steps.backend == ref].set_index("step").loss
    theirs = shadow.set_index("step").loss
    common = mine.index.intersection(theirs.index)
    env = pd.Series(np.maximum.accumulate(loss_drift(theirs[common].to_numpy(),
                                                     mine[common].to_numpy())), index=common)
    return env.reindex(at).ffill().fillna(0.0).to_numpy()


def drift_allowance(tables: dict[str, pd.DataFrame], ref: str, at: pd.Index,
                    rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """(what a loss curve may differ by at steps `at`: the fixed bound, or DRIFT_SAFETY times
    the shadow run's drift; that drift)."""
    env = shadow_envelope(tables["steps"], tables.get("shadow", pd.DataFrame()), ref, at)
    return np.maximum(rtol, tol.DRIFT_SAFETY * env), env


def _loss_curve(tables: dict[str, pd.DataFrame], backend: str, ref: str, rtol: float) -> Check:
    common, a, b = _losses(tables["steps"], backend, ref)
    if common.empty:
        return Check("loss_curve", backend, ref, "not_run", math.nan, rtol,
                     detail="no step ran for both")
    rel = loss_drift(a, b)
    worst = float(rel.max())
    if (rel <= rtol).all():
        return Check("loss_curve", backend, ref, "ok", worst, rtol)
    allowed, env = drift_allowance(tables, ref, common, rtol)
    bad = np.flatnonzero(~(rel <= allowed))
    if bad.size == 0:
        return Check("loss_curve", backend, ref, "drift", worst, float(allowed.max()),
                     detail=f"the reference itself drifts {env[-1]:.0e} from a "
                            f"{tol.SHADOW_ULPS:g}-ulp nudge (shadow run)")
    return Check("loss_curve", backend, ref, "fail", worst, float(allowed[bad[0]]),
                 int(common[bad[0]]),
                 detail=None if env.any() else "no shadow run explains it")


def _final_params(tables: dict[str, pd.DataFrame], backend: str, ref: str,
                  rtol: float) -> Check:
    p = tables["final_params"]
    rows = p[(p.backend == backend) & (p.compared_to == ref)] if len(p) else p
    if rows.empty:
        return Check("final_params", backend, ref, "not_run", math.nan, rtol,
                     detail="no final parameters")
    worst = float(rows.max_rel_err.max(skipna=False))
    if (rows.max_rel_err <= rtol).all():
        return Check("final_params", backend, ref, "ok", worst, rtol)
    shadow = tables.get("shadow_params", pd.DataFrame())
    env = shadow.set_index("parameter").max_rel_err.reindex(rows.parameter).fillna(0.0) \
        .to_numpy() if len(shadow) else np.zeros(len(rows))
    allowed = np.maximum(rtol, tol.DRIFT_SAFETY * env)
    bad = rows[~(rows.max_rel_err.to_numpy() <= allowed)]
    if bad.empty:
        return Check("final_params", backend, ref, "drift", worst, float(allowed.max()),
                     detail=f"the reference's own shadow run ends {env.max():.0e} away")
    return Check("final_params", backend, ref, "fail", worst, float(allowed.max()),
                 first_parameter=backprop_order(list(bad.parameter))[0])


def early_stop_check(events: pd.DataFrame, backends: list[str], ref: str) -> Check:
    """Early stopping is one rule applied by the harness to each backend's validation loss,
    which the `evaluate` check compares at the same point: different stop steps are drift."""
    stops = events[events.event == "early_stopped"] if len(events) else events
    at = dict(zip(stops.backend, stops.step.astype(int), strict=True)) if len(stops) else {}
    if not at:
        return Check("early_stop", "all", ref, "ok", 0.0, 0.0)
    same = set(at) == set(backends) and len(set(at.values())) == 1
    spread = float(max(at.values()) - min(at.values())) if same else math.inf
    return Check("early_stop", "all", ref, "ok" if same else "drift", spread, 0.0,
                 None if same else min(at.values()),
                 detail=None if same else "stopped at " + ", ".join(
                     f"{b} step {s}" for b, s in at.items()))


def after_divergence(check: Check, divergence: dict | None) -> Check:
    """Where every backend diverged at the same step (the spec's fault), what the parameters
    hold after it (NaN, Inf, overflowed values each framework propagates its own way) is not
    a disagreement: a failing final_params check becomes drift, explained by the divergence."""
    if check.check != "final_params" or check.status != "fail" or divergence is None or \
            divergence["kind"] != "all":
        return check
    step = next(iter(divergence["at"].values()))
    return replace(check, status="drift", first_parameter=None,
                   detail=f"every backend diverged at step {step} (the spec's fault): the "
                          "parameters after it are not compared")


def needs_shadow(tables: dict[str, pd.DataFrame], backends: list[str],
                 t: tol.Tolerances) -> bool:
    """Whether any trajectory left its fixed bound, so that a shadow run must say whether
    rounding explains it."""
    ref = backends[0]
    return any(_loss_curve(tables, b, ref, t.loss_rtol).status == "fail" or
               _final_params(tables, b, ref, t.param_rtol).status == "fail"
               for b in backends[1:])


def missing_steps(tables: dict[str, pd.DataFrame], backend: str,
                  requested: list[int]) -> str | None:
    """Which asked-for check steps `backend` never reached, and why; None if it reached all."""
    steps, events = tables["steps"], tables["events"]
    ran = steps[steps.backend == backend].step
    last = int(ran.max()) if len(ran) else -1
    missing = [s for s in requested if s > last]
    if not missing:
        return None
    ended = events[(events.backend == backend) &
                   events.event.isin(["early_stopped", "diverged"])] if len(events) else events
    why = f"{ended.event.iloc[0].replace('_', ' ')} at step {int(ended.step.iloc[0])}" \
        if len(ended) else f"the run ended at step {last}"
    return f"check step{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} " \
           f"never ran: {why}"


def pair_agrees(tables: dict[str, pd.DataFrame], a: str, b: str, ref: str,
                t: tol.Tolerances) -> bool:
    """Every same-point comparison between a and b within its tolerance, and their loss
    curves no further apart than the fixed bound or what the shadow run explains."""
    g, v = tables["gradients"], tables["same_point"]
    pair = ((g.backend == a) & (g.compared_to == b)) | ((g.backend == b) & (g.compared_to == a))
    grads = g[pair & (g.evaluated_at == "reference")]
    vpair = ((v.backend == a) & (v.compared_to == b)) | ((v.backend == b) & (v.compared_to == a))
    common, la, lb = _losses(tables["steps"], a, b)
    curves = loss_drift(la, lb) <= drift_allowance(tables, ref, common, t.loss_rtol)[0]
    return bool(_judged(grads, t.grad_rtol).all() and _judged(v[vpair], t.value_rtol).all()
                and curves.all())


def odd_one_out(tables: dict[str, pd.DataFrame], backends: list[str],
                t: tol.Tolerances) -> str | None:
    """The backend that disagrees (at the same point, or by a loss curve rounding does not
    explain) with every other one while they all agree among themselves; with two backends,
    the one whose gradient alone fails its own finite differences (a NaN fails)."""
    agree = {frozenset((a, b)): pair_agrees(tables, a, b, backends[0], t)
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
    g = tables["gradients"]
    fd = g[g.compared_to == "finite_differences"]
    failing = [name for name in backends
               if _oracle(fd[fd.backend == name], name, None).status == "fail"]
    return failing[0] if len(failing) == 1 else None


def decide(checks: list[dict], backends: list[str], divergence: dict | None) -> dict:
    """agree, disagree or not_compared, with the reasons for not_compared. Any failure, or
    a divergence of only some backends, is a disagreement; otherwise fewer than two backends,
    an unresolved check or a check that never ran leaves the run not compared."""
    if any(c["status"] == "fail" for c in checks) or \
            (divergence is not None and divergence["kind"] == "some"):
        return {"verdict": "disagree", "not_compared": []}
    reasons = [] if len(backends) >= 2 else \
        [f"only {len(backends)} backend{'' if len(backends) == 1 else 's'} ran: nothing to "
         "compare with"]
    reasons += [f"{c['check']} {c['backend']}: {c['status'].replace('_', ' ')}: {c['detail']}"
                for c in checks if c["status"] in ("not_run", "unresolved")]
    return {"verdict": "not_compared" if reasons else "agree", "not_compared": reasons}


def drift_profile(steps: pd.DataFrame, backend: str, ref: str) -> list[list[float]]:
    """[step, worst relative loss difference up to that step] at steps 0, 1, 10, 100, ... and
    the last: how fast the curves part (float32 drift grows; float64 should stay flat)."""
    common, a, b = _losses(steps, backend, ref)
    if common.empty:
        return []
    rel = np.maximum.accumulate(loss_drift(a, b))
    marks = sorted({0, len(common) - 1, *(m for m in DRIFT_MARKS if m < len(common))})
    return [[int(common[i]), float(rel[i])] for i in marks]


def checks_of(tables: dict[str, pd.DataFrame], backends: list[str], t: tol.Tolerances,
              requested: list[int]) -> list[Check]:
    """Every check of one variant, each other backend against the reference."""
    ref, others = backends[0], backends[1:]
    g, v = tables["gradients"], tables["same_point"]
    out = []
    for name in others:
        missing = missing_steps(tables, name, requested) or \
            missing_steps(tables, ref, requested)
        mine = (g.backend == name) & (g.compared_to == ref) & (g.evaluated_at == "reference")
        out.append(_same_point(g[mine], "gradients", name, ref, t.grad_rtol, missing,
                               "parameter"))
        vmine = (v.backend == name) & (v.compared_to == ref)
        out.append(_same_point(v[vmine & (v.quantity == "loss")], "loss_value", name, ref,
                               t.value_rtol, missing, "quantity"))
        out.append(_same_point(v[vmine & (v.quantity != "loss")], "evaluate", name, ref,
                               t.value_rtol, missing, "quantity"))
    phases = tables.get("phases", pd.DataFrame(columns=["backend", "phase"]))
    for name in backends:
        fd = g[(g.backend == name) & (g.compared_to == "finite_differences")]
        out.append(_oracle(fd, name, missing_steps(tables, name, requested[:1])))
    for name in backends:
        # the check steps' rows: the diagnosis' scan adds rows only to a run that disagrees
        mine = phases[(phases.backend == name) & (phases.phase == "update") &
                      ~phases.get("scan", pd.Series(False, index=phases.index)).astype(bool)]
        out.append(_update(mine, name, missing_steps(tables, name, requested)))
    for name in others:
        out.append(_loss_curve(tables, name, ref, t.loss_rtol))
        out.append(_final_params(tables, name, ref, t.param_rtol))
    out.append(early_stop_check(tables["events"], backends, ref))
    return out


def base_tolerances(t: tol.Tolerances) -> dict[str, float]:
    """Each check's tolerance before any raise at an ill-conditioned point or by drift."""
    return {"gradients": t.grad_rtol, "loss_value": t.value_rtol, "evaluate": t.value_rtol,
            "oracle": tol.FD_RTOL, "loss_curve": t.loss_rtol, "final_params": t.param_rtol,
            "early_stop": 0.0}


def verdict(tables: dict[str, pd.DataFrame], backends: list[str], t: tol.Tolerances,
            requested: list[int], divergence: dict | None) -> dict:
    """The summary of one variant: every check with its status, the verdict, the diagnosis."""
    ref = backends[0]
    checks = [asdict(after_divergence(c, divergence))
              for c in checks_of(tables, backends, t, requested)]
    shadow = tables.get("shadow", pd.DataFrame())
    return {**decide(checks, backends, divergence),
            "reference": ref,
            "tolerances": base_tolerances(t),
            "odd_one_out": odd_one_out(tables, backends, t),
            "checks": checks,
            "drift": {name: drift_profile(tables["steps"], name, ref) for name in backends[1:]},
            "shadow_drift": drift_profile(pd.concat([tables["steps"][
                tables["steps"].backend == ref], shadow.assign(backend="shadow")]),
                "shadow", ref) if len(shadow) else []}
