"""The verdict table (checks x backends), as terminal text or Markdown.

A cell says what its check found: `ok 2e-15`, `FAIL 3e-05 (step 3, W1)`, `drift 4e-02`,
`UNRESOLVED`, `not run`, or `-` where a check does not apply to that backend. A tolerance the
check raised at an ill-conditioned point is shown beside the error.
"""

from __future__ import annotations

import math

CHECK_LABELS = {"gradients": "gradients", "loss_value": "loss value", "evaluate": "evaluate",
                "oracle": "finite differences", "update": "update (vs harness.optim)",
                "loss_curve": "loss curve (drift)",
                "final_params": "final params (drift)"}
STATUS_TEXT = {"ok": "ok", "fail": "FAIL", "drift": "drift", "unresolved": "UNRESOLVED",
               "not_run": "not run"}
VERDICT_TEXT = {"agree": "all backends agree", "disagree": "backends DISAGREE",
                "not_compared": "NOT COMPARED"}
MARKDOWN_VERDICT = {"agree": "agree", "disagree": "DISAGREE", "not_compared": "NOT COMPARED"}


def _num(value: float | None) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.1e}"


def _cell(check: dict, base: float) -> str:
    err = _num(check["worst"])
    text = STATUS_TEXT[check["status"]] + (f" {err}" if err else "")
    extra = []
    if check["status"] == "fail":
        if check.get("first_step") is not None:
            extra.append(f"step {check['first_step']}")
        if check.get("first_parameter"):
            extra.append(check["first_parameter"])
    if check.get("tolerance") and check["tolerance"] > base and check["status"] != "not_run":
        extra.append(f"tol {check['tolerance']:.1e}")
    if check.get("resolution") is not None and check["check"] == "oracle":
        extra.append(f"res {check['resolution']:.0e}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _base(summary: dict, check: str, cells: dict[str, dict]) -> float:
    """The tolerance a row states: the dtype's for that check (older results: the smallest
    any of its cells applied)."""
    return (summary.get("tolerances") or {}).get(check) or \
        min(c["tolerance"] for c in cells.values())


def rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per check, one column per backend, then the tolerance."""
    backends = summary["backends"]
    header = ["check", *(f"{b} (ref)" if b == summary.get("reference") else b
                         for b in backends), "tolerance"]
    out = []
    for check, label in CHECK_LABELS.items():
        cells = {c["backend"]: c for c in summary["checks"] if c["check"] == check}
        if not cells:
            continue
        base = _base(summary, check, cells)
        out.append([label, *(_cell(cells[b], base) if b in cells else "-" for b in backends),
                    f"{base:.2g}"])
    return header, out


def notes(summary: dict) -> list[str]:
    """Lines under the table: what was not compared and why, odd one out, drift, divergence,
    skipped backends."""
    lines = [f"not compared: {reason}" for reason in summary.get("not_compared", [])]
    for check in summary.get("checks", []):
        if check["check"] == "early_stop" and check["status"] != "ok":
            lines.append(f"early stopping: {check['detail']} (drift: the evaluate check "
                         "compares the validation loss at the same point)")
        if check["status"] == "drift":
            lines.append(f"{CHECK_LABELS.get(check['check'], check['check'])} "
                         f"{check['backend']}: drift {check['worst']:.0e}, explained: "
                         f"{check['detail']}")
    for name, found in (summary.get("diagnosis") or {}).items():
        lines.append(diagnosis_line(name, found))
    if summary.get("odd_one_out"):
        lines.append(f"odd one out: {summary['odd_one_out']} (every other backend and the "
                     "finite differences agree without it)")
    div = summary.get("divergence")
    if div:
        at = ", ".join(f"{b} at step {s}" for b, s in div["at"].items())
        cause = "the spec's fault: every backend diverged at the same step" \
            if div["kind"] == "all" else "a backend's fault: not every backend diverged there"
        lines.append(f"diverged (NaN/Inf): {at}: {cause}")
    for name, profile in summary.get("drift", {}).items():
        if profile:
            lines.append(f"loss drift {name} vs {summary['reference']}: {_marks(profile)}")
    if summary.get("shadow_drift"):
        lines.append(f"loss drift of the reference from a rounding-level nudge (shadow run): "
                     f"{_marks(summary['shadow_drift'])}")
    for name, reason in summary.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    return lines


def diagnosis_line(backend: str, found: dict) -> str:
    """`where: backend vs reference: step 3, update, layer 0, W0 (...)`: one disagreement's
    origin, how it is known, and a convention that reproduces it."""
    if found.get("phase") is None:
        return f"where: {backend}: {found['why']}"
    where = [f"step {found['step']}", found["phase"]]
    if found.get("layer") is not None:
        where.append(f"layer {found['layer']}")
    where.append(found["tensor"])
    text = f"where: {backend}: {', '.join(where)}: {found['why'].split(': ', 1)[-1]}"
    if found.get("convention"):
        text += f" -> convention: {found['convention']}, not a bug"
    return text


def _marks(profile: list[list[float]]) -> str:
    return ", ".join(f"{err:.0e} by step {step}" for step, err in profile)


def text(summary: dict) -> str:
    header, body = rows(summary)
    if not body:
        return "\n".join(notes(summary))
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), *(fmt.format(*r) for r in body)]
    return "\n".join([*lines, *notes(summary)])


def markdown(summary: dict) -> str:
    header, body = rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    extra = notes(summary)
    return "\n".join(lines + ([""] + [f"- {n}" for n in extra] if extra else []))
