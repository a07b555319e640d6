"""The bad-spec catalogue: every file in tests/bad_specs/ is one malformed spec, and the CLI must
reject each with exit code 2 and ONE short line on stderr naming the file, the key path and what
is allowed, with every control character of the file shown escaped, before anything runs or is
written.

Each catalogue file starts with three comment lines:

    # expect: <key path the error must name, or <toml> for a file that is not valid TOML>
    # <what is wrong, in words>
    # message: <a fragment the error must contain: what is allowed, or why not>

Every file runs through `harness.cli.main` in-process (fast); a few also run as a real
subprocess, to prove no traceback escapes the entry point.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import cli
from harness.escape import CONTROL

CATALOGUE = Path(__file__).parent / "bad_specs"
FILES = sorted(CATALOGUE.glob("*.toml"))
SUBPROCESS_CASES = ("toml_unclosed_string", "init_file_wrong_shape", "unknown_backend",
                    "sweep_bad_index", "toml_nested_arrays", "unknown_key_escape_sequence")
# The most a message may take after `harness: error: <file>: `: values from the file are
# shortened, so even a 5000-character name or a 400-digit number leaves the line readable.
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Expectation:
    path: str                             # key path, or "<toml>"
    what: str
    fragment: str
    sets_backends: bool                   # the file's own `backends` must be the one checked


def expectation(file: Path) -> Expectation:
    """The three header comments of a catalogue file (read as bytes: one is not UTF-8)."""
    lines = file.read_bytes().decode("utf-8", errors="replace").splitlines()
    expect = re.fullmatch(r"# expect: (\S+)", lines[0])
    message = re.fullmatch(r"# message: (.+)", lines[2])
    assert expect and lines[1].startswith("# ") and message, f"{file.name}: bad header"
    sets_backends = any(re.match(r"backends\s*=", line) for line in lines)
    return Expectation(expect.group(1), lines[1][2:], message.group(1), sets_backends)


def argv(file: Path, out: Path) -> list[str]:
    """`harness run` on the file; --backends numpy unless the file's `backends` is under test."""
    args = ["run", str(file), "--out", str(out), "--quiet"]
    return args if expectation(file).sets_backends else [*args, "--backends", "numpy"]


def assert_one_clear_line(file: Path, stderr: str) -> None:
    """One line: `harness: error: <file>: <key path>: <message>` with the expected fragment."""
    exp = expectation(file)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert "Traceback" not in line
    where = "TOML syntax error" if exp.path == "<toml>" else f"{exp.path}: "
    prefix = f"harness: error: {file}: "
    assert line.startswith(prefix + where), line
    assert exp.fragment in line, f"{line!r} lacks {exp.fragment!r}"
    assert CONTROL.search(line) is None, f"{line!r} holds a control character"
    assert len(line) - len(prefix) <= MAX_MESSAGE, f"{len(line)} characters: {line!r}"


def assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))


def test_catalogue_is_complete():
    assert len(FILES) >= 160
    for file in FILES:
        expectation(file)


@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_bad_spec_is_rejected_with_one_clear_line(file, tmp_path, capsys):
    code = cli.main(argv(file, tmp_path / "out"))
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert captured.out == ""
    assert_one_clear_line(file, captured.err)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_no_traceback_escapes_the_real_command(name, tmp_path):
    file = CATALOGUE / f"{name}.toml"
    proc = subprocess.run([sys.executable, "-m", "harness", *argv(file, tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert_one_clear_line(file, proc.stderr)
    assert_nothing_written(tmp_path)
