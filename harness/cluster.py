"""Where a sweep's points run: one after another in this process, on a local Dask cluster (one
worker process per core) or on an existing Dask cluster (`dask scheduler` / `dask worker`,
dask-jobqueue, Kubernetes). One task is one sweep point with all its backends, so their
step-interleaved comparison stays inside one process; the results come back to the submitting
process, in sweep order, and only it writes the results folder.

The same answer everywhere: a point's tables depend on its spec alone (every random number is
derived from the spec's seed), and each worker runs one point at a time on one thread for
NumPy's BLAS, torch and XLA, so a point's tables are the same bits on any worker of the same
CPU family (a BLAS picks its kernels by CPU); only the timings differ. Dask re-runs the
point of a worker that dies on another worker; a point whose run raises (an unknown backend,
out of memory) comes back as its error, and the others complete. Workers are Dask's
long-lived processes: each imports a framework once and keeps it.

What travels to a worker: the Spec (inline data and an init file's arrays as read here
included) and the backend names, or classes, pickled. Named data sets are generated or loaded
by the worker itself, so a worker needs the same installation as this process: the harness,
its frameworks at the same versions (a remote cluster's are checked before any point runs)
and scikit-learn's data.
A backend given as a class is pickled by reference unless it is defined in `__main__` or
inside a function: a remote worker must be able to import it, or the backend must be
registered (an entry point) there.

`distributed` is imported only when a cluster is used: `workers=1` without a scheduler needs
nothing beyond the harness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any, TextIO

import pandas as pd

from harness import escape, parity, provenance
from harness.bench import threads
from harness.progress import Position, duration, positions
from harness.spec import Spec

IN_PROCESS = "in-process"
# A worker runs one point at a time on this many threads: the workers share the machine's
# cores, and a point's bits must not depend on how many threads a worker has.
WORKER_THREADS = 1
# Connecting to a scheduler: long enough for one across a network, short enough that a
# mistyped address fails within a minute (dask's own default is 30 s too).
CONNECT_TIMEOUT_S = 30.0
# A scheduler without workers would hold the points forever: wait this long for the first one.
WORKER_WAIT_S = 60.0
# A point's error as reported: its first line, cut here (a framework's message can be pages).
MAX_ERROR_CHARS = 300
# The frameworks whose versions decide a point's bits: a worker with others is refused.
SAME_VERSIONS = ("numpy", "torch", "jax", "jaxlib", "optax", "scikit-learn")
IMPORT_HINT = ("a backend given as a class must be importable on every worker, or registered "
               "there by name (docs/cluster.md)")

# A local cluster's workers without Dask's statistical profiler: it samples the running point's
# stack every 10 ms for a dashboard the harness does not show, and on a busy machine made
# the tiny spec's points up to twice as slow (docs/cluster.md).
# No per-worker memory limit on the local cluster: Dask's default (the machine's memory over the
# workers) would kill a point that runs fine in one process; the harness's memory pre-flight,
# not Dask, decides what fits (0 = no limit).
WORKER_MEMORY_LIMIT = 0
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
MAIN_GUARD_HINT = ("a Python script that runs a sweep on workers > 1 must do so under "
                   "`if __name__ == \"__main__\":` (its workers are spawned and import it)")

OnDone = Callable[["PointResult"], None]


class ClusterError(Exception):
    """The cluster cannot be used (unreachable scheduler, no workers, other versions): one line
    for the command line, before any point has run."""


@dataclass(frozen=True)
class PointResult:
    """One sweep point as it came back: its tables and summary, or its error."""
    index: int                            # position in the sweep
    variant: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    summary: dict | None = field(default=None, repr=False)
    error: str | None = None              # "ExceptionType: first line of its message"
    seconds: float = 0.0                  # the point's own wall time, on its worker
    started: float = 0.0                  # when it started there (time.time(): one clock
                                          # for the workers of one machine)
    cpu_seconds: float = 0.0              # CPU time of its process meanwhile, all threads
    worker: str = IN_PROCESS              # the Dask worker's address
    pid: int = 0                          # the process that ran it

    @property
    def failed(self) -> bool:
        return self.error is not None


def executor_seconds(points: Sequence[PointResult], since: float) -> dict[str, float | None]:
    """What the executor cost, from when each point started and how long it ran on its
    worker: `startup`, from `since` (time.time() when the sweep was submitted) to the first
    point's start (a local cluster's start, connecting, shipping the first points); and
    `per_point`, the mean gap on a worker between one point's end and the next point's start
    (returning a point's tables, the scheduler's round trip, unpickling the next spec);
    None where no worker ran two points (nothing measured it)."""
    ran = [p for p in points if not p.failed and p.started]
    if not ran:
        return {"startup": None, "per_point": None}
    gaps = []
    for worker in {(p.worker, p.pid) for p in ran}:
        mine = sorted((p for p in ran if (p.worker, p.pid) == worker), key=lambda p: p.started)
        gaps += [b.started - (a.started + a.seconds) for a, b in pairwise(mine)]
    return {"startup": min(p.started for p in ran) - since,
            "per_point": sum(gaps) / len(gaps) if gaps else None}


def one_line(err: BaseException) -> str:
    """`Type: first line of the message`, at most MAX_ERROR_CHARS characters."""
    text = (str(err).strip().splitlines() or [""])[0]
    line = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS - 3] + "..."


def run_point(index: int, spec: Spec, backends: Sequence[parity.BackendRef], device: str,
              progress: bool = False, position: Position | None = None,
              catch: bool = True) -> PointResult:
    """Run one sweep point with all its backends (`position`: its place in the sweep's
    progress bars); an exception becomes the point's error, or with `catch` False (a run of
    one point: there is no other point to complete) goes up as it is."""
    t0, c0, started = time.perf_counter(), time.process_time(), time.time()
    try:
        rec = parity.run_variant(spec, backends, device, progress, position)
        tables, summary, error = rec.frames(), parity.summarize(rec), None
    except Exception as err:  # the point's own failure: reported, the sweep goes on
        if not catch:
            raise
        tables, summary, error = {}, None, one_line(err)
    return PointResult(index, spec.variant, tables, summary, error,
                       seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0,
                       started=started, pid=os.getpid())


def outcome(spec: Spec, point: PointResult) -> tuple[dict[str, pd.DataFrame], dict]:
    """A point's tables and summary as a results folder holds them. A failed point: the empty
    tables, one `failed` event that holds its error, and a summary with no backends (verdict
    not_compared) that gives the error as the reason and under `error`."""
    if not point.failed:
        return point.tables, point.summary or {}
    rec = parity.Record(spec, [])
    rec.add("events", {"backend": parity.HARNESS, "step": -1, "event": "failed",
                       "detail": point.error})
    summary = parity.summarize(rec)
    summary.update(not_compared=[f"the point failed: {point.error}"], error=point.error)
    return rec.frames(), summary


def single_threaded(backends: Sequence[parity.BackendRef], spec: Spec, device: str) -> None:
    """Limit this worker process to WORKER_THREADS threads for NumPy's BLAS (threadpoolctl),
    torch and each backend's own pools (`Backend.set_threads`), and XLA (its Eigen pool is off
    when JAX starts after this). No CPU pinning (`threads.configure` pins to the first cores:
    right for one process, wrong for several workers sharing a machine)."""
    os.environ.update(threads.child_env(WORKER_THREADS))
    flag = "--xla_cpu_multi_thread_eigen=false"
    xla = os.environ.get("XLA_FLAGS", "")
    if "jax" not in sys.modules and flag not in xla:
        os.environ["XLA_FLAGS"] = f"{xla} {flag}".strip()
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=WORKER_THREADS)
    ok, _ = parity.runnable(spec, backends, device)
    for cls in ok.values():
        cls.set_threads(WORKER_THREADS)


def worker_point(index: int, spec: Spec, backends: Sequence[parity.BackendRef],
                 device: str) -> PointResult:
    """The Dask task: one point on a single-threaded worker, labelled with the worker."""
    from distributed import get_worker

    try:
        single_threaded(backends, spec, device)
    except Exception as err:  # a backend that cannot even be looked up: the point's error
        return PointResult(index, spec.variant, error=one_line(err), pid=os.getpid(),
                           worker=get_worker().address)
    point = run_point(index, spec, backends, device)
    return replace(point, worker=get_worker().address)


def run_points(specs: Sequence[Spec], backends: Sequence[parity.BackendRef],
               device: str = "cpu", workers: int = 1, scheduler: str | None = None,
               progress: bool = True, on_done: OnDone | None = None) -> list[PointResult]:
    """Run every sweep point and return them in sweep order. `workers == 1` without a
    `scheduler`, or a single point: in this process, one after another, with each point's own
    progress bars (the harness as it always ran). `workers > 1`: a local Dask cluster of that
    many worker processes (never more than there are points). `scheduler` ("tcp://host:port"): that
    cluster's workers. `on_done` sees each point as it finishes (in finishing order)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if scheduler is None and min(workers, len(specs)) == 1:
        return _in_process(specs, backends, device, progress, on_done)
    return _on_dask(specs, backends, device, min(workers, len(specs)), scheduler, progress,
                    on_done)


def _in_process(specs: Sequence[Spec], backends: Sequence[parity.BackendRef], device: str,
                progress: bool, on_done: OnDone | None) -> list[PointResult]:
    out = []
    for i, (spec, at) in enumerate(zip(specs, positions(specs), strict=True)):
        out.append(run_point(i, spec, backends, device, progress, at, catch=len(specs) > 1))
        if on_done is not None:
            on_done(out[-1])
    return out


def _on_dask(specs: Sequence[Spec], backends: Sequence[parity.BackendRef], device: str,
             workers: int, scheduler: str | None, progress: bool,
             on_done: OnDone | None) -> list[PointResult]:
    out: list[PointResult | None] = [None] * len(specs)
    with _client(workers, scheduler) as client, SweepProgress(len(specs), progress) as bar:
        from distributed import as_completed  # importable: _client has connected

        if scheduler is not None:
            _check_workers(client, scheduler)
        futures = {client.submit(worker_point, i, spec, list(backends), device,
                                 pure=False): i for i, spec in enumerate(specs)}
        for future in as_completed(futures):
            i = futures[future]
            point = collect(future, i, specs[i])
            out[i] = point
            bar.done(point)
            if on_done is not None:
                on_done(point)
    return [p for p in out if p is not None]


def collect(future: Any, index: int, spec: Spec) -> PointResult:
    """The point a future holds, or its failure as the point's error: a worker that died on it
    every time dask tried (KilledWorker), a class a worker could not import."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as err:
        error = (f"KilledWorker: the point's worker died each of the {err.allowed_failures + 1} "
                 "times it was tried (out of memory, or a crash inside a framework)")
    except Exception as err:  # the point failed outside run_point: still only this point
        error = one_line(err)
        if isinstance(err, ImportError | AttributeError):
            error = f"{error} ({IMPORT_HINT})"
    return PointResult(index, spec.variant, error=error, worker="?")


@contextlib.contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client of the scheduler at `scheduler`, or of a local cluster of `workers`
    single-threaded worker processes (closed on the way out)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        option = f"--scheduler {escape.terminal(scheduler)}" if scheduler \
            else f"--workers {workers}"
        raise ClusterError(f"{option} needs Dask distributed, which is not installed (pip "
                           "install 'backprop-harness[cluster]'; or --workers 1)") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except Exception as err:  # unreachable, refused, a malformed address
            raise ClusterError(f"--scheduler {escape.terminal(scheduler)}: cannot connect "
                               f"({escape.terminal(one_line(err))})") from None
        with client:
            yield client
        return
    env = {**threads.child_env(WORKER_THREADS),
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                        "--xla_cpu_multi_thread_eigen=false".strip()}
    try:
        with dask.config.set(WORKER_CONFIG):   # the spawned workers take the config as set here
            local = LocalCluster(n_workers=workers, threads_per_worker=WORKER_THREADS,
                                 processes=True, dashboard_address=":0",
                                 memory_limit=WORKER_MEMORY_LIMIT,
                                 silence_logs=logging.ERROR, env=env)
    except Exception as err:  # most often a script without a __main__ guard (spawned workers)
        raise ClusterError(f"--workers {workers}: the local cluster did not start "
                           f"({escape.terminal(one_line(err))}); {MAIN_GUARD_HINT}") from None
    with local, Client(local) as client:
        yield client


def _check_workers(client: Any, scheduler: str) -> None:
    """Before any point: the cluster has a worker, and every worker has this process's
    versions of the frameworks that decide a point's bits."""
    where = f"--scheduler {escape.terminal(scheduler)}"
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"{where}: no worker joined within {WORKER_WAIT_S:.0f} s (start "
                           "one with `dask worker ADDRESS --nthreads 1`)") from None
    check_versions(_versions(), client.run(_versions), where)


def check_versions(here: dict[str, str | None], workers: dict[str, dict[str, str | None]],
                   where: str) -> None:
    """Refuse a cluster on which a worker has other versions of the frameworks than `here`
    (a point's bits depend on them); `workers` maps each worker's address to its versions."""
    for address, theirs in workers.items():
        differ = [f"{name} {theirs.get(name)} (here {version})"
                  for name, version in here.items() if theirs.get(name) != version]
        if differ:
            raise ClusterError(f"{where}: worker {escape.terminal(address)} has "
                               f"{escape.terminal(', '.join(differ))}; a point's results "
                               "depend on them (allowed: the same versions on every worker)")


def _versions() -> dict[str, str | None]:
    """The versions in SAME_VERSIONS of this process (run on each worker too)."""
    found = provenance.versions()
    return {name: found.get(name) for name in SAME_VERSIONS}


class SweepProgress:
    """The sweep's progress: one bar (points done / total, failures) on a terminal; elsewhere
    one plain line per finished point; nothing when not `enabled`."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.enabled, self.clock = total, enabled, clock
        self.stream = sys.stderr if stream is None else stream
        self.started = clock()
        self.finished = self.failures = 0
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="sweep", unit="point", file=self.stream)

    def __enter__(self) -> SweepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def done(self, point: PointResult) -> None:
        self.finished += 1
        self.failures += point.failed
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(failed=self.failures, refresh=True)
        elif self.enabled:
            print(self.line(point), file=self.stream, flush=True)

    def line(self, point: PointResult) -> str:
        """harness: point 3/16 [seed=2] agree in 12 s on tcp://10.0.0.5:40211; 5/16 done,
        0 failed, elapsed 1 min 02 s, ETA 2 min 10 s."""
        label = f" [{escape.terminal(point.variant)}]" if point.variant else ""
        what = f"failed: {escape.terminal(point.error)}" if point.failed \
            else (point.summary or {}).get("verdict", "done")
        elapsed = self.clock() - self.started
        left = self.total - self.finished
        eta = f", ETA {duration(elapsed / self.finished * left)}" if left else ""
        return (f"harness: point {point.index + 1}/{self.total}{label} {what} in "
                f"{duration(point.seconds)} on {escape.terminal(point.worker)}; "
                f"{self.finished}/{self.total} done, {self.failures} failed, "
                f"elapsed {duration(elapsed)}{eta}")
