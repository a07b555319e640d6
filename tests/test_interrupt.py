"""Kills (SIGKILL: no handler runs) at every stage of a results swap, and what each leaves.

A child process writes a results folder with every file-system step it takes counted
(mkdir, symlink, replace, rename, renameat2, unlink, rmdir), and kills itself just before the
k-th. After every kill: the results path shows a complete results folder, old or new (the one
documented exception: the fallback without renameat2, between its two renames, where the
next write finishes the swap); and the next write succeeds and leaves nothing behind.

The last test kills a real `harness run` at the swap itself.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import results
from harness.results import names, swap
from tests.test_cli import SMALL

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "worked_example"
LEGACY_NAME = "worked_example"       # the experiment SOURCE's summary names
CHILD = r"""
import os, pickle, signal, sys
from pathlib import Path
from harness import results
from harness.results import swap

out, data, kill_at, log, fallback = sys.argv[1:]
calls = []

def counted(name, real):
    def call(*args, **kwargs):
        calls.append(name)
        if len(calls) == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

for name in ("mkdir", "symlink", "replace", "rename", "unlink", "rmdir"):
    setattr(os, name, counted(name, getattr(os, name)))
swap.exchange = counted("exchange", (lambda a, b: False) if fallback == "yes" else swap.exchange)
results.write(Path(out), *pickle.loads(Path(data).read_bytes()))
Path(log).write_text("\n".join(calls))
"""


ROWS = 5                             # of each table: the swap, not the size, is tested


@functools.cache
def _source() -> tuple:
    frames, summary, meta = results.read(SOURCE)
    return {name: frame.head(ROWS) for name, frame in frames.items()}, summary, meta


def stored(experiment: str) -> tuple:
    """A small results folder's contents, its summary naming `experiment`."""
    frames, summary, meta = _source()
    return frames, {**summary, "experiment": experiment}, meta


def legacy(out: Path) -> None:
    shutil.copytree(SOURCE, out)


def with_leftovers(out: Path) -> None:
    """Old results the harness wrote, and what two killed writes left beside them."""
    results.write(out, *stored("old"))
    stale = swap.fresh(out.parent, lambda t: names.version_name(out.name, t))
    swap._fill(stale, {"steps": stored("x")[0]["steps"]}, {}, {}, "experiment")
    swap._trash(out)


# scenario -> (what is at the path before the write, renameat2 available, old experiment)
SCENARIOS = {"fresh": (lambda out: None, True, None),
             "rewrite_with_leftovers": (with_leftovers, True, "old"),
             "older_harness_folder": (legacy, True, LEGACY_NAME),
             "older_harness_folder_without_renameat2": (legacy, False, LEGACY_NAME)}


def child(out: Path, data: Path, kill_at: int, fallback: bool) -> tuple[int, list[str]]:
    log = out.parent / "calls.log"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out), str(data), str(kill_at),
                           str(log), "yes" if fallback else "no"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    calls = log.read_text().splitlines() if log.is_file() else []
    log.unlink(missing_ok=True)
    return proc.returncode, calls


EDGE = 2                             # calls tried at each end of a run of one kind


def stages(calls: list[str]) -> list[int]:
    """The kill points worth trying (1-based: before that call): the first and last EDGE
    calls of every run of calls of one kind. Deleting 15 files one by one is one kind of
    state, not 15, but the first and second deletion differ: whatever went first is gone."""
    runs: list[list[int]] = []
    for k, name in enumerate(calls):
        if runs and calls[runs[-1][-1]] == name:
            runs[-1].append(k)
        else:
            runs.append([k])
    return sorted({k + 1 for run in runs for k in run[:EDGE] + run[-EDGE:]})


def shown(out: Path) -> str | None:
    """The experiment the results path shows, checking that the folder is complete: every
    file the manifest lists is there as written (an older harness's folder: readable)."""
    if not os.path.lexists(out):
        return None
    summary = results.read(out)[1]
    assert results.changed_files(out) in ([], None)
    return summary["experiment"]


def leftovers(out: Path) -> list[str]:
    current = os.readlink(out) if out.is_symlink() else None
    return sorted(n for n in os.listdir(out.parent)
                  if names.sibling_kind(out.name, n) and n != current)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_kill_at_any_stage_of_the_swap(scenario, tmp_path, monkeypatch):
    prepare, renameat2, old = SCENARIOS[scenario]
    data = tmp_path / "new.pickle"
    data.write_bytes(pickle.dumps(stored("new")))
    probe = tmp_path / "probe" / "res"
    probe.parent.mkdir()
    prepare(probe)
    code, calls = child(probe, data, 0, not renameat2)
    assert code == 0 and shown(probe) == "new" and leftovers(probe) == []
    assert ("exchange" in calls) == (scenario.startswith("older")), calls
    if not renameat2:
        monkeypatch.setattr(swap, "exchange", lambda a, b: False)
    for k in stages(calls):
        out = tmp_path / f"kill{k}" / "res"
        out.parent.mkdir()
        prepare(out)
        code, _ = child(out, data, k, not renameat2)
        assert code == -signal.SIGKILL
        now = shown(out)
        between_renames = not renameat2 and calls[k - 1] == "rename" and now is None
        assert now in (old, "new") or between_renames, f"killed before {calls[k - 1]} #{k}"
        if between_renames:
            swap.recover(out)
            assert shown(out) == "new", f"killed before {calls[k - 1]} #{k}"
        results.write(out, *stored("next"))
        assert shown(out) == "next" and leftovers(out) == [], f"after a kill at #{k}"


LONG_ENOUGH = SMALL.replace("epochs = 2", "epochs = 3")
RUN = r"""
import os, signal, sys
from harness import cli

real = os.replace

def replace(source, destination):
    if os.path.basename(source) == "link":
        os.kill(os.getpid(), signal.SIGKILL)
    real(source, destination)

os.replace = replace
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_real_run_killed_at_the_swap_keeps_the_old_results(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(LONG_ENOUGH)
    out = tmp_path / "res"
    results.write(out, *stored("old"))
    proc = subprocess.run([sys.executable, "-c", RUN, "run", str(spec), "--backends", "numpy",
                           "--out", str(out), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert shown(out) == "old"
    again = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--backends",
                            "numpy", "--out", str(out), "--quiet"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 3, again.stderr
    assert shown(out) == "cli_small" and leftovers(out) == []
