"""The diagnosis figure: for each backend that disagrees, every quantity compared at the step
where its disagreement starts, phase by phase in the order the diagnosis reads them, as its
error over its tolerance. Bars past 1 failed; the first of them (outlined) is where the
disagreement starts. A pure function: tables in, a Figure out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.plots import style
from harness.verify.diagnose import relevant
from harness.verify.phases import PHASES, order

FLOOR = 1e-6                          # an error of 0 is drawn at this fraction of its tolerance
BAR_INCHES = 0.22
BASE_INCHES = 1.6
PHASE_COLORS = dict(zip(PHASES, ("tab:gray", "tab:blue", "tab:purple", "tab:green",
                                 "tab:orange", "tab:brown"), strict=True))


def _rows_at(phases: pd.DataFrame, backend: str, backends: list[str], step: int) -> pd.DataFrame:
    """The rows that explain `backend` at `step`, in the diagnosis' reading order (the
    reference's own judged rows only where they failed)."""
    rows = relevant(phases, backend, backends[0])
    rows = rows[(rows.step == step) & ((rows.backend == backend) | (rows.status != "ok"))]
    keys = [(PHASES.index(r.phase), order(r.phase, r.tensor), r.backend != backend)
            for r in rows.itertuples()]
    return rows.iloc[sorted(range(len(keys)), key=keys.__getitem__)]


def _ratio(rows: pd.DataFrame) -> np.ndarray:
    """Error over tolerance; an exact tolerance (0) makes any error infinitely over it."""
    err, limit = rows.max_rel_err.to_numpy(float), rows.tolerance.to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(limit > 0, err / np.where(limit > 0, limit, 1.0),
                         np.where(err > 0, np.inf, 0.0))
    return np.clip(np.nan_to_num(ratio, nan=np.inf, posinf=style.CEILING), FLOOR, style.CEILING)


def diagnosis(phases: pd.DataFrame, found: dict[str, dict], backends: list[str],
              title: str) -> Figure:
    """One panel per diagnosed backend (those with a step)."""
    named = {b: d for b, d in found.items() if d.get("step") is not None}
    panels = [(b, d, _rows_at(phases, b, backends, d["step"])) for b, d in named.items()]
    height = BASE_INCHES + BAR_INCHES * max(len(rows) for _, _, rows in panels)
    fig, axes = style.new_figure(title, ncols=len(panels), height=height)
    for ax, (backend, d, rows) in zip(axes, panels, strict=True):
        ratio = _ratio(rows)
        labels = [f"{r.phase}: {r.tensor}" + ("" if r.backend == backend else f" ({r.backend})")
                  for r in rows.itertuples()]
        y = np.arange(len(rows))[::-1]
        colors = [PHASE_COLORS[p] for p in rows.phase]
        bars = ax.barh(y, ratio, color=colors, log=True)
        first = next((i for i, r in enumerate(rows.itertuples())
                      if r.tensor == d["tensor"] and r.phase == d["phase"]), None)
        if first is not None:
            bars[first].set_edgecolor(style.FAIL_COLOR)
            bars[first].set_linewidth(2.5)
        ax.axvline(1.0, color=style.FAIL_COLOR, linestyle="--", linewidth=1)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("error / tolerance (past the dashed line: differs)")
        verdict = f"convention {d['convention']}" if d.get("convention") else \
            f"wrong: {d['culprit']}" if d.get("culprit") else "culprit unknown"
        ax.set_title(f"{backend} vs {backends[0]}: step {d['step']}, {d['phase']} "
                     f"{d['tensor']}\n{verdict}", fontsize=9)
    return fig
