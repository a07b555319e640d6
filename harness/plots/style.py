"""What every figure of a results folder shares: sizes, colours, line styles, and the small
helpers that build a figure, its legend and its axes, the run events the figures mark, and
the loss-drift measure that both the per-run drift figure and the sweep overview draw.

Held apart from the figures themselves so that every figure module draws backends the same
way and every number is written once. Backends are drawn in the order they ran, reference
first: the reference as a thick solid line, every other backend as a thinner dashed or dotted
line with hollow markers on top of it, so curves that agree to the last bit still show as one
line running inside another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness import escape
from harness.verify import verdict

WIDTH = 11.0                          # inches: about 1100 px at the saved resolution
HEIGHT = 4.8
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:olive")
DASHES = ("--", ":", "-.")            # non-reference backends, in turn
MARKERS = ("s", "^", "D", "v", "P")   # non-reference backends, in turn (hollow)
REF_WIDTH = 3.2
OTHER_WIDTH = 1.4
MARKER_SIZE = 6
MARKS_PER_CURVE = 12                  # markers along a curve of many points
LOG_SPAN = 100.0                      # log y axis once the data span more than two decades
FLOOR_BELOW_EPS = 100                 # a loss drift of exactly 0 is drawn this far below the
                                      # dtype's epsilon (rounded to a decade): 1e-18 in float64
CEILING = 1e100                       # larger losses (a run blowing up) are drawn at this value:
                                      # log axes beyond ~1e300 overflow matplotlib's tick maths
FAIL_COLOR = "red"
LEGEND_COLUMNS = 3
HEADROOM = 30.0                       # log axes reach this factor above a tolerance line
EVENT_MARKERS = {"diverged": "X", "early_stopped": "P"}  # the run events figures mark


def backend_style(i: int, markers: bool = True) -> dict:
    """Line style of the i-th backend (0 = reference): see the module docstring."""
    if i == 0:
        return {"color": COLORS[0], "linestyle": "-", "linewidth": REF_WIDTH, "zorder": 2,
                "marker": "o" if markers else None, "markersize": MARKER_SIZE}
    return {"color": COLORS[i % len(COLORS)], "linestyle": DASHES[(i - 1) % len(DASHES)],
            "linewidth": OTHER_WIDTH, "zorder": 3, "markersize": MARKER_SIZE,
            "marker": MARKERS[(i - 1) % len(MARKERS)] if markers else None,
            "markerfacecolor": "none", "markeredgewidth": OTHER_WIDTH}


def literal(text: str) -> str:
    """Text from a file as a figure shows it: control characters written out (`\\x1b`),
    line breaks kept (the figures' own labels use them)."""
    return "\n".join(escape.terminal(line) for line in str(text).split("\n"))


def plain_log_ticks(fig: Figure) -> None:
    """Log axes' tick labels as plain text (1e-06): matplotlib writes them as mathtext
    (`$\\mathdefault{10^{-6}}$`), which the folder's figures, drawn with mathtext off so
    that labels from files stay literal, would show as its source."""
    plain = FuncFormatter(lambda v, _: f"{v:.0e}" if v > 0 else "0")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(NullFormatter())


def backend_label(name: str, i: int) -> str:
    """A backend's name in legends and on axes, the reference marked as such."""
    return literal(f"{name} (reference)" if i == 0 else name)


def new_figure(title: str, ncols: int = 1, height: float = HEIGHT) -> tuple[Figure, list[Axes]]:
    """A full-width figure of `ncols` axes side by side, titled, laid out to fit its legend."""
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    fig.suptitle(title)
    return fig, axes


def legend_below(fig: Figure, handles: list) -> None:
    """One legend below the plotting area: it never hides data or collides with the title."""
    fig.legend(handles=handles, loc="outside lower center", fontsize="small",
               ncols=min(LEGEND_COLUMNS, len(handles)))


def log_if_wide(ax: Axes, values: pd.Series | np.ndarray) -> bool:
    """Log y axis when the positive finite values span more than LOG_SPAN."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    wide = v.size > 0 and v.min() > 0 and v.max() / v.min() > LOG_SPAN
    if wide:
        ax.set_yscale("log")
    return wide


def mark_every(n: int, i: int, count: int) -> tuple[int, int]:
    """markevery for backend i of `count`: a few markers per curve, staggered between
    backends so identical curves do not stack their markers."""
    every = max(1, n // MARKS_PER_CURVE)
    return (i * every // max(count, 1)) % every, every


def plottable(values: pd.Series) -> pd.Series:
    """NaN/Inf left out (matplotlib leaves a gap), huge values clipped to CEILING."""
    return values.where(np.isfinite(values)).clip(upper=CEILING)


def mark_ceiling(ax: Axes, values: pd.Series) -> None:
    """A line, with a legend entry, where losses above CEILING are drawn."""
    if (values[np.isfinite(values)] > CEILING).any():
        ax.axhline(CEILING, color="gray", linewidth=0.8,
                   label=f"values above {CEILING:.0e} drawn at {CEILING:.0e}")


def event_groups(events: pd.DataFrame, backends: list[str]) -> list[tuple[str, int, list[str]]]:
    """(event, step, backends) for every divergence / early stop, backends grouped by step."""
    if events.empty:
        return []
    e = events[events.event.isin(EVENT_MARKERS) & events.backend.isin(backends)]
    return [(event, int(step), sorted(g.backend, key=backends.index))
            for (event, step), g in e.groupby(["event", "step"], sort=True)]


def drift_floor(dtype: str) -> float:
    """Where a loss drift of exactly 0 is drawn: two decades below the dtype's epsilon."""
    return 10.0 ** np.floor(np.log10(np.finfo(dtype).eps)) / FLOOR_BELOW_EPS


def finish_drift_axes(fig: Figure, ax: Axes, floor: float, top: float, eps: float,
                      ylabel: str) -> Figure:
    """A loss-drift axes' common end: log y from below the drawn-zero floor to above the
    largest of the curves and machine epsilon, the step axis, grid and legend below."""
    ax.set_yscale("log")
    ax.set_ylim(floor / 10, max(top, eps) * HEADROOM)
    ax.set(xlabel="step (mini-batch update)", ylabel=ylabel)
    ax.grid(alpha=0.3)
    legend_below(fig, ax.get_legend_handles_labels()[0])
    return fig


def relative_drift(steps: pd.DataFrame, backend: str, reference: str) -> pd.Series:
    """|loss - loss_ref| / |loss_ref| at every step where both losses are finite."""
    a = steps[steps.backend == backend].set_index("step").loss
    b = steps[steps.backend == reference].set_index("step").loss
    common = a.index.intersection(b.index)
    a, b = a[common].to_numpy(float), b[common].to_numpy(float)
    ok = np.isfinite(a) & np.isfinite(b)
    return pd.Series(verdict.loss_drift(a[ok], b[ok]), index=common[ok])
