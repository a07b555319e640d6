"""Initial weights, drawn once in NumPy (float64, then cast) and given to every backend.

Params is a list of (W, b), one pair per layer of the spec, in the canonical layout every
backend converts from and back to at its boundary:
- dense: W (fan_in, fan_out), b (fan_out,): z = h @ W + b;
- conv2d: W (filters, in_channels, kernel, kernel), b (filters,): z[f] = b[f] + the
  cross-correlation of the NCHW image with W[f] (no kernel flip, as torch and JAX compute it);
- maxpool2d, avgpool2d, flatten: no parameters, so W and b are two EMPTY arrays of shape
  (0,). They keep layer l at params[l] and its tensors named W{l}, b{l}, beside z{l} and a{l}
  in traces, so every per-layer index (oracle, trace, phases, diagnosis, explain, plots) means
  the same layer; they count as frozen (never updated, gradient empty), and every check over
  tensors skips an empty one.
"""

from __future__ import annotations

import numpy as np

from harness.data import rng_for
from harness.spec import Spec, init_file
from harness.spec.layers import fans, param_shapes

Params = list[tuple[np.ndarray, np.ndarray]]


def _draw(scheme: str, shape: tuple[int, ...], fan_in: int, fan_out: int,
          rng: np.random.Generator) -> np.ndarray:
    """Glorot & Bengio (2010) and He et al. (2015) initialisation, normal and uniform forms."""
    fan = fan_in + fan_out if scheme.startswith("xavier") else fan_in   # var = 2 / fan
    if scheme.endswith("normal"):
        return rng.normal(0.0, np.sqrt(2.0 / fan), size=shape)
    limit = np.sqrt(6.0 / fan)
    return rng.uniform(-limit, limit, size=shape)


def initial_params(spec: Spec) -> Params:
    """The run's starting point: the init scheme, overridden by `init_file`, then by weights
    written inline in a layer. Biases start at zero unless given; layers without parameters
    get two empty arrays and draw nothing (a dense net's draws are as before convs existed)."""
    rng = rng_for(spec.seed, "init")
    dtype = np.dtype(spec.dtype)
    params: Params = []
    for layer in spec.model.layers:
        w_shape, b_shape = param_shapes(layer)
        w = _draw(spec.model.init, w_shape, *fans(layer), rng) if layer.has_params \
            else np.zeros(w_shape)
        params.append((w, np.zeros(b_shape)))
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
