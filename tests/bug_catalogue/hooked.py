"""The textbook backend cut into small hooks, so that each catalogued bug rewrites one line of
backprop, not a copy of the whole method. `Hooked` itself changes nothing: every hook is the
textbook's line, and the catalogue's control test holds it to the textbook (same verdict,
no diagnosis)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness import optim
from harness.backend import Trace
from harness.data import Batch
from harness.params import Params, flatten
from implementations.numpy_textbook import (
    Backprop,
    Cache,
    NumpyTextbook,
    activation,
    activation_derivative,
    loss_and_output_delta,
    pairs,
)

Masks = tuple[np.ndarray | None, ...]


class Hooked(NumpyTextbook):
    """`NumpyTextbook` with forward, backward, loss and update split into overridable hooks,
    each defaulting to the textbook's own line."""

    name: ClassVar[str] = "textbook_hooked"

    # -- data -------------------------------------------------------------------------------
    def inputs(self, batch: Batch) -> Batch:
        """The batch the step computes with (training steps and traces, not evaluate)."""
        return batch

    def layer_masks(self, masks: Masks) -> Masks:
        """One mask per layer, None where nothing is dropped (evaluate passes ())."""
        return masks or (None,) * len(self.layers)

    # -- forward ----------------------------------------------------------------------------
    def pre_activation(self, i: int, h: np.ndarray) -> np.ndarray:
        W, b = self.weights[i]
        return h @ W + b

    def activate(self, i: int, z: np.ndarray) -> np.ndarray:
        return activation(self.layers[i], z)

    def layer_forward(self, i: int, h: np.ndarray, mask: np.ndarray | None) -> Cache:
        z = self.pre_activation(i, h)
        return Cache(h, z, self.activate(i, z), mask)

    def dropped(self, cache: Cache) -> np.ndarray:
        """h_l = a_l * mask_l, the next layer's input."""
        return cache.a if cache.mask is None else cache.a * cache.mask

    def forward(self, x: np.ndarray, masks: tuple) -> list[Cache]:
        caches, h = [], x
        for i, mask in enumerate(self.layer_masks(masks)):
            caches.append(self.layer_forward(i, h, mask))
            h = self.dropped(caches[-1])
        return caches

    # -- loss -------------------------------------------------------------------------------
    def output_delta(self, z: np.ndarray, a: np.ndarray,
                     y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
        """(data loss, delta at the output, dJ/da at the output or None)."""
        return loss_and_output_delta(self.spec.loss.name, self.layers[-1], z, a, y)

    def penalty(self) -> float:
        """The L2 term of the loss (called only when l2 > 0)."""
        return float(0.5 * self.spec.loss.l2 * sum(np.sum(W * W) for W, _ in self.weights))

    # -- backward ---------------------------------------------------------------------------
    def weight_grad(self, i: int, h_in: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """dJ/dW_i, the L2 term included."""
        dW = h_in.T @ delta
        if self.spec.loss.l2:
            dW = dW + self.l2_grad(i)
        return dW

    def l2_grad(self, i: int) -> np.ndarray:
        return self.spec.loss.l2 * self.weights[i][0]

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        """dJ/db_i from delta_i (d_a = dJ/da_i, for bugs that sum the wrong one)."""
        b = self.weights[i][1]
        return delta.sum(axis=0) if self.layers[i].trainable_bias else np.zeros_like(b)

    def input_grad(self, i: int, delta: np.ndarray) -> np.ndarray:
        """dJ/dh_{i-1} = delta_i @ W_i^T."""
        return delta @ self.weights[i][0].T

    def mask_grad(self, dh: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """dJ/da below a dropout layer: dropped units pass nothing."""
        return dh if mask is None else dh * mask

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return activation_derivative(self.layers[i], z, a)

    def backward(self, caches: list[Cache], delta: np.ndarray,
                 d_out: np.ndarray | None = None) -> Backprop:
        grads, deltas, d_a, upstream = [], [delta], [None], d_out
        for i in reversed(range(len(self.layers))):
            grads.append((self.weight_grad(i, caches[i].h_in, delta),
                          self.bias_grad(i, delta, upstream)))
            if i > 0:
                below = caches[i - 1]
                upstream = self.mask_grad(self.input_grad(i, delta), below.mask)
                delta = upstream * self.derivative(i - 1, below.z, below.a)
                deltas.append(delta)
                d_a.append(upstream)
        return Backprop(grads[::-1], deltas[::-1], d_a[::-1])

    def trace(self, batch: Batch) -> Trace:
        batch = self.inputs(batch)
        caches = self.forward(batch.x, batch.masks)
        out = caches[-1]
        value, delta, d_out = self.output_delta(out.z, out.a, batch.y)
        if self.spec.loss.l2:
            value += self.penalty()
        back = self.backward(caches, delta, d_out)
        return Trace(x=batch.x, masks=tuple(c.mask for c in caches),
                     z=tuple(c.z for c in caches), a=tuple(c.a for c in caches), loss=value,
                     da=(*back.d_a[:-1], d_out), dz=tuple(back.delta), grads=back.grads)

    # -- update -----------------------------------------------------------------------------
    def step_grads(self, batch: Batch) -> tuple[float, Params]:
        """The loss and gradients train_step steps along (loss_and_grads' unless a bug
        steps along others than it reports)."""
        return self.loss_and_grads(batch)

    def optimizer_update(self, grads: list[np.ndarray], state: optim.State,
                         params: list[np.ndarray]) -> tuple[tuple[np.ndarray, ...], optim.State]:
        return optim.update(grads, state, params, self.spec.optimizer,
                            self.spec.training.learning_rate, self.trainable)

    def reported_loss(self, value: float, batch: Batch) -> float:
        """What train_step returns: the loss before the update."""
        return value

    def train_step(self, batch: Batch) -> float:
        value, grads = self.step_grads(batch)
        new, self.state = self.optimizer_update(flatten(grads), self.state,
                                                flatten(self.weights))
        self.weights = pairs(new)
        return self.reported_loss(value, batch)
