"""TensorFlow as a backprop-harness backend: gradients by `tf.GradientTape`, updates by Keras's
own optimizers (`keras.optimizers.SGD`, `RMSprop`, `Adam`), one `tf.function` per call kind.

TensorFlow is imported only when the backend is constructed, after its C++ logging has been
turned down, so that listing backends stays fast and no TF log line reaches the console.

Keras rounds a Python float hyper-parameter through float32 (`ops.cast(0.9, "float64")` is
0.8999999761581421, a float learning rate becomes a float32 variable): every hyper-parameter
is therefore handed over as a NumPy scalar of the run's dtype, the learning rate as a
callable returning a constant of that dtype. What Keras cannot express is declared in
`capabilities` and `gaps`; docs/optimizers.md tabulates the Keras conventions as measured.

For the diagnosis, `trace` takes every layer's z and a and their gradients from a tape, and
`export_state` / `load_state` read and write Keras's own optimizer variables, converted to
harness.optim's layout (see `TensorflowTape.export_state`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Operands, Products, Trace, trainable_mask
from harness.data import Batch
from harness.params import Params
from harness.spec import LAYER_TYPES, Layer, Spec

if TYPE_CHECKING:
    import tensorflow as tf

# the one eps placement each Keras optimizer has: RMSprop sqrt(s + eps), Adam sqrt(v) + eps
EPS_PLACEMENT = {"rmsprop": "inside", "adam": "outside"}
EPS_FORM = {"inside": "g / sqrt(s + epsilon)", "outside": "m / (sqrt(v) + epsilon)"}
KERAS_CLASS = {"rmsprop": "RMSprop", "adam": "Adam"}
LOGGERS = ("tensorflow", "absl", "keras", "h5py")
# The Keras optimizer attributes holding harness.optim's `first` and `second` moments, one
# variable per trainable tensor in the order the optimizer was built on; None: kept nowhere.
MOMENTS = {"sgd": (None, None), "momentum": ("momentums", None),
           "rmsprop": (None, "_velocities"), "adam": ("_momentums", "_velocities")}


def quiet() -> None:
    """Keep TensorFlow's C++ log lines (set before its first import) and its Python loggers'
    warnings (retracing notes, deprecations) off the console; errors still raise. oneDNN's
    custom ops are off unless the environment turns them on: their start-up notice ignores
    TF_CPP_MIN_LOG_LEVEL, and they change the rounding with the computation order."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def gaps(spec: Spec) -> Iterator[str]:
    """What Keras cannot express in `spec` beyond `capabilities`: each optimizer has exactly
    one eps placement, so the same field value is fine for one optimizer and not the other."""
    opt = spec.optimizer
    fixed = EPS_PLACEMENT.get(opt.name)
    if fixed is not None and opt.eps_placement != fixed:
        yield (f"cannot express optimizer.eps_placement = {opt.eps_placement!r} for "
               f"{opt.name}: keras.optimizers.{KERAS_CLASS[opt.name]} always computes "
               f"{EPS_FORM[fixed]}")


def units(tf: Any, t: tf.Tensor) -> tf.Tensor:
    """A layer's tensor as (rows, units) in C, H, W order: NHWC transposed back first."""
    if len(t.shape) == 4:
        t = tf.transpose(t, (0, 3, 1, 2))
    return tf.reshape(t, (tf.shape(t)[0], -1))


def arrays(tensors: Any) -> tuple[np.ndarray | None, ...]:
    """Tensors (None kept as None) as NumPy arrays."""
    return tuple(None if t is None else t.numpy() for t in tensors)


class TensorflowTape(Backend):
    """The network on tf.Variables; loss_and_grads by tf.GradientTape, train_step by the tape
    and a Keras optimizer's apply_gradients, both compiled by tf.function once per instance."""

    name: ClassVar[str] = "tensorflow"
    framework: ClassVar[str | None] = "tensorflow"
    capabilities: ClassVar[Capabilities] = Capabilities(
        layer_types=frozenset(LAYER_TYPES),
        conventions={
            ("model.pool_ties", "split"):
                "tf.nn.max_pool2d's gradient (MaxPoolGrad) sends a tied window's gradient to "
                "the first maximum only; splitting it has no option",
            ("optimizer.bias_correction", "standard"):
                "keras.optimizers.Adam folds the bias correction into the step size "
                "(lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + epsilon), the paper's "
                "\"epsilon hat\"): set bias_correction = \"folded\"",
        },
        limits=("rmsprop with eps_placement = \"inside\" only (Keras: g / sqrt(s + epsilon))",
                "adam with eps_placement = \"outside\" only (Keras: m / (sqrt(v) + epsilon))"),
    )

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        quiet()
        import keras
        import tensorflow as tf

        self._tf, self._keras = tf, keras
        self._dtype = tf.as_dtype(spec.dtype)
        self._np_dtype = np.dtype(spec.dtype)
        self._trainable = [t for pair in trainable_mask(spec) for t in pair]
        self._flat: list[tf.Variable] = []
        self._optimizer: keras.optimizers.Optimizer | None = None
        self._grads_fn: Callable[..., Any] | None = None
        self._step_fn: Callable[..., Any] | None = None

    @classmethod
    def unsupported(cls, spec: Spec, device: str = "cpu") -> str | None:
        reason = super().unsupported(spec, device)
        return reason or next((f"{cls.name} {why}" for why in gaps(spec)), None)

    def load(self, params: Params) -> None:
        """The first load builds the variables, the optimizer and the compiled functions;
        later loads assign into them and zero the optimizer's state (its step count and
        moments), which is exactly a fresh optimizer, without tracing anything again."""
        arrays = [np.asarray(t, dtype=self._np_dtype) for pair in params for t in pair]
        if not self._flat:
            self._flat = [self._tf.Variable(a, dtype=self._dtype, trainable=train)
                          for a, train in zip(arrays, self._trainable, strict=True)]
            self._build()
            return
        for var, a in zip(self._flat, arrays, strict=True):
            var.assign(a)
        for var in self._optimizer.variables:
            var.assign(self._tf.zeros_like(var))

    def _build(self) -> None:
        tf = self._tf
        self._optimizer = self._make_optimizer()
        self._optimizer.build(self._variables())
        self._grads_fn = tf.function(self._loss_and_grads, reduce_retracing=True)
        self._step_fn = tf.function(self._train_step, reduce_retracing=True)

    def _variables(self) -> list[tf.Variable]:
        return [v for v in self._flat if v.trainable]

    def _make_optimizer(self) -> Any:
        """The spec's optimizer as Keras computes it (see harness/optim.py for the maths).
        Every hyper-parameter is a scalar of the run's dtype, the learning rate a callable
        returning a constant of it: a float would be rounded through float32. Keras's
        `weight_decay` is decoupled, p - p wd lr before the step, for every optimizer."""
        opt, cast, optimizers = self.spec.optimizer, self._np_dtype.type, self._keras.optimizers
        rate = self._tf.constant(self.spec.training.learning_rate, dtype=self._dtype)
        common = {"learning_rate": lambda: rate,
                  "weight_decay": cast(opt.weight_decay) if opt.weight_decay else None}
        if opt.name == "adam":
            return optimizers.Adam(beta_1=cast(opt.beta1), beta_2=cast(opt.beta2),
                                   epsilon=cast(opt.eps), **common)
        if opt.name == "rmsprop":
            return optimizers.RMSprop(rho=cast(opt.rho), epsilon=cast(opt.eps), **common)
        if opt.name == "momentum":
            return optimizers.SGD(momentum=cast(opt.momentum), nesterov=opt.nesterov, **common)
        return optimizers.SGD(**common)

    def _activate(self, layer: Layer, z: tf.Tensor) -> tf.Tensor:
        """a = f(z), as in numpy_textbook.activation (relu and leaky_relu kinks included)."""
        kind, tf = layer.activation, self._tf
        if kind == "sigmoid":
            return tf.sigmoid(z)
        if kind == "tanh":
            return tf.tanh(z)
        if kind == "relu":
            return tf.nn.relu(z)                            # derivative 0 at z = 0
        if kind == "leaky_relu":                            # derivative slope at z = 0
            # tf.constant, not tf.cast: a cast rounds the Python float through float32
            slope = tf.constant(layer.negative_slope, dtype=z.dtype)
            return tf.where(z > 0, z, slope * z)
        if kind == "softmax":
            return tf.nn.softmax(z, axis=1)
        return z                                            # identity

    def _layers(self, x: tf.Tensor, masks: tuple) -> tuple[list, list]:
        """Every layer's z and a = f(z), input layer first; h is x, then the layer below's a
        times its dropout mask. (Inside a tf.function an output activation the loss does not
        read, softmax under cross_entropy, is pruned from the graph.) Image layers compute in
        NHWC, TensorFlow's CPU layout: x and the masks arrive (rows, units) in C, H, W order
        and are transposed here; `units` turns a z or a back."""
        zs, acts, flat = [], [], self._flat
        h = self._nhwc(x, self.spec.model.layers[0].in_shape)
        for i, layer in enumerate(self.spec.model.layers):
            zs.append(self._linear(layer, h, flat[2 * i], flat[2 * i + 1]))
            acts.append(self._activate(layer, zs[-1]))
            mask = masks[i] if masks else None
            h = acts[-1] if mask is None else acts[-1] * self._nhwc(mask, layer.out_shape)
        return zs, acts

    def _nhwc(self, rows: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
        """(rows, C*H*W) in C, H, W order as NHWC; a flat shape as it is."""
        if len(shape) != 3:
            return rows
        return self._tf.transpose(self._tf.reshape(rows, (-1, *shape)), (0, 2, 3, 1))

    def _linear(self, layer: Layer, h: tf.Tensor, w: tf.Variable, b: tf.Variable) -> tf.Tensor:
        """z of one layer: h @ W + b; a conv's canonical kernel (F, C, kh, kw) read as
        TensorFlow's HWIO inside the graph (so its gradient comes back in the canonical
        layout), explicit symmetric padding; the pools; flatten back in C, H, W order."""
        tf = self._tf
        window, strides = (layer.kernel, layer.kernel), (layer.stride, layer.stride)
        if layer.kind == "conv2d":
            pad = [[0, 0], [layer.pad] * 2, [layer.pad] * 2, [0, 0]]
            return tf.nn.conv2d(h, tf.transpose(w, (2, 3, 1, 0)), strides, pad) + b
        if layer.kind == "maxpool2d":
            return tf.nn.max_pool2d(h, window, strides, "VALID")
        if layer.kind == "avgpool2d":
            return tf.nn.avg_pool2d(h, window, strides, "VALID")
        if layer.kind == "flatten":
            return units(tf, h)
        return h @ w + b

    def _data_loss(self, z: tf.Tensor, a: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """The spec's loss; bce and cross_entropy from the logits z, as the NumPy reference,
        the squared losses from the output a."""
        name, tf = self.spec.loss.name, self._tf
        if name == "cross_entropy":
            return tf.reduce_mean(-tf.reduce_sum(y * tf.nn.log_softmax(z, axis=1), axis=1))
        if name == "bce":
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))
        squares = tf.square(a - y)
        return tf.reduce_mean(squares) if name == "mse" else 0.5 * tf.reduce_sum(squares)

    def _loss(self, x: tf.Tensor, y: tf.Tensor, masks: tuple) -> tf.Tensor:
        zs, acts = self._layers(x, masks)
        return self._objective(zs[-1], acts[-1], y)

    def _objective(self, z: tf.Tensor, a: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Training loss from the output layer's z and a: the data loss (with dropout
        already in them) plus l2/2 * sum of squared weights."""
        loss, l2 = self._data_loss(z, a, y), self.spec.loss.l2
        if l2:
            half = self._tf.constant(0.5 * l2, dtype=self._dtype)
            loss += half * self._tf.add_n([self._tf.reduce_sum(w * w) for w in self._flat[0::2]])
        return loss

    def _loss_and_grads(self, x: tf.Tensor, y: tf.Tensor, masks: tuple) -> tuple:
        with self._tf.GradientTape() as tape:
            loss = self._loss(x, y, masks)
        return loss, tape.gradient(loss, self._variables())

    def _train_step(self, x: tf.Tensor, y: tf.Tensor, masks: tuple) -> tf.Tensor:
        loss, grads = self._loss_and_grads(x, y, masks)
        self._optimizer.apply_gradients(zip(grads, self._variables(), strict=True))
        return loss

    def _inputs(self, batch: Batch) -> tuple[tf.Tensor, tf.Tensor, tuple]:
        """The batch as tensors of the run's dtype (masks: None where a layer has none)."""
        masks = tuple(None if m is None else self._tensor(m) for m in batch.masks)
        return self._tensor(batch.x), self._tensor(batch.y), masks

    def _tensor(self, array: np.ndarray) -> tf.Tensor:
        return self._tf.constant(array, dtype=self._dtype)

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        """The tape's gradient; no variable or optimizer state changes."""
        loss, grads = self._grads_fn(*self._inputs(batch))
        grads = iter(grads)
        flat = [next(grads).numpy() if v.trainable else np.zeros(v.shape, self._np_dtype)
                for v in self._flat]
        return float(loss), [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    def train_step(self, batch: Batch) -> float:
        return float(self._step_fn(*self._inputs(batch)))

    def params(self) -> Params:
        arrays = [v.numpy().copy() for v in self._flat]
        return [(arrays[i], arrays[i + 1]) for i in range(0, len(arrays), 2)]

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        x, y, _ = self._inputs(batch)
        zs, acts = self._layers(x, ())
        return float(self._data_loss(zs[-1], acts[-1], y)), acts[-1].numpy()

    def trace(self, batch: Batch) -> Trace:
        """Every layer's z and a from the same forward pass as the loss, run eagerly under a
        tape; dJ/dz and dJ/da are the tape's gradients with respect to those tensors (each is
        computed from a trainable W, so the tape records them; dJ/da at a cross_entropy or
        bce output is None: the loss never reads it). The loss and parameter gradients are
        `loss_and_grads`'s own, from its compiled function. No state changes."""
        x, y, masks = self._inputs(batch)
        with self._tf.GradientTape() as tape:
            zs, acts = self._layers(x, masks)
            loss = self._objective(zs[-1], acts[-1], y)
        dz, da = tape.gradient(loss, (zs, acts))
        value, grads = self.loss_and_grads(batch)
        applied = masks or (None,) * len(zs)
        flat = [[None if t is None else units(self._tf, t) for t in ts]
                for ts in (zs, acts, da, dz)]
        return Trace(x=x.numpy(), masks=arrays(applied), z=arrays(flat[0]),
                     a=arrays(flat[1]), loss=value, da=arrays(flat[2]), dz=arrays(flat[3]),
                     grads=grads)

    def export_state(self) -> optim.State | None:
        """Keras's optimizer variables in harness.optim's layout: `count` is `iterations`;
        RMSprop's `velocity` is s and Adam's `momentum` / `velocity` are m / v, the same
        quantities (Adam's folded bias correction lives in its step size, not its moments).
        Keras's SGD keeps its velocity scaled: m <- mu m - lr g, p <- p + m, so m = -lr v;
        exported as -m / lr and loaded as -lr v, one rounding each way. None for momentum =
        0: Keras's SGD then keeps no velocity, and harness.optim's v (the last gradient)
        cannot be read back from anything it keeps."""
        if self._keeps_no_velocity():
            return None
        first, second = (self._spread(variables, scale) for variables, scale in
                         zip(self._moments(), self._scales(), strict=True))
        return optim.State(int(self._optimizer.iterations.numpy()), first, second)

    def load_state(self, state: optim.State) -> bool:
        """Assign `state` into Keras's variables (converted as `export_state` says): its
        moments, and `iterations`, the step count Adam's bias correction reads. False for
        momentum = 0 (see `export_state`). ValueError where `state`'s layout is not the one
        harness.optim.init gives this spec."""
        if self._keeps_no_velocity():
            return False
        for variables, slots, scale in zip(self._moments(), (state.first, state.second),
                                           self._scales(), strict=True):
            for var, value in zip(variables, self._kept(slots, bool(variables)), strict=True):
                var.assign(np.asarray(value, self._np_dtype) * scale)
        self._optimizer.iterations.assign(int(state.count))
        return True

    def _keeps_no_velocity(self) -> bool:
        opt = self.spec.optimizer
        return opt.name == "momentum" and opt.momentum == 0

    def _moments(self) -> tuple[list, list]:
        """Keras's variables holding (first, second), one per trainable tensor; [] where the
        optimizer keeps none."""
        return tuple([] if attr is None else list(getattr(self._optimizer, attr))
                     for attr in MOMENTS[self.spec.optimizer.name])

    def _scales(self) -> tuple[np.generic, np.generic]:
        """Keras's (first, second) = scale * harness.optim's: -lr for SGD's velocity."""
        one = self._np_dtype.type(1)
        if self.spec.optimizer.name == "momentum":
            return -self._np_dtype.type(self.spec.training.learning_rate), one
        return one, one

    def _spread(self, variables: list, scale: np.generic) -> optim.Slots:
        """One entry per tensor [W0, b0, ...]: the variable's value / scale, None for a
        frozen tensor or where the optimizer keeps nothing."""
        values = iter(variables)
        return tuple(next(values).numpy() / scale if variables and train else None
                     for train in self._trainable)

    def _kept(self, slots: optim.Slots, keeps: bool) -> list[np.ndarray]:
        """The arrays of `slots` for the trainable tensors; ValueError unless `slots` has
        an array (of the tensor's shape) exactly where harness.optim.init puts one."""
        want = [tuple(v.shape) if keeps and train else None
                for v, train in zip(self._flat, self._trainable, strict=True)]
        got = [None if s is None else np.shape(s) for s in slots]
        if got != want:
            raise ValueError(f"optimizer state layout {got} is not this spec's {want}")
        return [s for s in slots if s is not None]

    @classmethod
    def set_threads(cls, n: int) -> None:
        """TF's intra-op and inter-op pools to `n` threads. TF accepts this only before its
        runtime starts; afterwards it raises RuntimeError unless the count is unchanged, and
        the pools keep the size they started with (the bench sets threads before any
        construction, so its timings are taken at the requested count)."""
        quiet()
        import tensorflow as tf

        threading = tf.config.threading
        for get, put in ((threading.get_intra_op_parallelism_threads,
                          threading.set_intra_op_parallelism_threads),
                         (threading.get_inter_op_parallelism_threads,
                          threading.set_inter_op_parallelism_threads)):
            if get() != n:
                try:
                    put(n)
                except RuntimeError:
                    return

    @classmethod
    def gemm(cls, operands: list[Operands], device: str = "cpu") -> Products:
        """The step's products by tf.linalg.matmul, compiled by tf.function, on tensors
        converted once (see Backend.gemm)."""
        quiet()
        import tensorflow as tf

        tensors = [tuple(tf.constant(a) for a in ops) for ops in operands]

        @tf.function
        def products() -> list:
            return [(h @ w, tf.linalg.matmul(h, d, transpose_a=True),
                     tf.linalg.matmul(d, w, transpose_b=True) if i > 0 else None)
                    for i, (h, w, d) in enumerate(tensors)]

        return products, lambda: None                       # CPU ops finish before returning

    @classmethod
    def gemm_library(cls) -> str:
        """TF's CPU matmul library: oneDNN when TF_ENABLE_ONEDNN_OPTS turns it on, else Eigen."""
        quiet()
        import tensorflow as tf

        onednn = os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
        return f"tensorflow {tf.__version__}: {'oneDNN' if onednn else 'Eigen'} matmul"
