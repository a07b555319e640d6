"""Where results may go, checked before any work is done and again just before the write.

A target is refused when it is, or contains, the root, the home folder, the current folder
or the spec's folder (even with `--force`); when no folder can be made there (a file or a
dangling symbolic link on the way, a folder that takes no new files such as /proc); and,
without `--force`, when it holds anything but a results folder of the same kind that the
harness wrote, unchanged (harness.results.manifest). With `--force` it says, before the work
starts, what the write will delete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import escape
from harness.results.manifest import Found, inspect
from harness.results.names import EXPERIMENT, KINDS, MARKER, ResultsError, listed, sibling_kind

FORCE_HINT = "choose another --out, or use --force to replace it"


@dataclass(frozen=True)
class Target:
    """What is at the results path now."""
    what: str                         # "absent", "link" (the harness's), "foreign link",
                                      # "folder" or "other" (a file, a pipe, ...)
    version: Path | None = None       # the version folder the harness's link points to
    found: Found | None = None        # whose the folder (or the link's version) is


def look(out: Path) -> Target:
    """What is at `out`, without following anything but the harness's own link."""
    if not os.path.lexists(out):
        return Target("absent")
    if out.is_symlink():
        link = os.readlink(out)
        if sibling_kind(out.name, link) != "version":
            return Target("foreign link")
        version = out.parent / link
        found = inspect(version) if version.is_dir() and not version.is_symlink() else None
        return Target("link", version, found)
    if out.is_dir():
        return Target("folder", found=inspect(out))
    return Target("other")


def refusal(out: Path, target: Target, kind: str) -> str | None:
    """Why `out` may not be replaced without --force by a results folder of `kind`; None
    when it may."""
    if target.what == "foreign link":
        return (f"{out}: is a symbolic link to {escape.terminal(os.readlink(out))} that "
                f"{MARKER} did not make")
    if target.what == "other":
        return f"{out}: exists and is not a folder"
    found = target.found
    if found is None:
        return None
    if found.kind is None:
        return f"{out}: exists and was not written by {MARKER} ({found.why})"
    if found.kind != kind:
        return f"{out}: holds the results of {KINDS[found.kind]}, which {KINDS[kind]} never " \
               "replaces"
    if found.foreign:
        return f"{out}: holds {listed(found.foreign)}, which {MARKER} did not write (move " \
               "them away first)"
    if found.changed:
        return f"{out}: {listed(found.changed)} changed since {MARKER} wrote it"
    return None


def deletion(out: Path, target: Target) -> str:
    """What replacing `out` deletes, in words."""
    if target.what == "foreign link":
        return f"the symbolic link {out} (its target {escape.terminal(os.readlink(out))} " \
               "is kept)"
    if target.what == "other":
        return f"the file {out}"
    folder = target.version if target.what == "link" else out
    shown = f"{out} (the folder it shows, {folder.name})" if target.what == "link" else out
    try:
        entries = sorted(os.listdir(folder))
    except OSError as err:
        return f"{shown} ({err.strerror})"
    return f"{shown} and everything in it: {listed(entries) or 'nothing'}"


def _guarded(spec: Path | None) -> dict[str, str]:
    """Folders no results folder may be, or contain, with what each is."""
    out = {"/": "the root folder", os.path.expanduser("~"): "the home folder",
           os.getcwd(): "the current folder"}
    if spec is not None:
        out[os.path.dirname(os.path.abspath(spec))] = "the spec's folder"
    return out


def check_place(out: Path, spec: Path | None) -> None:
    """Refuse a target that is, or holds, a folder the harness must never replace."""
    if out.name in ("", ".", ".."):
        raise ResultsError(f"{out}: names no folder of its own (allowed: a path such as "
                           "results/<name>)")
    where = Path(os.path.realpath(out.parent)) / out.name
    for path, what in _guarded(spec).items():
        real = Path(os.path.realpath(path))
        if where == real or where in real.parents:
            is_it = "is" if where == real else "contains"
            raise ResultsError(f"{out}: {is_it} {what}; results are never written there, "
                               "not even with --force (allowed: a folder of its own, such as "
                               "results/<name>)")


def check_parent(out: Path) -> None:
    """Refuse a target under which no folder can be made: a file or a dangling symbolic link
    on the way, or a folder that takes no new entries (read-only, /proc)."""
    ancestor = Path(os.path.abspath(out)).parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.exists():
        raise ResultsError(f"{out}: cannot be created ({ancestor} is a symbolic link to "
                           "nothing)")
    if not ancestor.is_dir():
        raise ResultsError(f"{out}: cannot be created ({ancestor} is not a writable folder)")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        raise ResultsError(f"{out}: cannot be created ({ancestor} is not a writable folder: "
                           f"{err.strerror})") from None


def check(out: Path, force: bool, kind: str, spec: Path | None) -> Target:
    """Every check on the target, in order; what is there now."""
    check_place(out, spec)
    check_parent(out)
    target = look(out)
    why = refusal(out, target, kind)
    if why and not force:
        raise ResultsError(f"{why} ({FORCE_HINT})")
    return target


def guard_target(out: Path, force: bool, *, kind: str = EXPERIMENT,
                 spec: Path | None = None) -> None:
    """Refuse, before any work is done, a target the run may not replace; with `force`, say
    on stderr what the write will delete. `spec`: the spec file of the run, whose folder is
    never replaced (None for a spec given as a dict, and for the benchmark)."""
    target = check(out, force, kind, spec)
    if force and refusal(out, target, kind):
        print(f"harness: --force: replacing {out} deletes {deletion(out, target)}",
              file=sys.stderr)
