"""PyTorch autograd backend: the NumPy reference's forward maths, gradients by autograd and
the spec's optimizers by `torch.optim`.

torch is imported only when the backend is constructed, so importing this module (to list
backends or read their capabilities) works where torch is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from harness import optim
from harness.backend import Backend, Capabilities, Operands, Products, Trace, trainable_flags
from harness.data import Batch
from harness.params import Params
from harness.spec import LAYER_TYPES, Layer, Spec

if TYPE_CHECKING:
    import torch

Masks = tuple["torch.Tensor | None", ...]

# harness.optim's slots -> the torch.optim state key holding them, per optimizer: `first`
# (velocity, Adam's m), `second` (RMSprop's s, Adam's v). Adam and RMSprop also count "step".
FIRST = {"momentum": "momentum_buffer", "adam": "exp_avg"}
SECOND = {"rmsprop": "square_avg", "adam": "exp_avg_sq"}
COUNTED = ("rmsprop", "adam")


class TorchAutograd(Backend):
    """Dense network on torch tensors; loss_and_grads via torch.autograd.grad, train_step via
    loss.backward() and a torch.optim optimizer configured to the maths of harness/optim.py."""

    name: ClassVar[str] = "torch"
    framework: ClassVar[str | None] = "torch"
    capabilities: ClassVar[Capabilities] = Capabilities(
        devices=frozenset({"cpu", "cuda"}),
        layer_types=frozenset(LAYER_TYPES),
        conventions={
            ("model.pool_ties", "split"):
                "F.max_pool2d's backward sends a tied window's gradient to the first maximum "
                "only (its saved argmax index); splitting it has no option",
            ("optimizer.eps_placement", "inside"):
                "torch.optim.RMSprop and Adam add eps after the square root "
                "(avg.add_(eps), denom = (sqrt(v) / sqrt(bias_correction2)).add_(eps))",
            ("optimizer.bias_correction", "folded"):
                "torch.optim.Adam always divides v by its bias correction before adding eps "
                "(denom = sqrt(v) / sqrt(1 - b2^t) + eps); eps on the uncorrected sqrt(v) "
                "has no option",
        },
    )

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        super().__init__(spec, device)
        import torch
        import torch.nn.functional as functional

        torch.backends.cuda.matmul.allow_tf32 = False      # full float32 matmuls on GPUs
        torch.backends.cudnn.allow_tf32 = False
        self._torch, self._f = torch, functional
        self._dtype = getattr(torch, spec.dtype)
        self._np_dtype = np.dtype(spec.dtype)
        self._cuda = torch.device(device).type == "cuda"
        self._trainable = trainable_flags(spec)
        self._flat: list[torch.Tensor] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._steps = 0                  # steps taken, for the optimizers torch counts none for
        opt, lr = spec.optimizer, spec.training.learning_rate
        # decoupled decay p <- p * (1 - lr wd) for the optimizers torch has no such option for
        self._decay = 1.0 - lr * opt.weight_decay if opt.weight_decay and opt.name != "adam" \
            else None

    def load(self, params: Params) -> None:
        """Fresh leaf tensors (frozen biases without requires_grad) and a fresh optimizer."""
        arrays = [np.asarray(t, dtype=self._np_dtype) for pair in params for t in pair]
        self._flat = [self._torch.tensor(a, dtype=self._dtype, device=self.device,
                                         requires_grad=train)
                      for a, train in zip(arrays, self._trainable, strict=True)]
        self._optimizer = self._make_optimizer()
        self._steps = 0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """The spec's optimizer over the trainable tensors (see harness/optim.py for the maths).
        Adam's decay is AdamW's p *= 1 - lr wd before the step; the others get it in train_step
        (torch's own `weight_decay` argument would be L2 on the gradient, different maths)."""
        optim, opt = self._torch.optim, self.spec.optimizer
        lr = self.spec.training.learning_rate
        params = [p for p in self._flat if p.requires_grad]
        if opt.name == "adam":
            return optim.AdamW(params, lr=lr, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                               weight_decay=opt.weight_decay)
        if opt.name == "rmsprop":
            return optim.RMSprop(params, lr=lr, alpha=opt.rho, eps=opt.eps)
        if opt.name == "momentum":
            # torch rejects nesterov with zero momentum; there it equals plain SGD anyway
            return optim.SGD(params, lr=lr, momentum=opt.momentum, dampening=0.0,
                             nesterov=opt.nesterov and opt.momentum > 0)
        return optim.SGD(params, lr=lr)

    def params(self) -> Params:
        return _pairs([_numpy(p) for p in self._flat])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return self._torch.as_tensor(array, dtype=self._dtype, device=self.device)

    def _inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, Masks]:
        """The batch as native tensors (masks: None where a layer has no dropout)."""
        masks = tuple(None if m is None else self._tensor(m) for m in batch.masks)
        return self._tensor(batch.x), self._tensor(batch.y), masks

    def _activate(self, layer: Layer, z: torch.Tensor) -> torch.Tensor:
        """a = f(z), as in numpy_textbook.activation (leaky_relu and relu kinks included)."""
        kind, torch = layer.activation, self._torch
        if kind == "sigmoid":
            return torch.sigmoid(z)
        if kind == "tanh":
            return torch.tanh(z)
        if kind == "relu":
            return torch.relu(z)                           # derivative 0 at z = 0
        if kind == "leaky_relu":
            return self._f.leaky_relu(z, layer.negative_slope)   # derivative slope at z = 0
        if kind == "softmax":
            return torch.softmax(z, dim=1)
        return z                                           # identity

    def _linear(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """z of layer i: h @ W + b, or the conv (kernels (F, C, k, k) and NCHW images are
        torch's own layout: no conversion), the pool or the flatten (C, H, W order)."""
        layer, f = self.spec.model.layers[i], self._f
        w, b = self._flat[2 * i], self._flat[2 * i + 1]
        if layer.kind == "conv2d":
            return f.conv2d(h, w, b, stride=layer.stride, padding=layer.pad)
        if layer.kind == "maxpool2d":
            return f.max_pool2d(h, layer.kernel, layer.stride)
        if layer.kind == "avgpool2d":
            return f.avg_pool2d(h, layer.kernel, layer.stride)
        if layer.kind == "flatten":
            return h.reshape(h.shape[0], -1)
        return h @ w + b

    @staticmethod
    def _dropout(a: torch.Tensor, masks: Masks, i: int) -> torch.Tensor:
        """h = a * mask of layer i (the harness's (n, units) mask in a's shape), or a where
        the layer has no dropout."""
        return a * masks[i].reshape(a.shape) if masks and masks[i] is not None else a

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's rows in the first layer's input shape (NCHW for an image)."""
        return x.reshape(x.shape[0], *self.spec.model.layers[0].in_shape)

    def _logits(self, x: torch.Tensor, masks: Masks) -> torch.Tensor:
        """Output-layer z: hidden layers are activated and multiplied by their dropout mask."""
        h, last = self._image(x), len(self.spec.model.layers) - 1
        for i, layer in enumerate(self.spec.model.layers[:last]):
            h = self._dropout(self._activate(layer, self._linear(i, h)), masks, i)
        return self._linear(last, h)

    def _data_loss(self, z: torch.Tensor, y: torch.Tensor,
                   a: torch.Tensor | None = None) -> torch.Tensor:
        """The spec's loss; bce and cross_entropy from the logits, as the NumPy reference. The
        output activation a = f(z) is computed here unless the caller (the trace) has it."""
        name = self.spec.loss.name
        if name == "cross_entropy":
            return -(y * self._f.log_softmax(z, dim=1)).sum(dim=1).mean()
        if name == "bce":
            return self._f.binary_cross_entropy_with_logits(z, y)
        err = (self._activate(self.spec.model.layers[-1], z) if a is None else a) - y
        return (err * err).mean() if name == "mse" else 0.5 * (err * err).sum()

    def _with_penalty(self, loss: torch.Tensor) -> torch.Tensor:
        """The data loss plus l2/2 * sum of squared weights."""
        l2 = self.spec.loss.l2
        if l2:
            loss = loss + 0.5 * l2 * sum((w * w).sum() for w in self._flat[0::2])
        return loss

    def _loss(self, batch: Batch) -> torch.Tensor:
        """Training loss: data loss with dropout, plus the L2 penalty."""
        x, y, masks = self._inputs(batch)
        return self._with_penalty(self._data_loss(self._logits(x, masks), y))

    def _gradients(self, loss: torch.Tensor,
                   also: list[torch.Tensor]) -> tuple[Params, list[torch.Tensor | None]]:
        """dJ/d(every parameter) as NumPy pairs (zeros for a frozen bias), and dJ/d(each tensor
        of `also`), None where J does not depend on it. torch.autograd.grad leaves .grad and
        the optimizer untouched: no state changes."""
        trainable = [p for p in self._flat if p.requires_grad]
        found = self._torch.autograd.grad(loss, [*trainable, *also], allow_unused=True)
        grads = iter(found[:len(trainable)])
        flat = [_numpy(next(grads) if p.requires_grad else self._torch.zeros_like(p))
                for p in self._flat]
        return _pairs(flat), list(found[len(trainable):])

    def loss_and_grads(self, batch: Batch) -> tuple[float, Params]:
        loss = self._loss(batch)
        return loss.item(), self._gradients(loss, [])[0]

    def trace(self, batch: Batch) -> Trace:
        """The forward pass of `_loss` in a fresh graph, every layer's z and a kept, and
        autograd's dJ/dz and dJ/da besides the parameter gradients. dJ/da of the output layer
        is None where the loss reads only the logits (autograd finds a unused). The input
        requires grad here so that the z and a of leading layers without parameters (a pool,
        a flatten) are in the graph too."""
        x, y, masks = self._inputs(batch)
        zs, acts, h = [], [], self._image(x).detach().requires_grad_(True)
        for i, layer in enumerate(self.spec.model.layers):
            zs.append(self._linear(i, h))
            acts.append(self._activate(layer, zs[-1]))
            h = self._dropout(acts[-1], masks, i)
        loss = self._with_penalty(self._data_loss(zs[-1], y, acts[-1]))
        grads, found = self._gradients(loss, [*zs, *acts])
        dz, da = found[:len(zs)], found[len(zs):]
        return Trace(x=_numpy(x), masks=tuple(None if m is None else _numpy(m)
                                              for m in masks or (None,) * len(zs)),
                     z=tuple(map(_units, zs)), a=tuple(map(_units, acts)), loss=loss.item(),
                     da=tuple(None if d is None else _units(d) for d in da),
                     dz=tuple(map(_units, dz)), grads=grads)

    def _held(self, p: torch.Tensor, key: str) -> torch.Tensor | None:
        """torch's buffer `key` of p, None before its first step. SGD with momentum 0 keeps
        no buffer: its v is the last gradient, which stays in p.grad until the next step
        clears it."""
        if key == FIRST["momentum"] and not self.spec.optimizer.momentum:
            return p.grad
        return self._optimizer.state.get(p, {}).get(key)

    def _slot(self, p: torch.Tensor, key: str | None) -> np.ndarray | None:
        """One tensor's slot of the exported state: None where nothing is kept, zeros
        before torch has created its buffer (as harness.optim.init lays them out)."""
        if key is None or not p.requires_grad:
            return None
        held = self._held(p, key)
        return np.zeros(p.shape, self._np_dtype) if held is None else _numpy(held)

    def export_state(self) -> optim.State:
        """torch.optim's state in harness.optim's layout (see FIRST and SECOND): the count is
        torch's own "step" where it keeps one, else the steps this backend counted."""
        name = self.spec.optimizer.name
        steps = [s["step"] for s in self._optimizer.state.values() if "step" in s]
        return optim.State(int(steps[0]) if steps else self._steps,
                           tuple(self._slot(p, FIRST.get(name)) for p in self._flat),
                           tuple(self._slot(p, SECOND.get(name)) for p in self._flat))

    def load_state(self, state: optim.State) -> bool:
        """The state through `Optimizer.load_state_dict`, as torch would save it: moments
        copied to the parameters' dtype and device, "step" a number that torch turns into the
        tensor its foreach, fused or capturable path expects. A zero momentum buffer steps
        like the absent one of a fresh SGD: v = mu 0 + g = g."""
        name, torch = self.spec.optimizer.name, self._torch
        entries, trainable = {}, [i for i, p in enumerate(self._flat) if p.requires_grad]
        for index, i in enumerate(trainable):
            entry = {key: torch.tensor(slots[i], dtype=self._dtype, device=self.device)
                     for key, slots in ((FIRST.get(name), state.first),
                                        (SECOND.get(name), state.second)) if key}
            if name == "momentum" and not self.spec.optimizer.momentum:
                self._flat[i].grad = entry.pop(FIRST[name])   # see _held
            if name in COUNTED:
                entry["step"] = float(state.count)
            entries[index] = entry
        saved = self._optimizer.state_dict()
        self._optimizer.load_state_dict({**saved, "state": entries})
        self._steps = int(state.count)
        return True

    def train_step(self, batch: Batch) -> float:
        loss = self._loss(batch)
        self._steps += 1
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._decay is not None:
            with self._torch.no_grad():
                for p in self._flat:
                    if p.requires_grad:
                        p.mul_(self._decay)
        self._optimizer.step()
        return loss.item()

    def evaluate(self, batch: Batch) -> tuple[float, np.ndarray]:
        with self._torch.no_grad():
            x, y, _ = self._inputs(batch)
            z = self._logits(x, ())
            loss = self._data_loss(z, y)
            out = self._activate(self.spec.model.layers[-1], z)
        return loss.item(), _numpy(out)

    def sync(self) -> None:
        if self._cuda:
            self._torch.cuda.synchronize()

    @classmethod
    def gemm(cls, operands: list[Operands], device: str = "cpu") -> Products:
        """The step's products by torch.matmul into preallocated tensors (see Backend.gemm)."""
        import torch

        tensors = [tuple(torch.as_tensor(a, device=device) for a in ops) for ops in operands]
        outs = [(h.new_empty(h.shape[0], w.shape[1]), w.new_empty(w.shape), h.new_empty(h.shape))
                for h, w, _ in tensors]

        def call() -> list:
            for i, ((h, w, d), (z, dw, dh)) in enumerate(zip(tensors, outs, strict=True)):
                torch.matmul(h, w, out=z)
                torch.matmul(h.T, d, out=dw)
                if i > 0:
                    torch.matmul(d, w.T, out=dh)
            return [(z, dw, dh if i > 0 else None) for i, (z, dw, dh) in enumerate(outs)]
        cuda = torch.device(device).type == "cuda"
        return call, (torch.cuda.synchronize if cuda else lambda: None)

    @classmethod
    def set_threads(cls, n: int) -> None:
        """torch's intra-op pool to `n` threads (see Backend.set_threads)."""
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    @classmethod
    def gemm_library(cls) -> str:
        """torch's BLAS as its build reports it (BLAS_INFO: mkl, openblas, ...)."""
        import torch

        config = torch.__config__.show()
        blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split()
                     if part.startswith("BLAS_INFO=")), "unknown")
        return f"torch {torch.__version__}: BLAS {blas}"


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of `tensor` (never a view of the backend's memory or of the batch's)."""
    return tensor.detach().cpu().numpy().copy()


def _units(tensor: torch.Tensor) -> np.ndarray:
    """A layer's tensor as the trace holds it: (n, units), units in C, H, W order."""
    return _numpy(tensor.reshape(tensor.shape[0], -1))


def _pairs(flat: list[np.ndarray]) -> Params:
    """[W0, b0, W1, b1, ...] back into [(W0, b0), (W1, b1), ...]."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
