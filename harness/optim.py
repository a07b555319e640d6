"""The spec's optimizers as exact maths: `init(params) -> state` and
`update(grads, state, params) -> (params, state)` pairs with NamedTuple state (optax's shape).
`update` writes into the parameter and state arrays it is given (and a scratch array per
tensor), so a step allocates nothing: on large tensors a fresh array per step costs as
much as the arithmetic.

This module *is* the definition every backend must follow (docs/optimizers.md writes it out).
For every trainable tensor p with gradient g, learning rate lr and step t = 1, 2, ...:

  sgd       d = g
  momentum  v = mu * v + g ;  d = v, or g + mu * v with nesterov        (torch and optax form)
  rmsprop   s = rho * s + (1 - rho) * g^2 ;  d = g / (sqrt(s) + eps)   [eps_placement=outside]
                                             d = g / sqrt(s + eps)     [eps_placement=inside]
  adam      m = b1 * m + (1 - b1) * g ;  v = b2 * v + (1 - b2) * g^2
            standard: d = m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t), v_hat likewise
            folded:   d = c_t * m / (sqrt(v) + eps), c_t = sqrt(1 - b2^t) / (1 - b1^t)
            (with eps inside, sqrt(.) + eps becomes sqrt(. + eps) in both forms)
  then      p = p - lr * (d + weight_decay * p)                         (decoupled decay)
            (computed as p * (1 - lr * weight_decay) - lr * d, as torch's AdamW does)

Frozen tensors are neither updated nor decayed. L2 is not here: it is part of the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from harness.spec import Optimizer


class State(NamedTuple):
    count: int                            # steps taken so far
    first: list[np.ndarray | None]        # momentum velocity, or Adam's m
    second: list[np.ndarray | None]       # RMSprop's / Adam's running mean of g^2
    scratch: list[np.ndarray | None]      # work space, not state: reused by every step


def init(opt: Optimizer, params: list[np.ndarray], trainable: list[bool]) -> State:
    """Zero state for the trainable tensors (None for frozen ones and unused slots)."""
    def zeros(used: bool) -> list[np.ndarray | None]:
        return [np.zeros_like(p) if used and t else None
                for p, t in zip(params, trainable, strict=True)]
    return State(0, zeros(opt.name in ("momentum", "adam")),
                 zeros(opt.name in ("rmsprop", "adam")), zeros(True))


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


def _mean_square(second: np.ndarray, g: np.ndarray, decay, out: np.ndarray) -> None:
    """second = decay * second + (1 - decay) * g^2, in place (`out` is clobbered)."""
    second *= decay
    np.multiply(g, g, out=out)
    out *= 1 - decay
    second += out


def direction(opt: Optimizer, g: np.ndarray, first: np.ndarray | None,
              second: np.ndarray | None, t: int, out: np.ndarray) -> np.ndarray:
    """The update direction d of one tensor at step t (1-based); moves `first` and `second`
    forward in place. The result may be `g`, `first` or `out`."""
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
        out /= 1 - b1**t                                  # m_hat / (sqrt(v_hat) + eps)
    else:
        np.divide(first, _root(second, opt, out), out=out)
        out *= np.sqrt(1 - b2**t) / (1 - b1**t)           # folded into the step size
    return out


def update(opt: Optimizer, lr: float, grads: list[np.ndarray], state: State,
           params: list[np.ndarray], trainable: list[bool]) -> tuple[list[np.ndarray], State]:
    """One step of the spec's optimizer, written into `params` and `state` (returned)."""
    t = state.count + 1
    for i, (p, g, train) in enumerate(zip(params, grads, trainable, strict=True)):
        if not train:
            continue
        out = state.scratch[i]
        d = direction(opt, g, state.first[i], state.second[i], t, out)
        step = p.dtype.type(lr)
        if opt.weight_decay:
            p *= 1 - step * p.dtype.type(opt.weight_decay)
        np.multiply(d, step, out=out)
        p -= out
    return params, State(t, state.first, state.second, state.scratch)
