"""The reading layer (harness/spec/reading.py, harness/spec/npz.py) and what it guarantees to
the run.

- A spec's text is read once, from a file or standard input, within a size and a nesting
  limit; the text parsed is the text meta.json records, even when the file is edited or
  deleted during the run.
- A spec given as a dict is held to what a TOML file could say (string keys, TOML values,
  bounded nesting: a dict that contains itself is refused).
- The .npz init file is checked from its zip directory and .npy headers before any data is
  read: hostile archives (built here, byte by byte) are refused with one line each.
- The device asked for is checked before training, and a run in which no backend can run
  writes nothing.
"""

from __future__ import annotations

import copy
import io
import struct
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import harness
from harness import cli, experiment, provenance
from harness.spec import MAX_SWEEP_STEPS, SpecError, npz, reading, sweep
from harness.spec import init_file as init_module
from harness.spec.reading import MAX_DEPTH, MAX_SPEC_BYTES, check_tree, read_spec
from tests.conftest import BASE

SPEC = """name = "reading"
seed = 0

[data]
name = "xor"
n_samples = 40

[model]
init_file = "w.npz"

[[model.layers]]
size = 3
activation = "tanh"

[[model.layers]]
size = 2
activation = "softmax"

[loss]
name = "cross_entropy"

[training]
learning_rate = 0.1
batch_size = 8
steps = 3
"""
SHAPES = {"W0": (2, 3), "b0": (3,), "W1": (3, 2), "b1": (2,)}
LAYER_SHAPES = init_module.shapes_of(2, [3, 2])


def _npy(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def _good_members(**replace: bytes) -> dict[str, bytes]:
    """The .npy members of a valid init file for SPEC, some replaced."""
    rng = np.random.default_rng(0)
    members = {f"{k}.npy": _npy(rng.normal(size=s)) for k, s in SHAPES.items()}
    return {**members, **replace}


def _write_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED,
               extra: tuple[tuple[str, bytes], ...] = ()) -> Path:
    """A zip of `members`, then of the `extra` (name, data) pairs (a name may repeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about a duplicate name
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            for name, data in [*members.items(), *extra]:
                zf.writestr(name, data)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _central_entry(data: bytes, name: str) -> int:
    """Offset of `name`'s entry in the zip's central directory."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (length,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46:at + 46 + length] == name.encode():
            return at
        at = data.find(b"PK\x01\x02", at + 1)
    raise AssertionError(f"{name} is not in the central directory")


# Fields of a zip entry, as (offset in the local header, offset in the central header, format).
FLAGS, METHOD, SIZE = (6, 8, "<H"), (8, 10, "<H"), (22, 24, "<I")


def _patch(path: Path, name: str, where: tuple[int, int, str], value: int) -> Path:
    """Set one field of member `name` in both its local and its central header."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
    local_at, central_at, fmt = where
    struct.pack_into(fmt, data, local + local_at, value)
    struct.pack_into(fmt, data, _central_entry(bytes(data), name) + central_at, value)
    path.write_bytes(bytes(data))
    return path


def _huge_header() -> bytes:
    """A .npy member whose header declares 10**12 float64 numbers (8 TB), holding 16 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": (10**6, 10**6)})
    return buf.getvalue() + bytes(16)


def _long_header() -> bytes:
    """A version 2.0 .npy header whose length field claims 2 GiB."""
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{'descr': '<f8'"


def _corrupt_crc(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    at = data.find(_good_members()["W0.npy"][-8:])
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


# (case, how to build the archive at `path`, a fragment of the one-line error)
HOSTILE = [
    ("not_npy_member", lambda p: _write_zip(p, _good_members(**{"notes.txt": b"hello"})),
     "member 'notes.txt' is not a .npy array"),
    ("folder_member", lambda p: _write_zip(p, _good_members(**{"sub/": b""})),
     "member 'sub/' is not a .npy array"),
    ("encrypted_flag", lambda p: _patch(_write_zip(p, _good_members()), "W0.npy", FLAGS, 0x1),
     "member 'W0.npy' is encrypted"),
    ("bzip2", lambda p: _write_zip(p, _good_members(), zipfile.ZIP_BZIP2),
     "compression method 12 (bzip2; allowed: stored, deflated)"),
    ("deflate64", lambda p: _patch(_write_zip(p, _good_members()), "W1.npy", METHOD, 9),
     "compression method 9 (deflate64"),
    ("header_declares_terabytes", lambda p: _write_zip(p, _good_members(**{"W0.npy":
                                                                            _huge_header()})),
     "declares shape (1000000, 1000000) of float64 (8000000000000 bytes), but holds 16"),
    ("zip_declares_4gb", lambda p: _patch(_write_zip(p, _good_members(), zipfile.ZIP_DEFLATED),
                                          "b0.npy", SIZE, 2**32 - 16),
     "declares 4294967280 bytes, more than its"),
    ("pickle_member", lambda p: _write_zip(p, _good_members(**{
        "W0.npy": _npy(np.array([[print] * 3] * 2, dtype=object))})),
     "member 'W0.npy' is an object array (it would need pickle)"),
    ("npy_version_3", lambda p: _write_zip(p, _good_members(**{
        "W0.npy": _npy(np.zeros((2, 3)), version=(3, 0))})),
     ".npy format version 3.0 (allowed: 1.0, 2.0)"),
    ("header_length_2gib", lambda p: _write_zip(p, _good_members(**{"W0.npy": _long_header()})),
     "a .npy header of 2147483648 bytes (allowed: at most 10000)"),
    ("duplicate_member", lambda p: _write_zip(p, _good_members(),
                                              extra=(("b1.npy", _npy(np.zeros(2))),)),
     "member 'b1.npy' appears twice"),
    ("crc_mismatch", lambda p: _corrupt_crc(_write_zip(p, _good_members())), "Bad CRC-32"),
    ("complex_values", lambda p: _write_zip(p, _good_members(**{
        "b0.npy": _npy(np.zeros(3, dtype=complex))})), "holds complex128 values, not numbers"),
    ("structured_values", lambda p: _write_zip(p, _good_members(**{
        "b0.npy": _npy(np.zeros(3, dtype=[("a", "<f8")]))})), "values, not numbers"),
    ("not_npy_data", lambda p: _write_zip(p, _good_members(**{"W0.npy": b"PK not numpy data"})),
     "member 'W0.npy': the magic string is not correct"),
    ("not_a_zip", lambda p: _write(p, b"W0,b0\n1,2\n"), "File is not a zip file"),
]


@pytest.mark.parametrize(("case", "build", "fragment"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_init_file_is_one_line_before_anything_runs(case, build, fragment, tmp_path,
                                                            capsys):
    build(tmp_path / "w.npz")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    code = cli.main(["run", str(spec), "--out", str(tmp_path / "out"), "--quiet",
                     "--backends", "numpy"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"harness: error: {spec}: model.init_file: cannot read w.npz as .npz")
    assert fragment in err, err
    assert not (tmp_path / "out").exists()


def test_the_hostile_archives_are_what_they_claim(tmp_path):
    """Each builder makes the archive its case names (else a test above proves nothing)."""
    enc = _patch(_write_zip(tmp_path / "e.npz", _good_members()), "W0.npy", FLAGS, 0x1)
    d64 = _patch(_write_zip(tmp_path / "d.npz", _good_members()), "W1.npy", METHOD, 9)
    with zipfile.ZipFile(enc) as zf:
        assert zf.getinfo("W0.npy").flag_bits & 0x1
    with zipfile.ZipFile(d64) as zf, pytest.raises(NotImplementedError):
        zf.read("W1.npy")
    huge = io.BytesIO(_huge_header())
    np.lib.format.read_magic(huge)
    assert np.lib.format.read_array_header_1_0(huge)[0] == (10**6, 10**6)


def test_a_good_archive_reads_in_every_layout_numpy_writes(tmp_path):
    """Fortran order, big-endian, float32 and integer members, stored or deflated."""
    want = {"W0": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "b0": np.array([1, 2, 3], dtype=np.int16),
            "W1": np.arange(6.0).reshape(3, 2).astype(">f8"),
            "b1": np.array([0.5, -0.5], dtype=np.float32)}
    np.savez_compressed(tmp_path / "w.npz", **want)
    params = init_module.read(tmp_path / "w.npz", LAYER_SHAPES, "float64")
    for (w, b), i in zip(params, range(2), strict=True):
        assert np.array_equal(w, want[f"W{i}"]) and np.array_equal(b, want[f"b{i}"])
        assert w.dtype == np.float64 and not w.flags.writeable


def test_init_values_beyond_float32_are_refused_in_a_float32_run(tmp_path):
    np.savez(tmp_path / "w.npz", **{k: np.full(s, 1e39) if k == "W1" else np.zeros(s)
                                     for k, s in SHAPES.items()})
    init_module.read(tmp_path / "w.npz", LAYER_SHAPES, "float64")
    with pytest.raises(SpecError, match=r"^model.init_file: w.npz\[W1\] holds 1e\+39, beyond "
                                        r"float32's range"):
        init_module.read(tmp_path / "w.npz", LAYER_SHAPES, "float32")


@pytest.mark.parametrize("target", ["/dev/zero", "."])
def test_an_init_file_that_is_no_regular_file_is_refused_unread(target, tmp_path):
    (tmp_path / "w.npz").symlink_to(Path(target).resolve())
    (tmp_path / "spec.toml").write_text(SPEC)
    with pytest.raises(SpecError, match=r"^model.init_file: not a regular file: "):
        sweep.load(tmp_path / "spec.toml")


def test_an_oversized_archive_is_refused_before_its_directory_is_read(tmp_path, monkeypatch):
    path = _write_zip(tmp_path / "w.npz", _good_members())
    monkeypatch.setattr(npz, "MAX_NPZ_BYTES", path.stat().st_size - 1)
    with pytest.raises(SpecError, match=r"the file is \d+ bytes, more than"):
        init_module.read(path, LAYER_SHAPES, "float64")


def test_a_sweep_reads_its_init_file_once(tmp_path):
    _write_zip(tmp_path / "w.npz", _good_members())
    (tmp_path / "s.toml").write_text(SPEC + '\n[sweep]\nfield = "training.learning_rate"\n'
                                            "values = [0.1, 0.2, 0.3]\n")
    a, b, c = sweep.load(tmp_path / "s.toml")
    assert a.model.init_params is b.model.init_params is c.model.init_params
    assert a.data is b.data is c.data                   # equal data, one copy


# --- the spec's text: read once, within limits, recorded as read ---------------------------

def test_the_text_recorded_is_the_text_that_ran_though_the_files_change(tmp_path):
    """The spec edited and its init file deleted after loading, before the run writes."""
    _write_zip(tmp_path / "w.npz", _good_members())
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    specs, origin = experiment.load(spec, None)
    spec.write_text(SPEC.replace("learning_rate = 0.1", "learning_rate = 0.7"))
    (tmp_path / "w.npz").unlink()
    experiment.conduct(specs, origin, ["numpy"], tmp_path / "out", progress=False)
    meta = harness.load(tmp_path / "out").meta
    assert meta["spec_text"] == SPEC and meta["spec_path"] == str(spec)
    spec.unlink()
    experiment.conduct(specs, origin, ["numpy"], tmp_path / "out", progress=False)
    assert harness.load(tmp_path / "out").meta["spec_text"] == SPEC


def test_a_spec_on_standard_input_is_read_once_and_recorded(monkeypatch, tmp_path):
    text = SPEC.replace('init_file = "w.npz"\n', "")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    specs, origin = experiment.load(Path(reading.STDIN), None)
    assert specs[0].name == "reading"
    assert (origin.spec_path, origin.spec_text) == ("-", text)
    assert provenance.collect(origin, 0, "now", 0.0)["spec_text"] == text
    assert sys.stdin.buffer.read() == b""                    # nothing left to read twice


def test_exact_bytes_are_recorded_and_a_byte_order_mark_is_dropped(tmp_path):
    spec = tmp_path / "spec.toml"
    crlf = SPEC.replace('init_file = "w.npz"\n', "").replace("\n", "\r\n")
    spec.write_bytes(b"\xef\xbb\xbf" + crlf.encode())
    doc = read_spec(spec)
    assert doc.text == crlf and doc.raw["name"] == "reading"


def test_an_oversized_spec_is_refused_without_reading_it_all(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    with pytest.raises(SpecError, match=f"larger than {MAX_SPEC_BYTES} bytes"):
        read_spec(spec)
    spec.write_bytes(b"#" * MAX_SPEC_BYTES)
    assert read_spec(spec).raw == {}


def test_a_folder_given_as_the_spec_is_one_line(tmp_path):
    with pytest.raises(SpecError, match=r"^cannot read the spec file: Is a directory$"):
        read_spec(tmp_path)


def _nested(levels: int) -> object:
    value: object = 0.0
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_is_limited_at_max_depth():
    """The top table is level 0, so one key may hold MAX_DEPTH lists, one inside the other."""
    check_tree({"x": _nested(MAX_DEPTH)})
    with pytest.raises(SpecError, match=rf"^x(\[0\]){{{MAX_DEPTH}}}: nests lists or tables "
                                        rf"more than {MAX_DEPTH} levels deep"):
        check_tree({"x": _nested(MAX_DEPTH + 1)})


def test_a_shared_subtree_cannot_make_the_readers_walk_it_billions_of_times():
    """2**30 paths through 30 shared lists: refused at the value limit, in a moment."""
    node: list = [0.0]
    for _ in range(30):
        node = [node, node]
    with pytest.raises(SpecError, match=f"^holds more than {reading.MAX_VALUES} values"):
        check_tree({"x": node})


# (case, a dict spec's change, a fragment of the error)
def _cyclic() -> dict:
    raw = copy.deepcopy(BASE)
    raw["data"]["self"] = raw["data"]
    return raw


BAD_DICTS = [
    ("contains_itself", _cyclic, "nests lists or tables more than"),
    ("integer_key", lambda: {**copy.deepcopy(BASE), 3: "x"}, "a key must be a string"),
    ("numpy_integer", lambda: {**copy.deepcopy(BASE), "seed": np.int64(3)},
     "seed: np.int64(3) (int64) is not a TOML value"),
    ("none_value", lambda: {**copy.deepcopy(BASE), "seed": None}, "None (NoneType) is not a TOML"),
]


@pytest.mark.parametrize(("case", "build", "fragment"), BAD_DICTS, ids=[c[0] for c in BAD_DICTS])
def test_a_dict_spec_holds_only_what_toml_can_say(case, build, fragment):
    with pytest.raises(SpecError) as info:
        harness.run(build(), backends=["numpy"])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_sweep_may_take_exactly_the_total_step_limit(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["training"] = {"learning_rate": 0.1, "batch_size": 16, "steps": MAX_SWEEP_STEPS // 2}
    raw["sweep"] = {"field": "training.learning_rate", "values": [0.1, 0.2]}
    assert len(sweep.expand(raw)) == 2
    raw["sweep"]["values"] = [0.1, 0.2, 0.3]
    with pytest.raises(SpecError, match=f"would take {3 * (MAX_SWEEP_STEPS // 2)} steps in all"):
        sweep.expand(raw)


# --- the device, and a run in which nothing can run ----------------------------------------

def _small() -> dict:
    raw = copy.deepcopy(BASE)
    raw["training"] = {"learning_rate": 0.1, "batch_size": 16, "steps": 2}
    return raw


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_cuda_without_a_cuda_device_is_refused_before_training(framework, tmp_path):
    module = pytest.importorskip(framework)
    has_gpu = module.cuda.is_available() if framework == "torch" \
        else any(d.platform == "gpu" for d in module.devices())
    if has_gpu:
        pytest.skip(f"{framework} has a GPU here")
    with pytest.raises(SpecError) as info:
        harness.run(_small(), backends=[framework], out=tmp_path / "out", device="cuda")
    assert str(info.value).startswith(f"device: 'cuda' is not usable by {framework} here: ")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_run_in_which_no_backend_can_run_leaves_the_results_untouched(tmp_path):
    out = tmp_path / "out"
    harness.run(_small(), backends=["numpy"], out=out)
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(SpecError, match=r"^backends: no backend can run here \(numpy does not "
                                        r"support device 'cuda'\); nothing was trained or "
                                        r"written"):
        harness.run(_small(), backends=["numpy"], out=out, force=True, device="cuda")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_the_meta_of_a_dict_spec_is_its_toml_as_loaded():
    raw = _small()
    specs, origin = experiment.load(raw, "float32")
    raw["seed"] = 99                                   # changed after loading: not recorded
    assert origin.overrides == {"dtype": "float32"}
    assert "seed = 3" in origin.spec_text and specs[0].dtype == "float32"
