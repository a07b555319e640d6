"""`harness bench`: the benchmark grid, its table, its targets, results/bench/ and its plot."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from harness import escape, provenance, results
from harness.bench import repro as bench_repro
from harness.bench import suite as bench
from harness.bench import threads, timing
from harness.bench.plot import write_plot
from harness.bench.report import outcome, target_detail
from harness.bench.suite import FRAMEWORKS, NUMPY
from harness.registry import backend_class, missing_framework
from harness.spec.schema import SpecError

# The targets, checked and reported by every bench run. Their names and the
# numpy_vs_* table keep saying "numpy": the NumPy contestant (suite.NUMPY) against the rest.
ROOFLINE_TARGET = 0.9            # NumPy step >= 0.9x NumPy's own products at the large shapes
LARGE_SHAPE_GFLOP = 1.0          # "large": at least this much work per step
VERDICTS = ("met", "tie", "miss", "not judged")


def _paired(num: np.ndarray | list[float], den: np.ndarray) -> tuple[float, float]:
    return timing.paired_ratio(num, den), timing.paired_ci(num, den)


def numpy_vs_frameworks(timings: dict[str, timing.Timing]) -> dict[str, float]:
    """t_numpy_fast / min(t_torch, t_jax) and the same ratio of their libraries' products
    (NumPy's GEMMs against the fastest framework GEMM), paired per round, with 95% CIs."""
    others = {n: timings[n] for n in FRAMEWORKS if n in timings}
    gemms = {n: timings[f"{bench.GEMM}{n}"] for n in FRAMEWORKS
             if f"{bench.GEMM}{n}" in timings}
    out = dict.fromkeys(("numpy_vs_fastest_framework", "numpy_vs_fastest_framework_ci",
                         "gemm_ratio", "gemm_ratio_ci"), np.nan)
    if NUMPY in timings and others:
        out["numpy_vs_fastest_framework"], out["numpy_vs_fastest_framework_ci"] = _paired(
            timings[NUMPY].samples, timing.fastest(others))
    if gemms:
        out["gemm_ratio"], out["gemm_ratio_ci"] = _paired(
            timings[bench.NUMPY_GEMM].samples, timing.fastest(gemms))
    return out


def judge(ratio: float, ci: float, gemm_ratio: float, gemm_ci: float) -> str:
    """One point of numpy_vs_fastest_framework: "not judged" where NumPy's own GEMMs are
    slower than the fastest framework's beyond their CI (the BLAS decides, not the backend);
    else "met" (<= 1), "tie" (1 within the ratio's 95% CI) or "miss"."""
    if not np.isfinite(ratio):
        return "not judged"
    if np.isfinite(gemm_ratio) and gemm_ratio * (1 - gemm_ci) > 1:
        return "not judged"
    if ratio <= 1:
        return "met"
    return "tie" if ratio * (1 - ci) <= 1 else "miss"


def targets(df: pd.DataFrame, vs: pd.DataFrame) -> dict:
    """Each target with the worst case that decides it. NumPy's step is held to NumPy's own
    products; its fraction of the machine roofline is reported, not judged (a faster BLAS
    elsewhere is not the backend's doing); no contestant may beat the roofline beyond its
    CI (that would mean the roofline misses a faster library)."""
    np_rows = df[df.backend == NUMPY]
    large = np_rows[np_rows.gflop_per_step >= LARGE_SHAPE_GFLOP]
    worst_own = large.loc[large.numpy_gemm_fraction.idxmin()] if len(large) else None
    worst_roof = large.loc[large.roofline_fraction.idxmin()] if len(large) else None
    steps = df[~df.backend.str.startswith(bench.GEMM) & (df.backend != bench.ROOFLINE)]
    over = steps.roofline_fraction * (1 - steps.roofline_fraction_ci)
    worst_over = steps.loc[over.idxmax()]
    return {
        "numpy_own_products_at_large_shapes": None if worst_own is None else {
            "passed": bool(worst_own.numpy_gemm_fraction >= ROOFLINE_TARGET),
            "worst": float(worst_own.numpy_gemm_fraction), "target": ROOFLINE_TARGET,
            "shape": worst_own["shape"], "dtype": worst_own["dtype"]},
        "numpy_machine_roofline_at_large_shapes": None if worst_roof is None else {
            "passed": None, "worst": float(worst_roof.roofline_fraction), "target": None,
            "shape": worst_roof["shape"], "dtype": worst_roof["dtype"]},
        "numpy_vs_fastest_framework": _vs_target(vs),
        "roofline_not_exceeded": {
            "passed": bool(over.max() <= 1), "worst": float(worst_over.roofline_fraction),
            "target": 1.0, "shape": worst_over["shape"], "dtype": worst_over["dtype"],
            "backend": worst_over["backend"]}}


def _vs_target(vs: pd.DataFrame) -> dict | None:
    """numpy_vs_fastest_framework over the points where it is judged (see `judge`)."""
    judged = vs[vs.verdict != "not judged"]
    if judged.empty:
        return None
    worst = judged.loc[judged.numpy_vs_fastest_framework.idxmax()]
    counts = {v: int((vs.verdict == v).sum()) for v in VERDICTS}
    return {"passed": counts["miss"] == 0, "worst": float(worst.numpy_vs_fastest_framework),
            "target": 1.0, "shape": worst["shape"], "dtype": worst["dtype"], **counts}


def print_table(df: pd.DataFrame, vs: pd.DataFrame) -> None:
    print(f"{'shape':>36} {'dtype':>7} {'backend':>12} {'step ms':>10} {'IQR ms':>8} "
          f"{'GFLOP/s':>8} {'roofline':>8} {'x fastest':>9} {'95% CI':>7} {'rounds':>6} "
          f"{'first ms':>9}")
    for r in df.itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {escape.terminal(r.backend):>12} "
              f"{r.median_s * 1e3:10.3f} "
              f"{r.iqr_s * 1e3:8.3f} {r.gflops:8.1f} {r.roofline_fraction:8.2f} "
              f"{r.ratio_to_fastest:9.2f} {r.ratio_to_fastest_ci:7.1%} {r.rounds:6d} "
              f"{r.first_call_s * 1e3:9.1f}")
    print(f"\n{NUMPY} / fastest of {', '.join(FRAMEWORKS)} (paired per round; <= 1.0 means "
          f"{NUMPY} is faster), beside NumPy's GEMMs / the fastest framework's GEMMs:")
    for r in vs.itertuples():
        print(f"{r.shape:>36} {r.dtype:>7} {r.numpy_vs_fastest_framework:8.2f} "
              f"+-{r.numpy_vs_fastest_framework_ci:5.1%}  GEMMs {r.gemm_ratio:5.2f}  "
              f"{r.verdict}")


def gemm_libraries(names: list[str]) -> dict[str, str]:
    """{gemm contestant: which library does its products}, asked after the timing is done
    (it imports the frameworks into this process)."""
    out = {}
    for gemm, owner in bench.gemm_contestants(names).items():
        out[gemm] = (backend_class(owner).gemm_library() if owner else
                     provenance.numpy_gemm_library())
    return out


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
    results.guard_target(out, force, kind=results.BENCH)
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
            ratios = numpy_vs_frameworks(timings)
            vs.append({"shape": shape.label, "dtype": dtype, **ratios,
                       "verdict": judge(*ratios.values())})
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
    meta["gemm_libraries"] = gemm_libraries(names)
    meta["cpu_peak"] = provenance.cpu_peak()
    results.write(out, tables, summary, meta, force, kind=results.BENCH)
    print(f"\n{write_plot(out)}")
    for name, target in summary["targets"].items():
        if target:
            print(f"{name}: {outcome(target)} {target_detail(target)}")
    return 0
