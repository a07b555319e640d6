"""Initial weights, drawn once in NumPy (float64, then cast) and given to every backend.

Params is a list of (W, b) with W shaped (fan_in, fan_out): z = h @ W + b.
"""

from __future__ import annotations

import numpy as np

from harness.data import rng_for
from harness.spec import Spec, init_file

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
        params = init_file.load(spec)
    for i, layer in enumerate(spec.model.layers):
        w, b = params[i]
        params[i] = (np.array(layer.weights) if layer.weights is not None else w,
                     np.array(layer.bias) if layer.bias is not None else b)
    return [(w.astype(dtype), b.astype(dtype)) for w, b in params]


def flatten(params: Params) -> list[np.ndarray]:
    """[W0, b0, W1, b1, ...]: the order oracle.parameter_names names them in."""
    return [t for pair in params for t in pair]


def copy(params: Params) -> Params:
    return [(w.copy(), b.copy()) for w, b in params]
