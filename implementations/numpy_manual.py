"""Hand-written backpropagation in NumPy: the teaching reference.

Notation for layer l (rows of every array are the samples of the batch):
    z_l = h_{l-1} @ W_l + b_l        pre-activation ("logits" at the output)
    a_l = f_l(z_l)                   activation
    h_l = a_l * mask_l               inverted dropout (mask already scaled by 1/(1 - drop_prob))
The backward pass carries delta_l = dL/dz_l from the output layer down to the input:
    dL/dW_l = h_{l-1}^T @ delta_l    dL/db_l = sum of delta_l over the batch
    dL/dh_{l-1} = delta_l @ W_l^T    delta_{l-1} = dL/dh_{l-1} * mask_{l-1} * f'_{l-1}(z_{l-1})
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness import optim
from harness.backend import Backend, trainable_mask
from harness.data import Batch
from harness.params import Params
from harness.spec import Layer, Spec


def activate(layer: Layer, z: np.ndarray) -> np.ndarray:
    """a = f(z) for the hidden and output activations."""
    kind = layer.activation
    if kind == "sigmoid":
        e = np.exp(-np.abs(z))                            # never overflows; exact tails
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))   # = 1 / (1 + e^-z)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return np.maximum(z, 0.0)
    if kind == "leaky_relu":
        return np.where(z > 0, z, z.dtype.type(layer.negative_slope) * z)
    if kind == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))     # shift: e^z never overflows
        return e / e.sum(axis=1, keepdims=True)
    return z                                              # identity


def activation_grad(layer: Layer, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """f'(z), written with the already computed a = f(z) where that is cheaper."""
    kind = layer.activation
    if kind == "sigmoid":
        return a * (1.0 - a)                              # s' = s (1 - s)
    if kind == "tanh":
        return 1.0 - a * a                                # tanh' = 1 - tanh^2
    if kind == "relu":
        return (z > 0).astype(z.dtype)                    # 1 where active; 0 at the kink
    if kind == "leaky_relu":
        return np.where(z > 0, z.dtype.type(1.0), z.dtype.type(layer.negative_slope))
    return np.ones_like(z)                                # identity


def loss_and_delta(loss: str, z: np.ndarray, a: np.ndarray, y: np.ndarray,
                   out: Layer) -> tuple[float, np.ndarray]:
    """The data loss and delta = dL/dz at the output layer.

    bce and cross_entropy are computed from the logits z, never from a = f(z): log(sigmoid)
    and log(softmax) lose every digit (and give NaN gradients) for large |z|."""
    n, k = y.shape
    if loss == "cross_entropy":
        # L = mean_n [ logsumexp(z) * sum_k y - sum_k y z ];  dL/dz = (softmax(z) sum_k y - y) / n
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
        ysum = y.sum(axis=1, keepdims=True)
        value = float(np.sum(lse * ysum - (y * z).sum(axis=1, keepdims=True)) / n)
        return value, (a * ysum - y) / n
    if loss == "bce":
        # L = mean [ max(z, 0) - y z + log(1 + e^-|z|) ];  dL/dz = (sigmoid(z) - y) / (n k)
        value = float(np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))))
        return value, (a - y) / (n * k)
    err = a - y
    if loss == "mse":
        # L = mean over batch and outputs of err^2;  dL/da = 2 err / (n k)
        dl_da = (2.0 / (n * k)) * err
        value = float(np.mean(err * err))
    else:
        # half_sse: L = 1/2 sum err^2 (summed over the batch);  dL/da = err
        dl_da = err
        value = float(0.5 * np.sum(err * err))
    return value, dl_da * activation_grad(out, z, a)     # chain rule through f at the output


class NumpyManual(Backend):
    """Forward and backward pass by hand, optimizer from `harness.optim` (the spec's maths)."""

    name: ClassVar[str] = "numpy"
    framework: ClassVar[str | None] = "numpy"

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        self.layers = spec.model.layers
        self.trainable = [t for pair in trainable_mask(spec) for t in pair]
        self.dtype = np.dtype(spec.dtype)

    def load(self, params: Params) -> None:
        self._flat = [np.array(t, dtype=self.dtype) for pair in params for t in pair]
        self._state = optim.init(self.spec.optimizer, self._flat, self.trainable)

    def params(self) -> Params:
        return [(self._flat[i].copy(), self._flat[i + 1].copy())
                for i in range(0, len(self._flat), 2)]

    def _forward(self, x: np.ndarray, masks: tuple) -> list[tuple[np.ndarray, ...]]:
        """Every layer's (input h_{l-1}, z_l, a_l): exactly what the backward pass needs."""
        caches, h = [], x
        for i, layer in enumerate(self.layers):
            z = h @ self._flat[2 * i] + self._flat[2 * i + 1]
            a = activate(layer, z)
            caches.append((h, z, a))
            h = a * masks[i] if masks and masks[i] is not None else a
        return caches

    def _loss_and_grads(self, batch: Batch) -> tuple[float, list[np.ndarray]]:
        caches = self._forward(batch.x, batch.masks)
        _, z, a = caches[-1]
        value, delta = loss_and_delta(self.spec.loss.name, z, a, batch.y, self.layers[-1])
        grads: list[np.ndarray | None] = [None] * len(self._flat)
        for i in range(len(self.layers) - 1, -1, -1):
            h_prev = caches[i][0]
            grads[2 * i] = h_prev.T @ delta                        # dL/dW = h^T delta
            grads[2 * i + 1] = delta.sum(axis=0) if self.trainable[2 * i + 1] \
                else np.zeros_like(self._flat[2 * i + 1])          # dL/db = sum_n delta
            if i == 0:
                break
            dh = delta @ self._flat[2 * i].T                       # dL/dh_{l-1} = delta W^T
            mask = batch.masks[i - 1] if batch.masks else None
            if mask is not None:
                dh = dh * mask                                     # dropped units pass nothing
            _, z_prev, a_prev = caches[i - 1]
            delta = dh * activation_grad(self.layers[i - 1], z_prev, a_prev)
        l2 = self.dtype.type(self.spec.loss.l2)
        if l2:
            weights = self._flat[0::2]
            value += float(0.5 * l2 * sum(np.sum(w * w) for w in weights))
            for i, w in enumerate(weights):
                grads[2 * i] = grads[2 * i] + l2 * w               # d/dW of l2/2 ||W||^2
        return value, grads

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        value, grads = self._loss_and_grads(batch)
        return value, [(grads[i], grads[i + 1]) for i in range(0, len(grads), 2)]

    def train_step(self, batch: Batch) -> float:
        value, grads = self._loss_and_grads(batch)
        self._flat, self._state = optim.update(self.spec.optimizer,
                                               self.spec.training.learning_rate, grads,
                                               self._state, self._flat, self.trainable)
        return value

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        _, z, a = self._forward(batch.x, ())[-1]
        value, _ = loss_and_delta(self.spec.loss.name, z, a, batch.y, self.layers[-1])
        return value, a
