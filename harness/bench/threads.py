"""The same thread count for every framework, set once by the harness and recorded.

- NumPy's BLAS: threadpoolctl (if installed) limits the live pools; OMP/OPENBLAS/MKL env vars
  cover child processes.
- torch: `torch.set_num_threads` once torch is imported (intra-op), applied by `apply`.
- XLA (JAX) has no flag for a thread count: its CPU pool is sized from the cores the process
  may run on. So with fewer threads than cores, the process is pinned (CPU affinity) to that
  many cores, which limits every framework alike; with one thread XLA's Eigen pool is also
  switched off (`--xla_cpu_multi_thread_eigen=false`, set before JAX starts).
- OpenBLAS's idle threads: how long they spin before they sleep (`BLAS_SPIN_EXPONENT`), for
  processes started after `configure` (spawned workers); one that has loaded it keeps its own.
"""

from __future__ import annotations

import os
import sys

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# OpenBLAS's idle threads spin for 2^n cycles before they sleep: by default n = 28, ~0.1 s on
# the 2-core machine. Measured in `harness bench` (512-512-512-512-512-10:256 float32 beside
# 64-64-64-10:1024, 21 rounds): with that spin in the roofline's process, JAX's step took
# 12.8-16.6 ms in nine runs, although each sample waits the spin out (`timing.quiesce`);
# with 2^20 or 2^22 cycles (~0.4 or 1.6 ms) 9.1-10.7 ms in four, as in a bench of that shape
# alone, while the roofline's own 64-64-64-10:1024 time stayed at 0.32 ms: that still bridges
# the gaps between the products of one step. 2^4 (OpenBLAS's least) cost it 30% (0.42 ms).
BLAS_SPIN_EXPONENT = 20
_state: dict = {}


def configure(threads: int) -> None:
    """Set thread counts for NumPy's BLAS and (before it starts) XLA; torch follows in apply."""
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
    apply()


def child_env(threads: int) -> dict[str, str]:
    """The environment variables that carry the thread settings into child processes."""
    return {**{var: str(threads) for var in ENV_VARS},
            "OPENBLAS_THREAD_TIMEOUT": str(BLAS_SPIN_EXPONENT)}


def apply() -> None:
    """Apply the configured count to frameworks imported since `configure` (torch)."""
    threads = _state.get("threads")
    torch = sys.modules.get("torch")
    if threads and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def configured() -> int | None:
    return _state.get("threads")
