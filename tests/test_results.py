"""Writing a results folder: one atomic link swap, ownership by manifest, what --force may and
may not replace, and the clean-up of what killed writes left behind. In-process, on tables
read from a committed results folder, so no test here trains anything.

The kills themselves (a real `harness run` killed at every step of the swap) are in
tests/test_interrupt.py; damaged folders read back by `plot` and `report` in
tests/test_tampered_results.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness import results
from harness.plots import folder as plots
from harness.results import leftover, manifest, names, swap

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "worked_example"


ROWS = 20                            # of each table: enough to draw every figure


@pytest.fixture(scope="module")
def stored():
    """(frames, summary, meta) of a real run, its tables cut short."""
    frames, summary, meta = results.read(SOURCE)
    return {name: frame.head(ROWS) for name, frame in frames.items()}, summary, meta


def write(out: Path, stored, **options) -> Path:
    return results.write(out, *stored, **options)


def siblings(out: Path) -> list[str]:
    """Every entry beside `out` that belongs to it (its versions, trash, leftovers)."""
    return sorted(n for n in os.listdir(out.parent) if names.sibling_kind(out.name, n))


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def legacy_copy(out: Path) -> Path:
    """A results folder as an older harness left it: a plain folder, no manifest."""
    shutil.copytree(SOURCE, out)
    return out


def test_the_path_is_a_link_to_a_complete_fingerprinted_version(tmp_path, stored):
    out = write(tmp_path / "res", stored)
    assert out.is_symlink() and names.sibling_kind("res", os.readlink(out)) == "version"
    found = manifest.load(out)
    assert found["kind"] == "experiment" and found["complete"] is True
    assert set(found["files"]) == {f"{t}.csv" for t in results.TABLES} | {"summary.json",
                                                                         "meta.json"}
    for name, recorded in found["files"].items():
        assert manifest.fingerprint(out / name) == recorded
    assert set(os.listdir(out)) == {*found["files"], "manifest.json"}
    assert results.read(out)[1] == stored[1]


def test_a_rewrite_swaps_the_link_and_deletes_the_old_version(tmp_path, stored):
    out = write(tmp_path / "res", stored)
    first = os.readlink(out)
    write(out, stored)
    assert os.readlink(out) != first and siblings(out) == [os.readlink(out)]
    assert os.stat(tmp_path / os.readlink(out)).st_mode & 0o777 != 0o700   # the user's umask


@pytest.mark.parametrize("renameat2", [True, False], ids=["exchange", "fallback"])
def test_an_older_harness_folder_is_replaced(tmp_path, stored, monkeypatch, renameat2):
    """With renameat2 the plain folder and the new link swap in one step; without it the
    fallback's two renames still end with the link in place and nothing left over."""
    swapped = []
    real = swap.exchange
    monkeypatch.setattr(swap, "exchange", lambda a, b: swapped.append(b) or
                        (renameat2 and real(a, b)))
    out = legacy_copy(tmp_path / "res")
    write(out, stored)
    assert swapped == [out] and out.is_symlink() and siblings(out) == [os.readlink(out)]


def test_exchange_swaps_a_folder_and_a_link_in_one_step(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a").write_text("old")
    os.symlink("elsewhere", tmp_path / "link")
    assert swap.exchange(tmp_path / "link", tmp_path / "dir")
    assert os.readlink(tmp_path / "dir") == "elsewhere"
    assert (tmp_path / "link" / "a").read_text() == "old"


def test_the_fallback_swap_is_finished_by_the_next_write(tmp_path, stored, monkeypatch):
    """A kill between the fallback's two renames: the old folder is in a trash, the new link
    beside it and the path absent; the next write puts the link back first."""
    out = write(tmp_path / "res", stored)
    version = os.readlink(out)
    trash = swap._trash(out)
    os.rename(out, trash / names.LINK)
    (trash / names.OLD).mkdir()
    swap.recover(out)
    assert os.readlink(out) == version
    write(out, stored)
    assert siblings(out) == [os.readlink(out)]


# (name, damage to a folder the harness wrote at `out`, fragment of the refusal)
REFUSED = [
    ("user_file", lambda out: (out / "notes.txt").write_text("mine"),
     "holds notes.txt, which backprop-harness did not write"),
    ("user_folder", lambda out: (out / "drafts").mkdir(), "holds drafts"),
    ("edited_file", lambda out: (out / "summary.json").write_text("{}"),
     "summary.json changed since backprop-harness wrote it"),
    ("file_replaced_by_folder", lambda out: ((out / "steps.csv").unlink(),
                                             (out / "steps.csv").mkdir()), "steps.csv"),
    ("foreign_manifest", lambda out: (out / "manifest.json").write_text('{"tool": "x"}'),
     "its manifest.json was not written by backprop-harness"),
    ("bench_kind", lambda out: _set_kind(out, "bench"),
     "holds the results of `harness bench`, which `harness run` never replaces"),
]


def _set_kind(out: Path, kind: str) -> None:
    found = manifest.load(out)
    manifest.dump_json(out / "manifest.json", {**found, "kind": kind})


@pytest.mark.parametrize(("damage", "fragment"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_a_changed_folder_is_not_replaced_without_force(tmp_path, stored, damage, fragment,
                                                        capsys):
    out = write(tmp_path / "res", stored)
    damage(out)
    version, before = os.readlink(out), snapshot(out)
    for attempt in (lambda: results.guard_target(out, False),
                    lambda: write(out, stored)):
        with pytest.raises(results.ResultsError, match="use --force") as info:
            attempt()
        assert fragment in str(info.value)
    assert os.readlink(out) == version and snapshot(out) == before
    results.guard_target(out, True)
    assert f"--force: replacing {out} deletes {out} (the folder it shows" in \
        capsys.readouterr().err
    write(out, stored, force=True)
    assert siblings(out) == [os.readlink(out)]


# (name, what is at the path before a write, fragment of the refusal)
FOREIGN = [
    ("user_folder", lambda out: (out.mkdir(), (out / "data.csv").write_text("1")),
     "was not written by backprop-harness (it has no manifest.json)"),
    ("copied_meta_json", lambda out: (out.mkdir(), shutil.copy(SOURCE / "meta.json", out),
                                      (out / "data.csv").write_text("1")),
     "it has no manifest.json"),
    ("legacy_with_user_file", lambda out: (legacy_copy(out), (out / "notes.txt").write_text("")),
     "holds notes.txt"),
    ("legacy_bench", lambda out: shutil.copytree(ROOT / "results" / "bench", out),
     "holds the results of `harness bench`"),
    ("a_file", lambda out: out.write_text("x"), "exists and is not a folder"),
    ("foreign_link", lambda out: os.symlink(SOURCE, out), "is a symbolic link to"),
]


@pytest.mark.parametrize(("make", "fragment"), [r[1:] for r in FOREIGN],
                         ids=[r[0] for r in FOREIGN])
def test_what_the_harness_did_not_write_needs_force(tmp_path, stored, make, fragment):
    out = tmp_path / "res"
    make(out)
    with pytest.raises(results.ResultsError, match="use --force") as info:
        write(out, stored)
    assert fragment in str(info.value)
    assert not out.is_symlink() or os.readlink(out) == str(SOURCE)
    write(out, stored, force=True)
    assert out.is_symlink() and siblings(out) == [os.readlink(out)]
    assert (SOURCE / "summary.json").is_file()            # a foreign link's target is kept


def test_an_experiment_never_replaces_the_benchmark_and_back(tmp_path, stored):
    out = write(tmp_path / "bench", stored, kind=results.BENCH)
    with pytest.raises(results.ResultsError, match="`harness bench`, which `harness run`"):
        write(out, stored)
    other = write(tmp_path / "exp", stored)
    with pytest.raises(results.ResultsError, match="`harness run`, which `harness bench`"):
        results.guard_target(other, False, kind=results.BENCH)


def test_the_legacy_harness_folder_is_replaced_without_force(tmp_path, stored):
    out = legacy_copy(tmp_path / "res")
    results.guard_target(out, False)
    write(out, stored)
    assert out.is_symlink()


def test_plots_and_report_are_claimed_so_a_rerun_replaces_them(tmp_path, stored):
    out = write(tmp_path / "res", stored)
    drawn = plots.plot_folder(out)
    from harness.report import write_report

    write_report(out)
    assert {p.name for p in drawn} <= set(manifest.load(out)["derived"])
    results.guard_target(out, False)
    (out / "mine.png").write_bytes(b"")
    with pytest.raises(results.ResultsError, match=r"holds mine\.png"):
        results.guard_target(out, False)


def test_every_figure_plot_draws_has_a_name_the_harness_knows(stored):
    frames, summary, _ = stored
    sweep = {**summary, "variants": [{**summary["variants"][0], "variant": "a"},
                                     {**summary["variants"][0], "variant": "b"}]}
    found = plots.plan(frames, summary) + plots.plan(frames, sweep)
    assert {p.kind for p in found} <= set(results.FIGURES)
    assert all(names.is_legacy_file("experiment", p.file) for p in found)
    assert not names.is_legacy_file("experiment", "holiday.png")


@pytest.mark.parametrize("where", ["root", "home", "cwd", "ancestor_of_cwd", "spec_folder"])
def test_force_never_replaces_a_guarded_folder(tmp_path, stored, monkeypatch, where):
    home, work = tmp_path / "home", tmp_path / "home" / "work" / "deep"
    work.mkdir(parents=True)
    spec = tmp_path / "specs" / "s.toml"
    spec.parent.mkdir()
    spec.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    out = {"root": Path("/"), "home": home, "cwd": Path(".").resolve(),
           "ancestor_of_cwd": work.parent, "spec_folder": spec.parent}[where]
    before = sorted(os.listdir(out))
    with pytest.raises(results.ResultsError, match=r"not even with --force|no folder of its own"):
        results.guard_target(out, True, spec=spec)
    with pytest.raises(results.ResultsError):
        write(out, stored, force=True, spec=spec)
    assert sorted(os.listdir(out)) == before


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda t: (t / "afile").write_text(""), "afile is not a writable folder"),
    (lambda t: os.symlink(t / "nowhere", t / "afile"), "afile is a symbolic link to nothing"),
], ids=["file_on_the_way", "dangling_link_on_the_way"])
def test_a_target_under_which_nothing_can_be_made_is_refused(tmp_path, stored, make,
                                                             fragment):
    make(tmp_path)
    with pytest.raises(results.ResultsError, match="cannot be created") as info:
        results.guard_target(tmp_path / "afile" / "res", False)
    assert fragment in str(info.value)


def test_proc_is_refused_before_any_work():
    with pytest.raises(results.ResultsError, match="cannot be created"):
        results.guard_target(Path("/proc/harness-results"), False)


def _all_skipped(summary: dict) -> dict:
    """Every backend of every sweep point skipped (`--device cuda` without CUDA, say)."""
    return {**summary, "variants": [{**v, "backends": [], "skipped": {"numpy": "no CUDA"}}
                                    for v in summary["variants"]]}


@pytest.mark.parametrize(("kind", "nothing"), [
    (results.EXPERIMENT, lambda frames, summary: (frames, _all_skipped(summary))),
    (results.BENCH, lambda frames, summary: ({n: f.iloc[:0] for n, f in frames.items()},
                                             summary)),
], ids=["experiment_all_skipped", "bench_no_rows"])
def test_a_run_in_which_nothing_ran_writes_nothing(tmp_path, stored, kind, nothing):
    out = write(tmp_path / "res", stored, kind=kind)
    version, before = os.readlink(out), snapshot(out)
    frames, summary = nothing(*stored[:2])
    with pytest.raises(results.ResultsError, match="nothing ran"):
        results.write(out, frames, summary, stored[2], kind=kind)
    assert os.readlink(out) == version and snapshot(out) == before


def _stale_version(out: Path) -> Path:
    path = swap.fresh(out.parent, lambda t: names.version_name(out.name, t))
    swap._fill(path, {"steps": results.read(SOURCE)[0]["steps"]}, {}, {}, "experiment")
    (path / ".steps.csv.0123abcd.tmp").write_text("half")
    return path


def _half_made(out: Path) -> Path:
    path = swap.fresh(out.parent, lambda t: names.version_name(out.name, t))
    (path / "manifest.json").write_text('{"tool": "backprop-har')
    return path


def _old_style(out: Path, prefix: str) -> Path:
    path = out.parent / f"{prefix}-{out.name}-a1b2c3d4"
    if prefix == ".old":
        legacy_copy(path / out.name)
    else:
        path.mkdir()
        (path / "steps.csv").write_text("variant\n")
    return path


def _look_alike(out: Path, name: str, manifest_text: str | None = None) -> Path:
    path = out.parent / name
    path.mkdir()
    (path / "x").write_text("")
    if manifest_text is not None:
        (path / "manifest.json").write_text(manifest_text)
    return path


def _version_with_user_file(out: Path) -> Path:
    path = _stale_version(out)
    (path / "notes.txt").write_text("")
    return path


LEFTOVERS = {"stale_version": _stale_version, "half_made_version": _half_made,
             "trash": lambda out: swap._trash(out),
             "old_tmp": lambda out: _old_style(out, ".tmp"),
             "old_old": lambda out: _old_style(out, ".old")}
# Look-alikes: the right name but files the harness did not write, or the right files under
# another target's name.
KEPT = {"version_with_user_file": _version_with_user_file,
        "tmp_of_another_target": lambda out: _old_style(out.parent / "other", ".tmp"),
        "user_folder_named_like_a_version": lambda out: _look_alike(
            out, names.version_name(out.name, "0123abcd")),
        "trash_with_a_foreign_manifest": lambda out: _look_alike(
            out, names.trash_name(out.name, "89abcdef"), "{}")}


def test_the_next_write_deletes_only_what_killed_writes_left(tmp_path, stored):
    out = write(tmp_path / "res", stored)
    made = {name: make(out).name for name, make in LEFTOVERS.items()}
    kept = {name: make(out).name for name, make in KEPT.items()}
    assert len(set(made.values()) | set(kept.values())) == len(LEFTOVERS) + len(KEPT)
    write(out, stored)
    assert set(os.listdir(tmp_path)) == {*kept.values(), "res", os.readlink(out)}


def test_ctrl_c_before_the_swap_leaves_the_previous_results(tmp_path, stored, monkeypatch):
    out = write(tmp_path / "res", stored)
    version, before = os.readlink(out), snapshot(out)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(manifest, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        write(out, stored)
    assert results.interruption(info.value) == results.UNTOUCHED
    assert os.readlink(out) == version and snapshot(out) == before
    assert siblings(out) == [version]


def test_ctrl_c_after_the_swap_says_the_new_results_are_in(tmp_path, stored, monkeypatch):
    out = write(tmp_path / "res", stored)
    old = os.readlink(out)
    real = leftover.delete

    def interrupted(path):
        if names.sibling_kind("res", path.name) == "trash":
            raise KeyboardInterrupt
        real(path)

    monkeypatch.setattr(leftover, "delete", interrupted)
    with pytest.raises(results.ResultsInterrupted) as info:
        write(out, stored)
    assert os.readlink(out) != old
    assert results.interruption(info.value).startswith(f"the new results are in {out}")
    monkeypatch.setattr(leftover, "delete", real)
    write(out, stored)
    assert siblings(out) == [os.readlink(out)]


def test_a_failing_disk_is_one_line_and_leaves_the_previous_results(tmp_path, stored,
                                                                   monkeypatch):
    out = write(tmp_path / "res", stored)
    version, before = os.readlink(out), snapshot(out)

    def full(*args):
        raise OSError(28, "No space left on device", str(out / "steps.csv"))

    monkeypatch.setattr(manifest, "finish", full)
    with pytest.raises(results.ResultsError, match="No space left on device") as info:
        write(out, stored)
    assert results.UNTOUCHED in str(info.value)
    assert os.readlink(out) == version and snapshot(out) == before
    assert siblings(out) == [version]


def test_the_manifest_fingerprint_sees_a_one_byte_change(tmp_path, stored):
    out = write(tmp_path / "res", stored)
    text = (out / "steps.csv").read_bytes()
    (out / "steps.csv").write_bytes(text[:-2] + bytes([text[-2] ^ 1]) + text[-1:])
    assert results.changed_files(out) == ["steps.csv"]
    assert json.loads((out / "manifest.json").read_text())["tool"] == results.MARKER


def test_ctrl_c_inside_the_fallback_swap_puts_the_old_folder_back(tmp_path, stored,
                                                                  monkeypatch):
    """Without renameat2 the old folder leaves the path for an instant: a Ctrl-C then puts
    it back, so "previous results left untouched" stays true."""
    monkeypatch.setattr(swap, "exchange", lambda a, b: False)
    out = legacy_copy(tmp_path / "res")
    before = snapshot(out)
    real = os.rename

    def rename(source, destination):
        if Path(source).name == names.LINK:
            raise KeyboardInterrupt
        real(source, destination)

    monkeypatch.setattr(swap.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt) as info:
        write(out, stored)
    assert results.interruption(info.value) == results.UNTOUCHED
    assert not out.is_symlink() and snapshot(out) == before and siblings(out) == []
