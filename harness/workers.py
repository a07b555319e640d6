"""Benchmark contestants in their own processes, driven in interleaved rounds.

Measured on the 2-core development machine: in one process, the frameworks' thread pools
fight (OpenBLAS, torch's OpenMP and XLA's Eigen threads keep spinning after each call), and
torch's 784-256-256-10 step took 3.3 ms interleaved against 1.4 ms alone. One spawned
process per contestant removes that; the parent still interleaves the rounds (A B C, B C A,
...), so drift in the machine's load hits all alike. A worker stays alive for the whole
bench and rebuilds its contestant for each shape, so each framework is imported once.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection

from harness import threads, timing

Builder = Callable[..., timing.Timed]     # (name, shape, dtype, device) -> a local contestant
# Inherited by the workers: OpenBLAS threads sleep as soon as a product is done instead of
# spinning for ~0.1 s (2^28 cycles) on cores the next contestant needs. torch's OpenMP and
# XLA's threads spin only briefly; the protocol's settle pause covers them.
WORKER_ENV: dict[str, str] = {}


def _serve(conn: Connection, build: Builder, n_threads: int) -> None:
    """Worker loop: ("build", args) makes the contestant, ("sample", n) times n calls."""
    threads.configure(n_threads)           # before any framework exists in this process
    contestant = None
    while True:
        command, arg = conn.recv()
        if command == "stop":
            return
        try:
            if command == "build":
                contestant = build(*arg)
                conn.send(("ok", None))
            else:
                conn.send(("ok", contestant.sample(arg)))
        except Exception as err:  # reported to the parent, which raises it there
            conn.send(("error", f"{type(err).__name__}: {err}"))


class Worker:
    """One contestant's process."""

    def __init__(self, name: str, build: Builder, n_threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        os.environ.update(WORKER_ENV)
        self.name = name
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, build, n_threads), daemon=True,
                                 name=f"bench-{name}")
        self._proc.start()

    def _ask(self, command: str, arg: object) -> object:
        self._conn.send((command, arg))
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"{self.name}: {value}")
        return value

    def build(self, *args: object) -> timing.Timed:
        self._ask("build", (self.name, *args))
        return timing.Timed(self.name, lambda n: self._ask("sample", n))

    def stop(self) -> None:
        if self._proc.is_alive():
            self._conn.send(("stop", None))
            self._proc.join(timeout=30)
