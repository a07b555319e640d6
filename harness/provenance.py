"""Provenance: everything needed to reproduce a run, recorded in meta.json.

Framework facts are read only from frameworks already imported by the run (sys.modules), so
recording provenance never imports torch or JAX by itself.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness import __version__
from harness.data import derive_seed

PACKAGES = ("numpy", "pandas", "matplotlib", "torch", "jax", "jaxlib", "optax", "scikit-learn",
            "threadpoolctl")
SEED_PURPOSES = ("init", "data", "split", "shuffle", "dropout")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def blas() -> dict:
    """The BLAS NumPy was built with, and the thread pools in force (threadpoolctl if present)."""
    info: dict = {}
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        info["numpy_blas"] = {k: deps["blas"].get(k) for k in ("name", "version")}
    except (KeyError, TypeError):
        info["numpy_blas"] = None
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                               for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = None
    return info


def framework_flags() -> dict:
    """Thread counts and precision flags of the frameworks this process has imported."""
    flags: dict = {"env": {k: os.environ.get(k) for k in
                           ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                            "XLA_FLAGS", "OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY")}}
    torch = sys.modules.get("torch")
    if torch is not None:
        flags["torch"] = {"intra_op_threads": torch.get_num_threads(),
                          "interop_threads": torch.get_num_interop_threads(),
                          "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                          "float32_matmul_precision": torch.get_float32_matmul_precision()}
    jax = sys.modules.get("jax")
    if jax is not None:
        flags["jax"] = {"enable_x64": bool(jax.config.jax_enable_x64),
                        "default_matmul_precision": jax.config.jax_default_matmul_precision,
                        "devices": [str(d) for d in jax.devices()]}
    return flags


def git_state() -> dict:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def collect(spec_path: Path, overrides: dict, seed: int, started: str, wall: float) -> dict:
    return {
        "spec_path": str(spec_path),
        "spec_text": spec_path.read_text(),
        "overrides": overrides,
        "seed": seed,
        "derived_seeds": {p: derive_seed(seed, p) for p in SEED_PURPOSES},
        **environment(started, wall),
    }


def environment(started: str, wall: float) -> dict:
    """The machine, software and flags a measurement was taken under."""
    return {
        "tool": "backprop-harness",
        "harness_version": __version__,
        "command": sys.argv,
        "python": sys.version,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": versions(),
        "blas": blas(),
        "frameworks": framework_flags(),
        "git": git_state(),
        "started": started,
        "wall_seconds": wall,
    }
