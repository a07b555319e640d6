"""The summary figures, as pure functions: tables in, a matplotlib Figure out. Time per call
of each backend (bars), and the sweep overview that puts every sweep point's loss and worst
loss drift on one figure. Also the timing numbers themselves (`step_times`, `ms_text`), kept
here so that `harness.report` prints exactly what the timing figure shows.

Like `harness.plots.training`, nothing here reads or writes files or touches pyplot's global
state; the shared look lives in `harness.plots.style`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.plots import style

BAR_WIDTH = 0.26
BAR_MARGIN = 0.75                     # x-axis room beside the outer bar groups
PHASES = {  # phase -> (legend label, face colour, hatch)
    "step": ("training step: median, error bar = interquartile range", "tab:blue", ""),
    "first_step": ("first step (warm-up / compilation)", "tab:orange", "//"),
    "setup": ("setup (build backend, load parameters)", "tab:gray", ".."),
}
MS_PER_S = 1e3
POINT_THINNING = 0.6                  # line width lost per sweep point in the overview


def step_times(timings: pd.DataFrame, backends: list[str]) -> pd.DataFrame:
    """Per backend, in ms: median and quartiles of the step times, first step, setup."""
    t = timings.assign(ms=timings.seconds * MS_PER_S)
    step = t[t.phase == "step"].groupby("backend").ms
    once = t[t.phase != "step"].pivot_table(index="backend", columns="phase", values="ms")
    out = pd.DataFrame({"median": step.median(), "q25": step.quantile(0.25),
                        "q75": step.quantile(0.75)})
    return out.join(once, how="outer").reindex(backends)


def ms_text(value: float) -> str:
    """Three significant digits, no exponent for the usual range of a timing in ms."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def timings(timings: pd.DataFrame, backends: list[str], title: str) -> Figure:
    """Bars per backend: median step time with IQR error bars, first step, setup."""
    s = step_times(timings, backends)
    fig, (ax,) = style.new_figure(f"{title}: time per call")
    x = np.arange(len(backends))
    values = []
    for k, (phase, (label, color, hatch)) in enumerate(PHASES.items()):
        col = "median" if phase == "step" else phase
        if col not in s:
            continue
        y = s[col].to_numpy(float)
        err = np.vstack([y - s.q25, s.q75 - y]) if phase == "step" else None
        pos = x + (k - 1) * BAR_WIDTH
        ax.bar(pos, y, BAR_WIDTH, yerr=err, capsize=4, color=color, hatch=hatch,
               edgecolor="black", alpha=0.85, label=label)
        tops = s.q75.to_numpy(float) if phase == "step" else y
        for px, value, top in zip(pos, y, tops, strict=True):
            if np.isfinite(value):
                ax.annotate(ms_text(value), (px, top), xytext=(0, 3), ha="center",
                            textcoords="offset points", fontsize="x-small")
        values.extend(y[np.isfinite(y)])
    log = style.log_if_wide(ax, values)
    ax.set_ylim(top=max(values, default=1) * (5 if log else 1.15))
    ax.set_xticks(x, [style.backend_label(b, i) for i, b in enumerate(backends)])
    ax.set_xlim(-BAR_MARGIN, len(backends) - 1 + BAR_MARGIN)
    ax.set(xlabel="backend", ylabel="wall-clock time per call (ms" + (", log scale)" if log
                                                                    else ")"))
    ax.grid(alpha=0.3, axis="y")
    style.legend_below(fig, ax.get_legend_handles_labels()[0])
    return fig


class Point(NamedTuple):
    """One sweep point as the overview needs it."""
    label: str
    dtype: str
    backends: list[str]                   # reference first
    tolerance: float | None               # loss-curve tolerance


def _worst_drift(rows: pd.DataFrame, backends: list[str], floor: float) -> pd.Series:
    """Running maximum over steps of the largest relative loss drift of any backend."""
    drifts = [style.relative_drift(rows, b, backends[0]) for b in backends[1:]]
    if not drifts:
        return pd.Series(dtype=float)
    worst = pd.concat(drifts, axis=1).max(axis=1).clip(lower=floor)
    return pd.Series(np.maximum.accumulate(worst.to_numpy()), index=worst.index)


def _point_style(k: int) -> dict:
    """The k-th sweep point: its own colour and dash, and thinner than the points before
    it, so points whose curves coincide (a dtype sweep, say) stay visible."""
    return {"color": style.COLORS[k % len(style.COLORS)],
            "linestyle": ("-", *style.DASHES)[k % (1 + len(style.DASHES))],
            "linewidth": max(style.REF_WIDTH - POINT_THINNING * k, style.OTHER_WIDTH)}


def sweep_overview(steps: pd.DataFrame, points: list[Point], title: str) -> Figure:
    """The sweep points side by side: the reference's training loss (left) and the worst
    running loss drift of any other backend, against the tolerances (right)."""
    fig, (loss, gap) = style.new_figure(f"{title}: every sweep point", ncols=2)
    floor = min(style.drift_floor(p.dtype) for p in points)
    for k, p in enumerate(points):
        rows = steps[steps.variant == p.label]
        line = _point_style(k)
        ref = rows[rows.backend == p.backends[0]]
        loss.plot(ref.step, style.plottable(ref.loss), label=f"{p.label} ({p.dtype})", **line)
        worst = _worst_drift(rows, p.backends, floor)
        gap.plot(worst.index, worst, drawstyle="steps-post", **line)
    tolerances = sorted({p.tolerance for p in points if p.tolerance is not None})
    for j, tol in enumerate(tolerances):
        dtypes = ", ".join(sorted({p.dtype for p in points if p.tolerance == tol}))
        gap.axhline(tol, color=style.FAIL_COLOR, linestyle=style.DASHES[j % len(style.DASHES)],
                    linewidth=1, label=f"tolerance {dtypes} ({tol:.2g})")
    style.mark_ceiling(loss, steps.loss)
    style.log_if_wide(loss, style.plottable(steps.loss))
    loss.set(title="training loss, reference backend", xlabel="step (mini-batch update)",
             ylabel="loss on the mini-batch, before the update")
    gap.set_yscale("log")
    gap.set_ylim(top=max([gap.get_ylim()[1], *(t * style.HEADROOM for t in tolerances)]))
    gap.set(title="worst loss drift of any backend, running max",
            xlabel="step (mini-batch update)",
            ylabel=f"max |loss - loss_ref| / |loss_ref|\n(exactly 0 drawn at {floor:.0e})")
    for ax in (loss, gap):
        ax.grid(alpha=0.3)
    style.legend_below(fig, loss.get_legend_handles_labels()[0]
                       + gap.get_legend_handles_labels()[0])
    return fig
