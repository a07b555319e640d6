"""A catalogue of tampered, damaged and older results folders, each run through `harness plot`
and `harness report` as the command line runs them (harness.cli.main, in-process: an
exception escaping it fails the test). Each either gives exit 2 and one line on stderr naming
the file and what is wrong, or, where the change is harmless, a correct plot and report.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from harness import cli, results
from harness.plots import training as plot_training

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "worked_example"
COMMANDS = ("plot", "report")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A folder the harness wrote, plotted and reported, to copy for every case."""
    out = results.write(tmp_path_factory.mktemp("pristine") / "res", *results.read(SOURCE))
    assert cli.main(["report", str(out)]) == 0
    return out


def edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Replace `name` by what `change` makes of its object."""
    def tamper(folder: Path) -> None:
        value = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps(change(value)))
    return tamper


def edit_csv(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    """Replace table `name` (read as text) by what `change` makes of it."""
    def tamper(folder: Path) -> None:
        table = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        change(table).to_csv(folder / name, index=False)
    return tamper


def write_text(name: str, text: str | bytes) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        path = folder / name
        path.unlink(missing_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return tamper


def into_folder(name: str) -> Callable[[Path], None]:
    """A folder where the file `name` belongs."""
    def tamper(folder: Path) -> None:
        (folder / name).unlink(missing_ok=True)
        (folder / name).mkdir()
        (folder / name / "x").write_text("")
    return tamper


def first_variant(change: Callable[[dict], None]) -> Callable[[dict], dict]:
    def edit(summary: dict) -> dict:
        change(summary["variants"][0])
        return summary
    return edit


def first_check(key: str, value: object) -> Callable[[dict], dict]:
    return first_variant(lambda v: v["checks"][0].__setitem__(key, value))


def cell(column: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[0, column] = value
        return table
    return edit


def relabel(folder: Path, labels: tuple[str, ...]) -> None:
    """The single run as a sweep of `labels`: every variant a copy, every table's rows too."""
    summary = json.loads((folder / "summary.json").read_text())
    summary["variants"] = [{**summary["variants"][0], "variant": label} for label in labels]
    (folder / "summary.json").write_text(json.dumps(summary))
    for path in folder.glob("*.csv"):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if len(table):
            copies = [table.assign(variant=label) for label in labels]
            pd.concat(copies).to_csv(path, index=False)
    for png in folder.glob("*.png"):
        png.unlink()


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Path], None]
    plot: str | None                  # fragment of the one-line error; None: harmless
    report: str | None = None         # the same for `report` (default: as for plot)
    same: bool = True                 # report expects what plot does


LABELS = ("NA", "null", "nan", "None", "")
SEED_CHECK = {"check": "gradients", "backend": "torch", "compared_to": "numpy", "seeds": 2,
              "median": 1e-16, "p95": 1e-16, "worst": 1e-16, "worst_seed": 1, "agree": 1.0,
              "fail": 0.0, "tolerance": 1e-10}
CASES = {
    # summary.json
    "summary_not_json": Case(write_text("summary.json", "{bad"), "is not valid JSON"),
    "summary_a_list": Case(write_text("summary.json", "[1, 2]"),
                           "expected a JSON object, got list"),
    "summary_without_variants": Case(edit_json("summary.json", lambda s: s.pop("variants") and s),
                                     "summary.json: variants: missing"),
    "variants_a_string": Case(edit_json("summary.json", lambda s: {**s, "variants": "all"}),
                              "variants: expected a list"),
    "experiment_a_number": Case(edit_json("summary.json", lambda s: {**s, "experiment": 7}),
                                "experiment: expected a string, got int"),
    "status_unknown": Case(edit_json("summary.json", first_check("status", "great")),
                           "variants[0].checks[0].status: 'great' is not one of ok"),
    "tolerance_a_string": Case(edit_json("summary.json", first_check("tolerance", "tiny")),
                               "checks[0].tolerance: expected a finite number, got str"),
    "dtype_unknown": Case(edit_json("summary.json",
                                    first_variant(lambda v: v.__setitem__("dtype", "float16"))),
                          "variants[0].dtype: 'float16' is not one of float64, float32"),
    "backends_numbers": Case(edit_json("summary.json",
                                       first_variant(lambda v: v.__setitem__("backends", [1]))),
                             "variants[0].backends[0]: expected a string, got int"),
    "diagnosis_without_step": Case(edit_json("summary.json", first_variant(
        lambda v: v.__setitem__("diagnosis", {"numpy": {"why": "x", "phase": "forward"}}))),
        "names a phase but no step or tensor"),
    "seeds_groups_a_string": Case(edit_json("summary.json", lambda s: {
        **s, "seeds": {"quantile": 0.95, "groups": "all"}}), "seeds.groups: expected a list"),
    "seed_median_text": Case(edit_json("summary.json", lambda s: {**s, "seeds": {
        "quantile": 0.95, "groups": [{"group": "", "seeds": 2, "verdicts": {"agree": 1.0},
                                      "checks": [{**SEED_CHECK, "median": "big"}]}]}}),
        "seeds.groups[0].checks[0].median: expected a finite number, got str"),
    "summary_nested_too_deeply": Case(write_text("summary.json", "[" * 100_000),
                                      "nested too deeply"),
    "summary_not_utf8": Case(write_text("summary.json", b"\xff\xfe{}"), "is not UTF-8 text"),
    "summary_is_a_folder": Case(into_folder("summary.json"), "is a folder, not a file"),
    "summary_missing": Case(lambda f: (f / "summary.json").unlink(),
                            "not a results folder (no summary.json)"),
    # meta.json
    "meta_missing": Case(lambda f: (f / "meta.json").unlink(), "meta.json: missing"),
    "meta_git_a_string": Case(edit_json("meta.json", lambda m: {**m, "git": "abc"}),
                              "meta.json: git: expected an object, got str"),
    "meta_command_a_string": Case(edit_json("meta.json", lambda m: {**m, "command": "run"}),
                                  "meta.json: command: expected a list, got str"),
    "meta_packages_a_list": Case(edit_json("meta.json", lambda m: {**m, "packages": ["numpy"]}),
                                 "meta.json: packages: expected an object, got list"),
    "meta_python_a_number": Case(edit_json("meta.json", lambda m: {**m, "python": 3.11}),
                                 "meta.json: python: expected a string, got float"),
    # tables
    "loss_not_a_number": Case(edit_csv("steps.csv", cell("loss", "abc")),
                              "steps.csv: column loss, line 2: 'abc' is not a number"),
    "step_fractional": Case(edit_csv("steps.csv", cell("step", "1.5")),
                            "column step, line 2: '1.5' is not a whole number"),
    "step_empty": Case(edit_csv("steps.csv", cell("step", "")),
                       "column step, line 2: '' is not a whole number"),
    "step_infinite": Case(edit_csv("grad_norms.csv", cell("step", "inf")),
                          "grad_norms.csv: column step, line 2: 'inf' is not a whole number"),
    "steps_without_loss": Case(edit_csv("steps.csv", lambda t: t.drop(columns="loss")),
                               "steps.csv: has no column loss"),
    "steps_ragged": Case(write_text("steps.csv", "variant,backend\n,numpy\n,numpy,1,2\n"),
                         "steps.csv: cannot be read as a table"),
    "steps_extra_cells": Case(write_text("steps.csv", "variant,backend\n,numpy,1\n,numpy,2\n"),
                              "steps.csv: cannot be read as a table"),
    "steps_is_a_folder": Case(into_folder("steps.csv"), "steps.csv: is a folder, not a file"),
    "parameter_not_a_tensor": Case(edit_csv("gradients.csv", cell("parameter", "Wx")),
                                   "'Wx' is not a tensor name such as W0"),
    "norm_not_a_number": Case(edit_csv("grad_norms.csv", cell("norm", "1,5")),
                              "grad_norms.csv: column norm, line 2: '1,5' is not a number"),
    "scan_not_a_boolean": Case(edit_csv("phases.csv", cell("scan", "maybe")),
                               "phases.csv: column scan, line 2: 'maybe' is not True or False"),
    "timings_seconds_text": Case(write_text("timings.csv", "variant,dtype,backend,phase,seconds\n"
                                                           ",float64,numpy,step,fast\n"),
                                 "timings.csv: column seconds, line 2: 'fast' is not a number"),
    # what plot and report write
    # drawing fails, and the folder is not what the harness wrote: one line (the report,
    # whose figures are all there, needs no drawing)
    "steps_rows_twice": Case(edit_csv("steps.csv", lambda t: pd.concat([t, t])),
                             "changed since backprop-harness wrote it: steps.csv", None,
                             same=False),
    "png_is_a_folder": Case(into_folder("loss_curves.png"), "loss_curves.png: cannot be written"),
    "report_is_a_folder": Case(into_folder("report.md"), None,
                               "report.md: cannot be written", same=False),
    # harmless: the output is right all the same
    "labels_that_look_missing": Case(lambda f: relabel(f, LABELS), None),
    "unknown_extra_column": Case(edit_csv("steps.csv", lambda t: t.assign(extra="1.0")), None),
    "user_file_inside": Case(write_text("notes.txt", "mine"), None),
    "older_folder_without_phases": Case(lambda f: (f / "phases.csv").unlink(), None),
    "manifest_garbage": Case(write_text("manifest.json", "{{{"), None),
}


def run(command: str, folder: Path, capsys) -> tuple[int, str, str]:
    code = cli.main([command, str(folder)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def copy(pristine: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "res"
    shutil.copytree(pristine, folder)
    return folder


@pytest.mark.parametrize("name", CASES)
def test_tampered_folder(name, pristine, tmp_path, capsys):
    case = CASES[name]
    folder = copy(pristine, tmp_path)
    case.tamper(folder)
    for command in COMMANDS:
        expected = case.plot if command == "plot" or case.same else case.report
        code, out, err = run(command, folder, capsys)
        if expected is None:
            assert (code, err) == (0, ""), f"{command}: {err}"
            assert out.strip().splitlines()
        else:
            assert code == 2, f"{command}: {out}"
            assert len(err.splitlines()) == 1 and err.startswith("harness: error: "), err
            assert expected in err, f"{command}: {err}"


def test_the_catalogue_is_large_enough():
    assert sum(1 for case in CASES.values() if case.plot or case.report) >= 18


def test_labels_that_look_missing_stay_labels(pristine, tmp_path, capsys):
    folder = copy(pristine, tmp_path)
    relabel(folder, LABELS)
    assert run("report", folder, capsys)[0] == 0
    frames = results.read(folder)[0]
    assert list(dict.fromkeys(frames["steps"].variant)) == list(LABELS)
    report = (folder / "report.md").read_text()
    for label in LABELS[:-1]:
        assert f"Sweep point `{label}`" in report
        assert (folder / f"loss_curves__{label}.png").is_file()
    steps_run = [line.split(" | ")[1] for line in report.splitlines()
                 if line.startswith("| numpy (ref) |")]
    assert len(steps_run) == len(LABELS) and "0" not in steps_run


def _deny(monkeypatch, name: str, writing: bool) -> None:
    """Opening files as on a file (or, for writes, a folder) the user may not touch: both
    pathlib's open and the built-in one matplotlib uses."""
    def denied(path, mode: str) -> bool:
        path = Path(os.fsdecode(path)) if isinstance(path, str | bytes | os.PathLike) else None
        return path is not None and (
            (path.name == name and not writing) or
            (writing and path.parent.name == name and bool(set(mode) & set("wax"))))

    real_path_open, real_open = Path.open, open

    def path_open(self, mode="r", *args, **kwargs):
        if denied(self, mode):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_path_open(self, mode, *args, **kwargs)

    def builtin_open(file, mode="r", *args, **kwargs):
        if denied(file, mode):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", path_open)
    monkeypatch.setattr("builtins.open", builtin_open)


@pytest.mark.parametrize(("name", "writing", "fragment"), [
    ("summary.json", False, "summary.json: cannot be read (Permission denied)"),
    ("steps.csv", False, "steps.csv: cannot be read (Permission denied)"),
    ("res", True, "cannot be written (Permission denied)"),
], ids=["unreadable_summary", "unreadable_table", "read_only_folder"])
def test_permission_denied_is_one_line(pristine, tmp_path, capsys, monkeypatch, name, writing,
                                       fragment):
    """Simulated, so that it holds for root too (which may read and write anything)."""
    folder = copy(pristine, tmp_path)
    (folder / "loss_curves.png").unlink()
    _deny(monkeypatch, name, writing)
    for command in COMMANDS:
        code, _, err = run(command, folder, capsys)
        assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_really_read_only_folder(pristine, tmp_path, capsys):
    folder = copy(pristine, tmp_path)
    (folder / "loss_curves.png").unlink()
    folder.chmod(0o555)
    try:
        for command in COMMANDS:
            code, _, err = run(command, folder, capsys)
            assert code == 2 and "cannot be written" in err, err
    finally:
        folder.chmod(0o755)


def test_a_drawing_bug_is_shown_in_full_on_a_folder_as_written(pristine, tmp_path, capsys,
                                                               monkeypatch):
    """The one-line error is for folders changed since the harness wrote them: on a folder
    exactly as written, a figure that cannot be drawn is the harness's bug, not hidden."""
    def bug(*args, **kwargs):
        raise KeyError("a bug in the figure")

    monkeypatch.setattr(plot_training, "loss_curves", bug)
    folder = copy(pristine, tmp_path)
    with pytest.raises(KeyError, match="a bug in the figure"):
        cli.main(["plot", str(folder)])
    (folder / "notes.txt").write_text("mine")
    code, _, err = run("plot", folder, capsys)
    assert code == 2 and "loss_curves.png cannot be drawn from its tables (KeyError" in err
    assert "changed since backprop-harness wrote it: notes.txt" in err
