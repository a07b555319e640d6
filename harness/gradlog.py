"""Gradient records taken at a check step, before that step's update.

Every backend is evaluated twice: at its own current parameters (what it is training with),
and at the reference backend's parameters through a second instance, the probe. Comparing the
second kind tells pure gradient error apart from parameter drift.
"""

from __future__ import annotations

import numpy as np

from harness import gradcheck
from harness.backend import Backend
from harness.data import Batch
from harness.params import Params, flatten

Row = dict[str, object]


def finite(grads: Params) -> bool:
    return all(np.all(np.isfinite(g)) for g in flatten(grads))


def pair_rows(step: int, a: str, b: str, ga: Params, gb: Params, at: str) -> list[Row]:
    """One row per tensor: backend `a` compared to backend `b`."""
    names = gradcheck.parameter_names(len(ga))
    rows = []
    for name, x, y in zip(names, flatten(ga), flatten(gb), strict=True):
        abs_err, rel_err = gradcheck.errors(x, y)
        rows.append({"step": step, "parameter": name, "backend": a, "compared_to": b,
                     "evaluated_at": at, "max_abs_err": abs_err, "max_rel_err": rel_err})
    return rows


def norm_rows(step: int, backend: str, grads: Params) -> list[Row]:
    names = gradcheck.parameter_names(len(grads))
    return [{"backend": backend, "step": step, "parameter": name,
             "norm": float(np.linalg.norm(np.asarray(g, np.float64)))}
            for name, g in zip(names, flatten(grads), strict=True)]


def compare_at_step(step: int, batch: Batch, lanes: list, frozen: list[bool],
                    oracle: bool) -> tuple[list[Row], list[Row], dict[str, Params]]:
    """Gradient rows, norm rows, and each lane's own gradients (to spot NaN/Inf).

    `lanes` are the active run lanes, the reference first; each has .name, .backend, .probe."""
    own = {lane.name: lane.backend.loss_and_grads(batch)[1] for lane in lanes}
    ref_params = lanes[0].backend.params()
    at_ref = {lanes[0].name: own[lanes[0].name]}
    for lane in lanes[1:]:
        lane.probe.load(ref_params)
        at_ref[lane.name] = lane.probe.loss_and_grads(batch)[1]
    rows, norms = [], []
    ref = lanes[0].name
    for i, a in enumerate(lanes):
        norms += norm_rows(step, a.name, own[a.name])
        if a.name != ref:
            rows += pair_rows(step, a.name, ref, own[a.name], own[ref], "own")
        for b in lanes[:i]:
            rows += pair_rows(step, a.name, b.name, at_ref[a.name], at_ref[b.name], "reference")
        if oracle:
            rows += oracle_rows(step, a.probe64, a.backend.params(), batch, frozen, a.name,
                                full=a.name == ref)
    return rows, norms, own


def oracle_rows(step: int, probe64: Backend, params: Params, batch: Batch,
                frozen: list[bool], name: str, full: bool) -> list[Row]:
    """The backend's float64 gradient vs finite differences of its own float64 loss: every
    element for the reference (`full`, on small nets), random directions otherwise (two loss
    evaluations per direction instead of two per parameter: any wrong derivative still shows)."""
    batch64 = gradcheck.as_float64(batch)
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    probe64.load(p64)
    grads = probe64.loss_and_grads(batch64)[1]
    checks = gradcheck.check(gradcheck.loss_fn(probe64, batch64), p64, grads, frozen,
                             full=full)
    return [{"step": step, "parameter": c.parameter, "backend": name,
             "compared_to": "finite_differences", "evaluated_at": c.method,
             "max_abs_err": c.max_abs_err, "max_rel_err": c.max_rel_err, "kinks": c.kinks}
            for c in checks]
