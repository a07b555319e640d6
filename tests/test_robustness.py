"""Nothing lost, nothing half-written, and NumPy alone is enough. (Kills at every step of the
swap: tests/test_interrupt.py; damaged folders: tests/test_tampered_results.py.)"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cli, results
from harness.results import manifest, names
from tests.test_cli import SMALL, harness

LONG = SMALL.replace('name = "cli_small"', 'name = "long"').replace("epochs = 2",
                                                                    "epochs = 100000")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def leftovers(out: Path) -> list[str]:
    """What a write of `out` left beside it other than the version its link shows."""
    current = os.readlink(out) if out.is_symlink() else None
    return [p.name for p in out.parent.iterdir()
            if names.sibling_kind(out.name, p.name) and p.name != current]


@pytest.fixture
def previous(tmp_path) -> Path:
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    out = tmp_path / "res"
    # one backend: nothing is compared (exit 3), but the folder is written all the same
    assert cli.main(["run", str(spec), "--backends", "numpy", "--out", str(out), "--quiet"]) == 3
    return out


def test_ctrl_c_mid_run_keeps_previous_results(tmp_path, previous):
    before = snapshot(previous)
    spec = tmp_path / "long.toml"
    spec.write_text(LONG)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(spec), "--backends",
                             "numpy", "--out", str(previous), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)                                   # well inside the 100,000 epochs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "previous results left untouched" in err
    assert "Traceback" not in err
    assert snapshot(previous) == before and leftovers(previous) == []


def test_failure_while_writing_keeps_previous_results(previous, monkeypatch):
    before = snapshot(previous)
    frames, summary, meta = results.read(previous)

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest, "dump_json", broken)
    with pytest.raises(results.ResultsError, match="No space left on device"):
        results.write(previous, frames, summary, meta)
    assert snapshot(previous) == before and leftovers(previous) == []


BLOCK = ("import sys\n"
         "for m in ('torch', 'jax', 'jaxlib', 'optax'):\n"
         "    sys.modules[m] = None\n"
         "from harness.cli import main\n"
         "code = main(sys.argv[1:])\n"
         "assert not any(sys.modules.get(m) for m in ('torch', 'jax')), 'framework imported'\n"
         "raise SystemExit(code)\n")


def test_numpy_alone_runs_and_plots(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    out = tmp_path / "res"
    run = subprocess.run([sys.executable, "-c", BLOCK, "run", str(spec), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stderr
    assert "not compared: only 1 backend ran: nothing to compare with" in run.stdout
    assert "NOT COMPARED" in run.stdout and "agree" not in run.stdout
    assert "skipped torch: framework 'torch' is not installed" in run.stdout
    assert "skipped jax: framework 'jax' is not installed" in run.stdout
    listing = subprocess.run([sys.executable, "-c", BLOCK, "backends"], capture_output=True,
                             text=True, timeout=300)
    assert listing.returncode == 0 and "not installed (torch)" in listing.stdout
    plot = subprocess.run([sys.executable, "-c", BLOCK, "plot", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert plot.returncode == 0, plot.stderr
    assert (out / "loss_curves.png").is_file()


def test_unwritable_out_is_refused_before_training(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    (tmp_path / "afile").write_text("")
    proc = harness("run", str(spec), "--backends", "numpy", "--out", str(tmp_path / "afile/x"))
    assert proc.returncode == 2 and "cannot be created" in proc.stderr
    assert "Traceback" not in proc.stderr
