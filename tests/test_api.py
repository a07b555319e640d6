"""The Python API (docs/python-api.md): `harness.run` goes the command line's way, writes the
command line's folder only when asked, and `harness.load` reads that folder back into an equal
Result; bad input raises the command line's one-line error."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

import harness
from harness import cli, provenance, results
from implementations.numpy_textbook import NumpyTextbook
from tests.conftest import BASE
from tests.test_bad_specs import FILES, argv

PAIR = ["numpy", "numpy_fast"]            # two backends that need no framework
SWEEP = {**copy.deepcopy(BASE),
         "sweep": {"field": "training.learning_rate", "values": [0.05, 0.2],
                   "labels": ["slow", "fast"]}}


class ScaledGradients(NumpyTextbook):
    """Every weight gradient 0.1% too large (and so every step after the first)."""
    name: ClassVar[str] = "scaled"

    def loss_and_grads(self, batch):
        value, grads = super().loss_and_grads(batch)
        return value, [(w * 1.001, b) for w, b in grads]


def assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert set(a) == set(b) == set(results.TABLES)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_run_without_out_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = copy.deepcopy(BASE)
    result = harness.run(raw, backends=PAIR)
    assert raw == BASE                                    # the caller's dict is not changed
    assert result.verdict == "agree" and result.folder is None
    assert list(tmp_path.iterdir()) == []
    assert len(result.tables["steps"]) == 2 * result.tables["steps"].step.nunique()


def test_out_round_trips_through_load(tmp_path):
    out = tmp_path / "res"
    ran = harness.run(SWEEP, backends=PAIR, out=out)
    assert {p.name for p in out.iterdir()} == {f"{n}.csv" for n in results.TABLES} | {
        "summary.json", "meta.json", "manifest.json"}
    back = harness.load(out)
    assert (back.folder, back.verdict) == (out, ran.verdict)
    assert back.summary == ran.summary and back.meta == ran.meta
    assert_same_tables(ran.tables, back.tables)
    assert set(ran.tables["steps"].variant) == {"slow", "fast"}


def test_out_is_the_folder_the_command_line_writes(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(provenance.toml_text(SWEEP))
    assert cli.main(["run", str(spec), "--backends", ",".join(PAIR), "--out",
                     str(tmp_path / "cli"), "--quiet"]) == 0
    by_cli = harness.load(tmp_path / "cli")
    by_api = harness.run(spec, backends=PAIR, out=tmp_path / "api")
    assert {**by_cli.summary, "time": None} == {**by_api.summary, "time": None}
    assert by_cli.meta["spec_text"] == by_api.meta["spec_text"] == spec.read_text()
    untimed = [{**r.tables, "timings": r.tables["timings"].drop(columns="seconds")}
               for r in (by_cli, by_api)]
    assert_same_tables(*untimed)


def test_a_dict_spec_is_recorded_as_the_toml_it_stands_for(tmp_path):
    raw = copy.deepcopy(SWEEP)
    result = harness.run(raw, backends=PAIR, out=tmp_path / "res")
    assert raw == SWEEP                                   # the caller's dict is not changed
    assert [v["variant"] for v in result.summary["variants"]] == ["slow", "fast"]
    assert result.meta["spec_path"] == provenance.DICT_SOURCE
    assert tomllib.loads(harness.load(tmp_path / "res").meta["spec_text"]) == SWEEP


@pytest.mark.parametrize("path", sorted(Path("experiments").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_toml_text_round_trips_every_shipped_spec(path):
    raw = tomllib.loads(path.read_text())
    assert tomllib.loads(provenance.toml_text(raw)) == raw


def test_backends_and_dtype_override_the_spec():
    raw = {**copy.deepcopy(BASE), "backends": PAIR}
    own = harness.run(raw)
    assert own.summary["variants"][0]["backends"] == PAIR
    assert own.summary["variants"][0]["dtype"] == "float64"
    other = harness.run(raw, backends=PAIR[::-1], dtype="float32")
    [variant] = other.summary["variants"]
    assert (variant["backends"], variant["dtype"]) == (PAIR[::-1], "float32")
    assert set(other.tables["same_point"].compared_to) == {"numpy_fast"}
    assert other.meta["overrides"] == {"dtype": "float32"}


def test_a_disagreeing_backend_disagrees():
    result = harness.run(copy.deepcopy(BASE), backends=["numpy", ScaledGradients])
    assert result.verdict == "disagree"
    failed = {(c["check"], c["backend"]) for c in result.summary["variants"][0]["checks"]
              if c["status"] == "fail"}
    assert ("gradients", "scaled") in failed


def test_one_backend_is_not_compared():
    assert harness.run(copy.deepcopy(BASE), backends=["numpy"]).verdict == "not_compared"


# (changes to BASE, arguments of run, the field the one-line error must start with)
BAD = [({"model": {"layers": [{"size": 5, "activation": "relu6"},
                              {"size": 3, "activation": "softmax"}]}}, {},
        "model.layers[0].activation: 'relu6' is not one of"),
       ({}, {"dtype": "float16"}, "dtype: 'float16' is not one of"),
       ({}, {"backends": ["numpy", "tensorflow_gpu"]}, "backends: 'tensorflow_gpu' is not one of"),
       ({}, {"backends": ["numpy", "numpy"]}, "backends: 'numpy' is listed twice"),
       ({}, {"backends": "numpy"}, "backends: expected a list of backends"),
       ({}, {"device": "tpu"}, "device: 'tpu' is not one of cpu, cuda"),
       ({"sweep": {"field": "training.learning_rate", "values": [0.1, -1.0]}}, {},
        "training.learning_rate: -1.0 is outside the allowed range")]


@pytest.mark.parametrize(("changes", "kwargs", "message"), BAD, ids=[b[2][:24] for b in BAD])
def test_bad_input_is_a_spec_error_naming_the_field(tmp_path, changes, kwargs, message):
    with pytest.raises(harness.SpecError) as info:
        harness.run({**copy.deepcopy(BASE), **changes}, **kwargs, out=tmp_path / "out")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_spec_that_is_neither_path_nor_dict_is_named():
    with pytest.raises(harness.SpecError, match=r"^spec: expected a path or a dict, got int$"):
        harness.run(42)


@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_bad_spec_files_raise_what_the_command_line_prints(file, tmp_path, capsys):
    args = argv(file, tmp_path / "out")
    assert cli.main(args) == 2
    printed = capsys.readouterr().err.strip()
    backends = args[args.index("--backends") + 1].split(",") if "--backends" in args else None
    with pytest.raises(harness.SpecError) as info:
        harness.run(file, backends=backends, out=tmp_path / "out")
    assert printed == f"harness: error: {file}: {info.value}"


def test_load_of_a_folder_that_is_not_results_is_a_results_error(tmp_path):
    with pytest.raises(harness.ResultsError, match="not a results folder"):
        harness.load(tmp_path)
