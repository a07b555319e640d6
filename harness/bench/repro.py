"""Are a bench run's ratios reproducible? `harness bench --baseline DIR` compares every ratio
of this run with the same ratio in an earlier run's results folder.

Ratios, not times: a step time moves with the machine's clock and load between runs, while a
ratio measured pair by pair within rounds (backend / fastest backend, roofline / backend,
NumPy / fastest framework) should not. The issue's target is that each moves by at most 5%.

The NumPy contestant is matched by role, not by name: summary.json records its name
(`numpy_contestant`), and a baseline written before that (when the tuned backend, today's
numpy_fast, was registered as `numpy`) has its rows renamed, and the comparison says so.
Likewise a baseline written before the machine roofline (no `gemm:` rows) timed NumPy's
products alone as its roofline: its `roofline_fraction` is this run's `numpy_gemm_fraction`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness import results
from harness.bench.suite import GEMM, NUMPY, ROOFLINE
from harness.spec.schema import SpecError

REPRO_TARGET = 0.05                # |this run's ratio / baseline's ratio - 1| at every point
KEYS = ["shape", "dtype", "backend", "ratio"]
BACKEND_RATIOS = ("ratio_to_fastest", "roofline_fraction", "numpy_gemm_fraction")
LEGACY_ROOFLINE = {"roofline_fraction": "numpy_gemm_fraction"}   # before the machine roofline
VS_RATIO = "numpy_vs_fastest_framework"
CONTESTANT_KEY = "numpy_contestant"    # in summary.json: the NumPy contestant's backend name
LEGACY_NUMPY = "numpy"                 # its name in runs whose summary.json does not record it


def ratio_table(bench: pd.DataFrame, vs: pd.DataFrame) -> pd.DataFrame:
    """Every ratio of one run's backends, one row each: shape, dtype, backend, ratio, value
    (a library's products are the yardstick, not a contestant)."""
    steps = bench[(bench["backend"] != ROOFLINE) & ~bench["backend"].str.startswith(GEMM)]
    rows = steps.melt(
        id_vars=["shape", "dtype", "backend"],
        value_vars=[r for r in BACKEND_RATIOS if r in bench], var_name="ratio")
    vs_rows = vs.rename(columns={VS_RATIO: "value"}).assign(backend=NUMPY, ratio=VS_RATIO)
    table = pd.concat([rows, vs_rows[[*KEYS, "value"]]], ignore_index=True)
    return table[np.isfinite(table["value"].astype(float))]


def renames(summary: dict, timed: set[str]) -> dict[str, str]:
    """{baseline's name: this run's name} for the NumPy contestant, when the baseline (its
    summary and the backends it timed) has it under another name; else empty."""
    before = summary.get(CONTESTANT_KEY, LEGACY_NUMPY)
    return {before: NUMPY} if before != NUMPY and before in timed else {}


def rename_note(renamed: dict[str, str]) -> str:
    """One clause per baseline backend or ratio compared under another name, or ""."""
    return "; ".join(f"the baseline's roofline was NumPy's products alone: its {a} is "
                     f"compared as {b}" if a in LEGACY_ROOFLINE else
                     f"the baseline's NumPy contestant {a!r} is compared as {b!r}"
                     for a, b in renamed.items())


def load_baseline(folder: Path, setup: dict,
                  backends: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """The ratio table of an earlier run's results folder, with the NumPy contestant under this
    run's name, and the renames made (see `renames`); a one-line error when the folder cannot
    be read or was not measured like this run (same backends, threads, process mode, device):
    a ratio to the fastest backend means something else when the field of backends differs."""
    files = [folder / "bench.csv", folder / "numpy_vs_frameworks.csv"]
    if not all(f.is_file() for f in files) or not (folder / "summary.json").is_file():
        raise SpecError("--baseline", f"{folder} is not a `harness bench` results folder "
                                      "(allowed: a folder with bench.csv, "
                                      "numpy_vs_frameworks.csv and summary.json)")
    try:
        frames = [pd.read_csv(f) for f in files]
        summary = results.read_json(folder / "summary.json")
        renamed = renames(summary, set(frames[0]["backend"]))
        frames[0]["backend"] = frames[0]["backend"].replace(renamed)
        table = ratio_table(*frames)
        if not frames[0]["backend"].str.startswith(GEMM).any():
            table["ratio"] = table["ratio"].replace(LEGACY_ROOFLINE)
            renamed = {**renamed, **LEGACY_ROOFLINE}
        before = {key: summary[key] for key in setup}
        tested = sorted(b for b in set(frames[0]["backend"]) - {ROOFLINE}
                        if not b.startswith(GEMM))
    except (KeyError, ValueError, TypeError, AttributeError, results.ResultsError) as err:
        raise SpecError("--baseline", f"{folder} is damaged ({type(err).__name__}: {err})"
                        ) from None
    if before != setup or tested != sorted(backends):
        note = f" ({rename_note(renamed)})" if renamed else ""
        raise SpecError("--baseline", f"{folder} was measured with backends {tested}{note} "
                                      f"and {before}; this run has {sorted(backends)} and "
                                      f"{setup} (allowed: a bench measured the same way)")
    return table, renamed


def compare(current: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """The ratios both runs measured, with this run's relative change from the baseline.
    A backend that was the fastest in most rounds of both runs has a ratio to the fastest of
    exactly 1.0 in both: it says nothing about reproducibility and is left out."""
    both = current.merge(baseline, on=KEYS, suffixes=("", "_baseline"))
    trivial = (both.ratio == "ratio_to_fastest") & (both.value == 1.0) & (
        both.value_baseline == 1.0)
    both = both[~trivial].copy()
    both["change"] = both.value / both.value_baseline - 1.0
    return both[[*KEYS, "value_baseline", "value", "change"]].reset_index(drop=True)


def target(table: pd.DataFrame, baseline: Path, renamed: dict[str, str]) -> dict | None:
    """The reproducibility target: passed, how many ratios are within it, the worst one, and
    which of the baseline's backends were compared under another name (None when the two
    runs share no informative ratio)."""
    if table.empty:
        return None
    worst = table.loc[table.change.abs().idxmax()]
    within = int((table.change.abs() <= REPRO_TARGET).sum())
    return {"passed": within == len(table), "worst": float(abs(worst.change)),
            "target": REPRO_TARGET, "shape": worst["shape"], "dtype": worst["dtype"],
            "ratio": f"{worst.backend} {worst.ratio}", "within": within,
            "compared": len(table), "baseline": str(baseline), "renamed": renamed}


def print_comparison(table: pd.DataFrame, worst: int = 8) -> None:
    """The ratios that moved most since the baseline."""
    order = table.change.abs().sort_values(ascending=False).index[:worst]
    print(f"\nratios that moved most since the baseline (target: within "
          f"{REPRO_TARGET:.0%}):")
    for r in table.loc[order].itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {r.backend:>10} {r.ratio:>27} "
              f"{r.value_baseline:7.3f} -> {r.value:7.3f} ({r.change:+.1%})")
