"""The spec's optimizers as exact maths, written once: pure `init` / `update` functions over
immutable state, in optax's shape. Nothing here writes into an array it is given.

This is the definition every backend follows (docs/optimizers.md writes it out, the textbook
`numpy` backend calls it, `numpy_fast` has an in-place twin that the conformance suite holds
to it). For every trainable tensor p with gradient g, learning rate lr and step t = 1, 2, ...:

  sgd       d = g
  momentum  v = mu v + g ;                   d = v, or g + mu v with nesterov
  rmsprop   s = rho s + (1 - rho) g^2 ;      d = g / root(s)
  adam      m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
            standard: d = m_hat / root(v_hat),  m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)
            folded:   d = c_t m / root(v),      c_t = sqrt(1 - b2^t) / (1 - b1^t)
  where     root(x) = sqrt(x) + eps  (eps_placement = "outside"),  sqrt(x + eps)  ("inside")
  then      p = p (1 - lr wd) - lr d         decoupled weight decay, torch's AdamW order

Frozen tensors keep no state and are neither updated nor decayed. L2 is not here: it is part
of the loss, so its gradient arrives inside g. Hyper-parameters are cast to the tensors'
dtype before use, so a float32 run computes in float32 throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from harness.spec import Optimizer

Tensors = tuple[np.ndarray, ...]
Slots = tuple[np.ndarray | None, ...]


class State(NamedTuple):
    """One entry per tensor in `first` and `second`, None where nothing is kept."""
    count: int          # steps taken so far
    first: Slots        # momentum's velocity v, or Adam's m
    second: Slots       # the running mean of g^2: RMSprop's s, Adam's v


def copy_state(state: State, dtype: np.dtype | None = None) -> State:
    """A deep copy of `state` (its slots cast to `dtype` when given): no array is shared."""
    def copied(slots: Slots) -> Slots:
        return tuple(None if s is None else np.array(s, dtype=dtype or s.dtype)
                     for s in slots)
    return State(int(state.count), copied(state.first), copied(state.second))


def check_layout(state: State, like: State) -> None:
    """ValueError unless `state` keeps a slot exactly where `like` does, of the same shape."""
    for name in ("first", "second"):
        theirs, mine = getattr(state, name), getattr(like, name)
        if len(theirs) != len(mine):
            raise ValueError(f"optimizer state: {len(theirs)} tensors in `{name}`, "
                             f"expected {len(mine)}")
        for i, (a, b) in enumerate(zip(theirs, mine, strict=True)):
            if (a is None) != (b is None) or (a is not None and np.shape(a) != b.shape):
                want = "nothing" if b is None else f"shape {b.shape}"
                got = "nothing" if a is None else f"shape {np.shape(a)}"
                raise ValueError(f"optimizer state: `{name}` of tensor {i} has {got}, "
                                 f"expected {want}")


def _all(tensors: Sequence[np.ndarray], trainable: Sequence[bool] | None) -> tuple[bool, ...]:
    return tuple(trainable) if trainable is not None else (True,) * len(tensors)


def init(params: Sequence[np.ndarray], opt: Optimizer,
         trainable: Sequence[bool] | None = None) -> State:
    """Zero moments for the trainable tensors (all of them unless `trainable` says)."""
    train = _all(params, trainable)

    def zeros(kept: bool) -> Slots:
        return tuple(np.zeros_like(p) if kept and t else None
                     for p, t in zip(params, train, strict=True))

    return State(0, zeros(opt.name in ("momentum", "adam")),
                 zeros(opt.name in ("rmsprop", "adam")))


def root(x: np.ndarray, opt: Optimizer) -> np.ndarray:
    """sqrt(x) + eps, or sqrt(x + eps) with eps_placement = "inside"."""
    eps = x.dtype.type(opt.eps)
    return np.sqrt(x) + eps if opt.eps_placement == "outside" else np.sqrt(x + eps)


def moments(g: np.ndarray, first: np.ndarray | None, second: np.ndarray | None,
            opt: Optimizer) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The moments after seeing g: (v, None), (None, s), (m, v) or (None, None) for sgd."""
    dt = g.dtype.type
    if opt.name == "momentum":
        return dt(opt.momentum) * first + g, None
    if opt.name == "rmsprop":
        rho = dt(opt.rho)
        return None, rho * second + (1 - rho) * g**2
    if opt.name == "adam":
        b1, b2 = dt(opt.beta1), dt(opt.beta2)
        return b1 * first + (1 - b1) * g, b2 * second + (1 - b2) * g**2
    return None, None


def direction(g: np.ndarray, first: np.ndarray | None, second: np.ndarray | None, t: int,
              opt: Optimizer) -> np.ndarray:
    """The update direction d at step t (1-based), from the moments already updated by g."""
    dt = g.dtype.type
    if opt.name == "momentum":
        return g + dt(opt.momentum) * first if opt.nesterov else first
    if opt.name == "rmsprop":
        return g / root(second, opt)
    if opt.name == "adam":
        b1, b2 = dt(opt.beta1), dt(opt.beta2)
        if opt.bias_correction == "standard":
            return first / (1 - b1**t) / root(second / (1 - b2**t), opt)
        return np.sqrt(1 - b2**t) / (1 - b1**t) * first / root(second, opt)
    return g


def step(p: np.ndarray, d: np.ndarray, opt: Optimizer, lr: float) -> np.ndarray:
    """p (1 - lr wd) - lr d: the step along d with decoupled weight decay (no decay pass
    over p when wd = 0)."""
    dt = p.dtype.type
    if opt.weight_decay:
        p = p * (1 - dt(lr) * dt(opt.weight_decay))
    return p - dt(lr) * d


def update(grads: Sequence[np.ndarray], state: State, params: Sequence[np.ndarray],
           opt: Optimizer, lr: float,
           trainable: Sequence[bool] | None = None) -> tuple[Tensors, State]:
    """One step of the spec's optimizer: (new params, new state). Frozen tensors are
    returned as they are."""
    t = state.count + 1
    new_params, new_first, new_second = [], [], []
    for p, g, first, second, train in zip(params, grads, state.first, state.second,
                                          _all(params, trainable), strict=True):
        if train:
            first, second = moments(g, first, second, opt)
            p = step(p, direction(g, first, second, t, opt), opt, lr)
        new_params.append(p)
        new_first.append(first)
        new_second.append(second)
    return tuple(new_params), State(t, tuple(new_first), tuple(new_second))
