"""The figures of a results folder, as pure functions: tables in, a matplotlib Figure out.

Nothing here reads or writes files or touches pyplot's global state: every figure is built
with the object-oriented API (`matplotlib.figure.Figure`), so drawing works headless, needs no
backend switch and leaves no figure open; `harness.plots` decides where the images go.

Backends are drawn in the order they ran, reference first: the reference as a thick solid
line, every other backend as a thinner dashed or dotted line with hollow markers on top of it,
so curves that agree to the last bit still show as one line running inside another.
"""

from __future__ import annotations

from typing import NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from harness import compare

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
FLOOR = 1e-18                         # where a gradient error of exactly 0 is drawn
FLOOR_BELOW_EPS = 100                 # a loss drift of exactly 0 is drawn this far below the
                                      # dtype's epsilon (rounded to a decade): 1e-18 in float64
CEILING = 1e100                       # larger losses (a run blowing up) are drawn at this value:
                                      # log axes beyond ~1e300 overflow matplotlib's tick maths
EVENT_MARKERS = {"diverged": "X", "early_stopped": "P"}
EVENT_SIZE = 13
HEAT_ROW_INCHES = 0.45
HEAT_BASE_INCHES = 2.2
HEAT_CMAP = "viridis"
FAIL_COLOR = "red"
STEP_CMAP = "viridis"
STEP_CMAP_TOP = 0.85                  # stop before viridis' pale yellow end
BAR_WIDTH = 0.26
BAR_MARGIN = 0.75                     # x-axis room beside the outer bar groups
PHASES = {  # phase -> (legend label, face colour, hatch)
    "step": ("training step: median, error bar = interquartile range", "tab:blue", ""),
    "first_step": ("first step (warm-up / compilation)", "tab:orange", "//"),
    "setup": ("setup (build backend, load parameters)", "tab:gray", ".."),
}
MS_PER_S = 1e3
LEGEND_COLUMNS = 3
RING_GROWTH = 0.7
HEADROOM = 30.0                       # log axes reach this factor above a tolerance line
POINT_THINNING = 0.6                  # line width lost per sweep point in the overview


def backend_style(i: int, markers: bool = True) -> dict:
    """Line style of the i-th backend (0 = reference): see the module docstring."""
    if i == 0:
        return {"color": COLORS[0], "linestyle": "-", "linewidth": REF_WIDTH, "zorder": 2,
                "marker": "o" if markers else None, "markersize": MARKER_SIZE}
    return {"color": COLORS[i % len(COLORS)], "linestyle": DASHES[(i - 1) % len(DASHES)],
            "linewidth": OTHER_WIDTH, "zorder": 3, "markersize": MARKER_SIZE,
            "marker": MARKERS[(i - 1) % len(MARKERS)] if markers else None,
            "markerfacecolor": "none", "markeredgewidth": OTHER_WIDTH}


def backend_label(name: str, i: int) -> str:
    return f"{name} (reference)" if i == 0 else name


def _figure(title: str, ncols: int = 1, height: float = HEIGHT) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    fig.suptitle(title)
    return fig, axes


def _legend(fig: Figure, handles: list) -> None:
    """One legend below the plotting area: it never hides data or collides with the title."""
    fig.legend(handles=handles, loc="outside lower center", fontsize="small",
               ncols=min(LEGEND_COLUMNS, len(handles)))


def _log_if_wide(ax: Axes, values: pd.Series | np.ndarray) -> bool:
    """Log y axis when the positive finite values span more than LOG_SPAN."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    wide = v.size > 0 and v.min() > 0 and v.max() / v.min() > LOG_SPAN
    if wide:
        ax.set_yscale("log")
    return wide


def _every(n: int, i: int, count: int) -> tuple[int, int]:
    """markevery for backend i of `count`: a few markers per curve, staggered between
    backends so identical curves do not stack their markers."""
    every = max(1, n // MARKS_PER_CURVE)
    return (i * every // max(count, 1)) % every, every


def _plottable(values: pd.Series) -> pd.Series:
    """NaN/Inf left out (matplotlib leaves a gap), huge values clipped to CEILING."""
    return values.where(np.isfinite(values)).clip(upper=CEILING)


def _mark_ceiling(ax: Axes, values: pd.Series) -> None:
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


def _mark_events(ax: Axes, steps: pd.DataFrame, events: pd.DataFrame,
                 backends: list[str]) -> None:
    """A big marker on each backend's curve where it diverged or stopped early."""
    for event, step, names in event_groups(events, backends):
        label = f"{event.replace('_', ' ')} at step {step}: {', '.join(names)}"
        for name in names:
            rows = steps[(steps.backend == name) & (steps.step <= step)]
            last = _plottable(rows.loss).dropna()
            y = last.iloc[-1] if len(last) else np.nan
            ax.plot([step], [y], linestyle="none", marker=EVENT_MARKERS[event],
                    markersize=EVENT_SIZE, color=COLORS[backends.index(name) % len(COLORS)],
                    markeredgecolor="black", zorder=4, label=label)
            label = "_nolegend_"


def loss_curves(steps: pd.DataFrame, events: pd.DataFrame, backends: list[str],
                title: str) -> Figure:
    """Training loss at every step (left) and validation loss at every epoch end (right)."""
    has_val = "val_loss" in steps and steps.val_loss.notna().any()
    fig, axes = _figure(f"{title}: loss curves", ncols=2 if has_val else 1)
    train, val = axes[0], axes[-1]
    for i, name in enumerate(backends):
        rows = steps[steps.backend == name]
        train.plot(rows.step, _plottable(rows.loss), label=backend_label(name, i),
                   markevery=_every(len(rows), i, len(backends)), **backend_style(i, i > 0))
        if has_val:
            ends = rows.dropna(subset=["val_loss"])
            val.plot(ends.step, _plottable(ends.val_loss), label=backend_label(name, i),
                     **backend_style(i))
    _mark_events(train, steps, events, backends)
    _mark_ceiling(train, steps.loss)
    _log_if_wide(train, _plottable(steps.loss))
    train.set(title="training loss, every step", xlabel="step (mini-batch update)",
              ylabel="loss on the mini-batch, before the update")
    if has_val:
        _log_if_wide(val, _plottable(steps.val_loss))
        val.set(title="validation loss, end of each epoch", xlabel="step (end of epoch)",
                ylabel="loss on the whole validation split")
    for ax in axes:
        ax.grid(alpha=0.3)
    _legend(fig, train.get_legend_handles_labels()[0])
    return fig


def drift_floor(dtype: str) -> float:
    """Where a loss drift of exactly 0 is drawn: two decades below the dtype's epsilon."""
    return 10.0 ** np.floor(np.log10(np.finfo(dtype).eps)) / FLOOR_BELOW_EPS


def relative_drift(steps: pd.DataFrame, backend: str, reference: str) -> pd.Series:
    """|loss - loss_ref| / |loss_ref| at every step where both losses are finite."""
    a = steps[steps.backend == backend].set_index("step").loss
    b = steps[steps.backend == reference].set_index("step").loss
    common = a.index.intersection(b.index)
    a, b = a[common].to_numpy(float), b[common].to_numpy(float)
    ok = np.isfinite(a) & np.isfinite(b)
    return pd.Series(compare.loss_drift(a[ok], b[ok]), index=common[ok])


def drift(steps: pd.DataFrame, events: pd.DataFrame, backends: list[str], dtype: str,
          tolerance: float | None, title: str) -> Figure:
    """Relative loss difference to the reference at every step (dots) and its running
    maximum (line), against the tolerance and the dtype's machine epsilon. The dtype is added
    to the title unless the title names it already."""
    named = "" if dtype in title else f" ({dtype})"
    fig, (ax,) = _figure(f"{title}{named}: loss drift vs {backends[0]}")
    floor = drift_floor(dtype)
    top = floor
    for i, name in enumerate(backends[1:], start=1):
        rel = relative_drift(steps, name, backends[0]).clip(lower=floor)
        style = backend_style(i, markers=False)
        ax.plot(rel.index, rel, linestyle="none", marker=".", markersize=3, alpha=0.5,
                color=style["color"], label=f"{name} vs {backends[0]}, each step")
        ax.plot(rel.index, np.maximum.accumulate(rel), label=f"{name}: running maximum",
                drawstyle="steps-post", **style)
        top = max(top, float(rel.max()) if len(rel) else floor)
    eps = float(np.finfo(dtype).eps)
    ax.axhline(eps, color="black", linestyle=":", label=f"{dtype} machine epsilon ({eps:.1e})")
    if tolerance is not None:
        ax.axhline(tolerance, color=FAIL_COLOR, linestyle="--",
                   label=f"tolerance ({tolerance:.2g})")
        top = max(top, tolerance)
    ax.axhline(floor, color="gray", linewidth=0.8, label=f"identical (0), drawn at {floor:.0e}")
    for event, step, names in event_groups(events, backends):
        ax.axvline(step, color="gray", linestyle="-.",
                   label=f"{event.replace('_', ' ')} at step {step}: {', '.join(names)}")
    ax.set_yscale("log")
    ax.set_ylim(floor / 10, max(top, eps) * HEADROOM)
    ax.set(xlabel="step (mini-batch update)",
           ylabel=f"|loss - loss_{backends[0]}| / |loss_{backends[0]}|\n"
                  f"(exactly 0 drawn at {floor:.0e})")
    ax.grid(alpha=0.3)
    _legend(fig, ax.get_legend_handles_labels()[0])
    return fig


def parameter_order(names: list[str]) -> list[str]:
    """W0, b0, W1, b1, ...: input side first."""
    return sorted(names, key=lambda n: (int(n[1:]), n[0] != "W"))


def error_matrix(gradients: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """Worst max_rel_err over the check steps: rows = tensors, columns = comparisons (backend
    pairs at the reference's parameters, then finite differences). NaN stays NaN (a failure).
    Also whether each column is a finite-difference one."""
    g = gradients[gradients.evaluated_at != "own"]
    fd = g.compared_to == "finite_differences"
    column = np.where(fd, g.backend + " vs finite diff.\n(" + g.evaluated_at + ")",
                      g.backend + " vs " + g.compared_to)
    worst = (g.assign(column=column).groupby(["parameter", "column"], sort=False)
             .max_rel_err.agg(lambda s: s.to_numpy(float).max()).unstack("column"))
    pairs = list(dict.fromkeys(column[~fd.to_numpy()]))
    oracle = list(dict.fromkeys(column[fd.to_numpy()]))
    return (worst.loc[parameter_order(list(worst.index)), pairs + oracle],
            [False] * len(pairs) + [True] * len(oracle))


def gradient_errors(gradients: pd.DataFrame, grad_tol: float | None, fd_tol: float | None,
                    title: str) -> Figure:
    """Heatmap of log10 worst relative gradient error, every cell annotated; cells over
    their column's tolerance (or NaN) are boxed in red and marked FAIL."""
    worst, is_fd = error_matrix(gradients)
    height = max(HEIGHT * 0.75, HEAT_BASE_INCHES + HEAT_ROW_INCHES * len(worst))
    fig, (ax,) = _figure(f"{title}: gradient error, worst over the check steps", height=height)
    err = worst.to_numpy(float)
    logs = np.log10(np.maximum(err, FLOOR))
    finite = logs[np.isfinite(logs)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (np.log10(FLOOR), 0.0)
    cmap = mpl.colormaps[HEAT_CMAP].with_extremes(bad="lightgray")
    image = ax.imshow(np.ma.masked_invalid(logs), cmap=cmap, aspect="auto", vmin=lo,
                      vmax=max(hi, lo + 1))
    tols = [fd_tol if f else grad_tol for f in is_fd]
    for (r, c), value in np.ndenumerate(err):
        tol = tols[c]
        failed = np.isnan(value) or (tol is not None and value > tol)
        text = "NaN" if np.isnan(value) else "0" if value == 0 else f"{value:.1e}"
        shade = image.norm(logs[r, c]) if np.isfinite(logs[r, c]) else 1.0
        ax.text(c, r, text + ("\nFAIL" if failed else ""), ha="center", va="center",
                fontsize="small", color="white" if shade < 0.5 else "black")
        if failed:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False,
                                   edgecolor=FAIL_COLOR, linewidth=2.5))
    ax.set_xticks(range(len(worst.columns)),
                  [f"{name}\ntol {t:.2g}" if t is not None else name
                   for name, t in zip(worst.columns, tols, strict=True)], fontsize="small")
    ax.set_yticks(range(len(worst.index)), list(worst.index))
    if any(is_fd) and not all(is_fd):
        ax.axvline(is_fd.index(True) - 0.5, color="white", linewidth=4)
    what = ["backend pairs, both evaluated at the reference backend's parameters"] * \
        (not all(is_fd)) + ["backends vs finite differences, in float64"] * any(is_fd)
    ax.set(xlabel="; ".join(what), ylabel="parameter tensor (W = weights, b = bias)")
    ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, edgecolor=FAIL_COLOR, linewidth=2.5,
                           label="over tolerance (FAIL)"))
    fig.colorbar(image, ax=ax, label="log10(worst relative error), dimensionless")
    _legend(fig, ax.get_legend_handles_labels()[0])
    return fig


def _ring_size(i: int) -> float:
    """Hollow markers grow with the backend's index, so coinciding points nest as rings."""
    return MARKER_SIZE * (1 + RING_GROWTH * i)


def grad_norms(norms: pd.DataFrame, backends: list[str], title: str) -> Figure:
    """Per-layer L2 norm of the weight gradients, one line per check step: gradients that
    shrink towards the input side vanish. Other backends are hollow markers on the
    reference's line (they should coincide)."""
    w = norms[norms.parameter.str.startswith("W") & (norms.norm > 0) & np.isfinite(norms.norm)]
    w = w.assign(layer=w.parameter.str[1:].astype(int))
    steps = sorted(w.step.unique())
    colors = mpl.colormaps[STEP_CMAP](np.linspace(0, STEP_CMAP_TOP, len(steps)))
    fig, (ax,) = _figure(f"{title}: per-layer gradient norm (vanishing / exploding gradients)")
    for step, color in zip(steps, colors, strict=True):
        for i, name in enumerate(backends):
            rows = w[(w.backend == name) & (w.step == step)].sort_values("layer")
            style = backend_style(i) | {"color": color}
            if i > 0:
                style |= {"linestyle": "none", "markersize": _ring_size(i)}
            ax.plot(rows.layer, rows.norm, **style)
    handles = [Line2D([], [], color=c, linewidth=REF_WIDTH, label=f"step {s}")
               for s, c in zip(steps, colors, strict=True)]
    handles += [Line2D([], [], **(backend_style(i) | {"color": "gray"} |
                                  ({"linestyle": "none", "markersize": _ring_size(i)} if i
                                   else {})),
                       label=backend_label(name, i)) for i, name in enumerate(backends)]
    layers = sorted(w.layer.unique())
    ax.set_xticks(layers, [f"W{k}" for k in layers])
    ax.set_xlim(min(layers, default=0) - 0.5, max(layers, default=0) + 0.5)
    ax.set_yscale("log")
    ax.set(xlabel="layer (weight tensor; W0 is next to the input)",
           ylabel="‖∂loss/∂W‖₂, L2 norm of the gradient (log scale)")
    ax.grid(alpha=0.3)
    _legend(fig, handles)
    return fig


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
    fig, (ax,) = _figure(f"{title}: time per call")
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
    log = _log_if_wide(ax, values)
    ax.set_ylim(top=max(values, default=1) * (5 if log else 1.15))
    ax.set_xticks(x, [backend_label(b, i) for i, b in enumerate(backends)])
    ax.set_xlim(-BAR_MARGIN, len(backends) - 1 + BAR_MARGIN)
    ax.set(xlabel="backend", ylabel="wall-clock time per call (ms" + (", log scale)" if log
                                                                    else ")"))
    ax.grid(alpha=0.3, axis="y")
    _legend(fig, ax.get_legend_handles_labels()[0])
    return fig


class Point(NamedTuple):
    """One sweep point as the overview needs it."""
    label: str
    dtype: str
    backends: list[str]                   # reference first
    tolerance: float | None               # loss-curve tolerance


def _worst_drift(rows: pd.DataFrame, backends: list[str], floor: float) -> pd.Series:
    """Running maximum over steps of the largest relative loss drift of any backend."""
    drifts = [relative_drift(rows, b, backends[0]) for b in backends[1:]]
    if not drifts:
        return pd.Series(dtype=float)
    worst = pd.concat(drifts, axis=1).max(axis=1).clip(lower=floor)
    return pd.Series(np.maximum.accumulate(worst.to_numpy()), index=worst.index)


def _point_style(k: int) -> dict:
    """The k-th sweep point: its own colour and dash, and thinner than the points before
    it, so points whose curves coincide (a dtype sweep, say) stay visible."""
    return {"color": COLORS[k % len(COLORS)], "linestyle": ("-", *DASHES)[k % (1 + len(DASHES))],
            "linewidth": max(REF_WIDTH - POINT_THINNING * k, OTHER_WIDTH)}


def sweep_overview(steps: pd.DataFrame, points: list[Point], title: str) -> Figure:
    """The sweep points side by side: the reference's training loss (left) and the worst
    running loss drift of any other backend, against the tolerances (right)."""
    fig, (loss, gap) = _figure(f"{title}: every sweep point", ncols=2)
    floor = min(drift_floor(p.dtype) for p in points)
    for k, p in enumerate(points):
        rows = steps[steps.variant == p.label]
        style = _point_style(k)
        ref = rows[rows.backend == p.backends[0]]
        loss.plot(ref.step, _plottable(ref.loss), label=f"{p.label} ({p.dtype})", **style)
        worst = _worst_drift(rows, p.backends, floor)
        gap.plot(worst.index, worst, drawstyle="steps-post", **style)
    tolerances = sorted({p.tolerance for p in points if p.tolerance is not None})
    for j, tol in enumerate(tolerances):
        dtypes = ", ".join(sorted({p.dtype for p in points if p.tolerance == tol}))
        gap.axhline(tol, color=FAIL_COLOR, linestyle=DASHES[j % len(DASHES)], linewidth=1,
                    label=f"tolerance {dtypes} ({tol:.2g})")
    _mark_ceiling(loss, steps.loss)
    _log_if_wide(loss, _plottable(steps.loss))
    loss.set(title="training loss, reference backend", xlabel="step (mini-batch update)",
             ylabel="loss on the mini-batch, before the update")
    gap.set_yscale("log")
    gap.set_ylim(top=max([gap.get_ylim()[1], *(t * HEADROOM for t in tolerances)]))
    gap.set(title="worst loss drift of any backend, running max",
            xlabel="step (mini-batch update)",
            ylabel=f"max |loss - loss_ref| / |loss_ref|\n(exactly 0 drawn at {floor:.0e})")
    for ax in (loss, gap):
        ax.grid(alpha=0.3)
    _legend(fig, loss.get_legend_handles_labels()[0] + gap.get_legend_handles_labels()[0])
    return fig
