"""The timing protocol's logic and the bench command's outputs. No assertion here compares
how fast backends ran (timing tests in CI are flaky): performance claims come from
`harness bench`, not from tests. Two tests use sleeps and a spinning thread as stand-ins,
with margins of several times what they assert."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.bench import command as bench_command
from harness.bench import repro as bench_repro
from harness.bench import suite as bench
from harness.bench import timing
from harness.cli import main
from harness.escape import markdown
from harness.registry import backend_class

THREE_ROUNDS = ["--rounds", "3", "--max-rounds", "3"]   # a fixed number: no extra rounds
NUMPY = bench.NUMPY                                      # the NumPy contestant: numpy_fast


def test_ratios_are_paired_within_rounds():
    """A drifting machine (every round slower) must not change the ratio."""
    t = {"a": timing.Timing("a", samples=[1.0, 2.0, 4.0]),
         "b": timing.Timing("b", samples=[2.0, 4.0, 8.0]),
         "c": timing.Timing("c", samples=[1.5, 1.0, 12.0])}
    ratios = timing.ratios_to_fastest(t)
    assert ratios["b"] == 2.0
    assert ratios["a"] == 1.0 and ratios["c"] == 1.5


def test_measure_rotates_order_and_separates_the_first_call():
    calls: list[str] = []

    def contestant(name):
        return timing.local(name, lambda: calls.append(name))

    protocol = timing.Protocol(warmup=2, rounds=3, max_rounds=3, min_sample_seconds=0.0)
    out = timing.measure([contestant("a"), contestant("b"), contestant("c")], protocol)
    k = timing.MIN_CALLS
    assert all(len(t.samples) == 3 and t.repeats == k for t in out.values())
    assert calls[:9] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3     # first call + 2 warm-up each
    assert calls[9::k] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_each_round_visits_every_point():
    calls: list[str] = []

    def point(*names):
        return [timing.local(n, lambda n=n: calls.append(n)) for n in names]

    protocol = timing.Protocol(warmup=1, rounds=2, max_rounds=2, min_sample_seconds=0.0)
    outs = timing.measure_grid([point("a", "b"), point("x", "y")], protocol)
    assert [sorted(o) for o in outs] == [["a", "b"], ["x", "y"]]
    k = timing.MIN_CALLS
    assert calls[8::k] == ["a", "b", "x", "y", "b", "a", "y", "x"]


def scripted(name: str, values: list[float]) -> timing.Timed:
    """A contestant whose samples are `values` in turn, cycling (no clock involved)."""
    it = iter(values * 100)
    return timing.Timed(name, lambda n: next(it))


def test_median_ci_brackets_the_median_by_binomial_ranks():
    assert timing.median_ci(list(range(1, 22))) == (6.0, 16.0)       # n = 21: ranks 6 and 16
    lo, hi = timing.median_ci(list(range(100)))
    assert (lo, hi) == (39.0, 60.0)                                   # n = 100: 40th and 61st
    assert timing.median_ci([5.0] * 7) == (5.0, 5.0)


def test_paired_ci_is_relative_to_the_median_ratio():
    assert timing.paired_ci([2.0] * 9, [1.0] * 9) == 0.0
    numerator = [1.0 + 0.1 * i for i in range(21)]                 # ratios 1.0 ... 3.0
    lo, hi = timing.median_ci(numerator)
    assert timing.paired_ci(numerator, [1.0] * 21) == pytest.approx((hi - lo) / 2 / 2.0)


def test_only_imprecise_points_get_more_rounds():
    """One point's ratio is steady, the other's alternates 1.0 / 1.5 forever: only the second
    gets rounds beyond `rounds`, and it stops at `max_rounds`."""
    protocol = timing.Protocol(warmup=1, rounds=5, max_rounds=9, min_sample_seconds=0.0)
    steady = [scripted("a", [1.0]), scripted("b", [2.0])]
    noisy = [scripted("a", [1.0]), scripted("b", [1.0, 1.5])]
    out_steady, out_noisy = timing.measure_grid([steady, noisy], protocol)
    assert {len(t.samples) for t in out_steady.values()} == {5}
    assert {len(t.samples) for t in out_noisy.values()} == {9}
    assert timing.imprecision(out_steady) == 0.0 and timing.imprecision(out_noisy) > 0.1


def test_a_point_stops_once_its_ratios_are_precise():
    """Every 4th sample of b is slow: after 5 rounds the CI of the median still reaches a slow
    sample; with more rounds it closes on the fast ones, and the point stops early."""
    protocol = timing.Protocol(warmup=1, rounds=5, max_rounds=61, min_sample_seconds=0.0)
    out = timing.measure_grid([[scripted("a", [1.0]), scripted("b", [1.0, 1.0, 1.0, 1.3])]],
                              protocol)[0]
    assert 5 < len(out["a"].samples) < 61
    assert timing.imprecision(out) <= protocol.precision


def test_a_stall_within_a_sample_is_outvoted():
    """One call of seven hits a 50 ms stall of the machine; the sample is still ~1 ms."""
    durations = iter([0.05] + [0.001] * 6)
    sample = timing.local("s", lambda: time.sleep(next(durations))).sample(7)
    assert sample < 0.005              # the mean of the block would be 0.0079


def test_flops_and_shape_parsing():
    shape = bench.Shape.parse("784-256-256-10:128")
    assert shape.flops == 6 * 128 * (784 * 256 + 256 * 256 + 256 * 10)
    with pytest.raises(ValueError, match="SIZES:BATCH"):
        bench.Shape.parse("784x256")


def test_bench_command_writes_results(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--shapes", "16-8-3:4", "--dtypes", "float64", *THREE_ROUNDS,
                 "--backends", NUMPY, "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out / "bench.csv")
    assert set(df.backend) == {NUMPY, bench.NUMPY_GEMM, "roofline"} and (df.median_s > 0).all()
    numpy_row = df[df.backend == NUMPY].iloc[0]
    assert numpy_row.roofline_fraction_ci >= 0 and numpy_row.ratio_to_fastest_ci == 0.0
    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == 2 * 3 and list(samples["round"][:3]) == [0, 1, 2]
    assert samples[samples.backend == NUMPY].seconds.median() == pytest.approx(
        df[df.backend == NUMPY].median_s.iloc[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threads"] >= 1 and summary["numpy_contestant"] == NUMPY
    assert summary["targets"]["numpy_own_products_at_large_shapes"] is None  # no large shape
    meta = json.loads((out / "meta.json").read_text())
    assert meta["gemm_libraries"][bench.NUMPY_GEMM].startswith(f"numpy {np.__version__}: ")
    assert (out / "bench.png").stat().st_size > 10_000
    assert "GFLOP/s" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "`numpy_own_products_at_large_shapes`" in report
    assert (f"| roofline | {markdown(bench.NUMPY_GEMM)} | {markdown(NUMPY)} | {NUMPY} / "
            f"fastest framework | NumPy GEMMs / {NUMPY} | roofline / {NUMPY} |") in report
    version = markdown(np.__version__)
    assert f"numpy {version};" in report                    # NumPy's products are always timed
    assert f"- `{bench.NUMPY_GEMM}`: numpy {version}: " in report      # its BLAS named
    row = next(line for line in report.splitlines()
               if line.startswith(f"| {markdown('16-8-3:4')} | float64 |"))
    assert f"({bench.NUMPY_GEMM}) |" in row                  # the library setting the roofline
    assert row.endswith(f"| - (not judged) | {numpy_row.numpy_gemm_fraction:.2f} | "
                        f"{numpy_row.roofline_fraction:.2f} |")            # no framework timed
    assert "(bench.png)" in report


@pytest.mark.parametrize("files, message", [
    ({"summary.json": "{}", "meta.json": "{}"}, "summary.json: threads: missing"),
    ({"numpy_vs_frameworks.csv": "shape,dtype\n", "summary.json": "[1, 2]"},
     "expected a JSON object"),
    ({"numpy_vs_frameworks.csv": "shape,dtype\n", "summary.json": "{}", "meta.json": "{}"},
     "summary.json: threads: missing"),
])
def test_report_on_a_damaged_bench_folder_is_a_one_line_error(tmp_path, capsys, files, message):
    (tmp_path / "bench.csv").write_text("shape,dtype\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("args, message", [
    (["--shapes", "abc"], "SIZES:BATCH"),
    (["--rounds", "2"], "--rounds: 2 is too small (allowed: integer >= 3)"),
    (["--rounds", "9", "--max-rounds", "5"], "--max-rounds: 5 is below --rounds 9"),
])
def test_bad_bench_argument_is_a_one_line_error(tmp_path, capsys, args, message):
    assert main(["bench", *args, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "b").exists()


def test_quiesce_waits_for_spinning_threads(monkeypatch):
    """A thread that keeps a core busy after the timed work (as OpenBLAS's pool does for
    ~0.1 s) holds the next contestant back until it stops; an idle process waits one look."""
    monkeypatch.setattr(timing, "QUIET_CPU", 0.01)      # any spinning counts as busy
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    threading.Timer(0.2, stop.set).start()
    waited = timing.quiesce()
    spinner.join()
    assert 0.15 < waited < timing.QUIET_LIMIT
    assert timing.quiesce() < 0.15


def test_roofline_fraction_is_paired_within_rounds():
    """The machine slows down 5x over three rounds; the roofline stays at 80% of numpy."""
    timings = {bench.NUMPY_GEMM: timing.Timing(bench.NUMPY_GEMM, samples=[0.8, 1.6, 4.0]),
               NUMPY: timing.Timing(NUMPY, samples=[1.0, 2.0, 5.0])}
    rows = bench.rows(bench.Shape.parse("4-2:1"), "float64", timings)
    numpy = next(r for r in rows if r["backend"] == NUMPY)
    assert numpy["roofline_fraction"] == pytest.approx(0.8)    # a ratio of medians: 0.8


def test_the_roofline_is_the_fastest_library_in_each_round():
    """torch's GEMM beats NumPy's in two rounds of three (MKL against OpenBLAS on a Xeon):
    the roofline takes it there, so torch's step is not "faster than the roofline"."""
    samples = {bench.NUMPY_GEMM: [1.0, 1.0, 1.0], f"{bench.GEMM}torch": [0.8, 0.9, 1.2],
               NUMPY: [1.1, 1.1, 1.1], "torch": [0.85, 0.95, 1.25]}
    timings = {n: timing.Timing(n, samples=s) for n, s in samples.items()}
    rows = {r["backend"]: r for r in bench.rows(bench.Shape.parse("4-2:1"), "float64", timings)}
    assert rows[bench.ROOFLINE]["median_s"] == 0.9 and \
        rows[bench.ROOFLINE]["library"] == f"{bench.GEMM}torch"
    assert rows["torch"]["roofline_fraction"] == pytest.approx(0.8 / 0.85)      # < 1
    assert rows["torch"]["numpy_gemm_fraction"] == pytest.approx(1.0 / 0.95)    # > 1: NumPy's
    assert rows[NUMPY]["numpy_gemm_fraction"] == pytest.approx(1.0 / 1.1)       # is no roof


def _targets_frame(fraction: float, ci: float = 0.01) -> pd.DataFrame:
    return pd.DataFrame({"shape": ["s"] * 2, "dtype": ["float64"] * 2,
                         "backend": [NUMPY, "torch"], "gflop_per_step": [2.0, 2.0],
                         "roofline_fraction": [0.8, fraction],
                         "roofline_fraction_ci": [ci, ci],
                         "numpy_gemm_fraction": [0.95, 1.1]})


def test_a_step_faster_than_the_roofline_beyond_its_ci_fails_a_target():
    vs = pd.DataFrame({"shape": ["s"], "dtype": ["float64"],
                       "numpy_vs_fastest_framework": [0.9], "verdict": ["met"]})
    assert bench_command.targets(_targets_frame(0.99), vs)["roofline_not_exceeded"]["passed"]
    assert bench_command.targets(_targets_frame(1.05, ci=0.1), vs)[
        "roofline_not_exceeded"]["passed"]                               # 1 within its CI
    missed = bench_command.targets(_targets_frame(1.05), vs)["roofline_not_exceeded"]
    assert not missed["passed"] and missed["backend"] == "torch"
    machine = bench_command.targets(_targets_frame(0.99), vs)[
        "numpy_machine_roofline_at_large_shapes"]
    assert machine["passed"] is None and machine["worst"] == 0.8          # reported only


@pytest.mark.parametrize("ratio, ci, gemm_ratio, gemm_ci, verdict", [
    (0.9, 0.02, 1.0, 0.01, "met"),
    (1.03, 0.05, 1.0, 0.01, "tie"),            # 1 within the ratio's 95% CI
    (1.03, 0.01, 1.0, 0.01, "miss"),
    (1.2, 0.01, 1.15, 0.02, "not judged"),     # NumPy's GEMMs slower beyond their CI
    (1.2, 0.01, 1.01, 0.02, "miss"),           # ... but not when they tie
    (float("nan"), float("nan"), float("nan"), float("nan"), "not judged"),
])
def test_numpy_against_the_frameworks_is_judged_where_their_gemms_compare(
        ratio, ci, gemm_ratio, gemm_ci, verdict):
    assert bench_command.judge(ratio, ci, gemm_ratio, gemm_ci) == verdict


def test_the_framework_target_counts_ties_and_skips_unjudged_points():
    vs = pd.DataFrame({"shape": ["a", "b", "c"], "dtype": ["float64"] * 3,
                       "numpy_vs_fastest_framework": [0.9, 1.03, 1.2],
                       "verdict": ["met", "tie", "not judged"]})
    target = bench_command.targets(_targets_frame(0.99), vs)["numpy_vs_fastest_framework"]
    assert target["passed"] and target["worst"] == 1.03 and target["shape"] == "b"
    assert (target["met"], target["tie"], target["miss"], target["not judged"]) == (1, 1, 0, 1)
    missed = bench_command.targets(_targets_frame(0.99), vs.assign(
        verdict=["met", "miss", "not judged"]))["numpy_vs_fastest_framework"]
    assert not missed["passed"] and missed["miss"] == 1


def test_the_targets_judge_numpy_fast_not_the_textbook_backend():
    """Beside `numpy_fast`, a timed textbook `numpy` (5x slower here) decides no target."""
    timings = {name: timing.Timing(name, samples=[t] * 3)
               for name, t in ((NUMPY, 1.0), ("numpy", 5.0), ("torch", 2.0), ("jax", 4.0))}
    assert bench_command.numpy_vs_frameworks(timings)["numpy_vs_fastest_framework"] == 0.5
    df = pd.DataFrame({"shape": ["s", "s"], "dtype": ["float64"] * 2, "backend": [NUMPY, "numpy"],
                       "gflop_per_step": [2.0, 2.0], "roofline_fraction": [0.95, 0.19],
                       "roofline_fraction_ci": [0.0, 0.0], "numpy_gemm_fraction": [0.95, 0.19]})
    vs = pd.DataFrame({"shape": ["s"], "dtype": ["float64"], "numpy_vs_fastest_framework": [0.5],
                       "verdict": ["met"]})
    own = bench_command.targets(df, vs)["numpy_own_products_at_large_shapes"]
    assert own["passed"] and own["worst"] == 0.95


def _ratios(value: float, fastest: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.DataFrame({"shape": ["8-2:4"] * 2, "dtype": ["float64"] * 2,
                       "backend": [bench.ROOFLINE, NUMPY], "ratio_to_fastest": [None, fastest],
                       "roofline_fraction": [1.0, value]})
    vs = pd.DataFrame({"shape": ["8-2:4"], "dtype": ["float64"],
                       "numpy_vs_fastest_framework": [None]})
    return df, vs


def test_reproducibility_compares_every_ratio_with_the_baseline():
    before = bench_repro.ratio_table(*_ratios(0.80, fastest=1.10))
    table = bench_repro.compare(bench_repro.ratio_table(*_ratios(0.88, fastest=1.12)), before)
    assert set(table.ratio) == {"ratio_to_fastest", "roofline_fraction"}   # NaNs left out
    target = bench_repro.target(table, Path("old"), {})
    assert not target["passed"] and target["within"] == 1 and target["compared"] == 2
    assert target["worst"] == pytest.approx(0.1)
    assert target["ratio"] == f"{NUMPY} roofline_fraction"


def test_the_fastest_backends_ratio_of_one_is_not_counted():
    table = bench_repro.compare(bench_repro.ratio_table(*_ratios(0.8)),
                                bench_repro.ratio_table(*_ratios(0.8)))
    assert list(table.ratio) == ["roofline_fraction"]
    assert bench_repro.target(table.iloc[:0], Path("old"), {}) is None


def as_before_the_split(folder: Path) -> None:
    """Rewrite a bench folder as runs before numpy_fast existed wrote it: the tuned backend
    named `numpy`, and no `numpy_contestant` in summary.json."""
    df = pd.read_csv(folder / "bench.csv")
    df.assign(backend=df.backend.replace({NUMPY: "numpy"})).to_csv(folder / "bench.csv",
                                                                    index=False)
    summary = json.loads((folder / "summary.json").read_text())
    del summary["numpy_contestant"]
    (folder / "summary.json").write_text(json.dumps(summary))


def as_before_the_machine_roofline(folder: Path) -> None:
    """Rewrite a bench folder as runs before the machine roofline wrote it: no `gemm:` rows,
    no numpy_gemm_fraction, and a roofline that was NumPy's products alone."""
    df = pd.read_csv(folder / "bench.csv")
    numpy_gemm = df[df.backend == NUMPY].numpy_gemm_fraction.to_numpy()
    df = df[~df.backend.str.startswith(bench.GEMM)].drop(columns=["numpy_gemm_fraction"])
    df.loc[df.backend == NUMPY, "roofline_fraction"] = numpy_gemm
    df.to_csv(folder / "bench.csv", index=False)


NOTES = {"split": f"the baseline's NumPy contestant 'numpy' is compared as '{NUMPY}'",
         "roofline": "the baseline's roofline was NumPy's products alone: its "
                     "roofline_fraction is compared as numpy_gemm_fraction"}


@pytest.mark.parametrize("legacy, compared, renamed", [
    ((), {"roofline_fraction", "numpy_gemm_fraction"}, {}),
    (("split",), {"roofline_fraction", "numpy_gemm_fraction"}, {"numpy": NUMPY}),
    (("roofline",), {"numpy_gemm_fraction"}, bench_repro.LEGACY_ROOFLINE),
], ids=["same-name", "before-the-split", "before-the-machine-roofline"])
def test_bench_baseline_writes_the_comparison(tmp_path, capsys, legacy, compared, renamed):
    """A baseline from before the split timed numpy_fast as `numpy`, one from before the
    machine roofline had NumPy's products as its roofline: each is compared as what it
    measured, and the console, summary.json and report.md say so."""
    args = ["bench", "--shapes", "16-8-3:4", "--dtypes", "float64", *THREE_ROUNDS,
            "--backends", NUMPY]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    if "roofline" in legacy:
        as_before_the_machine_roofline(tmp_path / "a")
    if "split" in legacy:
        as_before_the_split(tmp_path / "a")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b"), "--baseline", str(tmp_path / "a")]) == 0
    repro = pd.read_csv(tmp_path / "b" / "reproducibility.csv")
    assert {"value_baseline", "value", "change"} <= set(repro.columns)
    assert set(repro.backend) == {NUMPY} and set(repro.ratio) == compared
    target = json.loads((tmp_path / "b" / "summary.json").read_text()
                        )["targets"]["ratios_reproducible"]
    assert target["compared"] == len(compared) and target["renamed"] == renamed
    out = capsys.readouterr().out
    assert main(["report", str(tmp_path / "b")]) == 0
    report = (tmp_path / "b" / "report.md").read_text()
    assert "ratios within 5%" in out
    for kind, note in NOTES.items():
        assert (note in out) == (kind in legacy) == (markdown(note) in report)


@pytest.mark.parametrize("summary, timed, expected", [
    ({}, {"numpy", "torch"}, {"numpy": NUMPY}),               # before the split
    ({}, {"torch"}, {}),                                       # ... without the contestant
    ({"numpy_contestant": NUMPY}, {"numpy", NUMPY}, {}),       # `numpy` is the textbook one
    ({"numpy_contestant": "numpy_old"}, {"numpy_old"}, {"numpy_old": NUMPY}),
])
def test_the_numpy_contestant_is_matched_by_role(summary, timed, expected):
    assert bench_repro.renames(summary, timed) == expected


def test_a_baseline_from_before_the_split_is_not_the_textbook_backend(tmp_path, capsys):
    """Its `numpy` was the tuned backend: a bench of today's `numpy` cannot use it."""
    args = ["bench", "--shapes", "16-8-3:4", "--dtypes", "float64", *THREE_ROUNDS]
    assert main([*args, "--backends", NUMPY, "--out", str(tmp_path / "a")]) == 0
    as_before_the_split(tmp_path / "a")
    capsys.readouterr()
    assert main([*args, "--backends", "numpy", "--out", str(tmp_path / "b"),
                 "--baseline", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"measured with backends ['{NUMPY}'] (the baseline's" in err[0]


@pytest.mark.parametrize("extra, baseline, message", [
    ([], "missing", "not a `harness bench` results folder"),
    (["--shapes", "32-8-3:4"], "a", "shares no shape and dtype"),
    (["--threads", "1"], "a", "was measured with backends"),
    (["--in-process"], "a", "was measured with backends"),
    (["--backends", f"{NUMPY},{NUMPY},sklearn"], "a", f"was measured with backends ['{NUMPY}']"),
    ([], "damaged", "is damaged"),
])
def test_bad_baseline_is_a_one_line_error_before_any_timing(tmp_path, capsys, extra,
                                                            baseline, message):
    base = ["bench", "--shapes", "16-8-3:4", "--dtypes", "float64", *THREE_ROUNDS,
            "--backends", NUMPY, "--threads", "2"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("bench.csv", "numpy_vs_frameworks.csv", "summary.json"):
        (damaged / name).write_text("shape,dtype\n" if name.endswith("csv") else "{}")
    capsys.readouterr()
    code = main([*base, *extra, "--out", str(tmp_path / "b"),
                 "--baseline", str(tmp_path / baseline)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--baseline" in err[0] and message in err[0]
    assert not (tmp_path / "b").exists()


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2,
                    reason="pinning needs CPU affinity and two cores")
def test_a_refused_baseline_leaves_the_process_unpinned(tmp_path, capsys):
    """`--threads 1` pins the bench's process to one core; a run refused before timing must
    not, or every later test (and its subprocesses) would run on one core."""
    base = ["bench", "--shapes", "16-8-3:4", "--dtypes", "float64", *THREE_ROUNDS,
            "--backends", NUMPY, "--threads", str(len(os.sched_getaffinity(0)))]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    cores = os.sched_getaffinity(0)
    assert main([*base, "--threads", "1", "--out", str(tmp_path / "b"),
                 "--baseline", str(tmp_path / "a")]) == 2
    assert os.sched_getaffinity(0) == cores


@pytest.mark.parametrize("name", ["numpy", *bench.FRAMEWORKS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_librarys_products_are_the_steps_products(name, dtype):
    """gemm:<library> computes h @ W, h^T @ delta and (but for the first layer) delta @ W^T,
    in the run's dtype: a wrong transpose or a skipped product is caught."""
    layers = bench.operands(bench.Shape.parse("5-4-3:6"), dtype)
    if name == "numpy":
        call, sync = bench.numpy_products(layers)
    else:
        pytest.importorskip(backend_class(name).framework)
        call, sync = backend_class(name).gemm(layers)
    got = call()
    sync()
    tol = 1e-5 if dtype == "float32" else 1e-12
    for i, ((h, w, d), (z, dw, dh)) in enumerate(zip(layers, got, strict=True)):
        assert np.asarray(z).dtype == np.dtype(dtype)
        np.testing.assert_allclose(np.asarray(z), h @ w, rtol=tol)
        np.testing.assert_allclose(np.asarray(dw), h.T @ d, rtol=tol)
        assert (dh is None) == (i == 0)
        if i > 0:
            np.testing.assert_allclose(np.asarray(dh), d @ w.T, rtol=tol)


def test_a_framework_bench_times_its_own_gemm_and_names_its_blas(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench"
    assert main(["bench", "--shapes", "16-8-3:4", "--dtypes", "float32", *THREE_ROUNDS,
                 "--backends", f"{NUMPY},torch", "--in-process", "--out", str(out)]) == 0
    df = pd.read_csv(out / "bench.csv")
    assert set(df.backend) == {"roofline", bench.NUMPY_GEMM, f"{bench.GEMM}torch", NUMPY,
                               "torch"}
    roof = df[df.backend == "roofline"].iloc[0]
    libraries = df[df.backend.str.startswith(bench.GEMM)]
    assert roof.median_s <= libraries.median_s.min() * (1 + 1e-12)   # the per-round fastest
    meta = json.loads((out / "meta.json").read_text())
    assert meta["gemm_libraries"][f"{bench.GEMM}torch"].startswith("torch ")
    assert "BLAS" in meta["gemm_libraries"][f"{bench.GEMM}torch"]
