"""The same thread count for every framework, set once by the harness and recorded.

- NumPy's BLAS: threadpoolctl (if installed) limits the live pools; OMP/OPENBLAS/MKL env vars
  cover child processes.
- torch: `torch.set_num_threads` (intra-op), through its backend's `set_threads` hook below.
- XLA (JAX) has no flag for a thread count: its CPU pool is sized from the cores the process
  may run on. So with fewer threads than cores, the process is pinned (CPU affinity) to that
  many cores, which limits every framework alike; with one thread XLA's Eigen pool is also
  switched off (`--xla_cpu_multi_thread_eigen=false`, set before JAX starts).
- a backend's own pools (torch's, a plug-in's framework such as TensorFlow's): its optional
  `Backend.set_threads` hook, called by `apply_to` before each construction.
- OpenBLAS's idle threads: how long they spin before they sleep (`BLAS_SPIN_EXPONENT`), for
  processes started after `configure` (spawned workers); one that has loaded it keeps its own.
"""

from __future__ import annotations

import os
import sys

from harness.backend import Backend

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# OpenBLAS's idle threads spin 2^n cycles before they sleep (default n = 28, ~0.1 s), which
# slowed the next contestant; 2^20 (~0.4 ms) still bridges the gaps between one step's
# products. The measurements: docs/benchmarking.md.
BLAS_SPIN_EXPONENT = 20
_state: dict = {}


def configure(threads: int) -> None:
    """Set thread counts for NumPy's BLAS and (before it starts) XLA; a backend's own pools
    follow in `apply_to`."""
    os.environ.update(child_env(threads))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if threads < len(cores):
        os.sched_setaffinity(0, set(cores[:threads]))
    if threads == 1 and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    try:
        from threadpoolctl import threadpool_limits

        _state["limits"] = threadpool_limits(limits=threads)
    except ImportError:
        pass
    _state["threads"] = threads


def child_env(threads: int) -> dict[str, str]:
    """The environment variables that carry the thread settings into child processes."""
    return {**{var: str(threads) for var in ENV_VARS},
            "OPENBLAS_THREAD_TIMEOUT": str(BLAS_SPIN_EXPONENT)}


def apply_to(backend: type[Backend]) -> None:
    """Hand the configured count to `backend`'s own thread pools (its `set_threads` hook),
    before it is built; nothing when no count is configured."""
    threads = _state.get("threads")
    if threads:
        backend.set_threads(threads)


def configured() -> int | None:
    return _state.get("threads")
