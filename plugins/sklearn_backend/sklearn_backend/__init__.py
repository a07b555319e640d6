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

from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from harness.backend import Backend, Capabilities
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


class SklearnMLP(Backend):
    """sklearn's `_backprop` for loss and gradients, its optimizer classes for the updates."""

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

    def _backprop(self, batch: Batch) -> tuple[float, list[np.ndarray]]:
        """Loss and [dW_0, ..., db_0, ...] (sklearn's order) by sklearn's own backprop,
        rescaled to the spec's loss; alpha is set for this batch's rows."""
        mlp, rows, loss = self._mlp, len(batch.x), self.spec.loss.name
        mlp.alpha = alpha(self.spec.loss.l2, loss, rows)
        n = len(mlp.coefs_)
        value, coef_grads, intercept_grads = mlp._backprop(
            batch.x, batch.y, None, [batch.x] + [None] * n, [None] * n, [None] * n, [None] * n)
        scale = self.dtype.type(loss_scale(loss, rows))
        grads = coef_grads + intercept_grads
        if scale != 1:
            grads = [g * scale for g in grads]
        return float(value * scale), grads

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        value, grads = self._backprop(batch)
        n = len(grads) // 2
        return value, list(zip(grads[:n], grads[n:], strict=True))

    def train_step(self, batch: Batch) -> float:
        value, grads = self._backprop(batch)
        self._optimizer.update_params(self._arrays, grads)
        return value

    def params(self) -> Params:
        return [(w.copy(), b.copy()) for w, b in
                zip(self._mlp.coefs_, self._mlp.intercepts_, strict=True)]

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        """sklearn's prediction pass and its own loss function (no alpha term)."""
        out = self._mlp._forward_pass_fast(batch.x, check_input=False)
        scale = loss_scale(self.spec.loss.name, len(batch.x))
        return float(self._loss_fn(batch.y, out) * scale), out
