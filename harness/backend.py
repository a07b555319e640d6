"""The backend contract: six methods every implementation of the network provides, and three
that let the diagnosis see inside it (`trace`, `export_state`, `load_state`).

Invariants every backend keeps (the conformance suite checks each of them):
- after `load(p)`, `params()` returns p exactly (same shapes, dtype and values);
- `loss_and_grads` and `evaluate` change no state: calling them twice gives the same answer
  and a later `train_step` is unaffected;
- `train_step(batch)` returns the loss at the parameters *before* its update, the same number
  `loss_and_grads(batch)` would have returned;
- a backend never draws random numbers: dropout masks arrive inside the batch;
- `trace(batch)` changes no state and its loss and gradients are `loss_and_grads(batch)`'s;
- after `load_state(s)`, `export_state()` returns s, and `train_step` continues from it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from harness import optim
from harness.data import Batch
from harness.params import Params
from harness.spec import (
    ACTIVATIONS,
    DTYPES,
    LAYER_KEYS,
    LOSSES,
    OPTIMIZER_KEYS,
    OPTIMIZERS,
    Layer,
    Spec,
)

# One layer's operands of the bench's matrix products: (h, W, delta), NumPy, the run's dtype.
Operands = tuple[np.ndarray, np.ndarray, np.ndarray]
# (call, sync): `call()` does the products and returns them, [(h @ W, h^T @ delta,
# delta @ W^T or None for the first layer), ...] in the library's arrays; `sync()` waits until
# they are done.
Products = tuple[Callable[[], object], Callable[[], None]]


@dataclass(frozen=True)
class Trace:
    """One batch through the network layer by layer, as NumPy arrays in the run's dtype: what
    the diagnosis compares phase by phase and `harness explain` prints. Layer l = 0, 1, ...
    is the layer of W{l} and b{l}; h_{-1} = x, h_l = a_l * mask_l (or a_l without dropout).

    The arrays may be the backend's own or the batch's: read them, never write into them.

    x          the inputs the backend computed with
    masks      the dropout masks it applied, one per layer, None where it applied none
    z[l]       pre-activation h_{l-1} @ W_l + b_l
    a[l]       activation f_l(z_l), before dropout; a[-1] is the network's output
    loss       the training loss (data loss under the masks, plus the L2 penalty)
    da[l]      dJ/da_l; None at the output layer of a loss computed from the logits
               (cross_entropy, bce), whose J never goes through a
    dz[l]      dJ/dz_l (delta_l)
    grads      the parameter gradients, exactly as `loss_and_grads` returns them
    """
    x: np.ndarray
    masks: tuple[np.ndarray | None, ...]
    z: tuple[np.ndarray, ...]
    a: tuple[np.ndarray, ...]
    loss: float
    da: tuple[np.ndarray | None, ...]
    dz: tuple[np.ndarray, ...]
    grads: Params


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run. `harness run` skips (with the reason) any backend whose
    capabilities do not cover a spec, instead of crashing halfway."""
    activations: frozenset[str] = frozenset(ACTIVATIONS)
    losses: frozenset[str] = frozenset(LOSSES)
    optimizers: frozenset[str] = frozenset(OPTIMIZERS)
    dtypes: frozenset[str] = frozenset(DTYPES)
    devices: frozenset[str] = frozenset({"cpu"})
    dropout: bool = True
    # the spec's layer types it runs (harness.spec.LAYER_TYPES); dense only unless declared,
    # so a backend written before convolutions is skipped on them with the reason
    layer_types: frozenset[str] = frozenset({"dense"})
    # (spec field, value) pairs the backend cannot express exactly, with the reason why. A
    # field is "section.key" ("optimizer.bias_correction", "loss.l2", "model.pool_ties") or
    # "layer.key" (any layer); a pair applies only where the spec reads that field (see
    # `read_values`).
    conventions: dict[tuple[str, object], str] = field(default_factory=dict)
    # rules across fields that the backend's own `unsupported` checks, in words, so that
    # `harness backends` can show them (e.g. "one activation for every hidden layer")
    limits: tuple[str, ...] = ()


class Backend(abc.ABC):
    """One implementation of the spec's network. Subclass it and fill in every method."""

    name: ClassVar[str]                   # CLI key, table column, pytest id: written once
    framework: ClassVar[str | None] = None   # importable module whose version is reported
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        """Import the framework HERE (never at module top) and build the model for `spec`."""
        self.spec = spec
        self.device = device

    @abc.abstractmethod
    def load(self, params: Params) -> None:
        """Copy NumPy parameters into native storage and reset the optimizer state."""

    @abc.abstractmethod
    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        """Loss (with the L2 penalty) and its gradient at the current parameters, as NumPy.
        A frozen bias (`trainable_bias = false`) reports a zero gradient."""

    @abc.abstractmethod
    def train_step(self, batch: Batch) -> float:
        """Forward, backward and optimizer update; returns the loss before the update.
        This is the call that is timed: keep arrays native inside it."""

    @abc.abstractmethod
    def params(self) -> Params:
        """Current parameters as NumPy arrays in the spec's dtype."""

    @abc.abstractmethod
    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        """Data loss (no L2 penalty, no dropout) and the network's outputs after the output
        activation, for validation and test metrics."""

    def sync(self) -> None:
        """Block until queued device work is done (so a timer can stop). Default: nothing."""
        return None

    def trace(self, batch: Batch) -> Trace | None:
        """The layer trace of `batch` at the current parameters, changing no state (see
        Trace). None (the default): this backend cannot trace, and the diagnosis compares
        its loss and gradients only, saying so."""
        return None

    def export_state(self) -> optim.State | None:
        """The optimizer state in harness.optim's layout: the steps taken, and per tensor
        [W0, b0, W1, ...] the `first` moment (momentum's velocity, Adam's m) and the `second`
        (RMSprop's s, Adam's v), None where the optimizer keeps none (and for frozen
        tensors). Copies, in the run's dtype. None (the default): it cannot export."""
        return None

    def load_state(self, state: optim.State) -> bool:
        """Replace the optimizer state by `state` (harness.optim's layout, after `load`,
        which leaves the parameters as loaded): the next `train_step` continues from it.
        A state of another layout (a slot where this optimizer keeps none, a shape that
        differs) raises ValueError. False (the default): it cannot, and the diagnosis
        compares its update from a fresh state instead, saying so."""
        return False

    @classmethod
    def gemm(cls, operands: list[Operands], device: str = "cpu") -> Products | None:
        """Optional, for `harness bench`'s machine roofline: the matrix products a training
        step needs, done by this backend's own library on operands converted once (not
        timed). For every layer (h, W, delta): the forward product h @ W and the weight
        gradient h^T @ delta, and for every layer but the first the input gradient
        delta @ W^T. None (the default): the backend has no library of its own beyond NumPy,
        whose products the bench times itself."""
        return None

    @classmethod
    def gemm_library(cls) -> str | None:
        """Which library does `gemm`'s products here (e.g. "MKL"), for the bench's meta.json."""
        return None

    @classmethod
    def unsupported(cls, spec: Spec, device: str = "cpu") -> str | None:
        """Why this backend cannot run `spec` exactly, or None when it can."""
        caps = cls.capabilities
        checks = [
            ("dtype", spec.dtype, caps.dtypes),
            ("device", device, caps.devices),
            ("loss", spec.loss.name, caps.losses),
            ("optimizer", spec.optimizer.name, caps.optimizers),
            *(("layer type", layer.kind, caps.layer_types) for layer in spec.model.layers),
            *(("activation", layer.activation, caps.activations) for layer in spec.model.layers),
        ]
        for what, value, allowed in checks:
            if value not in allowed:
                return f"{cls.name} does not support {what} {value!r}"
        if not caps.dropout and any(layer.drop_prob for layer in spec.model.layers):
            return f"{cls.name} does not support dropout"
        for (path, value), reason in caps.conventions.items():
            if value in read_values(spec, path):
                return f"{cls.name} cannot express {path} = {value!r}: {reason}"
        return None

    @classmethod
    def set_threads(cls, n: int) -> None:
        """Optional: size this backend's own thread pools to `n` threads. `harness bench` calls
        it in every process that times the backend, before each construction (so before the
        framework starts its runtime), possibly more than once with the same `n`. The harness
        already limits NumPy's BLAS, torch and XLA itself. Default: nothing."""
        return None


def read_values(spec: Spec, path: str) -> list[object]:
    """The values `spec` gives the field `path` where something reads it: none where nothing
    does (Adam's `optimizer.bias_correction` in an SGD spec, `layer.negative_slope` of a tanh
    layer), one per reading layer for "layer.key", else the one value."""
    section, _, key = path.partition(".")
    if section == "layer":
        return [getattr(layer, key) for layer in spec.model.layers if _layer_reads(layer, key)]
    if section == "optimizer" and not _optimizer_reads(spec.optimizer.name, key):
        return []
    if path == "model.pool_ties" and not any(layer.kind == "maxpool2d"
                                             for layer in spec.model.layers):
        return []
    return [getattr(getattr(spec, section), key)]


def _optimizer_reads(name: str, key: str) -> bool:
    """An optimizer reads its own OPTIMIZER_KEYS and the options no optimizer claims (name,
    weight_decay), which every optimizer reads."""
    return key in OPTIMIZER_KEYS[name] or all(key not in keys for keys in OPTIMIZER_KEYS.values())


def _layer_reads(layer: Layer, key: str) -> bool:
    return layer.activation in LAYER_KEYS.get(key, (layer.activation,))


def trainable_mask(spec: Spec) -> list[tuple[bool, bool]]:
    """Which (W, b) tensors the optimizer updates: all weights, biases unless frozen; the
    two empty arrays of a layer without parameters (a pool, flatten) count as frozen."""
    return [(layer.has_params, layer.has_params and layer.trainable_bias)
            for layer in spec.model.layers]


def frozen_flags(spec: Spec) -> list[bool]:
    """[W0, b0, W1, b1, ...]: True for the tensors that are constants (frozen biases)."""
    return [not t for t in trainable_flags(spec)]


def trainable_flags(spec: Spec) -> list[bool]:
    """[W0, b0, W1, b1, ...]: True for the tensors the optimizer updates (harness.optim's
    `trainable`)."""
    return [t for pair in trainable_mask(spec) for t in pair]
