"""What killed writes leave beside a results folder, how it is recognised, and how a folder of
the harness is deleted so that a kill halfway leaves it recognisable.

Beside `results/<name>` a write makes a version (`.<name>.harness-<token>`), the first file of
which is its manifest, and a trash folder (`.<name>.harness-<token>.trash`), the first file
of which is a manifest saying it is one. Either may be left by a kill. The next write of the
same target deletes exactly these (never the version the link shows, never anything else):

- a version: just made (nothing but a manifest, perhaps half-written) or with a manifest of
  the harness naming every entry in it;
- a trash folder: just made, or with its discard manifest;
- an older harness's `.tmp-<name>-*` (a folder of that harness's files) and `.old-<name>-*`
  (empty, or holding one such folder named like the target).

A folder of the right name holding anything else is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from harness.results import manifest
from harness.results.names import (
    BENCH,
    EXPERIMENT,
    MANIFEST,
    MARKER,
    is_legacy_file,
    sibling_kind,
)


def discard_marker(target: str) -> dict:
    """The manifest of a trash folder of `target`."""
    return {"tool": MARKER, "discard": True, "target": target}


def _only_manifest(folder: Path) -> bool:
    """Empty, or holding nothing but a manifest (perhaps half-written): a folder the
    harness had just made when it was killed."""
    return set(os.listdir(folder)) <= {MANIFEST}


def _is_trash(folder: Path) -> bool:
    """A trash folder of the harness: its manifest says so (or it was just made)."""
    if _only_manifest(folder):
        return True
    try:
        marker = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(marker, dict) and marker.get("tool") == MARKER and \
        marker.get("discard") is True


def _is_stale_version(folder: Path) -> bool:
    """A version of the harness: just made, or with a manifest of the harness naming every
    entry (its tables, their temporary files, plots and reports added later)."""
    return _only_manifest(folder) or (manifest.load(folder) is not None and
                                      not manifest.inspect(folder).foreign)


def _is_legacy_leftover(folder: Path, target: str) -> bool:
    """An older harness's `.tmp-*` (a folder of its files) or `.old-*` (empty, or holding
    one such folder named like the target)."""
    entries = os.listdir(folder)
    if folder.name.startswith(".old-"):
        return not entries or (entries == [target] and
                               _is_legacy_leftover_files(folder / target))
    return _is_legacy_leftover_files(folder)


def _is_legacy_leftover_files(folder: Path) -> bool:
    if folder.is_symlink() or not folder.is_dir():
        return False
    entries = os.listdir(folder)
    return any(all(is_legacy_file(kind, n) and (folder / n).is_file() for n in entries)
               for kind in (EXPERIMENT, BENCH))


def found(out: Path) -> list[Path]:
    """What killed writes of `out` left beside it, by name and manifest (never the version
    the link shows)."""
    current = os.readlink(out) if out.is_symlink() else None
    return [out.parent / entry for entry in sorted(os.listdir(out.parent))
            if entry != current and is_leftover(out.parent / entry, out.name)]


def is_leftover(path: Path, target: str) -> bool:
    """Whether `path` is a folder a killed write of `target` left (unreadable: no)."""
    kind = sibling_kind(target, path.name)
    if kind is None or path.is_symlink() or not path.is_dir():
        return False
    try:
        return (kind == "version" and _is_stale_version(path)) or \
            (kind == "trash" and _is_trash(path)) or \
            (kind == "legacy" and _is_legacy_leftover(path, target))
    except OSError:
        return False


def delete(folder: Path) -> None:
    """Delete a folder of the harness so that a kill at any point leaves it recognisable by
    its manifest: every other entry first, the manifest last."""
    for entry in sorted(os.listdir(folder)):
        path = folder / entry
        if entry == MANIFEST:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)
    folder.rmdir()


def delete_quietly(folder: Path | None) -> None:
    """`delete`, leaving to the next write what cannot be deleted now."""
    if folder is not None:
        with contextlib.suppress(OSError):
            delete(folder)
