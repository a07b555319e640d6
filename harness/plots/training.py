"""The figures of one run's training and gradient checks, as pure functions: tables in, a
matplotlib Figure out. Loss curves, loss drift against the reference, the gradient-error
heatmap and the per-layer gradient norms.

Nothing here reads or writes files or touches pyplot's global state: every figure is built
with the object-oriented API (`matplotlib.figure.Figure`), so drawing works headless, needs no
backend switch and leaves no figure open; `harness.plots.folder` decides where the images go. The
shared look (sizes, colours, backend styles) lives in `harness.plots.style`.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from harness.plots import style

FLOOR = 1e-18                         # where a gradient error of exactly 0 is drawn
EVENT_SIZE = 13
HEAT_ROW_INCHES = 0.45
HEAT_BASE_INCHES = 2.2
HEAT_CMAP = "viridis"
STEP_CMAP = "viridis"
STEP_CMAP_TOP = 0.85                  # stop before viridis' pale yellow end
RING_GROWTH = 0.7


def _mark_events(ax: Axes, steps: pd.DataFrame, events: pd.DataFrame,
                 backends: list[str]) -> None:
    """A big marker on each backend's curve where it diverged or stopped early."""
    for event, step, names in style.event_groups(events, backends):
        label = f"{event.replace('_', ' ')} at step {step}: {', '.join(names)}"
        for name in names:
            rows = steps[(steps.backend == name) & (steps.step <= step)]
            last = style.plottable(rows.loss).dropna()
            y = last.iloc[-1] if len(last) else np.nan
            ax.plot([step], [y], linestyle="none", marker=style.EVENT_MARKERS[event],
                    markersize=EVENT_SIZE, markeredgecolor="black", zorder=4, label=label,
                    color=style.COLORS[backends.index(name) % len(style.COLORS)])
            label = "_nolegend_"


def loss_curves(steps: pd.DataFrame, events: pd.DataFrame, backends: list[str],
                title: str) -> Figure:
    """Training loss at every step (left) and validation loss at every epoch end (right)."""
    has_val = "val_loss" in steps and steps.val_loss.notna().any()
    fig, axes = style.new_figure(f"{title}: loss curves", ncols=2 if has_val else 1)
    train, val = axes[0], axes[-1]
    for i, name in enumerate(backends):
        rows = steps[steps.backend == name]
        train.plot(rows.step, style.plottable(rows.loss), label=style.backend_label(name, i),
                   markevery=style.mark_every(len(rows), i, len(backends)),
                   **style.backend_style(i, i > 0))
        if has_val:
            ends = rows.dropna(subset=["val_loss"])
            val.plot(ends.step, style.plottable(ends.val_loss), label=style.backend_label(name, i),
                     **style.backend_style(i))
    _mark_events(train, steps, events, backends)
    style.mark_ceiling(train, steps.loss)
    style.log_if_wide(train, style.plottable(steps.loss))
    train.set(title="training loss, every step", xlabel="step (mini-batch update)",
              ylabel="loss on the mini-batch, before the update")
    if has_val:
        style.log_if_wide(val, style.plottable(steps.val_loss))
        val.set(title="validation loss, end of each epoch", xlabel="step (end of epoch)",
                ylabel="loss on the whole validation split")
    for ax in axes:
        ax.grid(alpha=0.3)
    style.legend_below(fig, train.get_legend_handles_labels()[0])
    return fig


def drift(steps: pd.DataFrame, events: pd.DataFrame, backends: list[str], dtype: str,
          tolerance: float | None, title: str) -> Figure:
    """Relative loss difference to the reference at every step (dots) and its running
    maximum (line), against the tolerance and the dtype's machine epsilon. The dtype is added
    to the title unless the title names it already."""
    named = "" if dtype in title else f" ({dtype})"
    fig, (ax,) = style.new_figure(f"{title}{named}: loss drift vs {backends[0]}")
    floor = style.drift_floor(dtype)
    top = floor
    for i, name in enumerate(backends[1:], start=1):
        rel = style.relative_drift(steps, name, backends[0]).clip(lower=floor)
        line = style.backend_style(i, markers=False)
        ax.plot(rel.index, rel, linestyle="none", marker=".", markersize=3, alpha=0.5,
                color=line["color"], label=f"{name} vs {backends[0]}, each step")
        ax.plot(rel.index, np.maximum.accumulate(rel), label=f"{name}: running maximum",
                drawstyle="steps-post", **line)
        top = max(top, float(rel.max()) if len(rel) else floor)
    eps = float(np.finfo(dtype).eps)
    ax.axhline(eps, color="black", linestyle=":", label=f"{dtype} machine epsilon ({eps:.1e})")
    if tolerance is not None:
        ax.axhline(tolerance, color=style.FAIL_COLOR, linestyle="--",
                   label=f"tolerance ({tolerance:.2g})")
        top = max(top, tolerance)
    ax.axhline(floor, color="gray", linewidth=0.8, label=f"identical (0), drawn at {floor:.0e}")
    for event, step, names in style.event_groups(events, backends):
        ax.axvline(step, color="gray", linestyle="-.",
                   label=f"{event.replace('_', ' ')} at step {step}: {', '.join(names)}")
    return style.finish_drift_axes(fig, ax, floor, top, eps,
                                   f"|loss - loss_{backends[0]}| / |loss_{backends[0]}|\n"
                                   f"(exactly 0 drawn at {floor:.0e})")


def parameter_order(names: list[str]) -> list[str]:
    """W0, b0, W1, b1, ...: input side first."""
    return sorted(names, key=lambda n: (int(n[1:]), n[0] != "W"))


STATES = ("ok", "unresolved", "fail")     # a cell's state: the worst of its rows


def error_matrix(gradients: pd.DataFrame, grad_tol: float | None = None,
                 fd_tol: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[bool]]:
    """Worst max_rel_err over the check steps: rows = tensors, columns = comparisons (backend
    pairs at the reference's parameters, then finite differences). NaN stays NaN (a failure).
    Also each cell's state (an index into STATES: every row judged against its own tolerance
    where the run recorded one, a raised one at an ill-conditioned point or the oracle's
    resolution, else the column's) and whether each column is a finite-difference one."""
    g = gradients[gradients.evaluated_at != "own"]
    fd = g.compared_to == "finite_differences"
    column = np.where(fd, g.backend + " vs finite diff.\n(" + g.evaluated_at + ")",
                      g.backend + " vs " + g.compared_to)
    base = pd.Series(np.where(fd, fd_tol or np.inf, grad_tol or np.inf), index=g.index)
    limit = g["tolerance"].fillna(base) if "tolerance" in g else base
    unresolved = (g["status"] == "unresolved") if "status" in g else False
    state = np.where(~(g.max_rel_err <= limit), 2, np.where(unresolved, 1, 0))
    cells = g.assign(column=column, state=state).groupby(["parameter", "column"], sort=False)
    worst = cells.max_rel_err.agg(lambda s: s.to_numpy(float).max()).unstack("column")
    states = cells.state.max().unstack("column")
    pairs = list(dict.fromkeys(column[~fd.to_numpy()]))
    oracle = list(dict.fromkeys(column[fd.to_numpy()]))
    order = parameter_order(list(worst.index))
    return (worst.loc[order, pairs + oracle], states.loc[order, pairs + oracle],
            [False] * len(pairs) + [True] * len(oracle))


def gradient_errors(gradients: pd.DataFrame, grad_tol: float | None, fd_tol: float | None,
                    title: str) -> Figure:
    """Heatmap of log10 worst relative gradient error, every cell annotated; cells over
    their tolerance (or NaN) are boxed in red and marked FAIL, cells the oracle could not
    resolve are boxed with a dashed line and marked UNRESOLVED."""
    worst, states, is_fd = error_matrix(gradients, grad_tol, fd_tol)
    height = max(style.HEIGHT * 0.75, HEAT_BASE_INCHES + HEAT_ROW_INCHES * len(worst))
    fig, (ax,) = style.new_figure(f"{title}: gradient error, worst over the check steps",
                                  height=height)
    err = worst.to_numpy(float)
    logs = np.log10(np.maximum(err, FLOOR))
    finite = logs[np.isfinite(logs)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (np.log10(FLOOR), 0.0)
    cmap = mpl.colormaps[HEAT_CMAP].with_extremes(bad="lightgray")
    image = ax.imshow(np.ma.masked_invalid(logs), cmap=cmap, aspect="auto", vmin=lo,
                      vmax=max(hi, lo + 1))
    tols = [fd_tol if f else grad_tol for f in is_fd]
    for (r, c), value in np.ndenumerate(err):
        state = STATES[int(states.iat[r, c])] if not np.isnan(value) else "fail"
        text = "NaN" if np.isnan(value) else "0" if value == 0 else f"{value:.1e}"
        shade = image.norm(logs[r, c]) if np.isfinite(logs[r, c]) else 1.0
        ax.text(c, r, text + ("" if state == "ok" else f"\n{state.upper()}"), ha="center",
                va="center", fontsize="small", color="white" if shade < 0.5 else "black")
        if state != "ok":
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False,
                                   edgecolor=style.FAIL_COLOR, linewidth=2.5,
                                   linestyle="-" if state == "fail" else "--"))
    ax.set_xticks(range(len(worst.columns)),
                  [f"{name}\ntol {t:.2g}" + (" or resolution" if fd else "")
                   if t is not None else name
                   for name, t, fd in zip(worst.columns, tols, is_fd, strict=True)],
                  fontsize="small")
    ax.set_yticks(range(len(worst.index)), list(worst.index))
    if any(is_fd) and not all(is_fd):
        ax.axvline(is_fd.index(True) - 0.5, color="white", linewidth=4)
    what = ["backend pairs, both evaluated at the reference backend's parameters"] * \
        (not all(is_fd)) + ["backends vs finite differences, in float64"] * any(is_fd)
    ax.set(xlabel="; ".join(what), ylabel="parameter tensor (W = weights, b = bias)")
    ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, edgecolor=style.FAIL_COLOR, linewidth=2.5,
                           label="over tolerance (FAIL)"))
    ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, edgecolor=style.FAIL_COLOR, linewidth=2.5,
                           linestyle="--", label="oracle cannot resolve (UNRESOLVED)"))
    fig.colorbar(image, ax=ax, label="log10(worst relative error), dimensionless")
    style.legend_below(fig, ax.get_legend_handles_labels()[0])
    return fig


def _ring_size(i: int) -> float:
    """Hollow markers grow with the backend's index, so coinciding points nest as rings."""
    return style.MARKER_SIZE * (1 + RING_GROWTH * i)


def grad_norms(norms: pd.DataFrame, backends: list[str], title: str,
               kinds: list[str] | None = None) -> Figure:
    """Per-layer L2 norm of the weight gradients, one line per check step: gradients that
    shrink towards the input side vanish. Other backends are hollow markers on the
    reference's line (they should coincide). `kinds` (each layer's type, from the summary)
    labels every tensor with its layer's type, "W0 conv2d"; pools and flatten have no weights
    and no point."""
    w = norms[norms.parameter.str.startswith("W") & (norms.norm > 0) & np.isfinite(norms.norm)]
    w = w.assign(layer=w.parameter.str[1:].astype(int))
    steps = sorted(w.step.unique())
    colors = mpl.colormaps[STEP_CMAP](np.linspace(0, STEP_CMAP_TOP, len(steps)))
    fig, (ax,) = style.new_figure(
        f"{title}: per-layer gradient norm (vanishing / exploding gradients)")
    for step, color in zip(steps, colors, strict=True):
        for i, name in enumerate(backends):
            rows = w[(w.backend == name) & (w.step == step)].sort_values("layer")
            line = style.backend_style(i) | {"color": color}
            if i > 0:
                line |= {"linestyle": "none", "markersize": _ring_size(i)}
            ax.plot(rows.layer, rows.norm, **line)
    handles = [Line2D([], [], color=c, linewidth=style.REF_WIDTH, label=f"step {s}")
               for s, c in zip(steps, colors, strict=True)]
    handles += [Line2D([], [], **(style.backend_style(i) | {"color": "gray"} |
                                  ({"linestyle": "none", "markersize": _ring_size(i)} if i
                                   else {})),
                       label=style.backend_label(name, i)) for i, name in enumerate(backends)]
    layers = sorted(w.layer.unique())
    ax.set_xticks(layers, [f"W{k}" + (f"\n{kinds[k]}" if kinds and k < len(kinds) else "")
                           for k in layers])
    ax.set_xlim(min(layers, default=0) - 0.5, max(layers, default=0) + 0.5)
    ax.set_yscale("log")
    ax.set(xlabel="layer (weight tensor; W0 is next to the input)",
           ylabel="‖∂loss/∂W‖₂, L2 norm of the gradient (log scale)")
    ax.grid(alpha=0.3)
    style.legend_below(fig, handles)
    return fig
