"""The results folder: tidy CSV tables + summary.json + meta.json, written atomically.

A run writes everything into a hidden temporary folder beside the target and renames it into
place only when complete, so an interrupted or failed run leaves the previous results untouched
and no half-written folder. A folder the harness did not create is never replaced without
`force`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

TABLES = ("steps", "gradients", "same_point", "grad_norms", "final_params", "timings", "events",
          "test", "shadow", "shadow_params", "phases")
MARKER = "backprop-harness"


class ResultsError(Exception):
    """The results folder cannot be written (one-line message)."""


def _json_safe(value):
    """NaN and Inf are not JSON: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def dump_json(path: Path, value) -> None:
    path.write_text(json.dumps(_json_safe(value), indent=2, default=str) + "\n")


def as_stored(value):
    """`value` as a JSON file of the results folder holds it and `read` returns it: NaN and
    Inf become None, tuples lists, anything else JSON lacks its str."""
    return json.loads(json.dumps(_json_safe(value), default=str))


def owned(folder: Path) -> bool:
    """Whether `folder` is a results folder written by this harness."""
    try:
        return json.loads((folder / "meta.json").read_text()).get("tool") == MARKER
    except (OSError, ValueError, AttributeError):
        return False


def guard_target(out: Path, force: bool) -> None:
    """Refuse, before any work is done, to replace a folder the harness did not create, or
    to write where no folder can be made."""
    if out.exists() and not force and (not out.is_dir() or not owned(out)):
        raise ResultsError(f"{out}: exists and was not written by backprop-harness "
                           "(use --force to replace it)")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ResultsError(f"{out}: cannot be created ({parent} is not a writable folder)")


def write(out: Path, frames: dict[str, pd.DataFrame], summary: dict, meta: dict,
          force: bool = False) -> Path:
    """Write every table (name.csv), summary.json and meta.json into a temporary sibling
    folder, then swap it into place."""
    guard_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        for name, frame in frames.items():
            frame.to_csv(tmp / f"{name}.csv", index=False)
        dump_json(tmp / "summary.json", summary)
        dump_json(tmp / "meta.json", meta)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; the old one is removed only after that."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".old-{out.name}-", dir=out.parent))
    try:
        os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / out.name, out)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# Text columns that may be empty in every row (a phase row's note, the convention found):
# read back as text, not as a column of NaN floats.
TEXT_COLUMNS = ("variant", "dtype", "note", "convention")


def _read_table(path: Path) -> pd.DataFrame:
    """A stored table; sweep labels stay strings ("0.10" is not the number 0.1, "" not NaN)."""
    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame(columns=["variant", "dtype"])
    return pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str)).fillna({"variant": ""})


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: cannot be read as JSON ({err})") from None
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read(folder: Path) -> tuple[dict[str, pd.DataFrame], dict, dict]:
    """The stored tables, summary and provenance of a results folder; anything unreadable
    is a one-line ResultsError, not a traceback."""
    if not (folder / "summary.json").is_file():
        raise ResultsError(f"{folder}: not a results folder (no summary.json)")
    summary, meta = read_json(folder / "summary.json"), read_json(folder / "meta.json")
    if not isinstance(summary.get("variants"), list):
        raise ResultsError(f"{folder / 'summary.json'}: has no list of variants")
    try:
        frames = {name: _read_table(folder / f"{name}.csv") for name in TABLES}
    except (OSError, ValueError) as err:
        raise ResultsError(f"{folder}: a table cannot be read ({err})") from None
    return frames, summary, meta
