"""`harness plot`: every figure of a results folder, redrawn from its stored tables alone.

Only the CSV tables and summary.json are read; torch and JAX are never imported (neither here
nor by anything imported from here), so plots can be redrawn on a machine without them.

Files: a single run gets `loss_curves.png`, `loss_drift.png`, `gradient_errors.png`,
`grad_norms.png` and `timings.png`, and `diagnosis.png` when backends disagree. A sweep
gets the same figures once per sweep point, named
`<figure>__<variant>.png` (the label made safe for file names), plus `sweep_overview.png`
comparing the points. A sweep over seeds draws a point's own figures only where it does not
agree (the points that agree are summarised, not repeated), no overview, and per group of seeds
`seed_errors[__<group>].png` (each check's error over the seeds) and
`seed_drift[__<group>].png` (the loss drift's quantile bands). A figure whose data the run did
not produce (loss drift with a single backend, say) is left out. Every PNG is written
atomically: drawn to a hidden temporary file beside it, then renamed over the old one, so no
reader sees half an image; the folder's manifest names every PNG before it is written, so the
next run knows it for the harness's.

Text from the tables (labels, backend names) is drawn as text: `$` never starts mathtext, a
control character is written out (`\\x1b`). A
folder whose tables cannot be drawn is a one-line error when its files are not what the
harness wrote (see `harness.results.damaged`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text

from harness import results, stats
from harness.plots import diagnosis as plot_diagnosis
from harness.plots import seeds as plot_seeds
from harness.plots import style as plot_style
from harness.plots import summary as plot_summary
from harness.plots import training as plot_training

DPI = 100
SEPARATOR = "__"                      # between figure name and variant in a file name
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_SLUG = 60
OVERVIEW = "sweep_overview"
SEED_FIGURES = ("seed_errors", "seed_drift")
# What drawing tables of unexpected content raises (a tampered folder's, say).
DRAWING_ERRORS = (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError)
LITERAL_TEXT = {"text.parse_math": False}     # labels from files are text, never mathtext


@dataclass(frozen=True)
class Variant:
    """One sweep point (or the single run): its summary entry and its rows of every table."""
    experiment: str
    summary: dict
    tables: dict[str, pd.DataFrame]

    @property
    def label(self) -> str:
        return self.summary.get("variant") or ""

    @property
    def backends(self) -> list[str]:
        """The backends that ran, reference first."""
        return list(self.summary.get("backends") or [])

    def title(self) -> str:
        where = f" [{self.label}]" if self.label else ""
        return f"{self.experiment}{where} ({self.summary['dtype']})"

    def tolerance(self, check: str) -> float | None:
        """The tolerance `check` states before any raise (a cell may raise its own at an
        ill-conditioned point, the oracle to its resolution); older results: the smallest
        its cells applied."""
        base = (self.summary.get("tolerances") or {}).get(check)
        found = [c["tolerance"] for c in self.summary.get("checks") or []
                 if c["check"] == check and c.get("tolerance") is not None]
        return base if base is not None else min(found) if found else None


@dataclass(frozen=True)
class Plot:
    """One PNG to write: its file name, figure kind, variant label (None: the whole sweep)."""
    file: str
    kind: str
    variant: str | None
    draw: Callable[[], Figure]



def variants(frames: dict[str, pd.DataFrame], summary: dict) -> list[Variant]:
    """Every sweep point in the order it ran, with its slice of every table."""
    return [Variant(summary["experiment"], v,
                    {name: df[df.variant == (v.get("variant") or "")] if "variant" in df else df
                     for name, df in frames.items()})
            for v in summary["variants"]]


def slugs(labels: list[str]) -> list[str]:
    """File-name-safe, distinct versions of the variant labels ('' stays '')."""
    out: list[str] = []
    for i, label in enumerate(labels):
        slug = UNSAFE.sub("_", label.replace("=", "-")).strip("._-")[:MAX_SLUG]
        if label and not slug:
            slug = f"variant{i}"
        out.append(f"{slug}_{i}" if slug in out else slug)
    return out


def _has_rows(v: Variant, table: str, least_backends: int = 1) -> bool:
    """Whether `table` has rows of this variant's backends, and enough backends ran."""
    df = v.tables[table]
    return not df.empty and df.backend.isin(v.backends).any() and \
        len(v.backends) >= least_backends


def figures(v: Variant) -> dict[str, Callable[[], Figure]]:
    """The figures this variant has data for, by kind, not yet drawn."""
    t, names, title = v.tables, v.backends, v.title()
    norms = t["grad_norms"]
    out = {}
    if _has_rows(v, "steps"):
        out["loss_curves"] = partial(plot_training.loss_curves, t["steps"], t["events"], names,
                                     title)
    if _has_rows(v, "steps", least_backends=2):
        out["loss_drift"] = partial(plot_training.drift, t["steps"], t["events"], names,
                                    v.summary["dtype"], v.tolerance("loss_curve"), title)
    if _has_rows(v, "gradients") and (t["gradients"].evaluated_at != "own").any():
        out["gradient_errors"] = partial(plot_training.gradient_errors, t["gradients"],
                                         v.tolerance("gradients"), v.tolerance("oracle"), title)
    if _has_rows(v, "grad_norms") and norms.parameter.str.startswith("W").any():
        out["grad_norms"] = partial(plot_training.grad_norms, norms, names, title,
                                    v.summary.get("layers"))
    if _has_rows(v, "timings"):
        out["timings"] = partial(plot_summary.timings, t["timings"], names, title)
    found = v.summary.get("diagnosis") or {}
    if _has_rows(v, "phases") and any(d.get("step") is not None for d in found.values()):
        out["diagnosis"] = partial(plot_diagnosis.diagnosis, t["phases"], found, names, title)
    return out


def plan(frames: dict[str, pd.DataFrame], summary: dict) -> list[Plot]:
    """Every PNG of the folder, in the order the report shows them."""
    points = variants(frames, summary)
    seeded = "seeds" in summary
    out = []
    for v, slug in zip(points, slugs([v.label for v in points]), strict=True):
        if seeded and v.summary.get("verdict") == "agree":
            continue
        suffix = f"{SEPARATOR}{slug}" if slug else ""
        out += [Plot(f"{kind}{suffix}.png", kind, v.label, draw)
                for kind, draw in figures(v).items()]
    ran = [plot_summary.Point(v.label, v.summary["dtype"], v.backends, v.tolerance("loss_curve"))
           for v in points if v.backends]
    if len(points) > 1 and ran and not seeded:       # seeds: their bands replace it
        out.append(Plot(f"{OVERVIEW}.png", OVERVIEW, None,
                        partial(plot_summary.sweep_overview, frames["steps"], ran,
                                summary["experiment"])))
    return out + (seed_plan(frames, summary) if seeded else [])


def seed_plan(frames: dict[str, pd.DataFrame], summary: dict) -> list[Plot]:
    """The two figures of each group of a seed sweep (`harness.stats`), drawn from the same
    summaries and steps table as its statistics."""
    points = summary["variants"]
    errors = stats.check_errors(points)
    checks = stats.check_stats(errors)
    bands = stats.drift_bands(stats.seed_drift(frames["steps"], points))
    groups = [g["group"] for g in summary["seeds"]["groups"]]
    out = []
    for group, slug in zip(groups, slugs(groups), strict=True):
        if not (errors.group == group).any():
            continue                      # every point of the group failed: nothing to draw
        suffix = f"{SEPARATOR}{slug}" if slug else ""
        mine = [p for g, _, p in stats.seeded(points) if g == group]
        ran = next((p for p in mine if p.get("backends")), mine[0])
        title = summary["experiment"] + (f" [{group}]" if group else "")
        dtype = ran["dtype"]
        out += [Plot(f"seed_errors{suffix}.png", "seed_errors", None,
                     partial(plot_seeds.check_spread, errors[errors.group == group],
                             checks[checks.group == group], dtype, title)),
                Plot(f"seed_drift{suffix}.png", "seed_drift", None,
                     partial(plot_seeds.drift_bands, bands[bands.group == group],
                             list(ran.get("backends", [])), dtype, title))]
    return out


def save(fig: Figure, path: Path) -> None:
    results.write_file(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))


def draw(folder: Path, plot: Plot) -> Path:
    """Draw one PNG of the folder; a failure on tables the harness did not write as they
    are is a one-line ResultsError."""
    try:
        with mpl.rc_context(LITERAL_TEXT):
            figure = plot.draw()
            plot_style.plain_log_ticks(figure)
            for text in figure.findobj(Text):
                text.set_text(plot_style.literal(text.get_text()))
            save(figure, folder / plot.file)
    except DRAWING_ERRORS as err:
        raise results.damaged(folder, f"{plot.file} cannot be drawn from its tables",
                              err) from None
    return folder / plot.file


def planned(folder: Path, frames: dict[str, pd.DataFrame], summary: dict) -> list[Plot]:
    """`plan` for a folder read back: a failure on tables the harness did not write as they
    are is a one-line ResultsError."""
    try:
        return plan(frames, summary)
    except DRAWING_ERRORS as err:
        raise results.damaged(folder, "its figures cannot be planned from its tables",
                              err) from None


def plot_folder(folder: Path | str) -> list[Path]:
    """Draw every figure of a results folder into it; the paths of the PNGs written."""
    folder = Path(folder)
    frames, summary, _ = results.read(folder)
    found = planned(folder, frames, summary)
    results.claim(folder, [p.file for p in found])
    return [draw(folder, p) for p in found]
