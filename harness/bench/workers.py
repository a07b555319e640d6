"""Benchmark contestants in their own processes, driven in interleaved rounds.

In one process the frameworks' thread pools fight (OpenBLAS's and torch's OpenMP threads
keep spinning after each call; docs/benchmarking.md has the numbers). One spawned process
per contestant removes that; the parent still interleaves the rounds (A B C, B C A, ...), so
drift in the machine's load hits all alike. A worker stays alive for the whole bench and
holds a contestant for every shape, so each framework is imported once and the rounds can
visit the shapes in turn.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection

from harness.bench import threads, timing

Builder = Callable[..., timing.Timed]     # (name, shape, dtype, device) -> a local contestant


def _serve(conn: Connection, build: Builder, n_threads: int) -> None:
    """Worker loop: ("build", args) makes a contestant and answers its number; ("sample",
    (number, n)) times n calls of that one."""
    threads.configure(n_threads)           # before any framework exists in this process
    contestants: list[timing.Timed] = []
    while True:
        command, arg = conn.recv()
        if command == "stop":
            return
        try:
            if command == "build":
                contestants.append(build(*arg))
                conn.send(("ok", len(contestants) - 1))
            else:
                number, n = arg
                conn.send(("ok", contestants[number].sample(n)))
        except Exception as err:  # reported to the parent, which raises it there
            conn.send(("error", f"{type(err).__name__}: {err}"))


class Worker:
    """One contestant's process; it holds one built contestant per point of the grid."""

    def __init__(self, name: str, build: Builder, n_threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
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
        number = self._ask("build", (self.name, *args))
        return timing.Timed(self.name, lambda n: self._ask("sample", (number, n)))

    def stop(self) -> None:
        if self._proc.is_alive():
            self._conn.send(("stop", None))
            self._proc.join(timeout=30)
