"""Initial weights, drawn once in NumPy (float64, then cast) and given to every backend.

Params is a list of (W, b) with W shaped (fan_in, fan_out): z = h @ W + b.
"""

from __future__ import annotations

import numpy as np

from harness.data import rng_for
from harness.schema import SpecError
from harness.spec import Spec

Params = list[tuple[np.ndarray, np.ndarray]]


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
        params = _from_file(spec, params)
    for i, layer in enumerate(spec.model.layers):
        w, b = params[i]
        params[i] = (np.array(layer.weights) if layer.weights is not None else w,
                     np.array(layer.bias) if layer.bias is not None else b)
    return [(w.astype(dtype), b.astype(dtype)) for w, b in params]


def _from_file(spec: Spec, like: Params) -> Params:
    """Read W0, b0, W1, b1, ... from an .npz, checking keys, shapes and finiteness.

    allow_pickle=False: an .npz from a stranger must never run code on load."""
    path = spec.model.init_file
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise SpecError("model.init_file", f"cannot read {path} as .npz: {err}") from None
    out: Params = []
    for i, (w, b) in enumerate(like):
        pair = []
        for key, ref in ((f"W{i}", w), (f"b{i}", b)):
            if key not in arrays:
                raise SpecError("model.init_file", f"{path.name} has no array {key!r} "
                                f"(expected keys: W0, b0, ... b{len(like) - 1})")
            arr = arrays[key]
            if arr.shape != ref.shape:
                raise SpecError("model.init_file", f"{path.name}[{key}] has shape {arr.shape}, "
                                f"expected {ref.shape}")
            if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
                raise SpecError("model.init_file", f"{path.name}[{key}] must hold finite numbers")
            pair.append(arr.astype(np.float64))
        out.append((pair[0], pair[1]))
    return out


def copy(params: Params) -> Params:
    return [(w.copy(), b.copy()) for w, b in params]
