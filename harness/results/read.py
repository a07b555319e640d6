"""Reading a results folder back, for `plot`, `report`, `harness.load` and a bench baseline:
every file is checked as it is read, so a damaged, tampered or older folder gives one line
naming the file and what is wrong with it (exit 2), never a traceback further on.

JSON files must be objects of the shape harness.results.schema gives; tables must be CSV
whose number columns hold numbers and whose label columns stay text: a sweep labelled `NA`,
`null`, `nan` or `None` reads back as that string, not as a missing value.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from harness import escape
from harness.results import schema
from harness.results.names import BENCH_TABLES, META, SUMMARY, TABLES, ResultsError

MAX_JSON_BYTES = 64 << 20            # far above any summary.json or meta.json the harness
                                     # writes; a larger one is not read into memory
MAX_SHOWN = 40                       # characters of a bad cell quoted in an error
# Columns of label text: read as strings, never as numbers or missing values ("" excepted,
# which stays "" for the sweep label and is missing elsewhere). Every other column holds
# numbers, except the true/false ones.
TEXT_COLUMNS = ("variant", "dtype", "backend", "parameter", "compared_to", "evaluated_at",
                "status", "event", "detail", "phase", "tensor", "quantity", "note",
                "convention", "shape", "library", "verdict", "ratio")
BOOL_COLUMNS = {"scan": {"True": True, "False": False}}
LABELS = ("variant", "dtype")        # the columns a run gives every table
STEP_COLUMNS = ("step", "round")     # whole numbers, present in every row
WHOLE_COLUMNS = ("epoch", "layer", "rounds")   # whole numbers where present
PARAMETER = r"[A-Za-z]+[0-9]+"       # W0, b1: the figures sort tensors by their layer number
# The columns the figures and reports read from a table that has rows.
REQUIRED = {
    "steps": ("backend", "step", "loss"),
    "events": ("backend", "step", "event", "detail"),
    "gradients": ("backend", "step", "parameter", "compared_to", "evaluated_at",
                  "max_rel_err"),
    "grad_norms": ("backend", "step", "parameter", "norm"),
    "timings": ("backend", "phase", "seconds"),
    "test": ("backend",),
    "phases": ("backend", "compared_to", "step", "phase", "tensor", "max_rel_err",
               "tolerance", "status"),
    "bench": ("shape", "dtype", "backend", "library", "median_s", "gflop_per_step", "gflops",
              "numpy_gemm_fraction", "roofline_fraction", "rounds"),
    "numpy_vs_frameworks": ("shape", "dtype", "numpy_vs_fastest_framework", "verdict"),
}


def _shown(value: object) -> str:
    text = repr(value)
    return escape.terminal(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def check_file(path: Path) -> None:
    """`path` is a regular file that can be opened: not missing, not a folder."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ResultsError(f"{path}: is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise ResultsError(f"{path}: is not a regular file")
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise ResultsError(f"{path}: missing") from None
    except OSError as err:
        raise ResultsError(f"{path}: cannot be read ({err.strerror})") from None


def read_json(path: Path) -> dict:
    """A JSON object from `path`; anything else is a one-line ResultsError."""
    check_file(path)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ResultsError(f"{path}: is {path.stat().st_size} bytes, more than the "
                           f"{MAX_JSON_BYTES} a results file may have")
    try:
        value = json.loads(path.read_text())
    except OSError as err:
        raise ResultsError(f"{path}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: is not UTF-8 text") from None
    except RecursionError:
        raise ResultsError(f"{path}: is nested too deeply to be a results file") from None
    except ValueError as err:
        raise ResultsError(f"{path}: is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _checked(path: Path, check, value: dict) -> dict:
    try:
        check(value)
    except schema.SchemaError as err:
        raise ResultsError(f"{path}: {err}") from None
    return value


def _column(path: Path, name: str, cells: pd.Series) -> pd.Series:
    """One column of a table read as text, as the type its name says."""
    cells = cells.fillna("")
    if name in TEXT_COLUMNS:
        return cells if name == "variant" else cells.replace("", np.nan)
    if name in BOOL_COLUMNS:
        values = cells.map(BOOL_COLUMNS[name])
        return _fail_at(path, name, cells, values.isna(), "is not True or False") \
            if values.isna().any() else values.astype(bool)
    numbers = pd.to_numeric(cells.replace("", np.nan), errors="coerce")
    bad = numbers.isna() & (cells != "") & (cells.str.lower() != "nan")
    if bad.any():
        _fail_at(path, name, cells, bad, "is not a number")
    if name in STEP_COLUMNS + WHOLE_COLUMNS:
        finite = np.isfinite(numbers)
        bad = (numbers.notna() & ~finite) | (finite & (numbers != np.round(numbers)))
        if name in STEP_COLUMNS:
            bad |= numbers.isna()
        if bad.any():
            _fail_at(path, name, cells, bad, "is not a whole number")
    return numbers


def _fail_at(path: Path, name: str, cells: pd.Series, bad: pd.Series, what: str):
    row = int(np.flatnonzero(bad.to_numpy())[0])
    raise ResultsError(f"{path}: column {escape.terminal(name)}, line {row + 2}: "
                       f"{_shown(cells.iloc[row])} {what}")


def _untyped(raw: pd.DataFrame) -> pd.DataFrame:
    """A table with no rows has no values to type: its columns are objects, as in a table
    built empty in memory, except the two labels every table of a run is given."""
    return raw.astype({name: object for name in raw.columns if name not in LABELS})


def read_table(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A stored table with its columns typed (see TEXT_COLUMNS); an absent or empty file is
    an empty table (older harnesses wrote fewer tables)."""
    if not os.path.lexists(path):
        return pd.DataFrame(columns=["variant", "dtype"])
    check_file(path)
    try:
        with warnings.catch_warnings():
            # More cells than names in a row: an error, never a silent shift into the index.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=["variant", "dtype"])
    except (OSError, ValueError, pd.errors.ParserWarning) as err:
        raise ResultsError(f"{path}: cannot be read as a table "
                           f"({escape.terminal(str(err).strip().splitlines()[-1])})") from None
    if raw.empty:
        return _untyped(raw)
    table = pd.DataFrame({name: _column(path, name, raw[name]) for name in raw.columns},
                         index=raw.index)
    missing = [c for c in required if c not in table]
    if len(table) and missing:
        raise ResultsError(f"{path}: has no column {', '.join(missing)}")
    if "parameter" in table:
        tensors = table["parameter"].fillna("")
        bad = ~tensors.str.fullmatch(PARAMETER)
        if bad.any():
            _fail_at(path, "parameter", tensors, bad, "is not a tensor name such as W0")
    return table


def _folder(folder: Path) -> None:
    """`folder` is a folder whose summary.json is there."""
    if not folder.exists():
        raise ResultsError(f"{folder}: does not exist")
    if not folder.is_dir():
        raise ResultsError(f"{folder}: is not a folder")
    if not os.path.lexists(folder / SUMMARY):
        raise ResultsError(f"{folder}: not a results folder (no {SUMMARY})")


def read(folder: Path | str) -> tuple[dict[str, pd.DataFrame], dict, dict]:
    """The stored tables, summary and provenance of an experiment's results folder; anything
    unreadable or of the wrong shape is a one-line ResultsError."""
    folder = Path(folder)
    _folder(folder)
    summary = _checked(folder / SUMMARY, schema.check_summary, read_json(folder / SUMMARY))
    meta = _checked(folder / META, schema.check_meta, read_json(folder / META))
    frames = {name: read_table(folder / f"{name}.csv", REQUIRED.get(name, ()))
              for name in TABLES}
    return frames, summary, meta


def read_bench(folder: Path | str) -> tuple[dict[str, pd.DataFrame], dict, dict]:
    """The tables, summary and provenance of a `harness bench` folder, checked the same way."""
    folder = Path(folder)
    _folder(folder)
    summary = _checked(folder / SUMMARY, schema.check_bench_summary,
                       read_json(folder / SUMMARY))
    meta = _checked(folder / META, schema.check_bench_meta, read_json(folder / META))
    frames = {}
    for name in BENCH_TABLES:
        path = folder / f"{name}.csv"
        if name in REQUIRED and not os.path.lexists(path):
            raise ResultsError(f"{path}: missing")
        frames[name] = read_table(path, REQUIRED.get(name, ()))
    return frames, summary, meta
