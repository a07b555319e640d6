"""The diagnosis of a disagreement: the step, phase, layer and tensor where it starts, which
backend is wrong when that can be told, and whether it is a known convention.

Pure functions of the phase rows (harness.verify.phases: every backend at the reference's
parameters and optimizer state, phase by phase, at the check steps and, after a run that
disagrees, at every step up to where the disagreement showed). The first failing row, by
step, then phase (data, forward, loss, backward, update, evaluate), then tensor in the
phase's order, is where it starts: a wrong derivative of layer 1 makes dz1 and everything
below it differ, and dz1 is the first of them that backprop computes.
"""

from __future__ import annotations

import pandas as pd

from harness.verify.phases import BATCH, DEFINITION, OWN_LOSS, PHASES, order

JUDGES = (BATCH, DEFINITION, OWN_LOSS)    # absolute judges: they name the wrong backend
TWO_BACKENDS = ("only two backends ran and nothing but the other backend judges this phase: "
                "a third backend would tell which one is wrong")


def relevant(rows: pd.DataFrame, backend: str, ref: str) -> pd.DataFrame:
    """The rows that can explain why `backend` disagrees with `ref`: its comparisons with
    `ref` and what the absolute judges said of either (of `ref` alone when it is `ref`)."""
    judged = rows.compared_to.isin(JUDGES)
    mine = (rows.backend == backend) & (judged | (rows.compared_to == ref))
    return rows[mine | ((rows.backend == ref) & judged)]


def first_failure(rows: pd.DataFrame) -> pd.Series | None:
    """The failing row that comes first by step, phase and the phase's tensor order."""
    bad = rows[rows.status == "fail"]
    if bad.empty:
        return None
    keys = [(int(r.step), PHASES.index(r.phase), order(r.phase, r.tensor))
            for r in bad.itertuples()]
    return bad.iloc[min(range(len(keys)), key=keys.__getitem__)]


def _agree(rows: pd.DataFrame, a: str, b: str) -> bool:
    pair = rows[((rows.backend == a) & (rows.compared_to == b)) |
                ((rows.backend == b) & (rows.compared_to == a))]
    return bool(len(pair)) and bool((pair.status == "ok").all())


def culprit(rows: pd.DataFrame, row: pd.Series, backends: list[str],
            oracle_failed: set[str]) -> tuple[str | None, str]:
    """Which backend is wrong at `row`, and how that is known: an absolute judge, the other
    backends' majority, or, with two backends, finite differences: of a pair whose loss or
    gradients differ, the one whose gradient fails its own loss's finite differences."""
    if row.compared_to in JUDGES:
        return row.backend, f"judged against {row.compared_to}"
    x, ref = row.backend, row.compared_to
    others = [b for b in backends if b not in (x, ref)]
    failed = oracle_failed & {x, ref}
    if not others and row.phase in ("loss", "backward") and len(failed) == 1:
        return failed.pop(), "its gradient fails finite differences of its own loss"
    if not others:
        return None, TWO_BACKENDS
    same = rows[(rows.step == row.step) & (rows.tensor == row.tensor)]
    with_ref = [o for o in others if _agree(same, o, ref)]
    if with_ref:
        return x, f"{', '.join(with_ref)} agree{'s' if len(with_ref) == 1 else ''} with {ref}"
    with_x = [o for o in others if _agree(same, o, x)]
    if with_x:
        return ref, f"{', '.join(with_x)} agree{'s' if len(with_x) == 1 else ''} with {x}"
    return None, "no two backends agree on it"


def _what(row: pd.Series) -> str:
    """The failing comparison in words."""
    size = f"{row.max_rel_err:.1e} (tolerance {row.tolerance:.0e})"
    if row.phase == "data":
        return f"the {row.tensor} it computed with differs from the harness's batch by {size}"
    if row.tensor == "step_loss":
        return f"the loss train_step reported differs from its own loss there by {size}"
    if row.phase == "update":
        text = (f"one optimizer step from the same parameters, state and gradients: "
                f"{row.tensor} differs from harness.optim's by {size}")
        conv = row.get("convention")
        if isinstance(conv, str):
            text += f"; it matches harness.optim with {conv} ({row.convention_err:.0e})"
        return text
    text = f"{row.tensor} differs from {row.compared_to}'s by {size}"
    conv = row.get("convention")
    if isinstance(conv, str):
        text += f"; the reference computes it with {conv} ({row.convention_err:.0e})"
    return text


def diagnosis(rows: pd.DataFrame, backend: str, backends: list[str],
              oracle_failed: set[str] = frozenset()) -> dict:
    """Where `backend`'s disagreement with the reference starts, and why."""
    ref = backends[0]
    row = first_failure(relevant(rows, backend, ref)) if len(rows) else None
    if row is None:
        return {"phase": None, "layer": None, "tensor": None, "step": None,
                "convention": None, "culprit": None,
                "why": "no phase differs at the same point at the steps compared: the "
                       "trajectories part without a same-point difference"}
    who, because = culprit(rows, row, backends, set(oracle_failed))
    conv = row.get("convention")
    layer = row.layer
    return {"phase": row.phase, "layer": None if pd.isna(layer) else int(layer),
            "tensor": row.tensor, "step": int(row.step),
            "convention": conv if isinstance(conv, str) else None,
            "compared_to": row.compared_to, "max_rel_err": float(row.max_rel_err),
            "tolerance": float(row.tolerance), "culprit": who,
            "why": f"step {int(row.step)}, {row.phase}: {_what(row)}; "
                   f"{'wrong: ' + who + ' (' + because + ')' if who else because}"}


def needing(checks: list[dict], divergence: dict | None) -> list[str]:
    """The backends whose checks failed (or that diverged alone), in check order."""
    names = [c["backend"] for c in checks if c["status"] == "fail" and c["backend"] != "all"]
    if divergence is not None and divergence["kind"] == "some":
        names += list(divergence["at"])
    return list(dict.fromkeys(names))


def diagnose(rows: pd.DataFrame, backends: list[str], checks: list[dict],
             divergence: dict | None) -> dict[str, dict]:
    """A diagnosis for every backend that disagrees."""
    failed = {c["backend"] for c in checks if c["check"] == "oracle" and c["status"] == "fail"}
    return {name: diagnosis(rows, name, backends, failed)
            for name in needing(checks, divergence)}


def explained(rows: pd.DataFrame, backends: list[str], names: list[str], step: int) -> bool:
    """Whether every backend of `names` has a failing row by `step` (the scan can stop)."""
    upto = rows[rows.step <= step] if len(rows) else rows
    return all(first_failure(relevant(upto, name, backends[0])) is not None
               for name in names) if len(upto) else False
