"""`harness bench`: the benchmark grid, its table, its targets, results/bench/ and its plot."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from harness import provenance, results
from harness.bench import repro as bench_repro
from harness.bench import suite as bench
from harness.bench import threads, timing
from harness.bench.plot import write_plot
from harness.bench.report import target_detail
from harness.bench.suite import FRAMEWORKS, NUMPY
from harness.registry import missing_framework
from harness.spec.schema import SpecError

# The targets, checked and reported by every bench run. Their names and the
# numpy_vs_* table keep saying "numpy": the NumPy contestant (suite.NUMPY) against the rest.
ROOFLINE_TARGET = 0.9            # NumPy step >= 0.9x the roofline at the large shapes
LARGE_SHAPE_GFLOP = 1.0          # "large": at least this much work per step


def numpy_vs_frameworks(timings: dict[str, timing.Timing]) -> float:
    """Median over rounds of t_numpy_fast / min(t_torch, t_jax), paired within each round."""
    others = {n: timings[n] for n in FRAMEWORKS if n in timings}
    if NUMPY not in timings or not others:
        return np.nan
    return timing.paired_ratio(timings[NUMPY].samples, timing.fastest(others))


def targets(df: pd.DataFrame, vs: pd.DataFrame) -> dict:
    """Pass/fail of each target, with the worst case that decides it."""
    np_rows = df[df.backend == NUMPY]
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
    print(f"{'shape':>36} {'dtype':>7} {'backend':>10} {'step ms':>10} {'IQR ms':>8} "
          f"{'GFLOP/s':>8} {'roofline':>8} {'x fastest':>9} {'95% CI':>7} {'rounds':>6} "
          f"{'first ms':>9}")
    for r in df.itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {r.backend:>10} {r.median_s * 1e3:10.3f} "
              f"{r.iqr_s * 1e3:8.3f} {r.gflops:8.1f} {r.roofline_fraction:8.2f} "
              f"{r.ratio_to_fastest:9.2f} {r.ratio_to_fastest_ci:7.1%} {r.rounds:6d} "
              f"{r.first_call_s * 1e3:9.1f}")
    print(f"\n{NUMPY} / fastest of {', '.join(FRAMEWORKS)} (paired per round; <= 1.0 means "
          f"{NUMPY} is faster):")
    for r in vs.itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {r.numpy_vs_fastest_framework:8.2f}")


def baseline_ratios(folder: Path | None, shapes: list[bench.Shape], dtypes: list[str],
                    setup: dict, names: list[str]
                    ) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """The baseline's ratios at this run's shapes and dtypes, checked before any timing, and
    the baseline's backends compared under another name (see repro.renames)."""
    if folder is None:
        return None, {}
    table, renamed = bench_repro.load_baseline(folder, setup, names)
    planned = {(s.label, d) for s in shapes for d in dtypes}
    table = table[[(s, d) in planned for s, d in zip(table["shape"], table.dtype, strict=True)]]
    if table.empty:
        raise SpecError("--baseline", f"{folder} shares no shape and dtype with this run "
                                      "(allowed: a bench folder measured on the same grid)")
    if renamed:
        print(f"baseline {folder}: {bench_repro.rename_note(renamed)}")
    return table, renamed


def run_bench(shapes: list[bench.Shape], dtypes: list[str], names: list[str],
              protocol: timing.Protocol,
              n_threads: int, in_process: bool, out: Path, force: bool,
              device: str = "cpu", baseline: Path | None = None) -> int:
    """Benchmark, print, write results/bench/ (bench.csv, summary.json, meta.json, bench.png);
    with a baseline folder, also reproducibility.csv: every ratio against the baseline's."""
    results.guard_target(out, force)
    skipped = {n: r for n in names if (r := missing_framework(n))}
    names = [n for n in names if n not in skipped]
    if not names:
        why = "; ".join(f"{n}: {r}" for n, r in skipped.items()) or "none given"
        raise SpecError("--backends", f"no backend left to time ({why}; allowed: at least one "
                                      "installed backend)")
    setup = {"threads": n_threads, "in_process": in_process, "device": device}
    before, renamed = baseline_ratios(baseline, shapes, dtypes, setup, names)
    threads.configure(n_threads)          # process-wide: only once the input is known good
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    rows, vs, samples = [], [], []
    pool = None if in_process else bench.start_workers(names, n_threads)
    try:
        points = [(shape, dtype) for shape in shapes for dtype in dtypes]
        grid = bench.bench_grid(names, points, protocol, pool, device)
        for (shape, dtype), timings in zip(points, grid, strict=True):
            rows += bench.rows(shape, dtype, timings)
            samples += bench.sample_rows(shape, dtype, timings)
            vs.append({"shape": shape.label, "dtype": dtype,
                       "numpy_vs_fastest_framework": numpy_vs_frameworks(timings)})
    finally:
        for worker in (pool or {}).values():
            worker.stop()
    df, vs_df = pd.DataFrame(rows), pd.DataFrame(vs)
    print_table(df, vs_df)
    summary = {"experiment": "bench", **setup, "rounds": protocol.rounds,
               "max_rounds": protocol.max_rounds, "precision": protocol.precision,
               bench_repro.CONTESTANT_KEY: NUMPY, "skipped": skipped,
               "targets": targets(df, vs_df)}
    tables = {"bench": df, "numpy_vs_frameworks": vs_df, "samples": pd.DataFrame(samples)}
    if before is not None:
        repro = bench_repro.compare(bench_repro.ratio_table(df, vs_df), before)
        bench_repro.print_comparison(repro)
        summary["targets"]["ratios_reproducible"] = bench_repro.target(repro, baseline,
                                                                       renamed)
        tables["reproducibility"] = repro
    meta = provenance.environment(started, time.perf_counter() - t0)
    results.write(out, tables, summary, meta, force)
    print(f"\n{write_plot(out)}")
    for name, target in summary["targets"].items():
        if target:
            print(f"{name}: {'met' if target['passed'] else 'NOT met'} "
                  f"{target_detail(target)}")
    return 0
