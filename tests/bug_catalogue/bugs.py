"""Realistic mistakes in hand-written backprop and optimizers, each a subclass of the textbook
backend with one mistake in it, the small spec that shows it, and the diagnosis the harness
must give it: the phase, the first differing tensor in that phase's order, the 0-based step
and the convention (only for a convention swap).

How an expectation is read (harness.verify.phases): every backend is put at the reference's
parameters and optimizer state of a step; data (x, mask0, ...) is judged against the
harness's batch; forward goes input layer first (z0, a0, z1, ...); backward output layer
first, per layer da, dz, dW, db; update is one train_step from that state against
harness.optim along the backend's own gradients: count, then output layer first, per layer
W.first, W.second, W, b.first, b.second, b. Biases start at zero, so a bug that only touches
a bias value shows from step 1; a bug in how state evolves shows at the first step whose
loaded state makes it matter. Layers: specs.py (3 layers each, so the output layer is 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from harness import optim
from harness.data import Batch
from harness.params import Params, flatten
from harness.spec import Optimizer
from implementations.numpy_textbook import Cache, activation, activation_derivative
from tests.bug_catalogue import specs
from tests.bug_catalogue.hooked import Hooked, Masks

Arrays = list[np.ndarray]
Slot = np.ndarray | None
Update = tuple[tuple[np.ndarray, ...], optim.State]     # new [W0, b0, ...] and state
Stepped = tuple[np.ndarray, Slot, Slot]                  # one tensor's value and moments
Delta = tuple[float, np.ndarray, np.ndarray | None]     # loss, delta_N, dJ/da_N


@dataclass(frozen=True)
class Expected:
    """The diagnosis a bug must get."""
    phase: str
    tensor: str
    step: int = 0
    convention: str | None = None


class Bug(Hooked):
    """A catalogued bug: the spec it runs on and the diagnosis it must get. Every subclass
    that states an expectation joins CATALOGUE, in the order of this file."""
    name: ClassVar[str] = "bug"
    on: ClassVar[dict]
    expected: ClassVar[Expected]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "expected" in cls.__dict__:
            CATALOGUE.append(cls)


CATALOGUE: list[type[Bug]] = []


def zeroed(slots: optim.Slots) -> optim.Slots:
    return tuple(None if s is None else np.zeros_like(s) for s in slots)


def f32(x: float) -> float:
    """x as the nearest float32, back in a Python float."""
    return float(np.float32(x))


def trainable_except(flags: Sequence[bool], index: int) -> list[bool]:
    return [t and j != index for j, t in enumerate(flags)]


class RuleUpdate(Bug):
    """A bug inside the per-tensor step: harness.optim.update's loop with `rule` (the
    person's own step for one trainable tensor) in place of harness.optim's."""

    def rule(self, j: int, p: np.ndarray, g: np.ndarray, first: Slot, second: Slot,
             t: int) -> Stepped:
        """Tensor j's new value and moments after one step with gradient g (t: 1-based)."""
        raise NotImplementedError

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        t = state.count + 1
        out = [self.rule(j, p, g, f, s, t) if train else (p, f, s)
               for j, (p, g, f, s, train) in enumerate(zip(params, grads, state.first,
                                                           state.second, self.trainable,
                                                           strict=True))]
        new, first, second = zip(*out, strict=True)
        return tuple(new), optim.State(t, tuple(first), tuple(second))

    def step(self, p: np.ndarray, d: np.ndarray) -> np.ndarray:
        return optim.step(p, d, self.spec.optimizer, self.spec.training.learning_rate)


class OptionsChanged(Bug):
    """A bug that is harness.optim's own step with some of the spec's optimizer options
    changed (a swapped pair, a flag read the other way)."""

    def options(self, opt: Optimizer) -> dict[str, object]:
        """The options the person's step really uses, where they differ from the spec's."""
        raise NotImplementedError

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        opt = replace(self.spec.optimizer, **self.options(self.spec.optimizer))
        return optim.update(grads, state, params, opt, self.spec.training.learning_rate,
                            self.trainable)


# -- tanh network, softmax + cross_entropy, SGD (specs.TANH) --------------------------------

class TanhDerivativeMissingSquare(Bug):
    """tanh' written 1 - a instead of 1 - a^2: dz1 (the top tanh layer's delta) is the first
    tensor backprop computes wrong; the output layer's dz2, dW2, db2 and da1 are right."""
    name = "bug_tanh_derivative_missing_square"
    on, expected = specs.TANH, Expected("backward", "dz1")

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1 - a


class TanhDerivativeOfZ(Bug):
    """tanh' computed as 1 - z^2 (from the pre-activation, not the activation): dz1 first."""
    name = "bug_tanh_derivative_of_z"
    on, expected = specs.TANH, Expected("backward", "dz1")

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1 - z**2


class SoftmaxOverBatch(Bug):
    """softmax normalised over axis 0 (the batch) instead of over the classes: the output
    activation a2 is the first wrong tensor (z2 is right; the loss uses log-softmax of z)."""
    name = "bug_softmax_over_batch_axis"
    on, expected = specs.TANH, Expected("forward", "a2")

    def activate(self, i: int, z: np.ndarray) -> np.ndarray:
        if self.layers[i].activation != "softmax":
            return super().activate(i, z)
        e = np.exp(z - z.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)


class CrossEntropyGradientSummed(Bug):
    """The loss is the batch mean but its gradient a - y is not divided by n: dz2 (the
    output delta; cross_entropy has no da2) is the first wrong tensor."""
    name = "bug_cross_entropy_gradient_not_averaged"
    on, expected = specs.TANH, Expected("backward", "dz2")

    def output_delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> Delta:
        value, delta, d_out = super().output_delta(z, a, y)
        return value, delta * len(y), d_out


class CrossEntropyLossSummed(Bug):
    """The loss value summed over the batch while its gradient is the mean's: only the loss
    value is wrong (train_step reports that same value, so step_loss agrees with it)."""
    name = "bug_cross_entropy_loss_summed"
    on, expected = specs.TANH, Expected("loss", "loss")

    def output_delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> Delta:
        value, delta, d_out = super().output_delta(z, a, y)
        return value * len(y), delta, d_out


class StepLossAfterUpdate(Bug):
    """train_step returns the loss after its update instead of before it: everything it
    computes is right, only the reported step loss is not its own loss at that point."""
    name = "bug_step_loss_after_update"
    on, expected = specs.TANH, Expected("loss", "step_loss")

    def reported_loss(self, value: float, batch: Batch) -> float:
        return self.loss_and_grads(batch)[0]


class EvaluateReturnsLogits(Bug):
    """evaluate() hands back the logits z instead of the softmax probabilities: training is
    right, only the evaluate phase's outputs differ (its loss is computed right)."""
    name = "bug_evaluate_returns_logits"
    on, expected = specs.TANH, Expected("evaluate", "eval_outputs")

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        value, _ = super().evaluate(batch)
        return value, self.forward(batch.x, ())[-1].z


class FirstBiasNeverUpdated(Bug):
    """The first layer's bias treated as frozen by the optimizer (an off-by-one in the
    trainable flags): its gradient is reported right, the step leaves b0 alone, and b0 is
    the last tensor in the update's order, after every other one agreed."""
    name = "bug_first_bias_never_updated"
    on, expected = specs.TANH, Expected("update", "b0")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        return optim.update(grads, state, params, self.spec.optimizer,
                            self.spec.training.learning_rate,
                            trainable_except(self.trainable, 1))


class LabelsReversed(Bug):
    """The targets read in reverse row order against the inputs: x is right (the data phase
    compares only inputs and masks) and the forward pass is right; the loss is the first
    thing that reads y."""
    name = "bug_labels_reversed"
    on, expected = specs.TANH, Expected("loss", "loss")

    def inputs(self, batch: Batch) -> Batch:
        return Batch(batch.x, batch.y[::-1], batch.masks)


class InputRowsReversed(Bug):
    """The batch's rows reversed on the way in (x only): the data phase sees an x that is
    not the harness's."""
    name = "bug_input_rows_reversed"
    on, expected = specs.TANH, Expected("data", "x")

    def inputs(self, batch: Batch) -> Batch:
        return Batch(batch.x[::-1], batch.y, batch.masks)


class FirstBatchCached(Bug):
    """An input buffer filled on first use and never refreshed for a batch of the same
    shape: step 0 computes with the right x, from step 1 on x is step 0's."""
    name = "bug_first_batch_cached"
    on, expected = specs.TANH, Expected("data", "x", step=1)

    def __init__(self, spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        self.buffers: dict[tuple[int, ...], np.ndarray] = {}

    def inputs(self, batch: Batch) -> Batch:
        x = self.buffers.setdefault(batch.x.shape, batch.x.copy())
        return Batch(x, batch.y, batch.masks)


class InputsThroughFloat32(Bug):
    """x passed through a float32 array (a dtype hard-coded in the loader) in a float64 run:
    the data phase compares exactly, so the rounding of x is the first difference."""
    name = "bug_inputs_through_float32"
    on, expected = specs.TANH, Expected("data", "x")

    def inputs(self, batch: Batch) -> Batch:
        return Batch(batch.x.astype(np.float32).astype(batch.x.dtype), batch.y, batch.masks)


class WeightGradDividedByBatch(Bug):
    """dW divided by the batch size although delta already carries the 1/n of the mean
    loss: the output layer's dW2 is the first wrong tensor."""
    name = "bug_weight_gradient_averaged_twice"
    on, expected = specs.TANH, Expected("backward", "dW2")

    def weight_grad(self, i: int, h_in: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return super().weight_grad(i, h_in, delta) / len(delta)


class BiasGradMean(Bug):
    """db as the mean of delta over the rows instead of its sum (delta is already divided
    by n): db2 is the first wrong tensor (dz2 and dW2 come before it and are right)."""
    name = "bug_bias_gradient_mean_not_sum"
    on, expected = specs.TANH, Expected("backward", "db2")

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        return delta.mean(axis=0)


class FirstLayerProductInFloat32(Bug):
    """The input layer's product x @ W0 done in float32 (a cast left from a mixed-precision
    try) in a float64 run: z0, the first forward tensor, is off by float32 rounding."""
    name = "bug_first_layer_product_in_float32"
    on, expected = specs.TANH, Expected("forward", "z0")

    def pre_activation(self, i: int, h: np.ndarray) -> np.ndarray:
        if i > 0:
            return super().pre_activation(i, h)
        W, b = self.weights[0]
        return (h.astype(np.float32) @ W.astype(np.float32)).astype(h.dtype) + b


class FirstLayerWeightGradAveraged(Bug):
    """The input layer special-cased (no dJ/dh below it) and its dW0 divided by n once more:
    every tensor above it is right, dW0 is the first wrong one."""
    name = "bug_first_layer_weight_gradient_averaged"
    on, expected = specs.TANH, Expected("backward", "dW0")

    def weight_grad(self, i: int, h_in: np.ndarray, delta: np.ndarray) -> np.ndarray:
        dW = super().weight_grad(i, h_in, delta)
        return dW / len(delta) if i == 0 else dW


class FirstBiasGradWithoutDerivative(Bug):
    """db0 summed from dJ/da0 (the activation derivative forgotten for the input layer's
    bias only): dW0 is right, db0 is the first wrong tensor."""
    name = "bug_first_bias_gradient_without_derivative"
    on, expected = specs.TANH, Expected("backward", "db0")

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        return d_a.sum(axis=0) if i == 0 else super().bias_grad(i, delta, d_a)


class FirstBiasSubtracted(Bug):
    """The input layer computes x @ W0 - b0: invisible while b0 is zero (step 0), z0 is
    wrong from step 1, once the first update has moved b0."""
    name = "bug_first_bias_subtracted"
    on, expected = specs.TANH, Expected("forward", "z0", step=1)

    def pre_activation(self, i: int, h: np.ndarray) -> np.ndarray:
        W, b = self.weights[i]
        return h @ W - b if i == 0 else h @ W + b


class TanhInFloat16(Bug):
    """The float32 code path evaluates tanh in float16 (a half-precision kernel): z0 is
    right, a0 is off by float16 rounding, far beyond float32's tolerance."""
    name = "bug_float32_tanh_in_float16"
    on, expected = specs.float32(specs.TANH), Expected("forward", "a0")

    def activate(self, i: int, z: np.ndarray) -> np.ndarray:
        if z.dtype != np.float32 or self.layers[i].activation != "tanh":
            return super().activate(i, z)
        return np.tanh(z.astype(np.float16)).astype(np.float32)


class BiasGradFloat16Sum(Bug):
    """The float32 code path sums delta over the rows in a float16 accumulator: db2 is the
    first tensor with float16 rounding in it."""
    name = "bug_float32_bias_gradient_float16_sum"
    on, expected = specs.float32(specs.TANH), Expected("backward", "db2")

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        if delta.dtype != np.float32:
            return super().bias_grad(i, delta, d_a)
        return delta.astype(np.float16).sum(axis=0, dtype=np.float16).astype(np.float32)


# -- square 2-2-2 network, half_sse, SGD (specs.SQUARE) ------------------------------------

class ForwardWeightsTransposed(Bug):
    """z = h @ W^T (W read as (fan_out, fan_in)): every W is square, so no shape error; the
    first layer's z0 is already wrong."""
    name = "bug_forward_weights_transposed"
    on, expected = specs.SQUARE, Expected("forward", "z0")

    def pre_activation(self, i: int, h: np.ndarray) -> np.ndarray:
        W, b = self.weights[i]
        return h @ W.T + b


class BackwardWeightsNotTransposed(Bug):
    """dJ/dh_{l-1} = delta_l @ W_l instead of delta_l @ W_l^T (square W): the output layer's
    gradients are right, da1 (what W2 sends down) is the first wrong tensor."""
    name = "bug_backward_weights_not_transposed"
    on, expected = specs.SQUARE, Expected("backward", "da1")

    def input_grad(self, i: int, delta: np.ndarray) -> np.ndarray:
        return delta @ self.weights[i][0]


class WeightGradTransposed(Bug):
    """dW = delta^T @ h (the transpose of h^T @ delta), same shape for square W: da2 and dz2
    are right, dW2 is the first wrong tensor."""
    name = "bug_weight_gradient_transposed"
    on, expected = specs.SQUARE, Expected("backward", "dW2")

    def weight_grad(self, i: int, h_in: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return super().weight_grad(i, h_in, delta).T


class SigmoidDerivativeOfZ(Bug):
    """sigmoid' computed as z (1 - z) instead of a (1 - a): the sigmoid layer 1's delta dz1
    is the first wrong tensor."""
    name = "bug_sigmoid_derivative_of_z"
    on, expected = specs.SQUARE, Expected("backward", "dz1")

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        if self.layers[i].activation == "sigmoid":
            return z * (1 - z)
        return super().derivative(i, z, a)


class HalfSseGradientAveraged(Bug):
    """half_sse's value is 1/2 sum err^2 but its gradient was written err / n (the mse
    habit): dJ/da2, the first tensor backprop computes, is wrong."""
    name = "bug_half_sse_gradient_averaged"
    on, expected = specs.SQUARE, Expected("backward", "da2")

    def output_delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> Delta:
        value, delta, d_out = super().output_delta(z, a, y)
        return value, delta / len(y), d_out / len(y)


class OutputUsesHiddenDerivative(Bug):
    """One activation derivative for the whole network: the identity output is multiplied by
    the hidden layers' sigmoid derivative: da2 right, dz2 wrong."""
    name = "bug_output_uses_hidden_derivative"
    on, expected = specs.SQUARE, Expected("backward", "dz2")

    def output_delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> Delta:
        value, _, d_out = super().output_delta(z, a, y)
        hidden = self.layers[-2]
        return value, d_out * activation_derivative(hidden, z, activation(hidden, z)), d_out


# -- sigmoid network, bce, heavy-ball momentum (specs.SIGMOID) -----------------------------

class SigmoidDerivativeMissing(Bug):
    """The sigmoid derivative left out of the hidden layers' chain rule (delta = dJ/da):
    the top hidden layer's dz1 is the first wrong tensor."""
    name = "bug_missing_sigmoid_derivative"
    on, expected = specs.SIGMOID, Expected("backward", "dz1")

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.ones_like(z)


class BceGradientSummed(Bug):
    """bce's gradient a - y not divided by n while the loss is the mean: dz2 first (bce,
    like cross_entropy, has no da2)."""
    name = "bug_bce_gradient_not_averaged"
    on, expected = specs.SIGMOID, Expected("backward", "dz2")

    def output_delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> Delta:
        value, delta, d_out = super().output_delta(z, a, y)
        return value, delta * len(y), d_out


class VelocityResetEachStep(Bug):
    """The momentum velocity re-created as zeros inside every step (v = g): the same as
    the definition at step 0, where v is zero anyway; from step 1 the loaded velocity is
    dropped, and the output layer's W2.first is the first wrong tensor."""
    name = "bug_momentum_velocity_reset_each_step"
    on, expected = specs.SIGMOID, Expected("update", "W2.first", step=1)

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        return super().optimizer_update(grads, state._replace(first=zeroed(state.first)),
                                        params)


class MomentumDampened(RuleUpdate):
    """v = mu v + (1 - mu) g (the exponential-average form, torch's dampening) where the spec
    defines v = mu v + g: the velocity W2.first is wrong at step 0; a convention."""
    name = "bug_momentum_dampened"
    on = specs.SIGMOID
    expected = Expected("update", "W2.first", convention="momentum=dampened")

    def rule(self, j: int, p: np.ndarray, g: np.ndarray, first: Slot, second: Slot,
             t: int) -> Stepped:
        mu = g.dtype.type(self.spec.optimizer.momentum)
        v = mu * first + (1 - mu) * g
        return self.step(p, optim.direction(g, v, second, t, self.spec.optimizer)), v, second


class NesterovNotAsked(OptionsChanged):
    """The Nesterov look-ahead d = g + mu v written unconditionally, though the spec says
    nesterov = false: velocity right, the output layer's W2 wrong at step 0; a convention."""
    name = "bug_nesterov_when_not_asked"
    on = specs.SIGMOID
    expected = Expected("update", "W2", convention="optimizer.nesterov=true")

    def options(self, opt: Optimizer) -> dict[str, object]:
        return {"nesterov": True}


class LoopSkipsFirstWeight(Bug):
    """The optimizer loop starts at index 1 (for j in range(1, len(params))): W0 and its
    velocity are never touched; every tensor of the layers above is right."""
    name = "bug_optimizer_loop_skips_first_weight"
    on, expected = specs.SIGMOID, Expected("update", "W0.first")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        return optim.update(grads, state, params, self.spec.optimizer,
                            self.spec.training.learning_rate,
                            trainable_except(self.trainable, 0))


class BiasesWithoutMomentum(Bug):
    """Momentum applied to the weights only, the biases stepped by plain SGD and their
    velocity never kept: W2's moments and step are right, b2.first is the first wrong."""
    name = "bug_biases_without_momentum"
    on, expected = specs.SIGMOID, Expected("update", "b2.first")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        lr = self.spec.training.learning_rate
        weights_only = [t and j % 2 == 0 for j, t in enumerate(self.trainable)]
        new, after = optim.update(grads, state, params, self.spec.optimizer, lr, weights_only)
        stepped = tuple(p - p.dtype.type(lr) * g if t and j % 2 else p
                        for j, (p, g, t) in enumerate(zip(new, grads, self.trainable,
                                                          strict=True)))
        return stepped, after


# -- frozen first-layer bias, Nesterov momentum, decoupled decay (specs.FROZEN) -------------

class FrozenBiasGradientReported(Bug):
    """The frozen bias's gradient reported as computed instead of zero (the optimizer still
    skips it): db0, the last gradient backprop computes, is the only wrong one."""
    name = "bug_frozen_bias_gradient_reported"
    on, expected = specs.FROZEN, Expected("backward", "db0")

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        return delta.sum(axis=0)


class FrozenBiasUpdated(Bug):
    """Frozen only in the reported gradient: train_step's own gradients sum delta for every
    bias and its optimizer steps every tensor, so the frozen b0 moves; the reported
    gradients are right, b0 is the first (and only) wrong tensor of the update."""
    name = "bug_frozen_bias_updated"
    on, expected = specs.FROZEN, Expected("update", "b0")

    def step_grads(self, batch: Batch) -> tuple[float, Params]:
        traced = self.trace(batch)
        return traced.loss, [(dW, dz.sum(axis=0))
                             for (dW, _), dz in zip(traced.grads, traced.dz, strict=True)]

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        every = optim.init(params, self.spec.optimizer)          # a slot for every tensor
        filled = optim.State(state.count, *(
            tuple(e if s is None else s for s, e in zip(slots, template, strict=True))
            for slots, template in ((state.first, every.first),
                                    (state.second, every.second))))
        return optim.update(grads, filled, params, self.spec.optimizer,
                            self.spec.training.learning_rate)


class DecayOnFrozenBias(Bug):
    """Decoupled weight decay applied to every tensor, the frozen bias too: b0 shrinks by
    (1 - lr wd) each step (it is nonzero in this spec); every trainable tensor is right."""
    name = "bug_weight_decay_on_frozen_bias"
    on, expected = specs.FROZEN, Expected("update", "b0")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        new, after = super().optimizer_update(grads, state, params)
        keep = params[0].dtype.type(1 - self.spec.training.learning_rate *
                                    self.spec.optimizer.weight_decay)
        return tuple(p if t else p * keep
                     for p, t in zip(new, self.trainable, strict=True)), after


class NesterovIgnored(OptionsChanged):
    """The nesterov flag never read (d = v): the velocity is right, W2 is not, at step 0;
    a convention."""
    name = "bug_nesterov_ignored"
    on = specs.FROZEN
    expected = Expected("update", "W2", convention="optimizer.nesterov=false")

    def options(self, opt: Optimizer) -> dict[str, object]:
        return {"nesterov": False}


class WeightDecayCoupled(Bug):
    """Weight decay added to the gradient (g + wd p, torch.optim.SGD's weight_decay) instead
    of decoupled: it enters the velocity, so W2.first is wrong at step 0; a convention."""
    name = "bug_weight_decay_coupled"
    on = specs.FROZEN
    expected = Expected("update", "W2.first", convention="weight_decay=coupled")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        opt = self.spec.optimizer
        decayed = [g + g.dtype.type(opt.weight_decay) * p if t else g
                   for g, p, t in zip(grads, params, self.trainable, strict=True)]
        return optim.update(decayed, state, params, replace(opt, weight_decay=0.0),
                            self.spec.training.learning_rate, self.trainable)


class DecayAfterStep(Bug):
    """The decay applied after the step, (p - lr d)(1 - lr wd), instead of before it: the
    velocity is right, W2 is the first wrong tensor."""
    name = "bug_weight_decay_after_step"
    on, expected = specs.FROZEN, Expected("update", "W2")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        opt, lr = self.spec.optimizer, self.spec.training.learning_rate
        new, after = optim.update(grads, state, params, replace(opt, weight_decay=0.0), lr,
                                  self.trainable)
        keep = params[0].dtype.type(1 - lr * opt.weight_decay)
        return tuple(p * keep if t else p
                     for p, t in zip(new, self.trainable, strict=True)), after


class DecayWithoutLearningRate(Bug):
    """Decoupled decay written p (1 - wd), the learning rate left out (AdamW's lr * wd
    misread): the velocity is right, W2 is the first wrong tensor."""
    name = "bug_weight_decay_without_learning_rate"
    on, expected = specs.FROZEN, Expected("update", "W2")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        opt = self.spec.optimizer
        keep = params[0].dtype.type(1 - opt.weight_decay)
        decayed = [p * keep if t else p for p, t in zip(params, self.trainable, strict=True)]
        return optim.update(grads, state, decayed, replace(opt, weight_decay=0.0),
                            self.spec.training.learning_rate, self.trainable)


# -- relu / leaky_relu / identity, mse, Adam (specs.ADAM) ----------------------------------

class ReluDerivativeIsActivation(Bug):
    """relu' returned as relu(z) (the function instead of its step): the relu layer is the
    input layer, so everything above is right and dz0 is the first wrong tensor."""
    name = "bug_relu_derivative_is_activation"
    on, expected = specs.ADAM, Expected("backward", "dz0")

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        if self.layers[i].activation == "relu":
            return a
        return super().derivative(i, z, a)


class LeakyReluSlopeForgotten(Bug):
    """leaky_relu's derivative written as relu's (0 for z < 0, the slope forgotten): the
    leaky layer 1's dz1 is the first wrong tensor."""
    name = "bug_leaky_relu_derivative_without_slope"
    on, expected = specs.ADAM, Expected("backward", "dz1")

    def derivative(self, i: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        if self.layers[i].activation == "leaky_relu":
            return (z > 0).astype(z.dtype)
        return super().derivative(i, z, a)


class MseGradientMissingTwo(Bug):
    """mse's gradient written err / n, the 2 of d/da err^2 forgotten: da2, the first tensor
    backprop computes, is wrong."""
    name = "bug_mse_gradient_missing_factor_two"
    on, expected = specs.ADAM, Expected("backward", "da2")

    def output_delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> Delta:
        value, delta, d_out = super().output_delta(z, a, y)
        return value, delta / 2, d_out / 2


class AdamCountOffByOne(Bug):
    """Adam's bias correction uses t = count + 2 (the count incremented before the step and
    once more in the formula); the count it keeps is right: the moments are right, the
    output layer's W2 is wrong at step 0."""
    name = "bug_adam_count_off_by_one"
    on, expected = specs.ADAM, Expected("update", "W2")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        new, after = super().optimizer_update(grads, state._replace(count=state.count + 1),
                                              params)
        return new, after._replace(count=state.count + 1)


class AdamCountNeverIncremented(Bug):
    """self.t += 1 forgotten: the step count stays where it was loaded; the step itself is
    right (t = count + 1 from the loaded count), so the count is the only wrong tensor."""
    name = "bug_adam_count_never_incremented"
    on, expected = specs.ADAM, Expected("update", "count")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        new, after = super().optimizer_update(grads, state, params)
        return new, after._replace(count=state.count)


class AdamZeroBasedStep(Bug):
    """The bias correction's t taken as the 0-based step index guarded by max(., 1) against
    1 - beta^0 = 0: right at step 0 (t = 1), one behind from step 1, where W2 (moments
    right) is the first wrong tensor."""
    name = "bug_adam_zero_based_step"
    on, expected = specs.ADAM, Expected("update", "W2", step=1)

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        t = max(state.count, 1)
        new, after = super().optimizer_update(grads, state._replace(count=t - 1), params)
        return new, after._replace(count=state.count + 1)


class AdamBiasCorrectionOnMOnly(RuleUpdate):
    """m_hat = m / (1 - b1^t) but v used uncorrected: the moments are right, W2 is wrong at
    step 0 (31 times too large a step there)."""
    name = "bug_adam_bias_correction_on_m_only"
    on, expected = specs.ADAM, Expected("update", "W2")

    def rule(self, j: int, p: np.ndarray, g: np.ndarray, first: Slot, second: Slot,
             t: int) -> Stepped:
        opt = self.spec.optimizer
        m, v = optim.moments(g, first, second, opt)
        b1 = g.dtype.type(opt.beta1)
        return self.step(p, m / (1 - b1**t) / optim.root(v, opt)), m, v


class AdamBetasSwapped(OptionsChanged):
    """beta1 and beta2 swapped (m averaged with 0.999, v with 0.9): the first moment of the
    output layer, W2.first, is the first wrong tensor."""
    name = "bug_adam_betas_swapped"
    on, expected = specs.ADAM, Expected("update", "W2.first")

    def options(self, opt: Optimizer) -> dict[str, object]:
        return {"beta1": opt.beta2, "beta2": opt.beta1}


class AdamEpsInside(OptionsChanged):
    """eps inside the square root, sqrt(v_hat + eps) (optax's eps_root, TF's epsilon hat),
    where the spec says outside: moments right, W2 wrong; a convention."""
    name = "bug_adam_eps_inside_root"
    on = specs.ADAM
    expected = Expected("update", "W2", convention="optimizer.eps_placement=inside")

    def options(self, opt: Optimizer) -> dict[str, object]:
        return {"eps_placement": "inside"}


class AdamFolded(OptionsChanged):
    """The bias correction folded into the step size (scikit-learn, Keras), which moves eps
    by sqrt(1 - b2^t): moments right, W2 wrong; a convention."""
    name = "bug_adam_bias_correction_folded"
    on = specs.ADAM
    expected = Expected("update", "W2", convention="optimizer.bias_correction=folded")

    def options(self, opt: Optimizer) -> dict[str, object]:
        return {"bias_correction": "folded"}


class HyperparametersFloat32(Bug):
    """Hyper-parameters kept as float32 scalars (np.float32(0.9), Keras's habit) in a float64
    run: (1 - b1) is off by 2e-7, so the first moment W2.first is the first wrong tensor;
    a convention."""
    name = "bug_hyperparameters_float32"
    on = specs.ADAM
    expected = Expected("update", "W2.first", convention="hyperparameters=float32")

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        opt = self.spec.optimizer
        rounded = replace(opt, **{k: f32(getattr(opt, k)) for k in (
            "momentum", "rho", "beta1", "beta2", "eps", "weight_decay")})
        return optim.update(grads, state, params, rounded,
                            f32(self.spec.training.learning_rate), self.trainable)


class AdamSecondMomentFloat16(RuleUpdate):
    """The float32 code path stores Adam's v in float16 to save memory: tiny g^2 values
    lose their digits (or underflow), W2.second is the first wrong tensor."""
    name = "bug_float32_adam_second_moment_float16"
    on, expected = specs.float32(specs.ADAM), Expected("update", "W2.second")

    def rule(self, j: int, p: np.ndarray, g: np.ndarray, first: Slot, second: Slot,
             t: int) -> Stepped:
        opt = self.spec.optimizer
        m, v = optim.moments(g, first, second, opt)
        if v.dtype == np.float32:
            v = v.astype(np.float16).astype(np.float32)
        return self.step(p, optim.direction(g, m, v, t, opt)), m, v


# -- dropout on both hidden layers, L2, RMSprop (specs.DROPOUT) ----------------------------

class DropoutMaskMissingInBackward(Bug):
    """The dropout mask applied in the forward pass but not in the backward: dJ/da1 (what
    reaches the top hidden layer, which has dropout) is the first wrong tensor."""
    name = "bug_dropout_mask_missing_in_backward"
    on, expected = specs.DROPOUT, Expected("backward", "da1")

    def mask_grad(self, dh: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return dh


class DropoutNotRescaled(Bug):
    """Dropout as a 0/1 keep mask, the 1 / (1 - p) of inverted dropout forgotten: the mask
    it computes with differs from the harness's from the first layer, mask0."""
    name = "bug_dropout_not_rescaled"
    on, expected = specs.DROPOUT, Expected("data", "mask0")

    def layer_masks(self, masks: Masks) -> Masks:
        return tuple(None if m is None else (m > 0).astype(m.dtype)
                     for m in super().layer_masks(masks))


class DropoutMasksSwapped(Bug):
    """The hidden layers' masks zipped in reverse order (both 6 wide, so no shape error):
    layer 0 computes with mask1, the data phase names mask0."""
    name = "bug_dropout_masks_swapped"
    on, expected = specs.DROPOUT, Expected("data", "mask0")

    def layer_masks(self, masks: Masks) -> Masks:
        *hidden, out = super().layer_masks(masks)
        return (*hidden[::-1], out)


class DropoutOnPreActivation(Bug):
    """Dropout applied to z before the activation, f(z m), instead of to f(z): z0 is right,
    the tanh layer's a0 is the first wrong tensor (for relu the two would agree)."""
    name = "bug_dropout_on_pre_activation"
    on, expected = specs.DROPOUT, Expected("forward", "a0")

    def layer_forward(self, i: int, h: np.ndarray, mask: np.ndarray | None) -> Cache:
        z = self.pre_activation(i, h)
        return Cache(h, z, self.activate(i, z if mask is None else z * mask), mask)

    def dropped(self, cache: Cache) -> np.ndarray:
        return cache.a


class L2MissingInGradient(Bug):
    """The L2 penalty in the loss value but not in dW: the output layer's dW2 is the first
    wrong tensor (dz2 does not see L2)."""
    name = "bug_l2_missing_in_gradient"
    on, expected = specs.DROPOUT, Expected("backward", "dW2")

    def l2_grad(self, i: int) -> np.ndarray:
        return np.zeros_like(self.weights[i][0])


class L2OnBiases(Bug):
    """L2 on the biases too (value and gradient): biases start at zero, so nothing differs
    at step 0; from step 1 the loss value carries l2/2 ||b||^2, and the loss comes before
    the gradients."""
    name = "bug_l2_on_biases"
    on, expected = specs.DROPOUT, Expected("loss", "loss", step=1)

    def penalty(self) -> float:
        return super().penalty() + float(0.5 * self.spec.loss.l2 *
                                          sum(np.sum(b * b) for _, b in self.weights))

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        return super().bias_grad(i, delta, d_a) + self.spec.loss.l2 * self.weights[i][1]


class L2GradientOnBiases(Bug):
    """The L2 gradient added to every parameter (a loop over W and b alike) while the
    penalty counts the weights only: nothing differs while the biases are zero (step 0);
    from step 1 db2 (after the right dz2 and dW2) is the first wrong tensor."""
    name = "bug_l2_gradient_on_biases"
    on, expected = specs.DROPOUT, Expected("backward", "db2", step=1)

    def bias_grad(self, i: int, delta: np.ndarray, d_a: np.ndarray | None) -> np.ndarray:
        return super().bias_grad(i, delta, d_a) + self.spec.loss.l2 * self.weights[i][1]


class L2GradientTwice(Bug):
    """The L2 gradient written 2 l2 W (the derivative of l2 ||W||^2) for a penalty of
    l2/2 ||W||^2: dW2 first."""
    name = "bug_l2_gradient_factor_two"
    on, expected = specs.DROPOUT, Expected("backward", "dW2")

    def l2_grad(self, i: int) -> np.ndarray:
        return 2 * super().l2_grad(i)


class L2MissingInLossValue(Bug):
    """The L2 gradient added but the penalty left out of the loss value: only the loss
    value is wrong (train_step reports that same value)."""
    name = "bug_l2_missing_in_loss_value"
    on, expected = specs.DROPOUT, Expected("loss", "loss")

    def penalty(self) -> float:
        return 0.0


class StepLossWithoutL2(Bug):
    """train_step reports the data loss alone (the L2 penalty left out of what it returns):
    loss_and_grads is right, the step loss is not its own loss."""
    name = "bug_step_loss_without_l2"
    on, expected = specs.DROPOUT, Expected("loss", "step_loss")

    def reported_loss(self, value: float, batch: Batch) -> float:
        return value - self.penalty()


class EvaluateLossIncludesL2(Bug):
    """evaluate() adds the L2 penalty to the held-out loss (the contract says data loss
    only): training is right, eval_loss is wrong."""
    name = "bug_evaluate_loss_includes_l2"
    on, expected = specs.DROPOUT, Expected("evaluate", "eval_loss")

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        value, out = super().evaluate(batch)
        return value + self.penalty(), out


class RmspropWithoutOneMinusRho(RuleUpdate):
    """s = rho s + g^2, the (1 - rho) forgotten: the mean square of the output layer,
    W2.second, is the first wrong tensor (RMSprop keeps no first moment)."""
    name = "bug_rmsprop_without_one_minus_rho"
    on, expected = specs.DROPOUT, Expected("update", "W2.second")

    def rule(self, j: int, p: np.ndarray, g: np.ndarray, first: Slot, second: Slot,
             t: int) -> Stepped:
        s = g.dtype.type(self.spec.optimizer.rho) * second + g**2
        return self.step(p, optim.direction(g, first, s, t, self.spec.optimizer)), first, s


class RmspropStateOverwritten(Bug):
    """s = (1 - rho) g^2, the running mean replaced by this step's term (rho s dropped):
    right at step 0, where s is zero; W2.second wrong from step 1."""
    name = "bug_rmsprop_mean_square_overwritten"
    on, expected = specs.DROPOUT, Expected("update", "W2.second", step=1)

    def optimizer_update(self, grads: Arrays, state: optim.State,
                         params: Arrays) -> Update:
        return super().optimizer_update(grads, state._replace(second=zeroed(state.second)),
                                        params)


class RmspropEpsInside(OptionsChanged):
    """RMSprop with eps inside the square root (optax's default) where the spec says
    outside: s right, W2 wrong; a convention."""
    name = "bug_rmsprop_eps_inside_root"
    on = specs.DROPOUT
    expected = Expected("update", "W2", convention="optimizer.eps_placement=inside")

    def options(self, opt: Optimizer) -> dict[str, object]:
        return {"eps_placement": "inside"}


class RmspropCentered(RuleUpdate):
    """Centered RMSprop (g / root(s - mean(g)^2), torch's centered=True, Keras's default in
    TF1): s is the same, W2 wrong; a convention. The mean of g lives outside the
    canonical state (reset by load)."""
    name = "bug_rmsprop_centered"
    on = specs.DROPOUT
    expected = Expected("update", "W2", convention="rmsprop=centered")

    def load(self, params: Params) -> None:
        super().load(params)
        self.means = [np.zeros_like(p) for p in flatten(self.weights)]

    def rule(self, j: int, p: np.ndarray, g: np.ndarray, first: Slot, second: Slot,
             t: int) -> Stepped:
        opt = self.spec.optimizer
        rho = g.dtype.type(opt.rho)
        s = rho * second + (1 - rho) * g**2
        self.means[j] = rho * self.means[j] + (1 - rho) * g
        return self.step(p, g / optim.root(s - self.means[j]**2, opt)), first, s


class RmspropInitialOne(Bug):
    """RMSprop's mean square initialised to ones (tf.compat.v1 RMSPropOptimizer) instead of
    zeros: the fresh state of step 0 makes W2.second wrong there; a convention."""
    name = "bug_rmsprop_initial_one"
    on = specs.DROPOUT
    expected = Expected("update", "W2.second", convention="rmsprop.initial=1")

    def load(self, params: Params) -> None:
        super().load(params)
        self.state = self.state._replace(
            second=tuple(None if s is None else np.ones_like(s) for s in self.state.second))
