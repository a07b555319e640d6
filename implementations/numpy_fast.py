"""The tuned twin of the textbook `numpy` backend (implementations/numpy_textbook.py): the
same chain rule and the same optimizer maths, rewritten for speed. The conformance suite
(`harness conformance numpy_fast`) proves it equal to the textbook in float64, gradients and
trajectories; read the textbook to learn the maths, run this one to time it.

Notation for layer l (rows of every array are the samples of the batch), as in the textbook:
    z_l = h_{l-1} @ W_l + b_l        pre-activation ("logits" at the output)
    a_l = f_l(z_l)                   activation
    h_l = a_l * mask_l               inverted dropout (mask already scaled by 1/(1 - drop_prob))
    delta_l = dL/dz_l:  dL/dW_l = h_{l-1}^T @ delta_l,  dL/db_l = sum of delta_l over the batch,
    delta_{l-1} = (delta_l @ W_l^T) * mask_{l-1} * f'_{l-1}(z_{l-1})

What is tuned:
- every array of a step lives in a `Workspace` allocated once per batch size and overwritten
  in place (`out=`), so a training step allocates almost nothing; transposes are views that
  BLAS reads directly;
- the optimizer (`InPlaceOptimizer`) writes into the parameters and its own moment buffers,
  the in-place twin of the pure `harness.optim`: on large tensors a fresh array per step
  costs as much as the arithmetic;
- plain SGD folds the learning rate into the output delta (backprop is linear in it), and
  large weight matrices take their step inside the GEMM that computes their gradient
  (implementations.blas: C += alpha A B).

Image layers keep the workspace flat, (rows, units) in C, H, W order like the textbook's
trace, and read it as NCHW views: conv2d is im2col and one GEMM each way
(`implementations.im2col`), the pools are the textbook's (already vectorised over samples and
channels: a handful of k x k offsets), flatten is a copy. Activations, dropout and the
optimizer are the dense code unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Trace, trainable_flags
from harness.data import Batch
from harness.params import Params
from harness.spec import LAYER_TYPES, Layer, Optimizer, Spec
from implementations import blas, im2col
from implementations import textbook_layers as image

# Weight matrices from this many entries descend inside their GEMM: below it the ctypes call
# costs more than the update pass it saves (measurements: docs/benchmarking.md).
BLAS_DESCENT_MIN_SIZE = 128 * 128
# Plain SGD folds lr into the output delta only where that cannot overflow when the plain
# maths does not: scaled by lr <= 1 every intermediate of the backward pass is no larger
# than unscaled. A larger lr (1e300 in a hostile spec) would turn a finite delta @ W^T into
# Inf, and Inf times a ReLU's zero derivative into NaN; it takes the optimizer's path.
FOLD_LR_MAX = 1.0


def descends_in_gemm(p: np.ndarray, descend: blas.AddProduct | None) -> bool:
    """Whether parameter p (a weight matrix large enough) takes its SGD step inside BLAS."""
    return descend is not None and p.ndim == 2 and p.size >= BLAS_DESCENT_MIN_SIZE


def activate(layer: Layer, z: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """out = f(z), in place (`scratch` is clobbered). No masked `where=` ufuncs: they are
    much slower than plain ones."""
    kind = layer.activation
    if kind == "sigmoid":
        # sigmoid(z) = exp(min(z, 0)) / (1 + exp(-|z|)): never overflows, exact in both tails
        np.minimum(z, 0.0, out=out)
        np.exp(out, out=out)
        np.abs(z, out=scratch)
        np.negative(scratch, out=scratch)
        np.exp(scratch, out=scratch)
        scratch += 1.0
        out /= scratch
    elif kind == "tanh":
        np.tanh(z, out=out)
    elif kind == "relu":
        np.maximum(z, 0.0, out=out)
    elif kind == "leaky_relu":
        np.multiply(z, layer.negative_slope, out=out)
        np.maximum(z, out, out=out)                       # = z if z > 0 else slope * z
    elif kind == "softmax":
        np.subtract(z, z.max(axis=1, keepdims=True), out=out)   # shift: e^z never overflows
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
    else:
        np.copyto(out, z)                                 # identity
    return out


def activation_grad(layer: Layer, delta: np.ndarray, z: np.ndarray, a: np.ndarray,
                    scratch: np.ndarray) -> None:
    """delta *= f'(z), in place, using the already computed a = f(z) where cheaper."""
    kind = layer.activation
    if kind == "sigmoid":
        np.subtract(1.0, a, out=scratch)
        scratch *= a                                      # s' = s (1 - s)
        delta *= scratch
    elif kind == "tanh":
        np.subtract(1.0, a, out=scratch)                  # tanh' = 1 - tanh^2 = (1-a)(1+a):
        scratch *= 1.0 + a                                # 1 - a is exact near saturation,
        delta *= scratch                                  # 1 - a*a cancels to noise there
    elif kind == "relu":
        np.multiply(delta, z > 0, out=delta)              # 1 where active; 0 at the kink
    elif kind == "leaky_relu":
        slope = layer.negative_slope
        np.multiply(z > 0, 1.0 - slope, out=scratch)
        scratch += slope                                  # 1 where z > 0, else the slope
        delta *= scratch
    # identity: f' = 1


def loss_and_delta(loss: str, z: np.ndarray, a: np.ndarray, y: np.ndarray, out: Layer,
                   delta: np.ndarray, scratch: np.ndarray) -> float:
    """The data loss; writes delta = dL/dz at the output layer into `delta`.

    bce and cross_entropy are computed from the logits z, never from a = f(z): log(sigmoid)
    and log(softmax) lose every digit (and give NaN gradients) for large |z|."""
    n, k = y.shape
    if loss == "cross_entropy":
        # L = mean_n [ logsumexp(z) * sum_k y - sum_k y z ];  dL/dz = (softmax(z) sum_k y - y) / n
        # in logits shifted by their max, s = z - max z: logsumexp(s) is log(1 + small) and
        # sum y s is 0 for a confident right answer, so a tiny loss is not the difference of
        # two numbers of the size of max z (which costs ulp(max z) / L of its accuracy)
        shifted = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        ysum = y.sum(axis=1, keepdims=True)
        value = float(np.sum(lse * ysum - (y * shifted).sum(axis=1, keepdims=True)) / n)
        np.multiply(a, ysum, out=delta)
        delta -= y
        delta /= n
        return value
    if loss == "bce":
        # L = mean [ max(z, 0) - y z + log(1 + e^-|z|) ];  dL/dz = (sigmoid(z) - y) / (n k)
        value = float(np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))))
        np.subtract(a, y, out=delta)
        delta /= n * k
        return value
    np.subtract(a, y, out=delta)                          # err = a - y
    if loss == "mse":
        value = float(np.mean(delta * delta))             # L = mean over batch and outputs
        delta *= 2.0 / (n * k)                            # dL/da = 2 err / (n k)
    else:
        value = float(0.5 * np.sum(delta * delta))        # half_sse: L = 1/2 sum err^2
    activation_grad(out, delta, z, a, scratch)            # chain rule through f at the output
    return value


def _root(x: np.ndarray, opt: Optimizer, out: np.ndarray) -> np.ndarray:
    """out = sqrt(x) + eps, or sqrt(x + eps) with eps_placement = inside."""
    eps = x.dtype.type(opt.eps)
    if opt.eps_placement == "outside":
        np.sqrt(x, out=out)
        out += eps
    else:
        np.add(x, eps, out=out)
        np.sqrt(out, out=out)
    return out


def _mean_square(second: np.ndarray, g: np.ndarray, decay: np.floating,
                 out: np.ndarray) -> None:
    """second = decay * second + (1 - decay) * g^2, in place (`out` is clobbered)."""
    second *= decay
    np.multiply(g, g, out=out)
    out *= 1 - decay
    second += out


def direction(opt: Optimizer, g: np.ndarray, first: np.ndarray | None,
              second: np.ndarray | None, t: int, out: np.ndarray) -> np.ndarray:
    """harness.optim's moments and direction d of one tensor at step t (1-based), in place:
    moves `first` and `second` forward; the result may be `g`, `first` or `out`."""
    dt = g.dtype.type
    if opt.name == "sgd":
        return g
    if opt.name == "momentum":
        mu = dt(opt.momentum)
        first *= mu
        first += g                                        # v = mu v + g
        if not opt.nesterov:
            return first
        np.multiply(first, mu, out=out)
        out += g                                          # g + mu v
        return out
    if opt.name == "rmsprop":
        _mean_square(second, g, dt(opt.rho), out)
        return np.divide(g, _root(second, opt, out), out=out)
    b1, b2 = dt(opt.beta1), dt(opt.beta2)
    first *= b1
    np.multiply(g, 1 - b1, out=out)
    first += out                                          # m = b1 m + (1 - b1) g
    _mean_square(second, g, b2, out)                      # v = b2 v + (1 - b2) g^2
    if opt.bias_correction == "standard":
        np.divide(second, 1 - b2**t, out=out)             # v_hat
        np.divide(first, _root(out, opt, out), out=out)
        out /= 1 - b1**t                                  # m_hat / root(v_hat)
    else:
        np.divide(first, _root(second, opt, out), out=out)
        out *= np.sqrt(1 - b2**t) / (1 - b1**t)           # folded into the step size
    return out


class InPlaceOptimizer:
    """harness.optim's update written into the parameters and moment buffers it owns, with
    one scratch array per tensor: a step allocates nothing."""

    def __init__(self, opt: Optimizer, lr: float, params: list[np.ndarray],
                 trainable: list[bool]) -> None:
        def zeros(kept: bool) -> list[np.ndarray | None]:
            return [np.zeros_like(p) if kept and t else None
                    for p, t in zip(params, trainable, strict=True)]
        self.opt, self.lr, self.trainable, self.count = opt, lr, trainable, 0
        self.first = zeros(opt.name in ("momentum", "adam"))
        self.second = zeros(opt.name in ("rmsprop", "adam"))
        self.scratch = zeros(True)

    def export(self) -> optim.State:
        """The state in harness.optim's layout (copies)."""
        return optim.copy_state(optim.State(self.count, tuple(self.first), tuple(self.second)))

    def restore(self, state: optim.State) -> None:
        """Take over `state`'s values into the buffers this optimizer owns."""
        self.count = int(state.count)
        for mine, theirs in ((self.first, state.first), (self.second, state.second)):
            for i, (buffer, value) in enumerate(zip(mine, theirs, strict=True)):
                if (buffer is None) != (value is None):
                    raise ValueError(f"optimizer state slot {i}: expected "
                                     f"{'nothing' if buffer is None else 'an array'}")
                if buffer is not None:
                    np.copyto(buffer, value)

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """p = p (1 - lr wd) - lr d for every trainable p, in place."""
        self.count += 1
        opt = self.opt
        for i, (p, g, train) in enumerate(zip(params, grads, self.trainable, strict=True)):
            if not train:
                continue
            out = self.scratch[i]
            d = direction(opt, g, self.first[i], self.second[i], self.count, out)
            lr = p.dtype.type(self.lr)
            if opt.weight_decay:
                p *= 1 - lr * p.dtype.type(opt.weight_decay)
            np.multiply(d, lr, out=out)
            p -= out


class Workspace:
    """Every per-sample array of one batch size, allocated once and reused."""

    def __init__(self, layers: tuple[Layer, ...], rows: int, dtype: np.dtype) -> None:
        def new() -> list[np.ndarray]:
            return [np.empty((rows, layer.size), dtype) for layer in layers]
        self.z, self.a, self.h, self.delta, self.scratch = new(), new(), new(), new(), new()


class NumpyFast(Backend):
    """The textbook's forward, backward and optimizer, in preallocated buffers."""

    name: ClassVar[str] = "numpy_fast"
    framework: ClassVar[str | None] = "numpy"
    capabilities: ClassVar[Capabilities] = Capabilities(layer_types=frozenset(LAYER_TYPES))

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        self.layers = spec.model.layers
        self.trainable = trainable_flags(spec)
        self.dtype = np.dtype(spec.dtype)
        self._spaces: dict[int, Workspace] = {}
        self._cols: dict[int, np.ndarray] = {}           # conv layer -> im2col of its input
        # plain SGD's weight matrices descend inside their GEMM where NumPy's BLAS is
        # reachable (not with L2: its gradient term is not a product)
        self._descend = None if spec.loss.l2 else blas.accumulator(self.dtype)

    def load(self, params: Params) -> None:
        self._flat = [np.array(t, dtype=self.dtype) for pair in params for t in pair]
        self._grads = [np.zeros_like(t) for t in self._flat]
        self._optimizer = InPlaceOptimizer(self.spec.optimizer,
                                           self.spec.training.learning_rate, self._flat,
                                           self.trainable)

    def params(self) -> Params:
        return [(self._flat[i].copy(), self._flat[i + 1].copy())
                for i in range(0, len(self._flat), 2)]

    def _space(self, rows: int) -> Workspace:
        if rows not in self._spaces:
            self._spaces[rows] = Workspace(self.layers, rows, self.dtype)
        return self._spaces[rows]

    def _forward(self, x: np.ndarray, masks: tuple) -> Workspace:
        """Fills z, a and h (the dropped-out output) of every layer."""
        ws, h = self._space(len(x)), x
        for i, layer in enumerate(self.layers):
            z = self._linear(i, h, ws.z[i])
            h = activate(layer, z, ws.a[i], ws.scratch[i])
            if masks and masks[i] is not None:
                h = np.multiply(h, masks[i], out=ws.h[i])
        return ws

    def _linear(self, i: int, h: np.ndarray, out: np.ndarray) -> np.ndarray:
        """z_i into `out` (rows, units) from h_{i-1} (rows, units): h @ W + b, or the image
        layer on NCHW views of both (the conv keeps its im2col for the backward pass)."""
        layer, W, b = self.layers[i], self._flat[2 * i], self._flat[2 * i + 1]
        if layer.kind == "dense":
            np.matmul(h, W, out=out)
            out += b
            return out
        x, z = _nchw(h, layer.in_shape), _nchw(out, layer.out_shape)
        if layer.kind == "conv2d":
            self._cols[i] = im2col.im2col(layer, x)
            im2col.conv_forward(layer, self._cols[i], W, b, z)
        elif layer.kind == "flatten":
            np.copyto(out, h)
        else:
            np.copyto(z, image.pool_forward(layer, x))
        return out

    def _input_grad(self, i: int, delta: np.ndarray, ws: Workspace, h: np.ndarray,
                    out: np.ndarray) -> np.ndarray:
        """dJ/dh_{i-1} = delta_i W_i^T, or the image layer's input gradient, into `out`."""
        layer, W = self.layers[i], self._flat[2 * i]
        if layer.kind == "dense":
            return np.matmul(delta, W.T, out=out)
        x, d, dx = (_nchw(h, layer.in_shape), _nchw(delta, layer.out_shape),
                    _nchw(out, layer.in_shape))
        if layer.kind == "conv2d":
            im2col.conv_backward(layer, x.shape, self._cols[i], W, d, None, None, dx)
        elif layer.kind == "flatten":
            np.copyto(out, delta)
        elif layer.kind == "avgpool2d":
            np.copyto(dx, image.avgpool_backward(layer, x, d))
        else:
            z = _nchw(ws.z[i], layer.out_shape)
            np.copyto(dx, image.maxpool_backward(layer, x, z, d, self.spec.model.pool_ties))
        return out

    def _inputs(self, i: int, x: np.ndarray, ws: Workspace, masks: tuple) -> np.ndarray:
        """h_{i-1}: what layer i multiplied by its W."""
        if i == 0:
            return x
        return ws.h[i - 1] if masks and masks[i - 1] is not None else ws.a[i - 1]

    def _delta_below(self, i: int, delta: np.ndarray, ws: Workspace, h: np.ndarray,
                     masks: tuple) -> None:
        """delta_{i-1} = (delta_i W_i^T) * mask_{i-1} * f'_{i-1}(z_{i-1}), into ws.delta[i-1]."""
        below = self._input_grad(i, delta, ws, h, ws.delta[i - 1])
        if masks and masks[i - 1] is not None:
            below *= masks[i - 1]                                   # dropped units pass nothing
        activation_grad(self.layers[i - 1], below, ws.z[i - 1], ws.a[i - 1], ws.scratch[i - 1])

    def _weight_grads(self, i: int, delta: np.ndarray, h: np.ndarray,
                      descend: blas.AddProduct | None) -> None:
        """dJ/dW_i and dJ/db_i (a frozen bias keeps its zeros) into self._grads, or a large
        dense W's descent inside its GEMM; nothing for a layer without parameters."""
        layer, W, bias = self.layers[i], self._flat[2 * i], self.trainable[2 * i + 1]
        if layer.kind == "conv2d":
            im2col.conv_backward(layer, (), self._cols[i], W, _nchw(delta, layer.out_shape),
                                 self._grads[2 * i], self._grads[2 * i + 1] if bias else None,
                                 None)
        elif layer.kind == "dense":
            if bias:
                delta.sum(axis=0, out=self._grads[2 * i + 1])      # dL/db = sum_n delta
            if descends_in_gemm(W, descend):
                descend(W, h.T, delta, -1.0)                        # W -= h^T delta
            else:
                np.matmul(h.T, delta, out=self._grads[2 * i])       # dL/dW = h^T delta

    def _loss_and_grads(self, batch: Batch, scale: float = 1.0,
                        descend: blas.AddProduct | None = None) -> float:
        """Loss; `scale` times the gradients into self._grads ([dW0, db0, dW1, ...]).
        Backprop is linear in the output delta, so scaling it scales every gradient.
        With `descend` (BLAS c += alpha a b) the gradients of large weight matrices are not
        stored: each such W (weights are always trained) gets W -= scale * dW inside its
        GEMM. Only without L2: its gradient term is not a product and would be left out."""
        ws, last = self._forward(batch.x, batch.masks), len(self.layers) - 1
        value = loss_and_delta(self.spec.loss.name, ws.z[last], ws.a[last], batch.y,
                               self.layers[last], ws.delta[last], ws.scratch[last])
        if scale != 1.0:
            ws.delta[last] *= self.dtype.type(scale)
        for i in range(last, -1, -1):
            delta, h = ws.delta[i], self._inputs(i, batch.x, ws, batch.masks)
            if i > 0:                                               # before W_i changes:
                self._delta_below(i, delta, ws, h, batch.masks)     # it needs the old W_i
            self._weight_grads(i, delta, h, descend)
        l2 = self.spec.loss.l2
        if l2:
            weights = self._flat[0::2]
            value += float(0.5 * l2 * sum(np.sum(w * w) for w in weights))
            for i, w in enumerate(weights):
                self._grads[2 * i] += self.dtype.type(l2 * scale) * w   # d/dW l2/2 ||W||^2
        return value

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        value = self._loss_and_grads(batch)
        g = [t.copy() for t in self._grads]
        return value, [(g[i], g[i + 1]) for i in range(0, len(g), 2)]

    def trace(self, batch: Batch) -> Trace:
        """The workspace after a forward and backward pass (copied), and dJ/da per layer,
        which the fused backward never stores: (delta_{l+1} W_{l+1}^T) * mask_l, and the
        loss's dL/da at the output (mse, half_sse)."""
        value = self._loss_and_grads(batch)
        ws, masks, last = self._space(len(batch.x)), batch.masks, len(self.layers) - 1
        d_a = []
        for i in range(last):
            dh = self._input_grad(i + 1, ws.delta[i + 1], ws,
                                  self._inputs(i + 1, batch.x, ws, masks),
                                  np.empty_like(ws.a[i]))
            d_a.append(dh * masks[i] if masks and masks[i] is not None else dh)
        n, k = batch.y.shape
        err = ws.a[last] - batch.y
        d_out = {"mse": err * self.dtype.type(2.0 / (n * k)), "half_sse": err}
        g = [t.copy() for t in self._grads]
        return Trace(x=batch.x, masks=tuple(masks) if masks else (None,) * len(self.layers),
                     z=tuple(z.copy() for z in ws.z), a=tuple(a.copy() for a in ws.a),
                     loss=value, da=(*d_a, d_out.get(self.spec.loss.name)),
                     dz=tuple(d.copy() for d in ws.delta),
                     grads=[(g[i], g[i + 1]) for i in range(0, len(g), 2)])

    def export_state(self) -> optim.State:
        return self._optimizer.export()

    def load_state(self, state: optim.State) -> bool:
        self._optimizer.restore(state)
        return True

    def train_step(self, batch: Batch) -> float:
        opt, lr = self.spec.optimizer, self.spec.training.learning_rate
        if opt.name == "sgd" and not opt.weight_decay and lr <= FOLD_LR_MAX:
            # p -= lr * g with lr folded into the output delta; large W descend in BLAS
            self._optimizer.count += 1                    # the step count SGD keeps no use for
            value = self._loss_and_grads(batch, scale=lr, descend=self._descend)
            for j, (p, g) in enumerate(zip(self._flat, self._grads, strict=True)):
                if self.trainable[j] and not descends_in_gemm(p, self._descend):
                    p -= g
            return value
        value = self._loss_and_grads(batch)
        self._optimizer.step(self._flat, self._grads)
        return value

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        ws, last = self._forward(batch.x, ()), len(self.layers) - 1
        value = loss_and_delta(self.spec.loss.name, ws.z[last], ws.a[last], batch.y,
                               self.layers[last], ws.delta[last], ws.scratch[last])
        return value, ws.a[last].copy()


def _nchw(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A flat (rows, units) workspace array as the layer's (rows, *shape) view."""
    return rows.reshape(len(rows), *shape)
