"""The benchmark plot: achieved GFLOP/s against work per step, one line per backend, each
library's products dotted and the machine roofline dashed, one panel per dtype. Reads
results/bench/bench.csv only."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from harness import results
from harness.bench.suite import GEMM, NUMPY, NUMPY_GEMM, ROOFLINE

DPI = 100

STYLE = {ROOFLINE: {"color": "black", "linestyle": "--", "marker": ""},
         NUMPY: {"color": "tab:blue", "marker": "o"},
         "torch": {"color": "tab:red", "marker": "s"},
         "jax": {"color": "tab:green", "marker": "^"},
         NUMPY_GEMM: {"color": "tab:blue", "linestyle": ":", "marker": ""},
         f"{GEMM}torch": {"color": "tab:red", "linestyle": ":", "marker": ""},
         f"{GEMM}jax": {"color": "tab:green", "linestyle": ":", "marker": ""}}


def figure(df: pd.DataFrame, title: str) -> plt.Figure:
    dtypes = sorted(df.dtype.unique())
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4.5), sharey=True,
                             squeeze=False)
    for ax, dtype in zip(axes[0], dtypes, strict=True):
        part = df[df.dtype == dtype].sort_values("gflop_per_step")
        for name, rows in part.groupby("backend", sort=False):
            label = "machine roofline (fastest library's matmuls)" if name == ROOFLINE \
                else name
            ax.plot(rows.gflop_per_step, rows.gflops, label=label,
                    **STYLE.get(name, {"marker": "x"}))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("work per training step (GFLOP, log scale)")
        ax.set_title(dtype)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("achieved throughput (GFLOP/s, log scale)")
    axes[0][-1].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_plot(folder: Path) -> Path:
    """Redraw bench.png from bench.csv (atomically) and return its path."""
    df = results.read_bench(folder)[0]["bench"]
    path = folder / "bench.png"
    try:
        with matplotlib.rc_context({"text.parse_math": False}):
            fig = figure(df, "Training-step throughput vs work, and the machine's matmul "
                             "roofline")
    except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise results.damaged(folder, "bench.png cannot be drawn from bench.csv", err) from None
    results.write_file(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    plt.close(fig)
    return path
