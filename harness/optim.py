"""The spec's optimizers as exact maths: pure `init(params) -> state` and
`update(grads, state, params) -> (params, state)` pairs with NamedTuple state (optax's shape).

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


def init(opt: Optimizer, params: list[np.ndarray], trainable: list[bool]) -> State:
    """Zero state for the trainable tensors (None for frozen ones and unused slots)."""
    first = opt.name in ("momentum", "adam")
    second = opt.name in ("rmsprop", "adam")
    zeros = [np.zeros_like(p) if t else None for p, t in zip(params, trainable, strict=True)]
    none = [None] * len(params)
    return State(0, list(zeros) if first else none, list(zeros) if second else none)


def _sqrt_eps(x: np.ndarray, opt: Optimizer) -> np.ndarray:
    eps = x.dtype.type(opt.eps)
    return np.sqrt(x) + eps if opt.eps_placement == "outside" else np.sqrt(x + eps)


def direction(opt: Optimizer, g: np.ndarray, first: np.ndarray | None,
              second: np.ndarray | None, t: int) -> tuple[np.ndarray, ...]:
    """(d, new first, new second) for one tensor at step t (1-based)."""
    one = g.dtype.type(1.0)
    if opt.name == "sgd":
        return g, first, second
    if opt.name == "momentum":
        mu = g.dtype.type(opt.momentum)
        v = mu * first + g
        return (g + mu * v if opt.nesterov else v), v, second
    if opt.name == "rmsprop":
        rho = g.dtype.type(opt.rho)
        s = rho * second + (one - rho) * g * g
        return g / _sqrt_eps(s, opt), first, s
    b1, b2 = g.dtype.type(opt.beta1), g.dtype.type(opt.beta2)
    m = b1 * first + (one - b1) * g
    v = b2 * second + (one - b2) * g * g
    if opt.bias_correction == "standard":
        d = (m / (one - b1**t)) / _sqrt_eps(v / (one - b2**t), opt)
    else:
        d = (np.sqrt(one - b2**t) / (one - b1**t)) * m / _sqrt_eps(v, opt)
    return d, m, v


def update(opt: Optimizer, lr: float, grads: list[np.ndarray], state: State,
           params: list[np.ndarray], trainable: list[bool]) -> tuple[list[np.ndarray], State]:
    """One step of the spec's optimizer; returns new arrays, never mutates its inputs."""
    t = state.count + 1
    new_params, first, second = [], list(state.first), list(state.second)
    for i, (p, g, train) in enumerate(zip(params, grads, trainable, strict=True)):
        if not train:
            new_params.append(p)
            continue
        d, first[i], second[i] = direction(opt, g, state.first[i], state.second[i], t)
        if opt.weight_decay:
            d = d + p.dtype.type(opt.weight_decay) * p
        new_params.append(p - p.dtype.type(lr) * d)
    return new_params, State(t, first, second)
