"""Phases at the same point: where, inside one training step, two implementations part.

Every backend is put at the same parameters and optimizer state (the reference's at that
step) and observed one phase at a time:
- `data`:     the inputs and dropout masks it computed with, against the harness's batch;
- `forward`:  every layer's pre-activation z and activation a, input layer first;
- `loss`:     the loss value, and the loss its train_step reported against its own;
- `backward`: every layer's dJ/da, dJ/dz and parameter gradients, output layer first (the
              order backprop computes them in, so the first differing tensor is the origin);
- `update`:   one train_step from those parameters and state, against harness.optim's step
              from the same parameters, state and the backend's own gradients: the step
              count, per tensor the moments and the new parameters;
- `evaluate`: evaluate()'s loss and outputs on held-out data.
data, update and the reported loss are judged against a definition (the harness's arrays,
harness.optim, the backend's own loss), so they name the wrong backend even when only two
ran; forward, loss, backward and evaluate compare backends with each other.
"""

from __future__ import annotations

import numpy as np

from harness import optim
from harness.backend import Backend, Trace, trainable_flags
from harness.data import Batch
from harness.params import Params, flatten
from harness.spec import Spec
from harness.verify import conventions
from harness.verify import tolerances as tol

Row = dict[str, object]
PHASES = ("data", "forward", "loss", "backward", "update", "evaluate")
DEFINITION = "harness.optim"              # what the update phase is judged against
BATCH = "harness batch"                   # what the data phase is judged against
OWN_LOSS = "own loss"                     # what step_loss is judged against
SLOTS = ("first", "second")


def layer_of(tensor: str) -> int | None:
    """The layer index in a tensor's name (z1, dW0, W2.first, mask1), None for loss, x."""
    digits = "".join(c for c in tensor.split(".")[0] if c.isdigit())
    return int(digits) if digits else None


def phase_of(quantity: str) -> str:
    """The phase a same-point quantity belongs to (trace names, dW/db gradients, values)."""
    if quantity in ("x",) or quantity.startswith("mask"):
        return "data"
    if quantity[0] in "za" and quantity[1:].isdigit():
        return "forward"
    if quantity in ("loss", "step_loss"):
        return "loss"
    if quantity.startswith("eval_"):
        return "evaluate"
    return "backward"


def order(phase: str, tensor: str) -> tuple:
    """Sort key of a tensor within its phase: the first failing one in this order is named.
    Forward goes input layer first; backward and update go output layer first, as backprop
    does; within an update, the step count first (every tensor's step reads it), then each
    tensor's moments before the parameter they move."""
    layer = layer_of(tensor)
    base, _, slot = tensor.partition(".")
    if phase == "data":
        return (layer is not None, layer or 0)
    if phase == "forward":
        return (layer, "za".index(tensor[0]))
    if phase == "backward":
        kinds = ("da", "dz", "dW", "db")
        return (-layer, kinds.index(tensor[:2]))
    if phase == "update":
        if tensor == "count":
            return (-1e9, 0, 0)
        return (-layer, "Wb".index(base[0]), (*SLOTS, "").index(slot))
    names = ("loss", "step_loss", "eval_loss", "eval_outputs")
    return (names.index(tensor) if tensor in names else len(names),)


def traced(trace: Trace | None) -> dict[str, np.ndarray]:
    """The forward and backward tensors of a trace by name (z0, a0, ..., da0, dz0, ...)."""
    if trace is None:
        return {}
    out = {}
    for layer, (z, a, da, dz) in enumerate(zip(trace.z, trace.a, trace.da, trace.dz,
                                               strict=True)):
        out.update({f"z{layer}": z, f"a{layer}": a, f"dz{layer}": dz})
        if da is not None:
            out[f"da{layer}"] = da
    return out


def traced_names(quantities: dict[str, np.ndarray]) -> set[str]:
    """The names among `quantities` that come from a trace (not gradients, not values)."""
    return {k for k in quantities if (k[0] in "za" and k[1:].isdigit()) or
            (k[:2] in ("da", "dz") and k[2:].isdigit())}


def data_rows(step: int, backend: str, trace: Trace | None, batch: Batch) -> list[Row]:
    """What the backend computed with against the harness's batch (a mask of None and a mask
    of ones are the same thing). Nothing without a trace."""
    if trace is None:
        return []
    given = batch.masks or (None,) * len(trace.masks)
    pairs = [("x", trace.x, batch.x)]
    for layer, (mine, want) in enumerate(zip(trace.masks, given, strict=True)):
        if mine is not None or want is not None:
            shape = (want if want is not None else mine).shape
            pairs.append((f"mask{layer}", np.ones(shape) if mine is None else mine,
                          np.ones(shape) if want is None else want))
    return [_row(step, "data", name, backend, BATCH, mine, want, tol.DATA_RTOL)
            for name, mine, want in pairs]


def _row(step: int, phase: str, tensor: str, backend: str, compared_to: str,
         mine: np.ndarray | float, want: np.ndarray | float, tolerance: float,
         note: str | None = None) -> Row:
    mine, want = np.asarray(mine, np.float64), np.asarray(want, np.float64)
    if mine.shape != want.shape:
        abs_err = rel_err = np.inf
    else:
        abs_err, rel_err = tol.diverged_errors(mine, want)
    return {"step": step, "phase": phase, "layer": layer_of(tensor), "tensor": tensor,
            "backend": backend, "compared_to": compared_to, "max_abs_err": abs_err,
            "max_rel_err": rel_err, "tolerance": tolerance,
            "status": "ok" if rel_err <= tolerance else "fail", "note": note}


def pair_rows(step: int, a: str, b: str, qa: dict[str, np.ndarray], qb: dict[str, np.ndarray],
              limits: dict[str, float]) -> list[Row]:
    """Backend a against backend b at the same point, every quantity both have: the trace's
    tensors, the gradients (named dW0, db0, ...) and the values."""
    rows = []
    for name, x in qa.items():
        if name in qb:
            label = f"d{name}" if name[:1] in "Wb" and name[1:].isdigit() else name
            rows.append(_row(step, phase_of(label), label, a, b, x, qb[name], limits[name]))
    return rows


def tie_convention(rows: list[Row], spec: Spec, params: Params, batch: Batch,
                   got: dict[str, np.ndarray], limits: dict[str, float]) -> list[Row]:
    """`rows` (one backend against another), with the max-pool tie rule that explains a
    failing backward row, if one does, in every row's `convention`."""
    if not any(r["status"] == "fail" and r["phase"] == "backward" for r in rows):
        return rows
    match = conventions.find_pool_ties(spec, params, batch, got, limits)
    return [{**r, "convention": match and match.key, "convention_err": match and
             match.max_rel_err} for r in rows]


def decays(spec: Spec) -> tuple[float, ...]:
    """The decay rates of the spec's optimizer's moments (what update_rtol amplifies)."""
    opt = spec.optimizer
    return {"momentum": (opt.momentum,), "rmsprop": (opt.rho,),
            "adam": (opt.beta1, opt.beta2)}.get(opt.name, ())


def expected_update(spec: Spec, params: Params, grads: Params,
                    state: optim.State) -> tuple[list[np.ndarray], optim.State]:
    """harness.optim's step from `params` and `state` along `grads`: the definition."""
    trainable = trainable_flags(spec)
    new, after = optim.update(flatten(grads), state, flatten(params), spec.optimizer,
                              spec.training.learning_rate, trainable)
    return list(new), after


def fresh_state(spec: Spec, params: Params) -> optim.State:
    trainable = trainable_flags(spec)
    return optim.init(flatten(params), spec.optimizer, trainable)


def stepped(probe: Backend, params: Params, state: optim.State | None,
            batch: Batch) -> tuple[float, list[np.ndarray], optim.State | None, bool]:
    """One train_step of `probe` from `params` and `state`: the loss it reported, its new
    parameters and state, and whether `state` was loaded. Before the first step (count 0)
    nothing is loaded: the backend's own fresh state is part of what is under test (a mean
    square that starts at 1 shows there)."""
    probe.load(params)
    loaded = state is not None and state.count > 0 and probe.load_state(state)
    loss = probe.train_step(batch)
    return loss, flatten(probe.params()), probe.export_state(), loaded


def update_rows(step: int, backend: str, outcome: tuple, spec: Spec, params: Params,
                grads: Params, state: optim.State | None, tolerance: float) -> list[Row]:
    """The backend's step (`outcome` of `stepped`) against harness.optim's step from the same
    parameters and state along the backend's own gradients: count, moments, parameters.
    Where it differs, the convention finder's match (or None) is in every row's
    `convention`."""
    _, new, new_state, loaded = outcome
    start = state if loaded else fresh_state(spec, params)
    want, want_state = expected_update(spec, params, grads, start)
    note = "fresh optimizer state: this backend cannot load one" \
        if state is not None and state.count > 0 and not loaded else None
    names = [f"{kind}{i}" for i in range(len(params)) for kind in "Wb"]
    rows = []
    if new_state is not None:
        rows.append(_row(step, "update", "count", backend, DEFINITION, new_state.count,
                         want_state.count, 0.0, note))
    for j, name in enumerate(names):
        for slot in SLOTS:
            expect = getattr(want_state, slot)[j]
            if new_state is not None and expect is not None:
                mine = getattr(new_state, slot)[j]
                rows.append(_row(step, "update", f"{name}.{slot}", backend, DEFINITION,
                                 np.full(expect.shape, np.nan) if mine is None else mine,
                                 expect, tolerance, note))
        rows.append(_row(step, "update", name, backend, DEFINITION, new[j], want[j],
                         tolerance, note))
    match = conventions.find(spec, params, grads, start, new, tolerance) \
        if any(r["status"] == "fail" for r in rows) else None
    for r in rows:
        r["convention"] = match and match.key
        r["convention_err"] = match and match.max_rel_err
    return rows


def step_loss_row(step: int, backend: str, reported: float, own: float,
                  tolerance: float) -> Row:
    """train_step's reported loss against the backend's own loss at the same point: the
    contract says they are the same number."""
    return _row(step, "loss", "step_loss", backend, OWN_LOSS, reported, own, tolerance)
