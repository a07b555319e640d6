"""Writing a results folder so that its path shows a complete folder at every instant.

`results/<name>` is a symbolic link to a hidden sibling, `.<name>.harness-<token>`, holding
one complete version. A write fills a new version (manifest first, fingerprints last), then
replaces the link with one atomic rename of a new link over it: before that rename the path
shows the old version, after it the new one. The old version is then moved into a hidden
trash folder (`.<name>.harness-<token>.trash`, marked by its own manifest) and deleted.

A plain folder at the path (written by an older harness, or a foreign one with --force)
cannot be replaced by a link with one plain rename: on Linux the two are swapped with one
`renameat2(RENAME_EXCHANGE)`, atomic too. Where that call is missing (other systems, some
file systems) the folder is first moved into the trash and the link then renamed into place:
the path is absent for that one instant, and the next write, or a Ctrl-C's handler, finishes
the swap from the trash before anything else.

Every write of a target first takes a lock on the parent folder, then finishes such a swap,
then deletes what killed writes of the same target left behind (harness.results.leftover).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from harness.results import leftover, manifest
from harness.results.guard import Target, check
from harness.results.names import (
    EXPERIMENT,
    LINK,
    MANIFEST,
    META,
    OLD,
    SUMMARY,
    UNTOUCHED,
    ResultsError,
    ResultsInterrupted,
    sibling_kind,
    trash_name,
    version_name,
)

AT_FDCWD = -100                      # <fcntl.h>: paths relative to the working directory
RENAME_EXCHANGE = 2                  # <linux/fs.h>: swap the two names atomically
UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
TRIES = 8                            # fresh tokens tried before a name clash is an error


@contextlib.contextmanager
def locked(parent: Path) -> Iterator[None]:
    """One write at a time in `parent`: a clean-up never sees another write's half-made
    version. The lock goes with the process, so a kill never leaves it held."""
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fresh(parent: Path, name_of) -> Path:
    """A new folder `parent/name_of(token)`, made with the user's usual permissions."""
    for _ in range(TRIES):
        path = parent / name_of(secrets.token_hex(4))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ResultsError(f"{parent}: no free name for a new folder after {TRIES} tries")


def exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` atomically; False where this system cannot."""
    call = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if call is None:
        return False
    if call(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(b))


def recover(out: Path) -> None:
    """Finish a swap a kill interrupted between its two renames (the fallback without
    renameat2): the old version is in a trash and the new link is beside it."""
    if os.path.lexists(out):
        return
    for entry in sorted(os.listdir(out.parent)):
        trash = out.parent / entry
        link = trash / LINK
        if sibling_kind(out.name, entry) == "trash" and link.is_symlink() and \
                os.path.lexists(trash / OLD) and \
                sibling_kind(out.name, os.readlink(link)) == "version" and \
                (out.parent / os.readlink(link) / MANIFEST).is_file():
            os.rename(link, out)
            return


def _fill(version: Path, frames: dict[str, pd.DataFrame], summary: dict, meta: dict,
          kind: str) -> None:
    """Every table, summary.json and meta.json, between the two manifests."""
    planned = [*(f"{name}.csv" for name in frames), SUMMARY, META]
    manifest.start(version, kind, planned)
    for name, frame in frames.items():
        frame.to_csv(version / f"{name}.csv", index=False)
    manifest.dump_json(version / SUMMARY, summary)
    manifest.dump_json(version / META, meta)
    manifest.finish(version, kind, planned)


def _trash(out: Path) -> Path:
    """A new trash folder beside `out`, its manifest saying it is one."""
    trash = fresh(out.parent, lambda token: trash_name(out.name, token))
    manifest.dump_json(trash / MANIFEST, leftover.discard_marker(out.name))
    return trash


def _swap(out: Path, target: Target, trash: Path) -> None:
    """Put the link `trash/LINK` at `out` in one atomic step (see the module docstring for
    the one system-dependent exception); what it replaces ends up in `trash`."""
    link = trash / LINK
    if target.what in ("absent", "link", "foreign link", "other"):
        os.replace(link, out)
        if target.what == "link" and target.version.is_dir():
            os.rename(target.version, trash / OLD)
        return
    if not exchange(link, out):
        os.rename(out, trash / OLD)
        os.rename(link, out)


def _undo(out: Path, version: Path | None, trash: Path | None) -> None:
    """After a failure before the swap: the old folder back in place if the fallback had
    moved it away, and what this write made deleted."""
    if trash is not None and not os.path.lexists(out) and os.path.lexists(trash / OLD):
        os.rename(trash / OLD, out)
    leftover.delete_quietly(version)
    leftover.delete_quietly(trash)


def nothing_ran(frames: dict[str, pd.DataFrame], summary: dict, kind: str) -> bool:
    """Whether a run produced no results: every backend of every sweep point skipped (an
    experiment's tables may still hold the harness's own timings), or every table empty."""
    if kind == EXPERIMENT:
        return not any(v.get("backends") for v in summary.get("variants") or [])
    return not any(len(frame) for frame in frames.values())


def write(out: Path | str, frames: dict[str, pd.DataFrame], summary: dict, meta: dict,
          force: bool = False, *, kind: str = EXPERIMENT, spec: Path | None = None) -> Path:
    """Write every table (name.csv), summary.json, meta.json and manifest.json as a new
    version of `out`, then swap it into place (see the module docstring). Refuses, like
    `guard_target`, a target the run may not replace, and a run in which nothing ran."""
    out = Path(out)
    if nothing_ran(frames, summary, kind):
        raise ResultsError(f"{out}: nothing ran, so no results were written ({UNTOUCHED})")
    check(out, force, kind, spec)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with locked(out.parent):
            recover(out)
            for path in leftover.found(out):
                leftover.delete_quietly(path)
            target = check(out, force, kind, spec)
            _replace(out, target, frames, summary, meta, kind)
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise ResultsError(f"{out}: results could not be written: {err.strerror}{where}; "
                           f"{UNTOUCHED}") from None
    return out


def _replace(out: Path, target: Target, frames: dict[str, pd.DataFrame], summary: dict,
             meta: dict, kind: str) -> None:
    """Make the new version and its link, swap, delete what was replaced. An error or a
    Ctrl-C before the swap removes what was made; one after it says so."""
    version = trash = None
    try:
        version = fresh(out.parent, lambda token: version_name(out.name, token))
        _fill(version, frames, summary, meta, kind)
        trash = _trash(out)
        os.symlink(version.name, trash / LINK)
        _swap(out, target, trash)
        leftover.delete(trash)
    except KeyboardInterrupt:
        if _shows(out, version):
            raise ResultsInterrupted(f"the new results are in {out}; what they replaced is "
                                     "deleted by the next run") from None
        _undo(out, version, trash)
        raise
    except OSError:
        if _shows(out, version):
            return              # the new results are in place; the next run clears the trash
        _undo(out, version, trash)
        raise


def _shows(out: Path, version: Path | None) -> bool:
    """Whether the link at `out` shows `version`: the swap has happened."""
    return version is not None and out.is_symlink() and os.readlink(out) == version.name
