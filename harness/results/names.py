"""What a results folder holds, by name: the errors of the results layer, the kinds of folder,
the files each kind writes, and the hidden siblings a write leaves beside its target for an
instant (versions, trash) or, after a kill, until the next write of the same target.

One place for every name, so that the writer, the ownership check and the clean-up of a
killed run's leftovers recognise exactly the same files.
"""

from __future__ import annotations

import re

from harness import escape

MARKER = "backprop-harness"          # meta.json's and manifest.json's `tool`
EXPERIMENT, BENCH = "experiment", "bench"
KINDS = {EXPERIMENT: "`harness run`", BENCH: "`harness bench`"}   # kind -> who writes it
MANIFEST, SUMMARY, META, REPORT = "manifest.json", "summary.json", "meta.json", "report.md"
LINK, OLD = "link", "old"            # in a trash: the new link, and what it replaced

TABLES = ("steps", "gradients", "same_point", "grad_norms", "final_params", "timings", "events",
          "test", "shadow", "shadow_params", "phases")
BENCH_TABLES = ("bench", "numpy_vs_frameworks", "samples", "reproducibility")
BENCH_PLOT = "bench.png"
# The figures `harness plot` draws (harness.plots.folder), one per sweep point as
# `<figure>__<label>.png`, plus the sweep overview.
FIGURES = ("loss_curves", "loss_drift", "gradient_errors", "grad_norms", "timings",
           "diagnosis", "sweep_overview")
# Files a later command adds to a folder, whatever their content: the run declares them.
DERIVED = {EXPERIMENT: (REPORT,), BENCH: (REPORT, BENCH_PLOT)}

MAX_NAMED = 5                        # entries a message names before "and N more": one line
_FIGURE = re.compile(rf"(?:{'|'.join(FIGURES)})(?:__[A-Za-z0-9._-]+)?\.png")
# A file being written atomically: `.<name>.<8 hex>.tmp` (harness.plots.folder, manifests),
# and the fixed temporary name of the bench plot (harness.bench.plot).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp|\.(?P<bench>bench\.png)\.tmp")


class ResultsError(Exception):
    """A results folder cannot be written or read (one line)."""


class ResultsInterrupted(KeyboardInterrupt):
    """Ctrl-C while a results folder was being replaced; `state` says what the folder holds
    now, for the one line the command prints."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


UNTOUCHED = "previous results left untouched"


def interruption(err: KeyboardInterrupt) -> str:
    """What an interrupted command leaves behind, in words: the state a results swap
    recorded, else (interrupted before any swap) that the previous results are untouched."""
    return err.state if isinstance(err, ResultsInterrupted) else UNTOUCHED


def version_name(target: str, token: str) -> str:
    """The hidden sibling holding one complete version of `target`'s results."""
    return f".{target}.harness-{token}"


def trash_name(target: str, token: str) -> str:
    """The hidden sibling a replaced version is moved into before it is deleted."""
    return f"{version_name(target, token)}.trash"


def sibling_kind(target: str, name: str) -> str | None:
    """"version", "trash", "legacy" (an older harness's `.tmp-*`/`.old-*` folder) or None:
    what `name`, beside `target`, is by its name alone."""
    escaped = re.escape(target)
    if re.fullmatch(rf"\.{escaped}\.harness-[0-9a-f]{{8}}", name):
        return "version"
    if re.fullmatch(rf"\.{escaped}\.harness-[0-9a-f]{{8}}\.trash", name):
        return "trash"
    if re.fullmatch(rf"\.(?:tmp|old)-{escaped}-[a-z0-9_]{{8}}", name):
        return "legacy"
    return None


def temporary_of(name: str) -> str | None:
    """The file a harness temporary file named `name` was about to become, else None."""
    found = _TEMPORARY.fullmatch(name)
    return None if found is None else found["name"] or found["bench"]


def legacy_names(kind: str) -> set[str]:
    """The fixed names an older harness (no manifest) wrote into a folder of `kind`."""
    tables = TABLES if kind == EXPERIMENT else BENCH_TABLES
    return {f"{t}.csv" for t in tables} | {SUMMARY, META, REPORT} | \
        ({BENCH_PLOT} if kind == BENCH else set())


def is_legacy_file(kind: str, name: str) -> bool:
    """Whether an older harness could have written `name` into a folder of `kind` (its
    tables, JSON files, report, figures, or a temporary file of one of them)."""
    name = temporary_of(name) or name
    return name in legacy_names(kind) or (kind == EXPERIMENT and bool(_FIGURE.fullmatch(name)))


def listed(entries: tuple[str, ...] | list[str]) -> str:
    """Up to MAX_NAMED file names, shown safely on one line, then how many more."""
    shown = ", ".join(escape.terminal(n) for n in entries[:MAX_NAMED])
    more = len(entries) - MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")
