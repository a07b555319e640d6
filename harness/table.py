"""The verdict table (checks x backends), as terminal text or Markdown."""

from __future__ import annotations

import math

CHECK_LABELS = {"gradients": "gradients", "oracle": "finite differences",
                "loss_curve": "loss curve", "final_params": "final params"}


def _cell(check: dict) -> str:
    worst = check["worst"]
    err = "n/a" if worst is None or (isinstance(worst, float) and math.isnan(worst)) \
        else f"{worst:.1e}"
    if check["passed"]:
        return f"ok {err}"
    where = []
    if check.get("first_step") is not None:
        where.append(f"step {check['first_step']}")
    if check.get("first_parameter"):
        where.append(check["first_parameter"])
    return f"FAIL {err}" + (f" ({', '.join(where)})" if where else "")


def rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per check, one column per backend, then the tolerance."""
    backends = summary["backends"]
    header = ["check", *(f"{b} (ref)" if b == summary.get("reference") else b
                         for b in backends), "tolerance"]
    out = []
    for check in CHECK_LABELS:
        cells = {c["backend"]: c for c in summary["checks"] if c["check"] == check}
        if not cells:
            continue
        tolerance = next(iter(cells.values()))["tolerance"]
        out.append([CHECK_LABELS[check], *(_cell(cells[b]) if b in cells else "-"
                                           for b in backends), f"{tolerance:.2g}"])
    return header, out


def notes(summary: dict) -> list[str]:
    """Lines under the table: odd one out, divergence, skipped backends."""
    lines = []
    for check in summary.get("checks", []):
        if check["check"] == "early_stop" and not check["passed"]:
            lines.append(f"early stopping: the backends stopped at different steps (first at "
                         f"step {check['first_step']}): FAIL")
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
            marks = ", ".join(f"{err:.0e} by step {step}" for step, err in profile)
            lines.append(f"loss drift {name} vs {summary['reference']}: {marks}")
    for name, reason in summary.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    return lines


def text(summary: dict) -> str:
    header, body = rows(summary)
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
