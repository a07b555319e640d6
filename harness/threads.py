"""The same thread count for every framework, set once by the harness and recorded.

- NumPy's BLAS: threadpoolctl (if installed) limits the live pools; OMP/OPENBLAS/MKL env vars
  cover child processes.
- torch: `torch.set_num_threads` once torch is imported (intra-op), applied by `apply`.
- XLA (JAX): `XLA_FLAGS` must be set before JAX creates its CPU client, so `configure` must
  run before the first JAX backend is built.
"""

from __future__ import annotations

import os
import sys

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_state: dict = {}


def configure(threads: int) -> None:
    """Set thread counts for NumPy's BLAS and (before it starts) XLA; torch follows in apply."""
    for var in ENV_VARS:
        os.environ[var] = str(threads)
    if "jax" not in sys.modules:
        single = "false" if threads == 1 else "true"
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (f"{flags} --xla_cpu_multi_thread_eigen={single} "
                                   f"intra_op_parallelism_threads={threads}").strip()
    try:
        from threadpoolctl import threadpool_limits

        _state["limits"] = threadpool_limits(limits=threads)
    except ImportError:
        pass
    _state["threads"] = threads
    apply()


def apply() -> None:
    """Apply the configured count to frameworks imported since `configure` (torch)."""
    threads = _state.get("threads")
    torch = sys.modules.get("torch")
    if threads and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def configured() -> int | None:
    return _state.get("threads")
