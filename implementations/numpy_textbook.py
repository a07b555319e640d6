"""The textbook reference: backpropagation written as the chain rule, one layer at a time, in
plain NumPy. Read this file to learn what every backend computes; `numpy_fast` is the same
maths tuned for speed, and the conformance suite proves the two equal.

Notation. A batch has n rows (samples) and k outputs. Layer l = 1, ..., N has weights W_l,
shaped (fan_in, fan_out), a bias b_l, an activation f_l and a dropout mask m_l (given in the
batch, already scaled by 1 / (1 - drop_prob); no mask means m_l = 1).

Forward:
    h_0 = x
    z_l = h_{l-1} @ W_l + b_l              pre-activation (the logits at the output, l = N)
    a_l = f_l(z_l)                         activation
    h_l = a_l * m_l                        inverted dropout
    J   = L(z_N, y) + l2/2 * sum_l ||W_l||^2       data loss plus the L2 penalty

Backward: the chain rule carries delta_l = dJ/dz_l from the output down to the input:
    delta_N     = dL/dz_N                  (per loss, in `loss_and_output_delta`)
    dJ/dW_l     = h_{l-1}^T @ delta_l + l2 * W_l
    dJ/db_l     = sum of delta_l over the n rows        (zero for a frozen bias)
    dJ/dh_{l-1} = delta_l @ W_l^T
    delta_{l-1} = dJ/dh_{l-1} * m_{l-1} * f'_{l-1}(z_{l-1})

Update: `harness.optim.update`, the spec's optimizer maths, applied to [W_1, b_1, W_2, ...].

Image layers (conv2d, pools, flatten; `textbook_layers.py`) replace the two lines that use
W_l: z_l = layer_l(h_{l-1}) forward, and dJ/dW_l, dJ/db_l, dJ/dh_{l-1} from delta_l backward,
everything else (activation, dropout, delta) unchanged, elementwise on NCHW arrays. The input
x is reshaped to the first layer's (C, H, W); every tensor that leaves the backend (the
trace's z, a, dJ/dz, dJ/da, the masks it reads) is (n, units) with units in C, H, W order.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Trace, trainable_flags
from harness.data import Batch
from harness.params import Params, flatten
from harness.spec import LAYER_TYPES, Layer, Spec
from implementations import textbook_layers as image


class Cache(NamedTuple):
    """What the backward pass needs from the forward pass of layer l (NCHW for an image)."""
    h_in: np.ndarray            # h_{l-1}, the input the layer multiplied by W_l
    z: np.ndarray               # z_l
    a: np.ndarray               # a_l = f_l(z_l)
    mask: np.ndarray | None     # m_l, None without dropout


class Backprop(NamedTuple):
    """What the backward pass finds, per layer l (input layer first)."""
    grads: Params                        # (dJ/dW_l, dJ/db_l)
    delta: list[np.ndarray]              # delta_l = dJ/dz_l
    d_a: list[np.ndarray | None]         # dJ/da_l; the output layer's is the loss's, not here


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z), written as e^min(z, 0) / (1 + e^-|z|): no exp overflows."""
    return np.exp(np.minimum(z, 0)) / (1 + np.exp(-np.abs(z)))


def softmax(z: np.ndarray) -> np.ndarray:
    """e^z / sum of e^z per row, from logits shifted by their max: e^z never overflows."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax(z) per row, computed from the shifted logits s = z - max z as
    s - log(sum e^s): accurate even where softmax(z) underflows to 0."""
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def activation(layer: Layer, z: np.ndarray) -> np.ndarray:
    """a = f(z)."""
    kind = layer.activation
    if kind == "sigmoid":
        return sigmoid(z)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return np.maximum(z, 0)
    if kind == "leaky_relu":
        return np.where(z > 0, z, layer.negative_slope * z)
    if kind == "softmax":
        return softmax(z)
    return z                                             # identity


def activation_derivative(layer: Layer, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """f'(z), from a = f(z) where that is simpler. softmax never needs one: it only feeds
    cross_entropy, whose delta is taken from the logits."""
    kind, one = layer.activation, z.dtype.type(1)
    if kind == "sigmoid":
        return a * (1 - a)
    if kind == "tanh":
        return (1 - a) * (1 + a)                         # = 1 - a^2 without its cancellation
    if kind == "relu":
        return np.where(z > 0, one, 0)                   # 0 at the kink
    if kind == "leaky_relu":
        return np.where(z > 0, one, z.dtype.type(layer.negative_slope))
    return np.ones_like(z)                               # identity


def loss_and_output_delta(loss: str, out: Layer, z: np.ndarray, a: np.ndarray,
                          y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
    """The data loss L, delta_N = dL/dz_N and dL/da_N (None where L is computed from the
    logits z: cross_entropy and bce never go through a, since log(softmax) and log(sigmoid)
    lose every digit for large |z|)."""
    n, k = y.shape
    if loss == "cross_entropy":                          # y one-hot; L = -1/n sum y log a
        return float(-np.sum(y * log_softmax(z)) / n), (a - y) / n, None
    if loss == "bce":                                    # L = mean of -y log a - (1-y) log(1-a)
        value = np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z))))
        return float(value), (a - y) / (n * k), None
    err = a - y
    if loss == "mse":                                    # L = mean of err^2 over n and k
        value, dloss_da = np.mean(err**2), 2 * err / (n * k)
    else:                                                # half_sse: L = 1/2 sum of err^2
        value, dloss_da = 0.5 * np.sum(err**2), err
    return float(value), dloss_da * activation_derivative(out, z, a), dloss_da


def linear(layer: Layer, h: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z_l of layer l from its input h_{l-1}."""
    if layer.kind == "dense":
        return h @ W + b
    if layer.kind == "conv2d":
        return image.conv_forward(layer, h, W, b)
    if layer.kind == "flatten":
        return h.reshape(len(h), -1)                     # C, H, W order
    return image.pool_forward(layer, h)


def linear_backward(layer: Layer, cache: Cache, W: np.ndarray, delta: np.ndarray,
                    ties: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dJ/dW_l, dJ/db_l, dJ/dh_{l-1}) from delta_l: empty gradients for a layer without
    parameters (the trainable-bias rule and L2 are the caller's)."""
    h = cache.h_in
    none = np.zeros(0, delta.dtype)
    if layer.kind == "dense":
        return h.T @ delta, delta.sum(axis=0), delta @ W.T
    if layer.kind == "conv2d":
        return image.conv_backward(layer, h, W, delta)
    if layer.kind == "flatten":
        return none, none, delta.reshape(h.shape)
    if layer.kind == "avgpool2d":
        return none, none, image.avgpool_backward(layer, h, delta)
    return none, none, image.maxpool_backward(layer, h, cache.z, delta, ties)


def units(array: np.ndarray) -> np.ndarray:
    """(n, ...) as (n, units) in C, H, W order: how a trace shows every layer."""
    return array.reshape(len(array), -1)


def pairs(tensors: tuple[np.ndarray, ...]) -> Params:
    """[W_1, b_1, W_2, b_2, ...] back into [(W_1, b_1), (W_2, b_2), ...]."""
    return list(zip(tensors[0::2], tensors[1::2], strict=True))


class NumpyTextbook(Backend):
    """Forward and backward by the chain rule above; the optimizer from `harness.optim`."""

    name: ClassVar[str] = "numpy"
    framework: ClassVar[str | None] = "numpy"
    capabilities: ClassVar[Capabilities] = Capabilities(layer_types=frozenset(LAYER_TYPES))

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        self.layers = spec.model.layers
        self.trainable = trainable_flags(spec)   # W_1, b_1, ...

    def load(self, params: Params) -> None:
        dtype = np.dtype(self.spec.dtype)
        self.weights = [(np.array(W, dtype), np.array(b, dtype)) for W, b in params]
        self.state = optim.init(flatten(self.weights), self.spec.optimizer, self.trainable)

    def export_state(self) -> optim.State:
        return optim.copy_state(self.state)

    def load_state(self, state: optim.State) -> bool:
        optim.check_layout(state, self.state)
        self.state = optim.copy_state(state, np.dtype(self.spec.dtype))
        return True

    def params(self) -> Params:
        return [(W.copy(), b.copy()) for W, b in self.weights]

    def forward(self, x: np.ndarray, masks: tuple) -> list[Cache]:
        """One Cache per layer, input to output; `masks` is () when nothing is dropped."""
        caches, h = [], x.reshape(len(x), *self.layers[0].in_shape)
        masks = masks or (None,) * len(self.layers)
        for layer, (W, b), mask in zip(self.layers, self.weights, masks, strict=True):
            z = linear(layer, h, W, b)
            a = activation(layer, z)
            mask = None if mask is None else mask.reshape(a.shape)
            caches.append(Cache(h, z, a, mask))
            h = a if mask is None else a * mask
        return caches

    def backward(self, caches: list[Cache], delta: np.ndarray) -> Backprop:
        """dJ/dW_l, dJ/db_l, delta_l and dJ/da_l from delta_N by the chain rule, from the
        output layer down (the code's layer i is the notation's l = i + 1)."""
        l2, grads, deltas, d_a = self.spec.loss.l2, [], [delta], [None]
        ties = self.spec.model.pool_ties
        for i in reversed(range(len(self.layers))):
            (W, b), layer = self.weights[i], self.layers[i]
            dW, db, dh = linear_backward(layer, caches[i], W, delta, ties)
            if l2:
                dW = dW + l2 * W                                   # d/dW of l2/2 ||W||^2
            if not layer.trainable_bias:
                db = np.zeros_like(b)
            grads.append((dW, db))
            if i > 0:
                below = caches[i - 1]                              # dh = dJ/dh_{l-1}
                if below.mask is not None:
                    dh = dh * below.mask                           # dropped units pass nothing
                delta = dh * activation_derivative(self.layers[i - 1], below.z, below.a)
                deltas.append(delta)
                d_a.append(dh)                                     # dJ/da_{l-1}
        return Backprop(grads[::-1], deltas[::-1], d_a[::-1])

    def trace(self, batch: Batch) -> Trace:
        """Forward, loss and backward of `batch`, every layer's intermediate kept."""
        caches = self.forward(batch.x, batch.masks)
        out = caches[-1]
        value, delta, d_out = loss_and_output_delta(self.spec.loss.name, self.layers[-1],
                                                    out.z, out.a, batch.y)
        l2 = self.spec.loss.l2
        if l2:
            value += float(0.5 * l2 * sum(np.sum(W * W) for W, _ in self.weights))
        back = self.backward(caches, delta)
        return Trace(x=batch.x, masks=batch.masks or (None,) * len(caches),
                     z=tuple(units(c.z) for c in caches), a=tuple(units(c.a) for c in caches),
                     loss=value, da=(*map(units, back.d_a[:-1]), d_out),
                     dz=tuple(map(units, back.delta)), grads=back.grads)

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        traced = self.trace(batch)
        return traced.loss, traced.grads

    def train_step(self, batch: Batch) -> float:
        value, grads = self.loss_and_grads(batch)
        new, self.state = optim.update(flatten(grads), self.state, flatten(self.weights),
                                       self.spec.optimizer, self.spec.training.learning_rate,
                                       self.trainable)
        self.weights = pairs(new)
        return value

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        out = self.forward(batch.x, ())[-1]
        value, _, _ = loss_and_output_delta(self.spec.loss.name, self.layers[-1], out.z,
                                            out.a, batch.y)
        return value, out.a
