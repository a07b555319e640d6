"""`harness report` on a bench folder: report.md with the machine, the issue's targets as
measured, the step-time table and the plot. Reads the stored tables alone, like every
report, each checked as it is read (harness.results.read_bench); everything that comes from
a file (backend names, shapes, libraries, meta.json's fields, a baseline's path) is escaped
(`harness.escape`), so none of it can carry markup or HTML into the page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness import escape, results
from harness.bench.plot import write_plot
from harness.bench.repro import rename_note
from harness.bench.suite import NUMPY, ROOFLINE

REPORT = "report.md"
# What rendering tables of unexpected content raises (a tampered folder's, say).
RENDER_ERRORS = (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError)


def _text(value: object) -> str:
    return escape.markdown(value)


def _ms(seconds: float) -> str:
    return "-" if pd.isna(seconds) else f"{seconds * 1e3:.3g}"


def _ratio(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}"


def step_table(bench: pd.DataFrame, vs: pd.DataFrame) -> str:
    """Median time (ms) of every library's products and every backend's step at every point,
    the roofline (the fastest library's products, and which), and the NumPy contestant's
    headline ratios: against the fastest framework (with its verdict), against NumPy's own
    products and against the machine roofline."""
    contestants = [b for b in dict.fromkeys(bench.backend) if b != ROOFLINE]
    names = " | ".join(_text(b) for b in contestants)
    lines = [f"| shape:batch | dtype | roofline | {names} | {NUMPY} / "
             f"fastest framework | NumPy GEMMs / {NUMPY} | roofline / {NUMPY} |",
             "|---|---|---|" + "---|" * len(contestants) + "---|---|---|"]
    for (shape, dtype), point in bench.groupby(["shape", "dtype"], sort=False):
        by = point.set_index("backend")
        vs_row = vs[(vs["shape"] == shape) & (vs["dtype"] == dtype)].iloc[0]
        own = by.numpy_gemm_fraction.get(NUMPY, float("nan"))
        roof = by.roofline_fraction.get(NUMPY, float("nan"))
        times = " | ".join(_ms(by.median_s.get(b, float("nan"))) for b in contestants)
        lines.append(f"| {_text(shape)} | {_text(dtype)} | {_ms(by.median_s[ROOFLINE])} "
                     f"({_text(by.library[ROOFLINE])}) | {times} | "
                     f"{_ratio(vs_row.numpy_vs_fastest_framework)} ({_text(vs_row.verdict)}) | "
                     f"{_ratio(own)} | {_ratio(roof)} |")
    return "\n".join(lines)


def library_lines(meta: dict) -> list[str]:
    """Which library does each `gemm:` contestant's products, and the CPU's peak."""
    lines = [f"- {escape.code(gemm)}: {_text(lib)}"
             for gemm, lib in meta.get("gemm_libraries", {}).items()]
    peak = meta.get("cpu_peak")
    if peak:
        lines.append(f"- theoretical peak: {peak['gflops']['float32']:g} GFLOP/s float32, "
                     f"{peak['gflops']['float64']:g} float64 ({peak['cores']} cores x "
                     f"{peak['clock_ghz']:g} GHz x {peak['simd_bits']}-bit FMA x "
                     f"{peak['fma_units_assumed']} FMA units assumed: an upper bound)")
    return lines


def machine_line(meta: dict, summary: dict, bench: pd.DataFrame) -> str:
    """Where, with what, and how it was measured: NumPy's version (the roofline is always
    timed) and those of the frameworks timed."""
    packages, timed = meta.get("packages", {}), {"numpy", *bench["backend"]}
    versions = ", ".join(f"{p} {_text(packages[p])}" for p in ("numpy", "torch", "jax")
                         if p in packages and p in timed)
    where = "all in one process" if summary["in_process"] else "each backend in its own process"
    least, most = int(bench["rounds"].min()), int(bench["rounds"].max())
    rounds = f"{least}" if least == most else f"{least} to {most}"
    more = (f", more while a point's ratios were uncertain by over {summary['precision']:.0%}"
            if "precision" in summary else "")
    return (f"Measured {_text(meta.get('started', '?'))} on {_text(meta.get('cpu', '?'))} "
            f"({meta.get('cpu_count', '?')} cores), {summary['threads']} threads per framework, "
            f"{versions}; median step time in ms ({rounds} interleaved rounds{more}, "
            f"{where}).")


def _quoted(value: object) -> str:
    return f"`{escape.terminal(value)}`"


def target_detail(t: dict, esc: Callable[[object], str] = escape.terminal,
                  code: Callable[[object], str] = _quoted) -> str:
    """How a target came out, after its verdict: "(worst 1.04 at SHAPE DTYPE, target 1.0)",
    and for the reproducibility target how many ratios stayed within it of which baseline,
    and which of the baseline's backends had another name. Text from files goes through
    `esc` (and the baseline's path through `code`): the terminal's escape by default, the
    report's Markdown ones in report.md."""
    where = f"{esc(t['shape'])} {esc(t['dtype'])}" + \
        (f" {esc(t['ratio'])}" if "ratio" in t else "")
    extra = (f"; {t['within']} of {t['compared']} ratios within {t['target']:.0%} of "
             f"{code(t['baseline'])}" if "within" in t else "")
    if t.get("renamed"):
        extra += f"; {esc(rename_note(t['renamed']))}"
    if "miss" in t:
        extra += (f"; {t['met']} met, {t['tie']} tied within the CI, {t['miss']} missed, "
                  f"{t['not judged']} not judged (NumPy's GEMMs slower than the framework's)")
    if "backend" in t:
        where += f" {esc(t['backend'])}"
    goal = "" if t["target"] is None else f", target {t['target']}"
    return f"(worst {t['worst']:.2f} at {where}{goal}{extra})"


def target_lines(targets: dict) -> list[str]:
    return [f"- {escape.code(name)}: " +
            (f"**{outcome(t)}** {target_detail(t, _text, escape.code)}"
             if t else "n/a (no point of this run decides it)")
            for name, t in targets.items()]


def outcome(t: dict) -> str:
    """met / not met, or "reported" for a figure measured without a target."""
    return "reported" if t["passed"] is None else "met" if t["passed"] else "not met"


def render(bench: pd.DataFrame, vs: pd.DataFrame, summary: dict, meta: dict) -> str:
    return "\n".join(["# Benchmark", "", machine_line(meta, summary, bench), "",
                      "## Libraries", "", *library_lines(meta), "", "## Targets",
                      "", *target_lines(summary["targets"]), "", "## Step times", "",
                      step_table(bench, vs), "", "![GFLOP/s against work](bench.png)", ""])


def write_bench_report(folder: Path) -> Path:
    """Write FOLDER/report.md for a `harness bench` results folder; returns its path. A
    damaged folder is a one-line ResultsError, not a traceback."""
    tables, summary, meta = results.read_bench(folder)
    try:
        text = render(tables["bench"], tables["numpy_vs_frameworks"], summary, meta)
    except RENDER_ERRORS as err:
        raise results.damaged(folder, "not a readable bench folder", err) from None
    if not (folder / "bench.png").is_file():
        write_plot(folder)
    results.claim(folder, [REPORT])
    path = folder / REPORT
    results.write_file(path, lambda tmp: tmp.write_text(text))
    return path
