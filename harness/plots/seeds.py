"""The figures of a seed sweep, as pure functions of `harness.stats`' tables: how each check's
error is spread over the seeds (a box and every seed as a dot, against the tolerance, the
worst seed named), and how the loss drift from the reference grows over the steps (the median
over the seeds as a line in a 5-95 % band).

Like the other figure modules, nothing here reads or writes files or touches pyplot's global
state; the shared look lives in `harness.plots.style`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness import escape
from harness.plots import style

# Not drawn as an error spread: early_stop's "error" is the spread of the stop steps.
NOT_ERRORS = ("early_stop",)
CHECKS_PER_ROW = 4
JITTER = 0.12                         # half-width of the seeds' dots around their box
BOX_WIDTH = 0.5
BAND_ALPHA = 0.25


def _axes_grid(title: str, n: int) -> tuple[Figure, list[Axes]]:
    """A full-width figure of n axes, CHECKS_PER_ROW to a row, titled."""
    rows = max(1, math.ceil(n / CHECKS_PER_ROW))
    cols = min(max(n, 1), CHECKS_PER_ROW)
    fig = Figure(figsize=(style.WIDTH, style.HEIGHT * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n]


def _offsets(n: int) -> np.ndarray:
    """Fixed, evenly spread x offsets for n dots (a figure redrawn is the same figure)."""
    return np.linspace(-JITTER, JITTER, n) if n > 1 else np.zeros(n)


def zero_floor(errors: pd.Series, dtype: str) -> float:
    """Where an error of exactly 0 is drawn: the dtype's floor (`style.drift_floor`), or a
    decade below the smallest positive error when one is smaller (the oracle's errors are
    float64's even in a float32 run)."""
    positive = errors[np.isfinite(errors) & (errors > 0)]
    floor = style.drift_floor(dtype)
    if positive.empty:
        return floor
    return min(floor, 10.0 ** (np.floor(np.log10(positive.min())) - 1))


def check_spread(errors: pd.DataFrame, stats: pd.DataFrame, dtype: str, title: str) -> Figure:
    """Per check (one axes each), per backend pair: a box of the worst error over the seeds,
    every seed as a dot, the pair's tolerance as a dashed red segment and the worst seed
    named; log y, an error of exactly 0 drawn below all others (`zero_floor`). `errors` and
    `stats` are one group's `stats.check_errors` / `stats.check_stats` rows."""
    shown = [c for c in dict.fromkeys(errors.check) if c not in NOT_ERRORS]
    fig, axes = _axes_grid(f"{title}: errors over {errors.seed.nunique()} seeds ({dtype})",
                           len(shown))
    floor = zero_floor(errors.worst, dtype)
    for ax, check in zip(axes, shown, strict=True):
        mine = errors[errors.check == check]
        pairs = list(dict.fromkeys(zip(mine.backend, mine.compared_to, strict=True)))
        for x, (backend, ref) in enumerate(pairs):
            e = mine[(mine.backend == backend) & (mine.compared_to == ref)]
            y = style.plottable(e.worst).where(e.worst != 0, floor).to_numpy(float)
            drawn = y[np.isfinite(y)]
            if drawn.size:
                ax.boxplot(drawn, positions=[x], widths=BOX_WIDTH, showfliers=False)
            failed = (e.status == "fail").to_numpy()
            ax.scatter(x + _offsets(len(y))[~failed], y[~failed], s=12, alpha=0.6,
                       color=style.COLORS[0], zorder=3)
            ax.scatter(x + _offsets(len(y))[failed], y[failed], s=18, marker="x",
                       color=style.FAIL_COLOR, zorder=4)
            s = stats[(stats.check == check) & (stats.backend == backend) &
                      (stats.compared_to == ref)].iloc[0]
            ax.hlines(s.tolerance, x - BOX_WIDTH, x + BOX_WIDTH, colors=style.FAIL_COLOR,
                      linestyles="--")
            if pd.notna(s.worst_seed) and np.isfinite(s.worst):
                ax.annotate(f"seed {s.worst_seed}", (x, max(s.worst, floor)), fontsize="x-small",
                            xytext=(4, 4), textcoords="offset points")
        refs = {r for _, r in pairs}
        common = f" (vs {escape.terminal(next(iter(refs)))})" if len(refs) == 1 else ""
        ax.set_xticks(range(len(pairs)), [escape.terminal(b) + ("" if common else f"\nvs "
                                          f"{escape.terminal(r)}") for b, r in pairs],
                      fontsize="small")
        ax.set_xlim(-0.5 - BOX_WIDTH / 2, len(pairs) - 0.5 + BOX_WIDTH / 2)
        ax.axhline(floor, color="gray", linewidth=0.8)         # identical (0)
        ax.set_yscale("log")
        ax.set_title(f"{check.replace('_', ' ')}{common}", fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
    if axes:
        axes[0].set_ylabel(f"worst relative error\n(exactly 0 drawn at {floor:.0e};\n"
                           "red dashes: tolerance, x: a failing seed)")
    return fig


def drift_bands(bands: pd.DataFrame, backends: list[str], dtype: str, title: str) -> Figure:
    """Per backend, the running-worst loss drift from the reference over the steps: the
    median over the seeds as a line, the 5-95 % band shaded; log y, against the dtype's
    machine epsilon. `bands` is one group's `stats.drift_bands`; `backends` gives the
    order (and colour) of each backend, the reference first."""
    ref = backends[0] if backends else ""
    fig, (ax,) = style.new_figure(f"{title}: loss drift vs {escape.terminal(ref)} over seeds "
                                  f"({dtype})")
    floor = style.drift_floor(dtype)
    top = floor
    for i, name in enumerate(backends[1:], start=1):
        b = bands[bands.backend == name].sort_values("step")
        if b.empty:
            continue
        low, mid, high = (style.plottable(b[q]).clip(lower=floor) for q in ("q05", "q50", "q95"))
        line = style.backend_style(i, markers=False)
        ax.fill_between(b.step, low, high, color=line["color"], alpha=BAND_ALPHA, step="post",
                        label=f"{escape.terminal(name)}: 5-95 % of seeds")
        ax.plot(b.step, mid, drawstyle="steps-post",
                label=f"{escape.terminal(name)}: median over seeds", **line)
        top = max(top, float(high.max()) if high.notna().any() else floor)
    eps = float(np.finfo(dtype).eps)
    ax.axhline(eps, color="black", linestyle=":", label=f"{dtype} machine epsilon ({eps:.1e})")
    ax.axhline(floor, color="gray", linewidth=0.8, label=f"identical (0), drawn at {floor:.0e}")
    return style.finish_drift_axes(fig, ax, floor, top, eps,
                                   "running worst |loss - loss_ref| / |loss_ref|\n"
                                   f"(exactly 0 drawn at {floor:.0e})")
