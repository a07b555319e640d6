"""Text from files cannot inject anything: sweep labels, experiment and spec file names, a
foreign meta.json's fields, plug-in backend names and skipped reasons show in report.md as
text (no code span closed, no table cell split, no HTML), the spec's TOML cannot close its
fence, the console shows control characters instead of acting on them, and figures draw `$`
as a dollar sign. Labels that look like missing values read back as the labels they are.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness import cli, escape, results, table
from harness.bench.report import write_bench_report
from harness.report import write_report

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "worked_example"
ROWS = 20
LABELS = ("`code`", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a|b",
          "two\nlines", "\x1b[31mred\x1b[0m", "[link](http://x)", "$x^2$ $\\bad{", "NA")
HOSTILE = "<img src=x onerror=alert(1)>|`tick`\x1b[2J"
SPEC_TEXT = 'name = "x"\n# a run of four: ````\n"""\n```\n</code></pre><script>x</script>\n'
FENCE = "`````"                       # one longer than the longest run in SPEC_TEXT


RENAMED = "jax"                       # the backend that gets the hostile name


def _renamed(value):
    """`value` (from summary.json) with the backend RENAMED called HOSTILE."""
    if isinstance(value, dict):
        return {_renamed(k): _renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    return HOSTILE if value == RENAMED else value


def hostile(frames: dict, summary: dict, meta: dict) -> tuple[dict, dict, dict]:
    """The small run as a sweep over LABELS, with hostile names everywhere a file has text."""
    point = _renamed(summary["variants"][0])
    variants = [{**point, "variant": label,
                 "skipped": {HOSTILE: f"not installed: {HOSTILE}"},
                 "not_compared": [f"because {HOSTILE}"]} for label in LABELS]
    tables = {name: pd.concat([f.head(ROWS).assign(variant=label) for label in LABELS])
              .replace({"backend": {RENAMED: HOSTILE}, "compared_to": {RENAMED: HOSTILE}})
              if len(f) else f for name, f in frames.items()}
    meta = {**meta, "spec_path": f"specs/{HOSTILE}.toml", "spec_text": SPEC_TEXT,
            "command": ["harness", "run", HOSTILE], "packages": {HOSTILE: "1|2"},
            "backends": {HOSTILE: {"framework": HOSTILE, "framework_version": "1",
                                   "framework_distribution": HOSTILE,
                                   "plugin_distribution": HOSTILE, "plugin_version": "1"}},
            "git": {"commit": "abc`def", "dirty": False}, "cpu": HOSTILE,
            "overrides": {"dtype": HOSTILE}}
    return tables, {**summary, "experiment": f"exp {HOSTILE}", "variants": variants}, meta


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("hostile") / "res"
    results.write(out, *hostile(*results.read(SOURCE)))
    return out, write_report(out).read_text()


def outside_spec(text: str) -> str:
    """The report without its spec block (the one place raw text from the file belongs)."""
    start = text.index(f"{FENCE}toml\n")
    end = text.index(f"\n{FENCE}\n", start)
    return text[:start] + text[end + len(FENCE) + 2:]


def test_the_spec_cannot_close_its_fence(report):
    text = report[1]
    block = text[text.index(f"{FENCE}toml\n") + len(FENCE) + 5:]
    assert block[:block.index(f"\n{FENCE}\n")] == SPEC_TEXT.rstrip()


def without_code_spans(text: str) -> str:
    """Markdown shows a code span's content as text: what is left is what renders."""
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)


@pytest.mark.parametrize("raw", [*map(re.escape, ["<script", "<img", "</code>", "\x1b",
                                                 "](http"]),
                                 r"(?<!\\)`"], ids=["script", "img", "code", "esc", "link",
                                                      "backtick"])
def test_nothing_from_a_file_is_markup_in_the_report(report, raw):
    assert not re.search(raw, without_code_spans(outside_spec(report[1])))


def test_every_label_keeps_its_heading_on_one_line(report):
    headings = [line for line in report[1].splitlines() if line.startswith("## Sweep point ")]
    assert len(headings) == len(LABELS)
    assert "## Sweep point `` `code` ``" in headings[0]


def test_table_rows_have_as_many_cells_as_their_header(report):
    tables: list[list[int]] = [[]]
    for line in outside_spec(report[1]).splitlines():
        if line.startswith("|"):
            tables[-1].append(len(re.findall(r"(?<!\\)\|", line)))
        elif tables[-1]:
            tables.append([])
    tables = [t for t in tables if t]
    assert len(tables) == 2 * len(LABELS) + 1             # verdict, key numbers; provenance
    assert all(len(set(t)) == 1 for t in tables), tables
    assert report[1].count(escape.markdown(HOSTILE)) > len(LABELS)


def test_the_rendered_report_has_no_html_from_a_file(report):
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(report[1])
    for tag in (r"<script", r"<[^>]*\sonerror\s*=", r"<img src=.?x"):
        assert not re.search(tag, html)
    assert "<h1>exp &lt;img src=x onerror=alert(1)&gt;|<code>tick</code>" not in html
    assert "<h1>exp &lt;img src=x onerror=alert(1)&gt;|`tick`\\x1b[2J" in html


def test_figures_draw_labels_with_dollars_as_text(report, capsys, recwarn):
    out = report[0]
    assert cli.main(["plot", str(out)]) == 0
    assert not [w for w in recwarn if "Glyph" in str(w.message)]
    drawn = capsys.readouterr().out.splitlines()
    assert len({Path(p).name.split("__")[-1] for p in drawn}) > len(LABELS)


def test_labels_that_look_missing_read_back_as_labels(report):
    frames = results.read(report[0])[0]
    assert list(dict.fromkeys(frames["steps"].variant)) == list(LABELS)


def test_the_console_table_shows_control_characters_instead_of_acting(report):
    summary = results.read(report[0])[1]
    point = {**summary["variants"][0], "backends": [HOSTILE, "numpy"], "reference": HOSTILE}
    shown = table.text(point)
    assert "\x1b" not in shown and "\\x1b[2J" in shown
    assert len(shown.splitlines()) == len(table.rows(point)[1]) + 1 + len(table.notes(point))


def test_the_bench_report_escapes_names_from_its_files(tmp_path):
    folder = tmp_path / "bench"
    shutil.copytree(ROOT / "results" / "bench", folder)
    bench = pd.read_csv(folder / "bench.csv", dtype=str, keep_default_na=False)
    bench["backend"] = bench["backend"].replace("torch", HOSTILE)
    bench.to_csv(folder / "bench.csv", index=False)
    meta = results.read_json(folder / "meta.json")
    meta.update(started=HOSTILE, cpu=HOSTILE, gemm_libraries={HOSTILE: HOSTILE})
    results.dump_json(folder / "meta.json", meta)
    text = write_bench_report(folder).read_text()
    for raw in ("<img", "\x1b", "|`tick`"):
        assert raw not in without_code_spans(text)
    assert text.count(escape.markdown(HOSTILE)) >= 3       # machine line, table header
