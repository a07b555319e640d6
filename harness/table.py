"""The verdict table (checks x backends), as terminal text or Markdown.

A cell says what its check found: `ok 2e-15`, `FAIL 3e-05 (step 3, W1)`, `drift 4e-02`,
`UNRESOLVED`, `not run`, or `-` where a check does not apply to that backend. A tolerance the
check raised at an ill-conditioned point is shown beside the error.

Every piece of text that comes from a spec, a plug-in or a stored summary (backend names,
tensor names, sweep labels, details, skipped reasons) goes through the output's escape:
`harness.escape.terminal` for the console, `harness.escape.markdown` for a report.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from harness import escape

Escape = Callable[[object], str]

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


def _cell(check: dict, base: float, esc: Escape) -> str:
    err = _num(check.get("worst"))
    text = STATUS_TEXT[check["status"]] + (f" {err}" if err else "")
    extra = []
    if check["status"] == "fail":
        if check.get("first_step") is not None:
            extra.append(f"step {check['first_step']}")
        if check.get("first_parameter"):
            extra.append(esc(check["first_parameter"]))
    if check.get("tolerance") and check["tolerance"] > base and check["status"] != "not_run":
        extra.append(f"tol {check['tolerance']:.1e}")
    if check.get("resolution") is not None and check["check"] == "oracle":
        extra.append(f"res {check['resolution']:.0e}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _base(summary: dict, check: str, cells: dict[str, dict]) -> float:
    """The tolerance a row states: the dtype's for that check (older results: the smallest
    any of its cells applied)."""
    return (summary.get("tolerances") or {}).get(check) or \
        min((c["tolerance"] for c in cells.values() if c.get("tolerance") is not None),
            default=math.nan)


def rows(summary: dict, esc: Escape = escape.terminal) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per check, one column per backend, then the tolerance."""
    backends = summary.get("backends") or []
    header = ["check", *(esc(b) + (" (ref)" if b == summary.get("reference") else "")
                         for b in backends), "tolerance"]
    out = []
    for check, label in CHECK_LABELS.items():
        cells = {c["backend"]: c for c in summary["checks"] if c["check"] == check}
        if not cells:
            continue
        base = _base(summary, check, cells)
        out.append([label, *(_cell(cells[b], base, esc) if b in cells else "-"
                             for b in backends),
                    f"{base:.2g}"])
    return header, out


def notes(summary: dict, esc: Escape = escape.terminal) -> list[str]:
    """Lines under the table: what was not compared and why, odd one out, drift, divergence,
    skipped backends."""
    lines = [f"not compared: {esc(reason)}" for reason in summary.get("not_compared") or []]
    for check in summary.get("checks") or []:
        label = esc(CHECK_LABELS.get(check["check"], check["check"]))
        if check["check"] == "early_stop" and check["status"] != "ok":
            lines.append(f"early stopping: {esc(check.get('detail'))} (drift: the evaluate "
                         "check compares the validation loss at the same point)")
        if check["status"] == "drift":
            lines.append(f"{label} {esc(check['backend'])}: drift {_err(check.get('worst'))}, "
                         f"explained: {esc(check.get('detail'))}")
    for name, found in (summary.get("diagnosis") or {}).items():
        lines.append(diagnosis_line(name, found, esc))
    if summary.get("odd_one_out"):
        lines.append(f"odd one out: {esc(summary['odd_one_out'])} (every other backend and "
                     "the finite differences agree without it)")
    div = summary.get("divergence")
    if div:
        at = ", ".join(f"{esc(b)} at step {s}" for b, s in div["at"].items())
        cause = "the spec's fault: every backend diverged at the same step" \
            if div["kind"] == "all" else "a backend's fault: not every backend diverged there"
        lines.append(f"diverged (NaN/Inf): {at}: {cause}")
    for name, profile in (summary.get("drift") or {}).items():
        if profile:
            lines.append(f"loss drift {esc(name)} vs {esc(summary.get('reference'))}: "
                         f"{_marks(profile)}")
    if summary.get("shadow_drift"):
        lines.append(f"loss drift of the reference from a rounding-level nudge (shadow run): "
                     f"{_marks(summary['shadow_drift'])}")
    for name, reason in (summary.get("skipped") or {}).items():
        lines.append(f"skipped {esc(name)}: {esc(reason)}")
    return lines


def diagnosis_line(backend: str, found: dict, esc: Escape = escape.terminal) -> str:
    """`where: backend vs reference: step 3, update, layer 0, W0 (...)`: one disagreement's
    origin, how it is known, and a convention that reproduces it."""
    if found.get("phase") is None:
        return f"where: {esc(backend)}: {esc(found['why'])}"
    where = [f"step {found['step']}", esc(found["phase"])]
    if found.get("layer") is not None:
        where.append(f"layer {found['layer']}")
    where.append(esc(found["tensor"]))
    text = f"where: {esc(backend)}: {', '.join(where)}: {esc(found['why'].split(': ', 1)[-1])}"
    if found.get("convention"):
        text += f" -> convention: {esc(found['convention'])}, not a bug"
    return text


def _err(value: float | None) -> str:
    return "nan" if value is None else f"{value:.0e}"


def _marks(profile: list[list[float | None]]) -> str:
    return ", ".join(f"{_err(err)} by step {step}" for step, err in profile)


def text(summary: dict) -> str:
    """The table for a terminal: columns aligned, text from files with controls escaped."""
    header, body = rows(summary)
    if not body:
        return "\n".join(notes(summary))
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), *(fmt.format(*r) for r in body)]
    return "\n".join([*lines, *notes(summary)])


def markdown(summary: dict) -> str:
    """The table for a report: text from files shown literally (no markup, no HTML)."""
    header, body = rows(summary, escape.markdown)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    extra = notes(summary, escape.markdown)
    return "\n".join(lines + ([""] + [f"- {n}" for n in extra] if extra else []))
