"""scikit-learn's multi-layer perceptron as a backprop-harness backend.

MLPClassifier and MLPRegressor carry their own hand-written NumPy backpropagation
(`_backprop`, `_forward_pass_fast`) and their own optimizers (`SGDOptimizer`, `AdamOptimizer`).
This backend drives exactly those internals with the harness's parameters and batches, in the
harness's order. It never calls fit / partial_fit: they would re-initialise the weights,
reshuffle the rows and, with early stopping, split off validation data of their own.

Where sklearn's definitions differ from the spec they are mapped exactly (`loss_scale`,
`alpha`) or declared unsupported (`capabilities`, `unsupported`); docs/adding-a-backend.md
tabulates both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar, NamedTuple

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Trace
from harness.data import Batch
from harness.params import Params
from harness.spec import Spec

# spec activation -> sklearn's name for it (sklearn calls the sigmoid "logistic")
ACTIVATION = {"identity": "identity", "sigmoid": "logistic", "tanh": "tanh", "relu": "relu",
              "softmax": "softmax"}
# The output activation sklearn fixes for each loss (its out_activation_), in spec names.
OUTPUT = {"cross_entropy": "softmax", "bce": "sigmoid", "mse": "identity", "half_sse": "identity"}
# sklearn's loss function for each spec loss (its LOSS_FUNCTIONS keys)
LOSS = {"cross_entropy": "log_loss", "bce": "binary_log_loss", "mse": "squared_error",
        "half_sse": "squared_error"}
SQUARED = ("mse", "half_sse")
# The sklearn optimizer attributes holding harness.optim's `first` and `second` moments, one
# array per tensor in sklearn's order; None: harness.optim keeps none (sklearn's SGDOptimizer
# keeps velocities even at momentum 0, where they are never read).
MOMENTS = {"sgd": (None, None), "momentum": ("velocities", None), "adam": ("ms", "vs")}


class Pass(NamedTuple):
    """One run of sklearn's `_backprop`: the loss and gradients rescaled to the spec's loss,
    and the lists it filled, as it left them."""
    loss: float
    grads: list[np.ndarray]          # [dW_0, dW_1, ..., db_0, db_1, ...]: sklearn's order
    activations: list[np.ndarray]    # [x, a_0, a_1, ...]
    deltas: list[np.ndarray]         # its deltas: rows / loss_scale times the spec's dJ/dz


def sklearn_order(flat: Sequence) -> list:
    """harness order [W0, b0, W1, b1, ...] -> sklearn's [W0, W1, ..., b0, b1, ...]."""
    return [*flat[0::2], *flat[1::2]]


def harness_order(arrays: Sequence) -> list:
    """sklearn's [W0, W1, ..., b0, b1, ...] -> harness order [W0, b0, W1, b1, ...]."""
    n = len(arrays) // 2
    return [t for pair in zip(arrays[:n], arrays[n:], strict=True) for t in pair]


def loss_scale(loss: str, rows: int) -> float:
    """Our loss = loss_scale * sklearn's. sklearn's squared_error is 1/2 mean(err^2) over the
    batch: the spec's mse (mean err^2) is twice that, half_sse (1/2 sum err^2) `rows` times.
    Its log losses are the spec's cross_entropy and bce exactly."""
    return {"mse": 2.0, "half_sse": float(rows)}.get(loss, 1.0)


def alpha(l2: float, loss: str, rows: int) -> float:
    """sklearn's L2 term is alpha / (2 rows) ||W||^2 per batch, before our loss_scale; the
    spec's is l2 / 2 ||W||^2. Equal when alpha = l2 * rows / loss_scale, set for each batch."""
    return l2 * rows / loss_scale(loss, rows)


def gaps(spec: Spec) -> Iterator[str]:
    """What sklearn cannot express in `spec` beyond the per-option Capabilities and
    conventions (rules across fields, a range of values), each phrased to follow the
    backend's name."""
    layers, loss = spec.model.layers, spec.loss.name
    hidden = sorted({layer.activation for layer in layers[:-1]})
    if len(hidden) > 1:
        yield f"uses one activation for every hidden layer (got {', '.join(hidden)})"
    if layers[-1].activation != OUTPUT[loss]:
        yield f"fixes the output activation of loss {loss!r} to {OUTPUT[loss]!r}"
    if loss in SQUARED and layers[-1].size != 1:
        yield ("averages its reported squared_error over several outputs but sums its "
               "gradient over them: with more than one output neither is the spec's loss")
    if spec.optimizer.weight_decay:
        yield "has no decoupled weight decay (its alpha is L2 inside the loss)"


def harness_pairs(arrays: list[np.ndarray]) -> Params:
    """sklearn's [W0, W1, ..., b0, b1, ...] -> [(W0, b0), (W1, b1), ...]."""
    flat = harness_order(arrays)
    return list(zip(flat[0::2], flat[1::2], strict=True))


class SklearnMLP(Backend):
    """sklearn's `_backprop` for loss and gradients, its optimizer classes for the updates.

    For the diagnosis: `trace` reads sklearn's own forward activations and backprop deltas
    (rescaled to the spec's loss); `export_state` / `load_state` read and write its
    optimizer's arrays in harness.optim's layout. Nothing is left at the default (None /
    False): every quantity maps exactly, the SGD velocity, which sklearn keeps as -lr times
    harness.optim's v, with one rounding each way.
    """

    name: ClassVar[str] = "sklearn"
    framework: ClassVar[str | None] = "sklearn"
    capabilities: ClassVar[Capabilities] = Capabilities(
        activations=frozenset(ACTIVATION),
        optimizers=frozenset({"sgd", "momentum", "adam"}),
        dropout=False,
        limits=("one activation for every hidden layer",
                "output activation fixed by the loss: softmax for cross_entropy, sigmoid for "
                "bce, identity for mse and half_sse",
                "mse and half_sse with a single output only",
                "no decoupled weight decay"),
        conventions={
            ("optimizer.eps_placement", "inside"):
                "sklearn's AdamOptimizer adds epsilon after the square root, "
                "m / (sqrt(v) + epsilon)",
            ("optimizer.bias_correction", "standard"):
                "sklearn's AdamOptimizer folds the bias correction into the step size, "
                "lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps): set "
                "bias_correction = \"folded\"",
            ("layer.trainable_bias", False):
                "sklearn's optimizers update every intercept",
        },
    )

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        from sklearn.neural_network._base import LOSS_FUNCTIONS
        from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

        layers, opt = spec.model.layers, spec.optimizer
        hidden = [ACTIVATION[layer.activation] for layer in layers[:-1]]
        estimator = MLPRegressor if spec.loss.name in SQUARED else MLPClassifier
        self._mlp = estimator(
            hidden_layer_sizes=[layer.size for layer in layers[:-1]],
            activation=hidden[0] if hidden else "identity",    # unused without hidden layers
            solver="adam" if opt.name == "adam" else "sgd",
            learning_rate="constant", learning_rate_init=spec.training.learning_rate,
            momentum=opt.momentum if opt.name == "momentum" else 0.0,
            nesterovs_momentum=opt.nesterov, beta_1=opt.beta1, beta_2=opt.beta2,
            epsilon=opt.eps)
        # the fitted attributes _backprop reads, set as fit's _initialize would set them
        self._mlp.n_layers_ = len(layers) + 1
        self._mlp.n_outputs_ = layers[-1].size
        self._mlp.out_activation_ = ACTIVATION[layers[-1].activation]
        self._loss_fn = LOSS_FUNCTIONS[LOSS[spec.loss.name]]
        self._optimizer_cls = AdamOptimizer if opt.name == "adam" else SGDOptimizer
        self.dtype = np.dtype(spec.dtype)

    @classmethod
    def unsupported(cls, spec: Spec, device: str = "cpu") -> str | None:
        reason = super().unsupported(spec, device)
        return reason or next((f"{cls.name} {why}" for why in gaps(spec)), None)

    def load(self, params: Params) -> None:
        """Fresh coefs_ / intercepts_ (copies) and a fresh optimizer over them, as
        _fit_stochastic builds it: the optimizer updates these very arrays in place."""
        mlp = self._mlp
        mlp.coefs_ = [np.array(w, dtype=self.dtype) for w, _ in params]
        mlp.intercepts_ = [np.array(b, dtype=self.dtype) for _, b in params]
        self._arrays = mlp.coefs_ + mlp.intercepts_
        if mlp.solver == "adam":
            args = (mlp.beta_1, mlp.beta_2, mlp.epsilon)
        else:
            args = (mlp.learning_rate, mlp.momentum, mlp.nesterovs_momentum, mlp.power_t)
        self._optimizer = self._optimizer_cls(self._arrays, mlp.learning_rate_init, *args)
        self._steps = 0

    def _backprop(self, batch: Batch) -> Pass:
        """Loss and gradients by sklearn's own backprop, rescaled to the spec's loss; alpha
        is set for this batch's rows."""
        mlp, rows, loss = self._mlp, len(batch.x), self.spec.loss.name
        mlp.alpha = alpha(self.spec.loss.l2, loss, rows)
        n = len(mlp.coefs_)
        activations, deltas = [batch.x] + [None] * n, [None] * n
        value, coef_grads, intercept_grads = mlp._backprop(
            batch.x, batch.y, None, activations, deltas, [None] * n, [None] * n)
        scale = self.dtype.type(loss_scale(loss, rows))
        grads = coef_grads + intercept_grads
        if scale != 1:
            grads = [g * scale for g in grads]
        return Pass(float(value * scale), grads, activations, deltas)

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        done = self._backprop(batch)
        return done.loss, harness_pairs(done.grads)

    def train_step(self, batch: Batch) -> float:
        done = self._backprop(batch)
        self._optimizer.update_params(self._arrays, done.grads)
        self._steps += 1
        return done.loss

    def trace(self, batch: Batch) -> Trace:
        """sklearn's forward activations and backprop deltas from one `_backprop`, the
        call `loss_and_grads` makes. sklearn activates in place and multiplies each
        dJ/da by f' in place, so z_l and the hidden layers' dJ/da_l are taken again as it
        takes them, with the same products of the same arrays: z_l = h_{l-1} @ W_l + b_l,
        dJ/da_l = delta_{l+1} @ W_{l+1}^T. Its deltas are rows / loss_scale times the
        spec's dJ/dz (it divides by the rows when it forms a gradient). At the output,
        dJ/da is None for cross_entropy and bce (from the logits) and equals dJ/dz for the
        squared losses, whose output sklearn fixes to the identity. No state changes."""
        done, mlp = self._backprop(batch), self._mlp
        rows, last = len(batch.x), len(mlp.coefs_) - 1
        unit = self.dtype.type(loss_scale(self.spec.loss.name, rows)) / self.dtype.type(rows)
        h, acts = done.activations[:-1], done.activations[1:]
        dz = tuple(d * unit for d in done.deltas)
        da = [done.deltas[i + 1] @ mlp.coefs_[i + 1].T * unit for i in range(last)]
        out = dz[last].copy() if self.spec.loss.name in SQUARED else None
        return Trace(x=batch.x, masks=(None,) * len(acts),
                     z=tuple(a @ w + b for a, w, b in
                             zip(h, mlp.coefs_, mlp.intercepts_, strict=True)),
                     a=tuple(acts), loss=done.loss, da=(*da, out), dz=dz,
                     grads=harness_pairs(done.grads))

    def export_state(self) -> optim.State:
        """The optimizer's arrays in harness.optim's layout: AdamOptimizer's ms / vs are
        harness.optim's m / v (its folded bias correction lives in the step size, not the
        moments) and its t the count; SGDOptimizer's velocity is -lr v (v <- mu v - lr g,
        p <- p + v), exported as -velocity / lr, and as it keeps no step count, the count is
        the train_steps this backend took since `load`."""
        first, second = (self._slots(attr, scale) for attr, scale in
                         zip(MOMENTS[self.spec.optimizer.name], self._scales(), strict=True))
        return optim.State(self._count(), first, second)

    def load_state(self, state: optim.State) -> bool:
        """Replace the optimizer's arrays by `state`'s (converted as `export_state` says)
        and its step count; ValueError where `state`'s layout is not harness.optim.init's
        for this spec."""
        for attr, slots, scale in zip(MOMENTS[self.spec.optimizer.name],
                                      (state.first, state.second), self._scales(), strict=True):
            kept = self._kept(slots, attr is not None)
            if attr is not None:
                setattr(self._optimizer, attr,
                        [np.asarray(s, self.dtype) * scale for s in sklearn_order(kept)])
        self._steps = int(state.count)
        if self.spec.optimizer.name == "adam":
            self._optimizer.t = self._steps
        return True

    def _count(self) -> int:
        """AdamOptimizer's own t; SGDOptimizer's maths reads no count, so it keeps none."""
        return self._optimizer.t if self.spec.optimizer.name == "adam" else self._steps

    def _scales(self) -> tuple[np.generic, np.generic]:
        """sklearn's (first, second) = scale * harness.optim's: -lr for SGD's velocity."""
        one = self.dtype.type(1)
        if self.spec.optimizer.name == "momentum":
            return -self.dtype.type(self.spec.training.learning_rate), one
        return one, one

    def _slots(self, attr: str | None, scale: np.generic) -> optim.Slots:
        """One entry per tensor [W0, b0, ...]: the optimizer's array / scale, or None."""
        if attr is None:
            return (None,) * len(self._arrays)
        return tuple(v / scale for v in harness_order(getattr(self._optimizer, attr)))

    def _kept(self, slots: optim.Slots, keeps: bool) -> list:
        """`slots` itself, ValueError unless it holds an array of each tensor's shape where
        harness.optim.init puts one (every tensor: sklearn trains them all) and None
        elsewhere."""
        want = [p.shape if keeps else None for p in harness_order(self._arrays)]
        got = [None if s is None else np.shape(s) for s in slots]
        if got != want:
            raise ValueError(f"optimizer state layout {got} is not this spec's {want}")
        return list(slots)

    def params(self) -> Params:
        return [(w.copy(), b.copy()) for w, b in
                zip(self._mlp.coefs_, self._mlp.intercepts_, strict=True)]

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        """sklearn's prediction pass and its own loss function (no alpha term)."""
        out = self._mlp._forward_pass_fast(batch.x, check_input=False)
        scale = loss_scale(self.spec.loss.name, len(batch.x))
        return float(self._loss_fn(batch.y, out) * scale), out
