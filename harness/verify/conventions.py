"""The convention finder: when a backend's optimizer step differs from harness.optim's, is it a
convention another framework follows rather than a bug?

The backend's step (from the same parameters and state, along its own gradients) is
re-computed under every alternative the spec's optimizer admits: the other side of each
spec option it reads (eps inside or outside the root, standard or folded bias correction,
Nesterov or not), decay coupled into the gradient (L2-style) instead of decoupled, momentum
dampened by (1 - momentum) (torch's `dampening`, the exponential-average form), RMSprop
centered, RMSprop's mean square starting at 1 (TensorFlow 1), and hyper-parameters rounded to
float32 in a float64 run. Any alternative that reproduces the backend's new parameters within
the update phase's tolerance is named: "matches harness.optim with
optimizer.eps_placement=inside; the spec says outside".

A backward pass that differs where a max-pool window has tied maxima is tried the same way
(`find_pool_ties`): the reference backend under the other `model.pool_ties` rule. torch,
JAX and TensorFlow all send a tie's gradient to the first maximum (tests/test_conv.py
measures it); a backend that splits it, or a GPU kernel that picks another, is a convention
when the other rule reproduces every derivative it computed, and a bug when none does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from harness import optim
from harness.backend import trainable_flags
from harness.data import Batch
from harness.params import Params, flatten
from harness.spec import OPTIMIZER_KEYS, POOL_TIES, Optimizer, Spec
from harness.verify import tolerances as tol

Update = Callable[[Spec, Params, Params, optim.State], list[np.ndarray]]


@dataclass(frozen=True)
class Convention:
    key: str                              # what the diagnosis reports: "field=value"
    says: str                             # the alternative in words
    update: Update                        # its new parameters from (params, grads, state)


@dataclass(frozen=True)
class Match:
    key: str
    says: str
    max_rel_err: float                    # how closely it reproduces the backend's step


def _step(spec: Spec, opt: Optimizer, lr: float, grads: list[np.ndarray], params: Params,
          state: optim.State) -> list[np.ndarray]:
    new, _ = optim.update(grads, state, flatten(params), opt, lr, trainable_flags(spec))
    return list(new)


def _with(**changes: object) -> Update:
    """harness.optim's step with the optimizer's options changed."""
    def update(spec: Spec, params: Params, grads: Params, state: optim.State) -> list:
        return _step(spec, replace(spec.optimizer, **changes), spec.training.learning_rate,
                     flatten(grads), params, state)
    return update


def _coupled(spec: Spec, params: Params, grads: Params, state: optim.State) -> list:
    """Weight decay added to the gradient (g + wd p, what an `weight_decay` argument of
    torch.optim.Adam or SGD does), then the optimizer without decoupled decay."""
    wd = spec.optimizer.weight_decay
    g = [gi + gi.dtype.type(wd) * p if train else gi
         for gi, p, train in zip(flatten(grads), flatten(params), trainable_flags(spec),
                                 strict=True)]
    return _step(spec, replace(spec.optimizer, weight_decay=0.0),
                 spec.training.learning_rate, g, params, state)


def _dampened(spec: Spec, params: Params, grads: Params, state: optim.State) -> list:
    """v = mu v + (1 - mu) g: harness.optim's momentum fed (1 - mu) g."""
    g = flatten(grads)
    damp = g[0].dtype.type(1 - spec.optimizer.momentum)
    return _step(spec, spec.optimizer, spec.training.learning_rate, [damp * x for x in g],
                 params, state)


def _rms_initial_one(spec: Spec, params: Params, grads: Params, state: optim.State) -> list:
    """RMSprop whose mean square starts at 1 (tf.compat.v1.train.RMSPropOptimizer)."""
    if state.count:
        return _step(spec, spec.optimizer, spec.training.learning_rate, flatten(grads),
                     params, state)
    ones = tuple(None if s is None else np.ones_like(s) for s in state.second)
    return _step(spec, spec.optimizer, spec.training.learning_rate, flatten(grads), params,
                 optim.State(state.count, state.first, ones))


def _centered(spec: Spec, params: Params, grads: Params, state: optim.State) -> list:
    """Centered RMSprop: g / root(s - m^2) with m the running mean of g, from m = 0 (the
    canonical state has no slot for m: exact at the first step, where the finder runs)."""
    opt, lr, out = spec.optimizer, spec.training.learning_rate, []
    for p, g, s, train in zip(flatten(params), flatten(grads), state.second,
                              trainable_flags(spec), strict=True):
        if not train:
            out.append(p)
            continue
        rho = g.dtype.type(opt.rho)
        s = rho * s + (1 - rho) * g * g
        mean = (1 - rho) * g
        out.append(optim.step(p, g / optim.root(s - mean * mean, opt), opt, lr))
    return out


def _float32(spec: Spec, params: Params, grads: Params, state: optim.State) -> list:
    """Every hyper-parameter rounded to float32 first (frameworks that store them as float32
    variables), the arithmetic still in the run's dtype."""
    opt = spec.optimizer
    rounded = {k: float(np.float32(getattr(opt, k)))
               for k in ("momentum", "rho", "beta1", "beta2", "eps", "weight_decay")}
    return _step(spec, replace(opt, **rounded), float(np.float32(spec.training.learning_rate)),
                 flatten(grads), params, state)


def candidates(spec: Spec) -> list[Convention]:
    """The alternatives that apply to the spec's optimizer, in the order they are tried."""
    opt, reads = spec.optimizer, OPTIMIZER_KEYS[spec.optimizer.name]
    out = []
    if "eps_placement" in reads:
        other = "inside" if opt.eps_placement == "outside" else "outside"
        out.append(Convention(f"optimizer.eps_placement={other}",
                              f"eps {other} the square root", _with(eps_placement=other)))
    if "bias_correction" in reads:
        other = "folded" if opt.bias_correction == "standard" else "standard"
        out.append(Convention(f"optimizer.bias_correction={other}",
                              f"{other} bias correction", _with(bias_correction=other)))
    if "nesterov" in reads:
        flag = not opt.nesterov
        out.append(Convention(f"optimizer.nesterov={str(flag).lower()}",
                              "Nesterov momentum" if flag else "plain momentum",
                              _with(nesterov=flag)))
    if opt.weight_decay:
        out.append(Convention("weight_decay=coupled", "weight decay added to the gradient "
                              "(L2-style) instead of decoupled", _coupled))
    if opt.name == "momentum":
        out.append(Convention("momentum=dampened", "velocity averaged: v = mu v + (1 - mu) g",
                              _dampened))
    if opt.name == "rmsprop":
        out.append(Convention("rmsprop=centered", "centered RMSprop (g / root(s - mean(g)^2))",
                              _centered))
        out.append(Convention("rmsprop.initial=1", "mean square starting at 1 (TF1)",
                              _rms_initial_one))
    if spec.dtype == "float64":
        out.append(Convention("hyperparameters=float32",
                              "hyper-parameters rounded to float32", _float32))
    return out


def find(spec: Spec, params: Params, grads: Params, state: optim.State,
         stepped: list[np.ndarray], tolerance: float) -> Match | None:
    """The alternative that reproduces the backend's new parameters `stepped` most closely,
    within `tolerance`; None when none does (a bug, or a convention this finder lacks), and
    None when the spec's own step already reproduces them: then only the count or a moment
    differs, which no alternative here is told apart by (at a first step from zero moments,
    plain and momentum steps coincide, and so would a float32 rounding that changes nothing)."""
    own = _step(spec, spec.optimizer, spec.training.learning_rate, flatten(grads), params,
                optim.copy_state(state))
    if max(tol.errors(a, b)[1] for a, b in zip(stepped, own, strict=True)) <= tolerance:
        return None
    best = None
    for conv in candidates(spec):
        with np.errstate(all="ignore"):
            want = conv.update(spec, params, grads, optim.copy_state(state))
        err = max(tol.errors(a, b)[1] for a, b in zip(stepped, want, strict=True))
        if err <= tolerance and (best is None or err < best.max_rel_err):
            best = Match(conv.key, conv.says, err)
    return best


# The backend whose trace under another pool_ties rule is the alternative (the reference).
TIES_REFERENCE = "numpy"


def reads_pool_ties(spec: Spec) -> bool:
    return any(layer.kind == "maxpool2d" for layer in spec.model.layers)


def find_pool_ties(spec: Spec, params: Params, batch: Batch, got: dict[str, np.ndarray],
                   limits: dict[str, float]) -> Match | None:
    """The other max-pool tie rule, when the reference under it reproduces every backward
    quantity of `got` (gradients W0, b0, ... and the trace's da, dz, by name) within
    `limits`; None when the spec has no max-pool or no rule reproduces them."""
    from harness.registry import backend_class  # the registry imports every backend

    if not reads_pool_ties(spec):
        return None
    for rule in (r for r in POOL_TIES if r != spec.model.pool_ties):
        other = replace(spec, model=replace(spec.model, pool_ties=rule))
        ref = backend_class(TIES_REFERENCE)(other)
        ref.load(params)
        trace = ref.trace(batch)
        names = [f"{k}{i}" for i in range(len(params)) for k in "Wb"]
        want = dict(zip(names, flatten(trace.grads), strict=True))
        for i, (da, dz) in enumerate(zip(trace.da, trace.dz, strict=True)):
            want |= {f"dz{i}": dz} | ({} if da is None else {f"da{i}": da})
        keys = [k for k in want if k in got]
        err = max(tol.errors(got[k], want[k])[1] for k in keys)
        if all(tol.errors(got[k], want[k])[1] <= limits[k] for k in keys):
            return Match(f"model.pool_ties={rule}", f"max-pool ties routed by the {rule!r} "
                         "rule", err)
    return None
