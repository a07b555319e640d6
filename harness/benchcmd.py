"""`harness bench`: the benchmark grid, its table, its targets, results/bench/ and its plot."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from harness import bench, provenance, results, threads, timing
from implementations import missing_framework

# The targets, checked and reported by every bench run.
ROOFLINE_TARGET = 0.9            # NumPy step >= 0.9x the roofline at the large shapes
LARGE_SHAPE_GFLOP = 1.0          # "large": at least this much work per step
FRAMEWORKS = ("torch", "jax")


def numpy_vs_frameworks(timings: dict[str, timing.Timing]) -> float:
    """Median over rounds of t_numpy / min(t_torch, t_jax), paired within each round."""
    others = [timings[n].samples for n in FRAMEWORKS if n in timings]
    if "numpy" not in timings or not others:
        return np.nan
    fastest = np.min(np.array(others), axis=0)
    return float(np.median(np.array(timings["numpy"].samples) / fastest))


def targets(df: pd.DataFrame, vs: pd.DataFrame) -> dict:
    """Pass/fail of each target, with the worst case that decides it."""
    np_rows = df[df.backend == "numpy"]
    large = np_rows[np_rows.gflop_per_step >= LARGE_SHAPE_GFLOP]
    worst_roof = large.loc[large.roofline_fraction.idxmin()] if len(large) else None
    ratios = vs.numpy_vs_fastest_framework
    worst_vs = vs.loc[ratios.idxmax()] if ratios.notna().any() else None
    return {
        "numpy_roofline_at_large_shapes": None if worst_roof is None else {
            "passed": bool(worst_roof.roofline_fraction >= ROOFLINE_TARGET),
            "worst": float(worst_roof.roofline_fraction), "target": ROOFLINE_TARGET,
            "shape": worst_roof["shape"], "dtype": worst_roof["dtype"]},
        "numpy_vs_fastest_framework": None if worst_vs is None else {
            "passed": bool(worst_vs.numpy_vs_fastest_framework <= 1.0),
            "worst": float(worst_vs.numpy_vs_fastest_framework), "target": 1.0,
            "shape": worst_vs["shape"], "dtype": worst_vs["dtype"]}}


def print_table(df: pd.DataFrame, vs: pd.DataFrame) -> None:
    print(f"{'shape':>36} {'dtype':>7} {'backend':>8} {'step ms':>10} {'IQR ms':>8} "
          f"{'GFLOP/s':>8} {'roofline':>8} {'x fastest':>9} {'first ms':>9}")
    for r in df.itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {r.backend:>8} {r.median_s * 1e3:10.3f} "
              f"{r.iqr_s * 1e3:8.3f} {r.gflops:8.1f} {r.roofline_fraction:8.2f} "
              f"{r.ratio_to_fastest:9.2f} {r.first_call_s * 1e3:9.1f}")
    print("\nnumpy / fastest of torch, jax (paired per round; <= 1.0 means numpy is faster):")
    for r in vs.itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {r.numpy_vs_fastest_framework:8.2f}")


def run_bench(shapes: list[str], dtypes: list[str], names: list[str], rounds: int,
              n_threads: int, in_process: bool, out: Path, force: bool,
              device: str = "cpu") -> int:
    """Benchmark, print, write results/bench/ (bench.csv, summary.json, meta.json, bench.png)."""
    parsed = [bench.Shape.parse(s) for s in shapes]
    results.check_target(out, force)
    threads.configure(n_threads)
    skipped = {n: r for n in names if (r := missing_framework(n))}
    names = [n for n in names if n not in skipped]
    protocol = timing.Protocol(rounds=rounds)
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    rows, vs = [], []
    pool = None if in_process else bench.start_workers(names, n_threads)
    try:
        for shape in parsed:
            for dtype in dtypes:
                timings = bench.bench_shape(names, shape, dtype, protocol, pool, device)
                rows += bench.rows(shape, dtype, timings)
                vs.append({"shape": shape.label, "dtype": dtype,
                           "numpy_vs_fastest_framework": numpy_vs_frameworks(timings)})
    finally:
        for worker in (pool or {}).values():
            worker.stop()
    df, vs_df = pd.DataFrame(rows), pd.DataFrame(vs)
    print_table(df, vs_df)
    summary = {"experiment": "bench", "device": device, "threads": n_threads,
               "in_process": in_process, "rounds": rounds, "skipped": skipped,
               "targets": targets(df, vs_df)}
    meta = provenance.environment(started, time.perf_counter() - t0)
    results.write(out, {"bench": df, "numpy_vs_frameworks": vs_df}, summary, meta, force)
    from harness.bench_plot import write_plot

    print(f"\n{write_plot(out)}")
    for name, target in summary["targets"].items():
        if target:
            print(f"{name}: {'met' if target['passed'] else 'NOT met'} (worst "
                  f"{target['worst']:.2f} at {target['shape']} {target['dtype']}, "
                  f"target {target['target']})")
    return 0
