"""Same answer everywhere: a sweep run in this process, on a local Dask cluster and on a cluster
started with the `dask` command line gives byte-identical tables (timings aside), also when a
worker is killed mid-sweep; a failing point is reported and the others complete.

Select with `-m cluster`; it runs in the default suite too. Every process a test starts is
killed in a `finally`, and the workers also stop by themselves when their scheduler is gone.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from harness import cluster, experiment
from harness.spec import Spec
from implementations.numpy_textbook import NumpyTextbook

pytestmark = pytest.mark.cluster

DASK = str(Path(sys.executable).with_name("dask"))
STARTUP_S = 120.0                     # a scheduler and its workers importing on a busy machine
STOP_S = 10.0                         # a killed process is gone well within this
WORKERS = 2
# Point 0 is short and the others long, so when point 0 comes back the other worker is in the
# middle of a long point: the kill test kills it there (about a second of margin here).
SHORT, LONG = 1, 800                  # epochs of 3 steps
BASE = {
    "name": "cluster_sweep", "seed": 0, "dtype": "float64",
    "data": {"name": "spirals", "n_samples": 60},
    "model": {"layers": [{"size": 5, "activation": "tanh"},
                         {"size": 3, "activation": "softmax"}]},
    "loss": {"name": "cross_entropy"}, "optimizer": {"name": "sgd"},
    "training": {"learning_rate": 0.1, "batch_size": 16, "epochs": SHORT},
}
# numpy_fast's products go through NumPy's BLAS, multi-threaded here and single-threaded on a
# worker: the same bits either way is part of what is tested.
SWEEP = {**BASE, "backends": ["numpy", "numpy_fast"],
         "sweep": {"fields": ["seed", "dtype", "training.epochs"],
                   "values": [[0, "float64", SHORT], [1, "float32", LONG],
                              [2, "float64", LONG], [3, "float32", LONG]]}}
# JAX on a worker: x64 must be on before its first array, or float64 would silently be float32.
JAX_RUN = {**BASE, "backends": ["numpy", "jax"]}
TIMING_TABLES = ("timings",)          # wall-clock seconds: the only tables allowed to differ


def specs_of(raw: dict) -> list[Spec]:
    return experiment.load(raw, None)[0]


def table_bytes(points: list[cluster.PointResult]) -> list[dict[str, bytes]]:
    """Every table of every point as CSV bytes, and the summary as JSON, timings left out."""
    assert not [p.error for p in points if p.failed]
    return [{**{name: df.to_csv(index=False).encode() for name, df in p.tables.items()
                if name not in TIMING_TABLES},
             "summary": json.dumps(p.summary, sort_keys=True).encode()} for p in points]


@pytest.fixture(scope="module")
def in_process() -> list[dict[str, bytes]]:
    return table_bytes(cluster.run_points(specs_of(SWEEP), SWEEP["backends"], progress=False))


@dataclass
class DaskCluster:
    address: str
    workers: list[subprocess.Popen]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([DASK, *args], stdout=out, stderr=subprocess.STDOUT)


def _scheduler_address(file: Path, proc: subprocess.Popen, log: Path) -> str:
    """The address the scheduler wrote once it listens (its port chosen by the system)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dask scheduler exited: {log.read_text()[-2000:]}")
        if file.exists():
            try:
                return json.loads(file.read_text())["address"]
            except (ValueError, KeyError):  # written but not yet complete
                pass
        time.sleep(0.1)
    pytest.fail("dask scheduler did not start")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """`dask scheduler` on a free port and two `dask worker` processes (one thread each, no
    nanny: a killed worker stays dead), all killed at the end."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    procs: list[subprocess.Popen] = []
    try:
        file = folder / "scheduler.json"
        procs.append(_start(["scheduler", "--host", "127.0.0.1", "--port", "0",
                             "--no-dashboard", "--scheduler-file", str(file),
                             "--idle-timeout", "600"], folder / "scheduler.log"))
        address = _scheduler_address(file, procs[0], folder / "scheduler.log")
        workers = [_start(["worker", address, "--nworkers", "1", "--nthreads", "1",
                           "--no-nanny", "--no-dashboard", "--death-timeout", "60",
                           "--local-directory", str(folder / f"w{i}")], folder / f"w{i}.log")
                   for i in range(WORKERS)]
        procs += workers
        with Client(address, timeout=STARTUP_S) as client:
            client.wait_for_workers(WORKERS, timeout=STARTUP_S)
        yield DaskCluster(address, workers)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=STOP_S)
    assert all(proc.poll() is not None for proc in procs)


def test_local_cluster_tables_are_byte_identical_to_in_process(in_process):
    points = cluster.run_points(specs_of(SWEEP), SWEEP["backends"], workers=WORKERS,
                                progress=False)
    assert [p.index for p in points] == [0, 1, 2, 3]              # sweep order
    assert all(p.worker.startswith("tcp://") for p in points)     # ran on the cluster
    assert table_bytes(points) == in_process


def test_dask_command_line_cluster_gives_the_same_tables(dask_cluster, in_process):
    points = cluster.run_points(specs_of(SWEEP), SWEEP["backends"],
                                scheduler=dask_cluster.address, progress=False)
    assert {p.pid for p in points} <= {w.pid for w in dask_cluster.workers}
    assert table_bytes(points) == in_process


SEED_SWEEP_TOML = f"""
name = "cluster_seeds"
backends = ["numpy", "numpy_fast"]
[data]
name = "spirals"
n_samples = 60
[[model.layers]]
size = 5
activation = "tanh"
[[model.layers]]
size = 3
activation = "softmax"
[loss]
name = "cross_entropy"
[training]
learning_rate = 0.1
batch_size = 16
epochs = {SHORT}
[sweep]
seeds = 3
"""


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """A results folder's tables as written, timings left out, and its summary without the
    wall-clock times."""
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("time")
    return {**{p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))
               if p.stem not in TIMING_TABLES},
            "summary": json.dumps(summary, sort_keys=True).encode()}


def test_harness_run_gives_the_same_folder_in_process_on_workers_and_through_scheduler(
        dask_cluster, tmp_path, capsys):
    """The command line's three executors write byte-identical tables and statistics."""
    from harness import cli

    spec = tmp_path / "seeds.toml"
    spec.write_text(SEED_SWEEP_TOML)
    runs = {"in_process": ["--workers", "1"], "local": ["--workers", str(WORKERS)],
            "remote": ["--scheduler", dask_cluster.address]}
    for name, how in runs.items():
        assert cli.main(["run", str(spec), "--quiet", "--out", str(tmp_path / name), *how]) == 0
    out = capsys.readouterr().out
    assert out.count(f"the points ran on {WORKERS} workers") == 2     # local and remote
    found = {name: folder_bytes(tmp_path / name) for name in runs}
    assert found["local"] == found["in_process"] == found["remote"]
    summary = json.loads(found["remote"]["summary"])
    assert [v["variant"] for v in summary["variants"]] == ["seed=0", "seed=1", "seed=2"]
    assert summary["seeds"]["groups"][0]["seeds"] == 3


def test_jax_on_a_worker_is_float64_as_in_process(dask_cluster):
    specs = specs_of(JAX_RUN)
    here = cluster.run_points(specs, JAX_RUN["backends"], progress=False)
    there = cluster.run_points(specs, JAX_RUN["backends"], scheduler=dask_cluster.address,
                               progress=False)
    assert here[0].summary["verdict"] == "agree"                  # numpy and jax in float64
    assert table_bytes(there) == table_bytes(here)


def test_a_worker_killed_mid_sweep_loses_no_point(dask_cluster, in_process):
    """When the short point 0 comes back, the worker busy with a long point is SIGKILLed: its
    point is re-run on the other worker, and the tables are still identical."""
    killed: list[int] = []

    def kill_the_other(point: cluster.PointResult) -> None:
        if not killed:
            victim = next(w for w in dask_cluster.workers if w.pid != point.pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=STOP_S)
            killed.append(victim.pid)

    points = cluster.run_points(specs_of(SWEEP), SWEEP["backends"],
                                scheduler=dask_cluster.address, progress=False,
                                on_done=kill_the_other)
    assert killed and killed[0] not in {p.pid for p in points}   # its point ran elsewhere
    assert table_bytes(points) == in_process


class FailsOnSeed2(NumpyTextbook):
    """A test backend, pickled by reference: the spawned workers import it from this module."""
    name: ClassVar[str] = "fails_on_seed_2"

    def train_step(self, batch):
        if self.spec.seed == 2:
            raise FloatingPointError("no\nsecond line")
        return super().train_step(batch)


@pytest.mark.parametrize("workers", [1, WORKERS])
def test_a_failing_point_is_reported_and_the_others_complete(workers):
    raw = {**SWEEP, "sweep": {"field": "seed", "values": [0, 1, 2, 3]}}
    points = cluster.run_points(specs_of(raw), ["numpy", FailsOnSeed2], workers=workers,
                                progress=False)
    assert [p.error for p in points] == [None, None, "FloatingPointError: no", None]
    assert [p.summary["verdict"] for p in points if not p.failed] == ["agree"] * 3


def test_a_failed_point_gives_an_event_and_a_not_compared_summary():
    spec = specs_of(BASE)[0]
    tables, summary = cluster.outcome(spec, cluster.PointResult(0, "", error="MemoryError"))
    assert tables["events"].to_dict("records") == [
        {"backend": "harness", "step": -1, "event": "failed", "detail": "MemoryError"}]
    assert tables["steps"].empty and list(tables["steps"].columns)[:2] == ["backend", "step"]
    assert (summary["verdict"], summary["error"], summary["not_compared"]) == \
        ("not_compared", "MemoryError", ["the point failed: MemoryError"])
    ok = cluster.PointResult(1, "", {"steps": tables["steps"]}, {"verdict": "agree"})
    assert cluster.outcome(spec, ok) == ({"steps": tables["steps"]}, {"verdict": "agree"})


def test_workers_1_never_imports_dask():
    code = ("import sys; from harness import cluster, experiment; from tests.test_cluster "
            "import SWEEP, specs_of; cluster.run_points(specs_of(SWEEP)[:1], ['numpy'], "
            "progress=False); print('distributed' in sys.modules, 'dask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=STARTUP_S, cwd=Path(__file__).parents[1])
    assert out.stdout.split() == ["False", "False"]


def test_a_script_without_a_main_guard_is_told_what_to_do(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text("from harness import cluster\nfrom tests.test_cluster import SWEEP, "
                      "specs_of\ncluster.run_points(specs_of(SWEEP)[:2], ['numpy'], "
                      "workers=2, progress=False)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=STARTUP_S, cwd=Path(__file__).parents[1],
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("harness.cluster.ClusterError: --workers 2: the local cluster did "
                           "not start (")
    assert last.endswith(cluster.MAIN_GUARD_HINT)


@pytest.mark.parametrize(("address", "shown"), [("tcp://127.0.0.1:9", "tcp://127.0.0.1:9"),
                                               ("tcp://h\x1b[31m:1", "tcp://h\\x1b[31m:1")])
def test_an_unreachable_scheduler_is_a_one_line_error(monkeypatch, address, shown):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(cluster.ClusterError) as err:
        cluster.run_points(specs_of(BASE), ["numpy"], scheduler=address, progress=False)
    assert str(err.value).startswith(f"--scheduler {shown}: cannot connect (")
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)


HERE = {"numpy": "2.4.6", "torch": "2.13.0", "jax": None}


def test_a_worker_with_other_versions_is_refused():
    cluster.check_versions(HERE, {"tcp://a:1": dict(HERE), "tcp://b:2": dict(HERE)}, "x")
    with pytest.raises(cluster.ClusterError, match=r"worker tcp://b:2 has torch 2\.12\.0 "
                       r"\(here 2\.13\.0\)"):
        cluster.check_versions(HERE, {"tcp://a:1": dict(HERE),
                                      "tcp://b:2": {**HERE, "torch": "2.12.0"}}, "x")


def test_a_class_a_worker_cannot_import_says_how_to_fix_it():
    class Future:
        def result(self):
            raise ModuleNotFoundError("No module named 'my_tests'")

    point = cluster.collect(Future(), 3, specs_of(BASE)[0])
    assert point.error.startswith("ModuleNotFoundError: No module named 'my_tests' (")
    assert "importable on every worker" in point.error


def test_a_point_whose_worker_always_dies_says_so():
    from distributed import KilledWorker

    class Future:
        def result(self):
            raise KilledWorker("worker_point-1", None, 3)

    point = cluster.collect(Future(), 1, specs_of(BASE)[0])
    assert point.error == ("KilledWorker: the point's worker died each of the 4 times it was "
                           "tried (out of memory, or a crash inside a framework)")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_plain_line_per_finished_point_with_failures_and_eta():
    clock, out = Clock(), io.StringIO()
    with cluster.SweepProgress(4, True, out, clock) as bar:
        clock.now = 10.0
        bar.done(cluster.PointResult(1, "seed=1", summary={"verdict": "agree"}, seconds=9.6,
                                     worker="tcp://h:1"))
        clock.now = 20.0
        bar.done(cluster.PointResult(0, "seed=\x1b0", error="MemoryError", seconds=3.0))
    assert out.getvalue().splitlines() == [
        "harness: point 2/4 [seed=1] agree in 10 s on tcp://h:1; 1/4 done, 0 failed, "
        "elapsed 10 s, ETA 30 s",
        "harness: point 1/4 [seed=\\x1b0] failed: MemoryError in 3 s on in-process; 2/4 "
        "done, 1 failed, elapsed 20 s, ETA 20 s"]


def test_no_line_when_quiet():
    out = io.StringIO()
    with cluster.SweepProgress(2, False, out) as bar:
        bar.done(cluster.PointResult(0, "", summary={"verdict": "agree"}))
    assert out.getvalue() == ""


def test_without_dask_a_cluster_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)       # import distributed fails
    with pytest.raises(cluster.ClusterError, match=r"^--workers 2 needs Dask distributed, "
                       r"which is not installed \(pip install 'backprop-harness\[cluster\]'"):
        cluster.run_points(specs_of(SWEEP)[:2], ["numpy"], workers=2, progress=False)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_bar_counts_points_and_failures():
    out = Terminal()
    with cluster.SweepProgress(3, True, out) as bar:
        bar.done(cluster.PointResult(0, "", summary={"verdict": "agree"}))
        bar.done(cluster.PointResult(2, "", error="MemoryError"))
    text = out.getvalue().replace("\r", "\n")
    assert "sweep:  67%" in text and "2/3" in text and "failed=1" in text
    assert "harness: point" not in text
