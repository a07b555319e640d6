"""Ownership by manifest: every folder the harness writes holds `manifest.json`, naming the
tool, the kind of folder (an experiment's or the benchmark's), every file the write put there
with its size and SHA-256, and the files later commands may add (plots, report.md).

A folder is the harness's to replace only when its manifest says so, for the same kind, and
it holds nothing else and nothing changed since: a user's notes.txt, an edited summary.json
or a copied meta.json all make it someone else's. Folders written by an older harness, which
had no manifest, count as the harness's when meta.json names the harness, summary.json is
there and every file has a name that harness wrote.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import escape
from harness.results.names import (
    DERIVED,
    KINDS,
    MANIFEST,
    MARKER,
    META,
    SUMMARY,
    ResultsError,
    is_legacy_file,
    listed,
    temporary_of,
)

CHUNK = 1 << 20                      # bytes hashed per read: large tables never sit in memory


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


def write_atomically(path: Path, write) -> None:
    """`write(tmp)` into a hidden file beside `path` (`.<name>.<8 hex>.tmp`, a name the
    ownership check knows), then rename it over `path`: no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fingerprint(path: Path) -> dict:
    """Size and SHA-256 of one file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def start(folder: Path, kind: str, planned: Iterable[str]) -> None:
    """The manifest of a folder being written: the files to come, not yet fingerprinted. It
    is the folder's first file, so a killed write leaves a folder that says whose it is."""
    dump_json(folder / MANIFEST, {"tool": MARKER, "kind": kind, "complete": False,
                                  "files": dict.fromkeys(planned),
                                  "derived": list(DERIVED[kind])})


def finish(folder: Path, kind: str, written: Iterable[str]) -> None:
    """The manifest of a complete folder: every file written, fingerprinted."""
    manifest = {"tool": MARKER, "kind": kind, "complete": True,
                "files": {name: fingerprint(folder / name) for name in written},
                "derived": list(DERIVED[kind])}
    write_atomically(folder / MANIFEST, lambda tmp: dump_json(tmp, manifest))


def load(folder: Path) -> dict | None:
    """The folder's manifest when it is one the harness wrote and can use, else None."""
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    valid = isinstance(found, dict) and found.get("tool") == MARKER and \
        found.get("kind") in KINDS and isinstance(found.get("files"), dict) and \
        isinstance(found.get("derived"), list) and \
        all(isinstance(n, str) for n in [*found["files"], *found["derived"]]) and \
        all(v is None or isinstance(v, dict) for v in found["files"].values())
    return found if valid else None


def write_file(path: Path, write) -> None:
    """A file a command adds to a results folder, written atomically; a folder that takes
    no files (read-only, a folder where the file belongs) is a one-line ResultsError."""
    try:
        write_atomically(path, write)
    except OSError as err:
        raise ResultsError(f"{path}: cannot be written ({err.strerror})") from None


def claim(folder: Path, names: Iterable[str]) -> None:
    """Record in the manifest files a command is about to add (plots, a report), before it
    writes them, so the next run knows them for the harness's. A folder without a usable
    manifest (an older harness's) is left as it is."""
    manifest = load(folder)
    if manifest is None:
        return
    new = [n for n in names if n not in manifest["derived"] and n not in manifest["files"]]
    if new:
        manifest["derived"] += new
        write_file(folder / MANIFEST, lambda tmp: dump_json(tmp, manifest))


@dataclass(frozen=True)
class Found:
    """What a folder is, as far as replacing it goes."""
    kind: str | None                  # the kind of harness folder it is; None: not one
    why: str = ""                     # when kind is None: why not
    foreign: tuple[str, ...] = ()     # entries the harness did not write
    changed: tuple[str, ...] = ()     # files the harness wrote that differ from what it wrote


def _entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def _known(name: str, manifest: dict) -> bool:
    """Whether `name` is a file of the manifest, a derived file, or a temporary one of them."""
    name = temporary_of(name) or name
    return name == MANIFEST or name in manifest["files"] or name in manifest["derived"]


def _changed(folder: Path, manifest: dict) -> tuple[str, ...]:
    """The manifest's files that are no longer what was written (missing ones excepted: a
    file deleted is nothing a rerun could destroy)."""
    out = []
    for name, recorded in manifest["files"].items():
        path = folder / name
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or not path.is_file() or recorded is None or \
                path.stat().st_size != recorded.get("bytes") or \
                fingerprint(path) != recorded:
            out.append(name)
    return tuple(out)


def _legacy(folder: Path, names: list[str]) -> Found:
    """A folder without a manifest: an older harness's when meta.json names the harness,
    summary.json is there and every other file has a name that harness wrote."""
    try:
        tool = json.loads((folder / META).read_text()).get("tool")
    except (OSError, ValueError, AttributeError, RecursionError):
        tool = None
    if tool != MARKER or SUMMARY not in names:
        return Found(None, "it has no manifest.json")
    kind = "bench" if "bench.csv" in names else "experiment"
    foreign = tuple(n for n in names if not is_legacy_file(kind, n) or
                    not (folder / n).is_file() or (folder / n).is_symlink())
    return Found(kind, foreign=foreign)


def inspect(folder: Path) -> Found:
    """Whose `folder` (an existing directory) is, and what in it the harness did not write
    or no longer recognises. Unreadable folders are nobody's."""
    try:
        names = _entries(folder)
        manifest = load(folder)
        if manifest is None:
            if MANIFEST in names:
                return Found(None, f"its {MANIFEST} was not written by {MARKER}")
            return _legacy(folder, names)
        foreign = tuple(n for n in names if not _known(n, manifest) or
                        (folder / n).is_symlink() or not (folder / n).is_file())
        return Found(manifest["kind"], foreign=foreign, changed=_changed(folder, manifest))
    except OSError as err:
        return Found(None, f"it cannot be read: {err.strerror}")


def changed_files(folder: Path) -> list[str] | None:
    """The files of a results folder changed since the harness wrote them, [] when it is
    exactly as written, None when that cannot be known (no manifest: an older harness's)."""
    manifest = load(folder)
    if manifest is None:
        return None
    found = inspect(folder)
    missing = [n for n in manifest["files"] if not os.path.lexists(folder / n)]
    return sorted({*found.foreign, *found.changed, *missing})


def damaged(folder: Path, what: str, err: Exception) -> Exception:
    """What to raise when `what` failed on a folder's stored tables: a one-line ResultsError
    when the folder is not exactly what the harness wrote (its files changed, or no manifest
    says what was written), else `err` itself: a bug of the harness, to be seen in full."""
    changed = changed_files(folder)
    if changed == []:
        return err
    why = "the folder has no manifest (an older harness's, or changed since)" \
        if changed is None else f"changed since {MARKER} wrote it: {listed(changed)}"
    return ResultsError(f"{folder}: {what} ({type(err).__name__}: "
                        f"{escape.terminal(err)}); {why}")
