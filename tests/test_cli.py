"""The command line as a user meets it: help, exit codes, one-line errors, results folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import cli

SMALL = """name = "cli_small"
seed = 1
[data]
name = "xor"
n_samples = 40
[[model.layers]]
size = 4
activation = "tanh"
[[model.layers]]
size = 2
activation = "softmax"
[loss]
name = "cross_entropy"
[training]
learning_rate = 0.5
batch_size = 8
epochs = 2
"""


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


# (command, what its --help must mention): the sub-commands, then each one's options
HELP = [([], ("run", "check", "explain", "backends", "plot", "report", "bench",
              "conformance")),
        (["run"], ("--backends", "--dtype", "--out", "--force", "--device", "--quiet")),
        (["check"], ("--backend",)),
        (["backends"], ("capabilities",))]


@pytest.mark.parametrize(("command", "mentions"), HELP, ids=[" ".join(c) or "harness"
                                                             for c, _ in HELP])
def test_help_explains_every_option(command, mentions, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: harness")
    for option in mentions:
        assert option in text


def test_run_writes_results_and_exits_zero(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    out = tmp_path / "res"
    proc = harness("run", str(spec), "--backends", "numpy,numpy_fast", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "all backends agree" in proc.stdout
    for name in ("steps.csv", "gradients.csv", "timings.csv", "summary.json", "meta.json"):
        assert (out / name).is_file()
    steps = pd.read_csv(out / "steps.csv")
    assert list(steps.columns[:4]) == ["variant", "dtype", "backend", "step"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spec_text"] == SMALL and meta["tool"] == "backprop-harness"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--backends", "numpy,no_such_backend"], "--backends: 'no_such_backend' is not one of"),
    (["--dtype", "float16"], "invalid choice"),
])
def test_bad_arguments_exit_two(tmp_path, args, fragment):
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    proc = harness("run", str(spec), "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2 and fragment in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def test_bad_spec_is_one_line_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SMALL.replace('activation = "tanh"', 'activation = "relu6"'))
    proc = harness("run", str(spec), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"{spec}: model.layers[0].activation: 'relu6' is not one of" in lines[0]
    assert not (tmp_path / "r").exists()


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    proc = harness("run", str(spec), "--backends", "numpy", "--out", str(foreign))
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_check_command(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL)
    proc = harness("check", str(spec))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gradients agree with finite differences" in proc.stdout


def test_backends_lists_the_builtins():
    proc = harness("backends")
    assert proc.returncode == 0
    for name in ("numpy", "numpy_fast", "torch", "jax"):
        assert f"\n{name} (" in "\n" + proc.stdout
