"""A template backend: copy this file, rename the class, fill in every method, register it.

Steps (docs/adding-a-backend.md walks through them):
1. copy this file to implementations/<framework>_<method>.py; rename the class; set `name`
   (the CLI key), `framework` (the module to import) and `capabilities`;
2. fill in each method below: what it receives, returns and must keep is written in its
   docstring; implementations/numpy_textbook.py (the chain rule, layer by layer) is the
   reference for the maths, harness/optim.py for the optimizers;
3. add ONE line to BUILTIN in harness/registry.py: "name": "module:Class";
4. run `harness conformance NAME` until nothing fails.

This file is deliberately not registered (the registry is BUILTIN plus entry points), so the
harness never runs it. Each required method raises NotImplementedError naming what is still
missing, so a half-filled copy fails the conformance suite with a readable message. The last
three (`trace`, `export_state`, `load_state`) are optional: they let the diagnosis look inside
a step, and as copied they return the contract's "cannot" (None / False).

Invariants every backend keeps (harness/backend.py; the conformance suite checks each):
- `params()` after `load(p)` returns p exactly: same shapes, dtype (the spec's) and values;
- `loss_and_grads` and `evaluate` change no state;
- `train_step` returns the loss at the parameters *before* its update;
- a frozen bias (`trainable_bias = false`) reports a zero gradient and never moves;
- a backend never draws random numbers: the weights come through `load`, the batch order
  and the dropout masks inside each Batch;
- the framework is imported in `__init__`, never at module top, so `harness backends` can
  list this backend (and its capabilities) where the framework is not installed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Trace
from harness.data import Batch
from harness.params import Params
from harness.spec import Spec


def _missing(method: str, capability: str) -> NotImplementedError:
    return NotImplementedError(f"template backend cannot {capability} yet: fill in "
                               f"TemplateBackend.{method}")


class TemplateBackend(Backend):
    """Every method of the contract, each raising until it is filled in.

    `capabilities` says which spec options this backend runs; the harness skips (with the
    reason) any spec outside them instead of crashing halfway. Narrow the defaults (everything
    the spec can say) to what the framework really does, e.g. `dropout=False`, or a subset of
    `activations`; `layer_types` is dense only unless you add conv2d, the pools and flatten
    (docs/convolutions.md: the canonical layouts to convert from); list in `conventions` the
    (spec field, value) pairs it cannot express exactly, with the reason, e.g.
    `{("optimizer.eps_placement", "inside"): "eps is always added after the square root"}`. A
    pair applies only where the spec reads its field: one on `optimizer.bias_correction` (read
    by adam only) never skips an SGD spec; a layer option is written "layer.<key>" (e.g.
    "layer.trainable_bias") and checked on every layer that reads it. A rule that is not one
    field and one value (say, "one activation for all hidden layers") goes in an override of the
    classmethod `unsupported`: call super().unsupported(spec, device) first, then return your
    reason or None (plugins/sklearn_backend does this).

    `framework` names the module the backend imports; `harness backends`, meta.json and the
    report show the version of the distribution that installs it (from its metadata, e.g.
    sklearn -> scikit-learn). A framework with thread pools of its own that the harness does
    not already limit (NumPy's BLAS, torch and XLA it does) overrides the classmethod
    `set_threads(n)`, which `harness bench` calls before it builds the backend.
    """

    name: ClassVar[str] = "template"         # CLI key, table column and pytest id
    framework: ClassVar[str | None] = None     # module whose version is reported, e.g. "torch"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        """Import the framework here, never at module top, and build what does not depend on
        the parameters: layer functions, the loss, compiled steps. Read every hyper-parameter
        from `spec` (the spec's dtype, spec.optimizer, spec.loss.l2, ...): never a default."""
        super().__init__(spec, device)

    def load(self, params: Params) -> None:
        """Receives [(W, b), ...] as NumPy arrays, W shaped (fan_in, fan_out) so z = h @ W + b.
        Copy them into native storage in the spec's dtype (later changes to `params` must not
        reach the backend) and reset the optimizer state to zero."""
        raise _missing("load", "copy NumPy parameters into native storage")

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        """Receives batch.x, batch.y and batch.masks (inverted-dropout masks, already scaled;
        () when there is no dropout). Returns the loss including l2/2 * sum ||W||^2 as a
        Python float, and [(dW, db), ...] as NumPy arrays shaped and typed like the
        parameters; a frozen bias reports zeros. Changes no state: no optimizer step, no
        accumulated gradients."""
        raise _missing("loss_and_grads", "compute the loss and its gradients")

    def train_step(self, batch: Batch) -> float:
        """Forward, backward and one optimizer update with the maths of harness/optim.py;
        returns the loss before the update (what loss_and_grads would have returned). This
        call is timed: keep arrays native inside it."""
        raise _missing("train_step", "take an optimizer step")

    def params(self) -> Params:
        """The current parameters as new NumPy arrays in the spec's dtype, [(W, b), ...]."""
        raise _missing("params", "return its parameters as NumPy arrays")

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        """The data loss (no L2 penalty, no dropout) and the outputs after the output
        activation, (rows, outputs) as NumPy. Changes no state."""
        raise _missing("evaluate", "evaluate the data loss and outputs")

    def sync(self) -> None:
        """Block until queued device work is done, so a timer can stop after train_step.
        A framework that computes synchronously on the CPU returns None here."""
        raise _missing("sync", "wait for queued device work (return None if it never queues)")

    # Optional, for the diagnosis (`harness run` names the first phase, layer and tensor where
    # a backend parts from the reference). Keeping the defaults is allowed: the diagnosis then
    # compares less and says so in its verdict.

    def trace(self, batch: Batch) -> Trace | None:
        """One batch through the network at the current parameters, changing no state, as a
        harness.backend.Trace of NumPy arrays in the spec's dtype. Layer l is the layer of
        W_l: `x` and `masks` as applied (None where a layer has none), z[l] = h_{l-1} @ W_l +
        b_l, a[l] = f_l(z_l) before dropout, `loss` with the L2 penalty, da[l] = dJ/da_l
        (None at a cross_entropy or bce output: those losses are taken from the logits),
        dz[l] = dJ/dz_l, and `grads` exactly as loss_and_grads returns them. A hand-written
        backprop has every tensor already (implementations/numpy_textbook.py); an autodiff
        framework asks for the gradients with respect to its forward pass's z and a tensors
        (plugins/tensorflow_backend does it on its tape).
        Checked by trace_consistency (well formed, loss and grads equal loss_and_grads', the
        chain rule holds inside it, no state change) and trace_vs_numpy(_float32) (every
        tensor against the reference's at the same point). None (the default): the diagnosis
        compares the loss and gradients only, and cannot name the layer and tensor where a
        disagreement starts."""
        return super().trace(batch)

    def export_state(self) -> optim.State | None:
        """The optimizer's state in harness.optim's layout, as copies in the spec's dtype:
        optim.State(count, first, second), count the steps taken, `first` and `second` one
        entry per tensor in the order [W0, b0, W1, b1, ...]: first = momentum's v or Adam's
        m, second = RMSprop's s or Adam's v, None where the optimizer keeps nothing and for
        frozen tensors (exactly what harness.optim.init lays out for the spec). A framework
        that keeps the same quantity scaled converts it and says so (Keras's and sklearn's
        SGD keep -lr v). Checked by state_roundtrip_<optimizer> against harness.optim. None
        (the default): the diagnosis compares the parameters after a step, not the moments
        or the count."""
        return super().export_state()

    def load_state(self, state: optim.State) -> bool:
        """Replace the optimizer's state by `state` (harness.optim's layout, called after
        `load`) so that the next train_step continues from it; copy it (the caller may change
        its arrays), refuse a state of another layout with ValueError, return True. After it,
        export_state() returns `state`. Checked by state_roundtrip_<optimizer>. False (the
        default): the diagnosis judges this backend's step from a fresh optimizer state
        instead of the reference's, which tests every later step as a first step, and says
        so."""
        return super().load_state(state)
