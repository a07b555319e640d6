"""JAX backend: the network as pure functions of a parameter pytree, `jax.value_and_grad` for
the gradient, `optax` for the optimizer, and one `jax.jit`-compiled call per training step.

Parameters are a list of (W, b) with W shaped (fan_in, fan_out): z = h @ W + b, as in NumPy.
x64 is switched on for every dtype so float32 and float64 runs can share one process; every
array is therefore created in the spec's dtype explicitly (jnp defaults to float64 under x64).
Matmuls use Precision.HIGHEST so that GPUs compute in full precision, never in TF32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Operands, Products, Trace, trainable_mask
from harness.data import Batch
from harness.params import Params
from harness.spec import LAYER_TYPES, LOGIT_LOSSES, Layer, Spec

if TYPE_CHECKING:
    import jax
    import optax

# the losses `_data_loss` computes from the logits z: J never goes through the output's a
# optax's state fields holding harness.optim's slots: `first` (TraceState.trace of momentum,
# ScaleByAdamState.mu) and `second` (ScaleByRmsState.nu, ScaleByAdamState.nu)
FIRST, SECOND = ("trace", "mu"), ("nu",)


def _activate(layer: Layer, z: jax.Array) -> jax.Array:
    """a = f(z), the same maths as `numpy_textbook.activation`."""
    import jax
    import jax.numpy as jnp

    functions = {
        "sigmoid": jax.nn.sigmoid,
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,                              # derivative 0 at the kink, as ours
        # by hand: jax.nn.leaky_relu's derivative at exactly 0 is 1, the reference's the slope
        "leaky_relu": lambda z: jnp.where(z > 0, z, layer.negative_slope * z),
        "softmax": lambda z: jax.nn.softmax(z, axis=-1),
        "identity": lambda z: z,
    }
    return functions[layer.activation](z)


def _linear(layer: Layer, w: jax.Array, b: jax.Array, h: jax.Array) -> jax.Array:
    """z of one layer: h @ w + b; the conv by lax.conv_general_dilated told the canonical
    layouts (images NCHW, kernels OIHW = (filters, channels, kh, kw)), so nothing is
    transposed; pools by lax.reduce_window over the (1, 1, k, k) window; flatten in C, H, W
    order."""
    import jax
    import jax.numpy as jnp

    lax, highest = jax.lax, jax.lax.Precision.HIGHEST
    strides, window = (1, 1, layer.stride, layer.stride), (1, 1, layer.kernel, layer.kernel)
    if layer.kind == "conv2d":
        z = lax.conv_general_dilated(h, w, (layer.stride, layer.stride), [(layer.pad,) * 2] * 2,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     precision=highest)
        return z + b[None, :, None, None]
    if layer.kind == "maxpool2d":
        return lax.reduce_window(h, np.array(-np.inf, h.dtype), lax.max, window, strides,
                                 "VALID")
    if layer.kind == "avgpool2d":
        total = lax.reduce_window(h, np.array(0, h.dtype), lax.add, window, strides, "VALID")
        return total / jnp.array(layer.kernel * layer.kernel, h.dtype)
    if layer.kind == "flatten":
        return h.reshape(h.shape[0], -1)
    return jnp.matmul(h, w, precision=highest) + b


def _forward(layers: tuple[Layer, ...], params: list, x: jax.Array, masks: tuple,
             nudges: tuple | None = None) -> tuple[list, list]:
    """z_l and a_l = f(z_l) of every layer (the last: logits and outputs); masks[i] (inverted
    dropout, already scaled, (n, units)) multiplies layer i's activation when present.
    `nudges`, two lists of (n, units) arrays added to every z_l and a_l, are zeros whose
    gradients are dJ/dz_l and dJ/da_l (the trace); without them nothing is added."""
    h, zs, acts = x.reshape(x.shape[0], *layers[0].in_shape), [], []
    for i, (layer, (w, b)) in enumerate(zip(layers, params, strict=True)):
        z = _linear(layer, w, b, h)
        if nudges:
            z = z + nudges[0][i].reshape(z.shape)
        a = _activate(layer, z)
        if nudges:
            a = a + nudges[1][i].reshape(a.shape)
        zs.append(z)
        acts.append(a)
        h = a * masks[i].reshape(a.shape) if masks and masks[i] is not None else a
    return zs, acts


def _data_loss(loss: str, z: jax.Array, a: jax.Array, y: jax.Array) -> jax.Array:
    """The loss without L2; bce and cross_entropy from the logits z, as the reference does."""
    import jax
    import jax.numpy as jnp

    if loss == "cross_entropy":
        return jnp.mean(-jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=1))
    if loss == "bce":
        # softplus(z) - y z with softplus = logaddexp(z, 0): smooth, so its derivative at z = 0
        # is exactly sigmoid(0). The max(z, 0) + log1p(exp(-|z|)) form has two kinks there
        # whose subgradients JAX does not pair up (a dropped or dead row gives z = 0 exactly).
        return jnp.mean(jnp.logaddexp(z, 0.0) - y * z)
    err = a - y
    return jnp.mean(err * err) if loss == "mse" else 0.5 * jnp.sum(err * err)   # half_sse


def _folded_adam(b1: np.floating, b2: np.floating, eps: np.floating,
                 inside: bool) -> optax.GradientTransformation:
    """Adam with the step size folded (sklearn, Keras): d = c_t m / (sqrt(v) + eps) with
    c_t = sqrt(1 - b2^t) / (1 - b1^t) (sqrt(v + eps) with eps inside). optax has no such
    transform; this one reuses optax's state type and moment updates."""
    import jax
    import jax.numpy as jnp
    import optax

    def init(params: Any) -> optax.ScaleByAdamState:
        # two separate trees: a buffer shared by m and v could not be donated to the step
        zeros = optax.tree.zeros_like
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), zeros(params), zeros(params))

    def update(grads: Any, state: optax.ScaleByAdamState,
               params: Any = None) -> tuple[Any, optax.ScaleByAdamState]:
        del params
        mu = optax.tree.update_moment(grads, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        c = jnp.sqrt(1 - b2**count) / (1 - b1**count)
        root = (lambda v: jnp.sqrt(v + eps)) if inside else (lambda v: jnp.sqrt(v) + eps)
        return (jax.tree.map(lambda m, v: c * m / root(v), mu, nu),
                optax.ScaleByAdamState(count, mu, nu))

    return optax.GradientTransformation(init, update)


def _optimizer(spec: Spec) -> optax.GradientTransformation:
    """The `harness.optim` maths: direction d, decoupled decay, then p += -lr * (d + wd * p);
    frozen tensors get a zero update (no state, no decay). Hyper-parameters are cast to the
    spec dtype first, as the reference does (a Python float would make optax's bias
    correction compute in float64 under x64)."""
    import optax

    opt, cast = spec.optimizer, np.dtype(spec.dtype).type
    eps, zero = cast(opt.eps), cast(0.0)
    inside = opt.eps_placement == "inside"
    if opt.name == "momentum":
        direction = optax.trace(decay=cast(opt.momentum), nesterov=opt.nesterov)
    elif opt.name == "rmsprop":
        direction = optax.scale_by_rms(decay=cast(opt.rho), eps=eps, initial_scale=zero,
                                       eps_in_sqrt=inside)
    elif opt.name == "adam" and opt.bias_correction == "folded":
        direction = _folded_adam(cast(opt.beta1), cast(opt.beta2), eps, inside)
    elif opt.name == "adam":
        direction = optax.scale_by_adam(b1=cast(opt.beta1), b2=cast(opt.beta2),
                                        eps=zero if inside else eps,
                                        eps_root=eps if inside else zero)
    else:
        direction = optax.identity()
    decay = [optax.add_decayed_weights(cast(opt.weight_decay))] if opt.weight_decay else []
    step = optax.chain(direction, *decay, optax.scale(-cast(spec.training.learning_rate)))
    labels = [tuple("train" if t else "frozen" for t in pair) for pair in trainable_mask(spec)]
    return optax.partition({"train": step, "frozen": optax.set_to_zero()}, labels)


class JaxGrad(Backend):
    """Autodiff by `jax.value_and_grad`, updates by `optax`, all jitted."""

    name: ClassVar[str] = "jax"
    framework: ClassVar[str | None] = "jax"
    capabilities: ClassVar[Capabilities] = Capabilities(
        devices=frozenset({"cpu", "cuda"}), layer_types=frozenset(LAYER_TYPES),
        conventions={("model.pool_ties", "split"):
                     "the gradient of lax.reduce_window's max is select_and_scatter_add with "
                     "a >= select: a tied window's gradient goes to the first maximum only"})

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        import jax
        import jax.numpy as jnp
        import optax

        jax.config.update("jax_enable_x64", True)       # before any array of ours exists
        self.dtype = np.dtype(spec.dtype)
        target = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        self._put: Callable[[Any], Any] = lambda tree: jax.device_put(tree, target)
        self._block: Callable[[Any], Any] = jax.block_until_ready
        self._tx = tx = _optimizer(spec)
        # jitted: the finite-difference oracle reloads a backend thousands of times, and
        # building optax's state tree op by op costs ~2 ms a load
        self._init = jax.jit(tx.init)
        layers, loss, l2 = spec.model.layers, spec.loss.name, spec.loss.l2
        mask = trainable_mask(spec)

        def objective(params: list, x: jax.Array, y: jax.Array, masks: tuple,
                      nudges: tuple | None = None) -> tuple[jax.Array, tuple[list, list]]:
            zs, acts = _forward(layers, params, x, masks, nudges)
            value = _data_loss(loss, zs[-1], acts[-1], y)
            if l2:
                value = value + 0.5 * l2 * sum(jnp.sum(w * w) for w, _ in params)
            return value, (zs, acts)

        value_and_grad = jax.value_and_grad(objective, has_aux=True)

        def frozen_to_zero(grads: list) -> list:
            return jax.tree.map(lambda g, t: g if t else jnp.zeros_like(g), grads, mask)

        def loss_and_grads(params: list, x: jax.Array, y: jax.Array,
                           masks: tuple) -> tuple[jax.Array, list]:
            (value, _), grads = value_and_grad(params, x, y, masks)
            return value, frozen_to_zero(grads)

        def trace(params: list, x: jax.Array, y: jax.Array, masks: tuple) -> tuple:
            """value, z, a, gradients, dJ/dz, dJ/da: the gradient with respect to zero
            nudges of every z_l and a_l too."""
            zeros = [jnp.zeros((x.shape[0], layer.size), x.dtype) for layer in layers]
            (value, (zs, acts)), (grads, (dz, da)) = jax.value_and_grad(
                objective, argnums=(0, 4), has_aux=True)(params, x, y, masks, (zeros, zeros))
            return value, zs, acts, frozen_to_zero(grads), dz, da

        def train_step(params: list, state: Any, x: jax.Array, y: jax.Array,
                       masks: tuple) -> tuple[jax.Array, list, Any]:
            (value, _), grads = value_and_grad(params, x, y, masks)
            updates, state = tx.update(grads, state, params)
            return value, optax.apply_updates(params, updates), state

        def evaluate(params: list, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
            zs, acts = _forward(layers, params, x, ())
            return _data_loss(loss, zs[-1], acts[-1], y), acts[-1]

        self._loss_and_grads = jax.jit(loss_and_grads)
        self._trace = jax.jit(trace)
        # donated: the step overwrites the old parameters and optimizer state in place
        self._train_step = jax.jit(train_step, donate_argnums=(0, 1))
        self._evaluate = jax.jit(evaluate)

    def _arrays(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, tuple]:
        """x, y and masks in the spec dtype; jit moves them to the device of the parameters."""
        masks = tuple(None if m is None else np.asarray(m, self.dtype) for m in batch.masks)
        return np.asarray(batch.x, self.dtype), np.asarray(batch.y, self.dtype), masks

    def load(self, params: Params) -> None:
        self._params = self._put([(np.array(w, self.dtype), np.array(b, self.dtype))
                                  for w, b in params])
        self._state = self._put(self._init(self._params))
        self._steps = 0                  # steps taken, for the optimizers optax counts none for

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        value, grads = self._loss_and_grads(self._params, *self._arrays(batch))
        return float(value), [(np.array(dw), np.array(db)) for dw, db in grads]

    def trace(self, batch: Batch) -> Trace:
        """One jitted call (see `trace` in __init__): no state changes, nothing donated.
        dJ/da of the output layer is None for the losses computed from the logits."""
        x, y, masks = self._arrays(batch)
        value, zs, acts, grads, dz, da = self._trace(self._params, x, y, masks)
        last = len(zs) - 1
        return Trace(x=x.copy(), masks=tuple(None if m is None else m.copy()
                                             for m in masks or (None,) * len(zs)),
                     z=tuple(map(_units, zs)), a=tuple(map(_units, acts)),
                     loss=float(value),
                     da=tuple(None if i == last and self.spec.loss.name in LOGIT_LOSSES
                              else np.array(d) for i, d in enumerate(da)),
                     dz=tuple(map(np.array, dz)),
                     grads=[(np.array(dw), np.array(db)) for dw, db in grads])

    def _found(self, keys: tuple[str, ...]) -> Any:
        """The one field of the optax state named by one of `keys`, or None."""
        import optax

        return next((value for key in keys
                     if (value := optax.tree.get(self._state, key)) is not None), None)

    def export_state(self) -> optim.State:
        """optax's state in harness.optim's layout (see FIRST and SECOND; the folded Adam
        reuses ScaleByAdamState): frozen tensors hold optax.MaskedNode, exported as None. The
        count is Adam's where it keeps one, else the steps this backend counted."""
        import optax

        def slots(tree: Any) -> optim.Slots:
            if tree is None:
                return (None,) * 2 * len(self._params)
            return tuple(None if isinstance(t, optax.MaskedNode) else np.array(t)
                         for pair in tree for t in pair)

        count = self._found(("count",))
        return optim.State(self._steps if count is None else int(count),
                           slots(self._found(FIRST)), slots(self._found(SECOND)))

    def load_state(self, state: optim.State) -> bool:
        """A new optax state of the same structure, dtypes (Adam's count int32) and device,
        its fields set from `state`'s copies: the old buffers are dropped (a donated step
        may reuse them), the new ones shared with no caller."""
        import jax
        import optax

        def tree(slots: optim.Slots) -> list:
            leaves = [optax.MaskedNode() if s is None else np.array(s, self.dtype)
                      for s in slots]
            return list(zip(leaves[0::2], leaves[1::2], strict=True))

        fields = {key: tree(slots) for keys, slots in ((FIRST, state.first),
                                                       (SECOND, state.second))
                  for key in keys if optax.tree.get(self._state, key) is not None}
        if optax.tree.get(self._state, "count") is not None:
            fields["count"] = np.asarray(state.count, np.int32)
        new = optax.tree.set(self._state, **fields) if fields else self._state
        if jax.tree.structure(new) != jax.tree.structure(self._state):
            raise ValueError(f"optimizer state does not fit {self.spec.optimizer.name}'s: "
                             f"{jax.tree.structure(new)}")
        self._state = self._put(new)
        self._steps = int(state.count)
        return True

    def train_step(self, batch: Batch) -> float:
        value, self._params, self._state = self._train_step(self._params, self._state,
                                                             *self._arrays(batch))
        self._steps += 1
        return float(value)

    def params(self) -> Params:
        return [(np.array(w), np.array(b)) for w, b in self._params]

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        x, y, _ = self._arrays(batch)
        value, outputs = self._evaluate(self._params, x, y)
        return float(value), np.array(outputs)

    def sync(self) -> None:
        self._block(self._params)

    @classmethod
    def gemm(cls, operands: list[Operands], device: str = "cpu") -> Products:
        """The step's products in one jitted function (see Backend.gemm); XLA allocates the
        results, as it does inside a training step."""
        import jax

        jax.config.update("jax_enable_x64", True)      # keeps float64 operands float64
        target = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        arrays = jax.device_put([tuple(ops) for ops in operands], target)

        @jax.jit
        def products(layers: list) -> list:
            return [(h @ w, h.T @ d, d @ w.T if i > 0 else None)
                    for i, (h, w, d) in enumerate(layers)]

        last: list = []

        def call() -> list:
            last[:] = [products(arrays)]
            return last[0]
        return call, lambda: jax.block_until_ready(last)

    @classmethod
    def gemm_library(cls) -> str:
        """XLA's dot: Eigen's contraction kernels on CPU unless XLA_FLAGS route it to oneDNN."""
        import jax
        import jaxlib

        platform = jax.devices()[0].platform
        kernel = "Eigen contraction (XLA_FLAGS may route it to oneDNN)" if platform == "cpu" \
            else platform
        return f"jaxlib {jaxlib.__version__}: XLA:{platform.upper()} dot, {kernel}"


def _units(array: jax.Array) -> np.ndarray:
    """A layer's array as the trace holds it: (n, units), units in C, H, W order."""
    return np.array(array).reshape(array.shape[0], -1)
