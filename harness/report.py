"""`harness report`: RESULTS_DIR/report.md, one Markdown page to paste into an issue or a paper
appendix: the overall verdict, per sweep point the verdict table, its notes, the key numbers
and the plots, then the provenance of the run and the spec as given.

Like `harness plot` it reads the stored tables alone (no torch or JAX import). Missing plots
are drawn first, so the page never links an image that is not there; it is written
atomically, like every file of a results folder.

Everything that comes from a file (the experiment's name, sweep labels, backend names, the
fields of meta.json, details and reasons) is escaped (`harness.escape`): it shows as text and
cannot close a code span, open a link or carry HTML. The spec's TOML sits in a fence longer
than any run of backticks inside it.
"""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pandas as pd

from harness import escape, results, stats, table
from harness.plots import folder as plots
from harness.plots import style as plot_style
from harness.plots import summary as plot_summary
from harness.plots.folder import Plot, Variant

REPORT = "report.md"
MISSING = "-"
LOSS_DIGITS = 6
CAPTIONS = {  # figure kind -> (title, what it shows)
    "loss_curves": ("Loss curves", "Training loss at every step and validation loss at the end "
                    "of every epoch, every backend overlaid (reference solid, the others dashed "
                    "with markers): backends that agree draw a single curve."),
    "loss_drift": ("Loss drift", "Relative difference of each backend's loss to the reference's "
                   "at every step, its running maximum, the tolerance and the dtype's machine "
                   "epsilon: float64 runs stay near epsilon, float32 runs drift visibly higher."),
    "gradient_errors": ("Gradient errors", "Worst relative gradient error per tensor over the "
                        "check steps: backend pairs evaluated at the same (reference) parameters, "
                        "i.e. pure gradient error, and each backend against finite differences."),
    "grad_norms": ("Gradient norm per layer", "L2 norm of every weight gradient at each check "
                   "step: norms shrinking towards the input mean vanishing gradients. The other "
                   "backends are hollow markers on the reference's line."),
    "timings": ("Timings", "Median wall-clock time of a training step (error bars: interquartile "
                "range), the first step (warm-up, compilation) and the setup, per backend."),
    "diagnosis": ("Where the disagreement starts", "For each backend that disagrees, every "
                  "quantity compared at the step where its disagreement starts, with every "
                  "backend at the reference's parameters and optimizer state: error over "
                  "tolerance, phase by phase in the order the diagnosis reads them (data, "
                  "forward input layer first, loss, backward output layer first, update, "
                  "evaluate). The outlined bar is the first that differs."),
    "seed_errors": ("Errors over the seeds", "Each check's worst error per seed: a box over "
                    "the seeds, every seed a dot (x where it fails), the tolerance as a red "
                    "dash and the worst seed named. Log scale; an error of exactly 0 is drawn "
                    "at the bottom."),
    "seed_drift": ("Loss drift over the seeds", "Each backend's running-worst loss drift "
                   "from the reference at every step: the median over the seeds as a line, "
                   "the 5-95 % band shaded, against the dtype's machine epsilon."),
    plots.OVERVIEW: ("Sweep overview", "Every sweep point's training loss (reference backend) "
                     "and the worst loss drift of any backend against it."),
}
KEY_HEADER = ["backend", "steps run", "last mini-batch loss", "train loss", "train acc",
              "val loss", "val acc", "test loss", "test acc", "step ms: median (IQR)",
              "first step ms", "setup ms"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells already escaped (see `_text`, `_code`)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def _text(value: object) -> str:
    """Text from a file, shown literally: no markup, no HTML, one line."""
    return escape.markdown(value)


def _code(value: object) -> str:
    """Text from a file as a code span that fits in a table cell (GFM splits cells at `|`
    even inside code spans; `\\|` there shows as `|`)."""
    return escape.code(value).replace("|", "\\|")


def _num(value: float | None, spec: str) -> str:
    """`value` formatted; a value never recorded is MISSING, a diverged one inf or nan."""
    if value is None:
        return MISSING
    return format(value, spec) if math.isfinite(value) else str(value)


def _ms(value: float | None) -> str:
    return MISSING if value is None or math.isnan(value) else plot_summary.ms_text(value)


def _last(rows: pd.DataFrame, column: str) -> float | None:
    values = rows[column].dropna() if column in rows else pd.Series(dtype=float)
    return float(values.iloc[-1]) if len(values) else None


def _loss(value: float | None) -> str:
    return _num(value, f".{LOSS_DIGITS}g")


def key_numbers(v: Variant) -> str:
    """Per backend: losses and accuracies (train/validation at the last epoch end, on the
    whole split; test after training) and timings."""
    steps, test = v.tables["steps"], v.tables["test"]
    times = plot_summary.step_times(v.tables["timings"], v.backends) \
        if not v.tables["timings"].empty else pd.DataFrame(index=v.backends)
    rows = []
    for name in v.backends:
        s = steps[steps.backend == name] if not steps.empty else steps
        t = test[test.backend == name] if not test.empty else test
        tm = times.loc[name] if name in times.index else pd.Series(dtype=float)
        step_ms = f"{_ms(tm.get('median'))} ({_ms(tm.get('q25'))} to {_ms(tm.get('q75'))})" \
            if "median" in tm else MISSING
        rows.append([_text(name) + (" (ref)" if name == v.backends[0] else ""), str(len(s)),
                     _loss(_last(s, "loss")), _loss(_last(s, "train_loss")),
                     _num(_last(s, "train_accuracy"), ".2%"), _loss(_last(s, "val_loss")),
                     _num(_last(s, "val_accuracy"), ".2%"), _loss(_last(t, "test_loss")),
                     _num(_last(t, "test_accuracy"), ".2%"), step_ms,
                     _ms(tm.get("first_step")), _ms(tm.get("setup"))])
    return _md_table(KEY_HEADER, rows)


def events(v: Variant) -> list[str]:
    """Divergences and early stops, with what the run recorded about each."""
    e = v.tables["events"]
    if e.empty:
        return []
    e = e[e.event.isin(plot_style.EVENT_MARKERS)]
    return [f"- {_text(r.backend)}: {r.event.replace('_', ' ')} at step {int(r.step)} "
            f"({_text(r.detail)})" for r in e.itertuples()]


def _figures(found: list[Plot], explain: bool = True) -> list[str]:
    """Each image under its title; with `explain`, also what the figure shows."""
    out = []
    for p in found:
        title, what = CAPTIONS[p.kind]
        out += [f"**{title}.**" + (f" {what}" if explain else ""), "",
                f"![{title}]({p.file})", ""]
    return out


def variant_section(v: Variant, found: list[Plot], sweep: bool, explain: bool) -> list[str]:
    """Verdict table, notes, key numbers, events and plots of one sweep point."""
    verdict = table.MARKDOWN_VERDICT.get(v.summary.get("verdict"), "unknown")
    name = f"Sweep point {escape.code(v.label)}" if sweep else "Results"
    out = [f"## {name} ({v.summary['dtype']}): {verdict}", "", "### Verdict", "",
           table.markdown(v.summary), "", "### Key numbers", "", key_numbers(v), "",
           "Train and validation numbers: the whole split, at the end of the last epoch; "
           "test: after training. Times are wall-clock milliseconds.", ""]
    happened = events(v)
    if happened:
        out += ["Events:", "", *happened, ""]
    if found:
        out += ["### Plots", "", *_figures(found, explain)]
    return out


def _pairs(values: dict | None) -> str:
    return ", ".join(f"{_text(k)}={_text(v)}" for k, v in (values or {}).items()) or MISSING


def backend_origin(found: dict) -> str:
    """One backend's entry of meta.json's `backends`, as plain text (the caller escapes it):
    its framework with the version, and for a plug-in the distribution that registers it."""
    if "error" in found:
        return f"cannot be loaded: {found['error']}"
    framework = found.get("framework")
    if framework is None:
        text = "no framework"
    elif found.get("framework_version") is None:
        text = f"{framework}: no installed distribution"
    else:
        text = f"{found.get('framework_distribution')} {found['framework_version']}"
    plugin = found.get("plugin_distribution")
    return text + (f"; plug-in {plugin} {found.get('plugin_version')}" if plugin else
                   "; built-in")


def _pool(pool: dict) -> str:
    version = f" {_text(pool['version'])}" if pool.get("version") else ""
    return f"{_text(pool.get('internal_api'))}{version} ({pool.get('num_threads')} threads)"


def provenance(meta: dict, summary: dict) -> str:
    """Everything needed to reproduce the run, one row per fact."""
    git = meta.get("git") or {}
    commit = git.get("commit") or "unknown"
    dirty = {True: " (with uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
    packages = meta.get("packages") or {}
    blas = meta.get("blas") or {}
    lib = blas.get("numpy_blas") or {}
    pools = "; ".join(_pool(p) for p in blas.get("threadpools") or []) or MISSING
    frameworks = meta.get("frameworks") or {}
    env = {k: v for k, v in (frameworks.get("env") or {}).items() if v is not None}
    wall = meta.get("wall_seconds")
    python = meta.get("python") or MISSING
    rows = [
        ["harness version", _text(meta.get("harness_version", MISSING))],
        ["git commit", f"{_code(commit)}{dirty}"],
        ["command", _code(shlex.join(meta.get("command") or []))],
        ["spec file", _code(meta.get("spec_path", MISSING))],
        ["overrides", _pairs(meta.get("overrides"))],
        ["started (UTC)", _text(meta.get("started", MISSING))],
        ["wall time", f"{_num(wall, '.1f')} s"],
        ["device", _text(summary.get("device", MISSING))],
        ["Python", _text((python.splitlines() or [MISSING])[0])],
        ["platform", _text(meta.get("platform", MISSING))],
        ["CPU", f"{_text(meta.get('cpu', MISSING))}, {meta.get('cpu_count', MISSING)} "
                "logical CPUs"],
        ["packages", ", ".join(f"{_text(k)} {_text(v)}" for k, v in packages.items() if v)
         or MISSING],
        ["not installed", ", ".join(_text(k) for k, v in packages.items() if not v) or "none"],
        *([f"backend {_text(name)}", _text(backend_origin(found))]
          for name, found in (meta.get("backends") or {}).items()),
        ["NumPy BLAS", f"{_text(lib.get('name', MISSING))} "
                       f"{_text(lib.get('version') or '')}".strip()],
        ["thread pools", pools],
        ["thread environment", _pairs(env) if env else "none set"],
        *([[f"{_text(name)} settings", _pairs(frameworks[name])] for name in frameworks
           if name != "env"]),
        ["seed", str(meta.get("seed", MISSING))],
        ["derived seeds", _pairs(meta.get("derived_seeds"))],
    ]
    return _md_table(["item", "value"], rows)


def _fenced(text: str, language: str) -> str:
    """A code block whose fence is longer than any run of backticks inside the text."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def render(frames: dict[str, pd.DataFrame], summary: dict, meta: dict,
           found: list[Plot]) -> str:
    """The whole report as Markdown."""
    points = plots.variants(frames, summary)
    sweep = len(points) > 1
    verdict = summary.get("verdict")
    dtypes = ", ".join(dict.fromkeys(v.summary["dtype"] for v in points))
    out = [f"# {_text(summary['experiment'])}: "
           f"{table.VERDICT_TEXT.get(verdict, 'unknown verdict')}",
           "", f"**Verdict: {table.MARKDOWN_VERDICT.get(verdict, 'unknown')}** over "
           f"{len(points)} {'sweep points' if sweep else 'run'} ({dtypes}, device "
           f"{_text(summary.get('device'))}). Backends train from the same initial weights on the "
           "same batches. Gradients, loss values and evaluations are compared at the same "
           "parameters and decide the verdict; loss curves and final parameters measure drift. "
           "Errors are relative to each tensor's scale.", ""]
    if "seeds" in summary:
        out += seeds_section(summary["seeds"], [p for p in found
                                                if p.kind in plots.SEED_FIGURES])
        out += agreeing_points([v for v in points if v.summary.get("verdict") == "agree"])
        points = [v for v in points if v.summary.get("verdict") != "agree"]
    explained = False
    for v in points:
        # In a sweep the figures are explained once, under the first point that has them.
        mine = [p for p in found if p.variant == v.label]
        out += variant_section(v, mine, sweep, not explained)
        explained = explained or bool(mine)
    overview = [p for p in found if p.variant is None and p.kind not in plots.SEED_FIGURES]
    if overview:
        out += ["## Sweep overview", "", *_figures(overview)]
    out += ["## Provenance", "", provenance(meta, summary), "", "### Spec", "",
            f"As given in {escape.code(meta.get('spec_path', MISSING))}"
            + (f", with command-line overrides {_pairs(meta.get('overrides'))}:"
               if meta.get("overrides") else ":"), "",
            _fenced(meta.get("spec_text", ""), "toml"), ""]
    return "\n".join(out)


def seeds_section(block: dict, found: list[Plot]) -> list[str]:
    """Across seeds: per group, the share of seeds with each verdict and each check's
    distribution over the seeds (`harness.stats`), then its figures. The points that agree
    have no figures of their own in a seed sweep."""
    q = round(block["quantile"] * 100)
    return ["## Across seeds", "", "Each check's worst error on each seed, summarised over "
            f"the seeds: median, {q}th percentile, the worst and its seed, and the share of "
            "seeds on which the check agrees. Only the points that do not agree have figures "
            "of their own below.", "", *stats.markdown(block), *_figures(found)]


def agreeing_points(points: list[Variant]) -> list[str]:
    """A seed sweep's points that agree, one line each (their numbers are in the statistics
    above and in the folder's tables): the report stays readable at a thousand seeds."""
    if not points:
        return []
    return ["## Points that agree", "", f"{len(points)} points: "
            + ", ".join(escape.code(v.label) for v in points) + ".", ""]


def write_report(folder: Path | str) -> Path:
    """Write folder/report.md (drawing any missing plot first); its path."""
    folder = Path(folder)
    frames, summary, meta = results.read(folder)
    found = plots.planned(folder, frames, summary)
    if not all((folder / p.file).is_file() for p in found):
        plots.plot_folder(folder)
    try:
        text = render(frames, summary, meta, found)
    except plots.DRAWING_ERRORS as err:
        raise results.damaged(folder, f"{REPORT} cannot be written from its tables",
                              err) from None
    results.claim(folder, [REPORT])
    path = folder / REPORT
    results.write_file(path, lambda tmp: tmp.write_text(text))
    return path
