"""Initial weights, drawn once in NumPy (float64, then cast) and given to every backend.

Params is a list of (W, b) with W shaped (fan_in, fan_out): z = h @ W + b.
"""

from __future__ import annotations

import zipfile
import zlib
from itertools import pairwise
from pathlib import Path

import numpy as np

from harness.data import rng_for
from harness.schema import SpecError
from harness.spec import Spec

Params = list[tuple[np.ndarray, np.ndarray]]
# What a damaged or foreign file can raise while numpy reads it as an archive.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _draw(scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Glorot & Bengio (2010) and He et al. (2015) initialisation, normal and uniform forms."""
    fan = fan_in + fan_out if scheme.startswith("xavier") else fan_in   # var = 2 / fan
    shape = (fan_in, fan_out)
    if scheme.endswith("normal"):
        return rng.normal(0.0, np.sqrt(2.0 / fan), size=shape)
    limit = np.sqrt(6.0 / fan)
    return rng.uniform(-limit, limit, size=shape)


def initial_params(spec: Spec) -> Params:
    """The run's starting point: the init scheme, overridden by `init_file`, then by weights
    written inline in a layer. Biases start at zero unless given."""
    rng = rng_for(spec.seed, "init")
    dtype = np.dtype(spec.dtype)
    fan_in = spec.model.inputs
    params: Params = []
    for layer in spec.model.layers:
        w = _draw(spec.model.init, fan_in, layer.size, rng)
        b = np.zeros(layer.size)
        params.append((w, b))
        fan_in = layer.size
    if spec.model.init_file is not None:
        params = load_init_file(spec)
    for i, layer in enumerate(spec.model.layers):
        w, b = params[i]
        params[i] = (np.array(layer.weights) if layer.weights is not None else w,
                     np.array(layer.bias) if layer.bias is not None else b)
    return [(w.astype(dtype), b.astype(dtype)) for w, b in params]


def shapes(spec: Spec) -> list[tuple[tuple[int, int], tuple[int]]]:
    """The (W, b) shapes of every layer: W is (fan_in, fan_out)."""
    fans = [spec.model.inputs, *(layer.size for layer in spec.model.layers)]
    return [((a, b), (b,)) for a, b in pairwise(fans)]


def load_init_file(spec: Spec) -> Params:
    """W0, b0, W1, b1, ... from the spec's `init_file`, checking keys, shapes and finiteness.

    Called once when the spec is loaded (so a bad file stops the run before anything is done)
    and again by `initial_params`. allow_pickle=False: a stranger's .npz must never run code."""
    path = spec.model.init_file
    arrays = _read_npz(path)
    keys = [k for i in range(len(spec.model.layers)) for k in (f"W{i}", f"b{i}")]
    expected = f"W0, b0, ... b{len(spec.model.layers) - 1}"
    extra = sorted(set(arrays) - set(keys))
    if extra:
        raise SpecError("model.init_file", f"{path.name} has an unexpected array {extra[0]!r} "
                        f"(allowed keys: {expected})")
    return [(_array(path.name, arrays, f"W{i}", w_shape),
             _array(path.name, arrays, f"b{i}", b_shape))
            for i, (w_shape, b_shape) in enumerate(shapes(spec))]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive; anything unreadable is a one-line SpecError."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _UNREADABLE as err:
        raise _unreadable(path, err) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise SpecError("model.init_file", f"{path.name} holds a single array, not an .npz "
                        "archive (allowed: an np.savez file with W0, b0, W1, b1, ...)")
    with loaded as npz:
        try:
            return {k: npz[k] for k in npz.files}
        except _UNREADABLE as err:
            raise _unreadable(path, err) from None


def _unreadable(path: Path, err: Exception) -> SpecError:
    """The error for a file numpy cannot read as an archive, with numpy's reason on one line."""
    reason = " ".join(str(err).split())         # one line, whatever numpy or zipfile said
    return SpecError("model.init_file", f"cannot read {path.name} as .npz: {reason} (allowed: "
                     "an archive written by np.savez, without object arrays)")


def _array(name: str, arrays: dict[str, np.ndarray], key: str, shape: tuple) -> np.ndarray:
    """One checked array of the init file, as float64."""
    if key not in arrays:
        raise SpecError("model.init_file", f"{name} has no array {key!r} (expected one per "
                        "layer: W0, b0, W1, b1, ...)")
    arr = arrays[key]
    if arr.shape != shape:
        raise SpecError("model.init_file", f"{name}[{key}] has shape {arr.shape}, expected "
                        f"{shape} (W is fan_in x fan_out)")
    if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
        raise SpecError("model.init_file", f"{name}[{key}] must hold finite numbers (allowed: "
                        "float or integer arrays without NaN or Inf)")
    return arr.astype(np.float64)


def flatten(params: Params) -> list[np.ndarray]:
    """[W0, b0, W1, b1, ...]: the order gradcheck.parameter_names names them in."""
    return [t for pair in params for t in pair]


def copy(params: Params) -> Params:
    return [(w.copy(), b.copy()) for w, b in params]
