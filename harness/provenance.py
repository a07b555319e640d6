"""Provenance: everything needed to reproduce a run, recorded in meta.json.

Framework facts are read only from frameworks already imported by the run (sys.modules), so
recording provenance never imports torch or JAX by itself.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import registry
from harness.data import derive_seed
from harness.version import __version__

PACKAGES = ("numpy", "pandas", "matplotlib", "torch", "jax", "jaxlib", "optax", "scikit-learn",
            "threadpoolctl")
SEED_PURPOSES = ("init", "data", "split", "shuffle", "dropout")
FMA_UNITS = 2        # FMA pipes per core assumed by cpu_peak: Skylake-SP Xeons, Zen 2+ EPYCs
DICT_SOURCE = "(a dict passed to harness.run)"   # the spec_path of a spec given as a dict
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_peak() -> dict | None:
    """The CPU's theoretical peak GFLOP/s per dtype from /proc/cpuinfo: cores x clock x SIMD
    lanes x 2 (one fused multiply-add) x FMA_UNITS. An upper bound: a core here may be a
    hyperthread, the clock under load differs, and a CPU may split wide vectors in two. None
    where /proc/cpuinfo says too little."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        info = {k.strip(): v.strip() for k, _, v in
                (line.partition(":") for line in first.splitlines())}
        flags, ghz = info["flags"].split(), float(info["cpu MHz"]) / 1000
    except (OSError, KeyError, ValueError):
        return None
    bits = 512 if "avx512f" in flags else 256 if "fma" in flags else 128
    cores = os.cpu_count() or 1
    return {"cores": cores, "clock_ghz": round(ghz, 3), "simd_bits": bits,
            "fma_units_assumed": FMA_UNITS,
            "gflops": {dtype: round(cores * ghz * bits / size * 2 * FMA_UNITS, 1)
                       for dtype, size in (("float32", 32), ("float64", 64))}}


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def backends() -> dict[str, dict]:
    """Every registered backend's framework and, for a plug-in, its distribution, with their
    installed versions (`registry.Versions`); a plug-in that cannot be loaded records why."""
    out: dict[str, dict] = {}
    for name in registry.registry():
        try:
            out[name] = asdict(registry.versions(name))
        except Exception as err:  # a broken plug-in must not stop the run's record
            out[name] = {"error": f"{type(err).__name__}: {err}"}
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
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version",
                                                      "architecture", "threading_layer")}
                               for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = None
    return info


def numpy_gemm_library() -> str:
    """NumPy's BLAS as it runs here: library, version and the kernel it picked (threadpoolctl's
    `architecture`: OpenBLAS's SkylakeX, Haswell, Zen, ...)."""
    info = blas()
    pools = [p for p in info["threadpools"] or [] if p.get("internal_api") not in
             (None, "openmp")]
    if not pools:
        build = info["numpy_blas"] or {}
        return f"numpy {np.__version__}: {build.get('name', 'unknown BLAS')} (build)"
    p = pools[0]
    kernel = f", {p['architecture']} kernel" if p.get("architecture") else ""
    return f"numpy {np.__version__}: {p['internal_api']} {p.get('version')}{kernel}"


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


@dataclass(frozen=True)
class Origin:
    """Where a run's spec came from, fixed when the spec was read: the text that was parsed
    (never read again, so what is recorded is what ran) and the overrides set on it."""
    spec_path: str                        # as the user gave it, or DICT_SOURCE
    spec_text: str
    overrides: dict


def origin_of_dict(raw: Mapping[str, Any], overrides: dict) -> Origin:
    """The Origin of a spec given as a dict: recorded as the TOML file it stands for, so
    `harness run` can repeat it."""
    return Origin(DICT_SOURCE, toml_text(raw), overrides)


def collect(origin: Origin, seed: int, started: str, wall: float) -> dict:
    """What reproduces a run: the spec as read, the overrides, the seeds, the environment."""
    return {
        "spec_path": origin.spec_path,
        "spec_text": origin.spec_text,
        "overrides": origin.overrides,
        "seed": seed,
        "derived_seeds": {p: derive_seed(seed, p) for p in SEED_PURPOSES},
        **environment(started, wall),
    }


def toml_text(raw: Mapping[str, Any]) -> str:
    """A validated spec dict (tables, arrays of tables, strings, numbers, booleans) as TOML:
    `tomllib.loads(toml_text(raw)) == raw`."""
    return "\n".join(_table(raw, "")).strip() + "\n"


def _table(table: Mapping[str, Any], prefix: str) -> list[str]:
    """A table's keys and values, then its sub-tables and arrays of tables under headers."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not _is_table(v)]
    for k, v in table.items():
        path = prefix + _key(k)
        if isinstance(v, Mapping):
            lines += ["", f"[{path}]", *_table(v, f"{path}.")]
        elif _is_table(v):
            for item in v:
                lines += ["", f"[[{path}]]", *_table(item, f"{path}.")]
    return lines


def _is_table(value: Any) -> bool:
    """A table or a non-empty array of tables: written under a header, not inline."""
    return isinstance(value, Mapping) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value))


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    """One value inline. repr of a float is valid TOML (nan, inf and -inf included); a JSON
    string is a TOML basic string once DEL, which JSON leaves raw, is escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_value(v) for v in value) + "]"


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
        "backends": backends(),
        "blas": blas(),
        "frameworks": framework_flags(),
        "git": git_state(),
        "started": started,
        "wall_seconds": wall,
    }
