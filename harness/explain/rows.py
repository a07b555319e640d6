"""The rows of `harness explain`, built from what every backend showed at one step: pure
functions, layer by layer from the output back to the input (harness/explain.py gathers the
values, harness/explain/text.py lays them out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.backend import Trace
from harness.explain.text import Item, Row, largest, norm, row, table
from harness.params import Params
from harness.spec import LOGIT_LOSSES, Spec
from harness.spec.layers import describe

SHOWN = 3                                 # units, inputs and weights of a unit shown one by one
REST = slice(SHOWN, None)


@dataclass(frozen=True)
class Observed:
    """One backend at the step: its trace (None: it cannot trace), its batch gradients, what
    its train_step returned, its parameters after that step, and notes on how it got there."""
    trace: Trace | None
    grads: Params
    step_loss: float
    updated: Params
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Point:
    """Everything `harness explain` prints: one step, one sample of its batch, every backend."""
    spec: Spec
    step: int
    steps: int                            # steps in the whole run
    sample: int
    batch_size: int
    observed: dict[str, Observed]         # the first is the reference
    skipped: dict[str, str]               # backends that cannot run the spec here, and why


Getter = Callable[[Observed], np.ndarray | float | None]


def _row(point: Point, label: str, get: Getter, index: tuple | int | slice = (),
         shown: Callable[[np.ndarray], float] = float, note: str = "") -> Row:
    """The row of each backend's `get(...)[index]` (None where it has no such value)."""
    values = {}
    for name, seen in point.observed.items():
        value = get(seen)
        values[name] = None if value is None else np.asarray(value)[index]
    return row(label, values, shown, note)


def _traced(field: str, li: int) -> Getter:
    """trace.<field>[li] (None where the backend cannot trace or has none)."""
    return lambda o: None if o.trace is None else getattr(o.trace, field)[li]


def _inputs(li: int) -> Getter:
    """h_{l-1}: what W_l multiplies; x for the first layer, a * mask after dropout."""
    def get(o: Observed) -> np.ndarray | None:
        if o.trace is None:
            return None
        if li == 0:
            return o.trace.x
        a, mask = o.trace.a[li - 1], o.trace.masks[li - 1]
        return a if mask is None else a * mask
    return get


def _tensor(field: str, li: int, which: int) -> Getter:
    """W (which = 0) or b (1) of layer li in `grads` or `updated`."""
    return lambda o: getattr(o, field)[li][which]


def _derivative(li: int, s: int, j: int) -> Getter:
    """d(out)/d(net) as the backend's own dz/da (None where dE/dout is none or zero)."""
    def get(o: Observed) -> float | None:
        if o.trace is None or o.trace.da[li] is None or o.trace.da[li][s, j] == 0:
            return None
        return o.trace.dz[li][s, j] / o.trace.da[li][s, j]
    return get


def _product(li: int, s: int, i: int, j: int) -> Getter:
    """dE/dnet_j * h_i of sample s."""
    h = _inputs(li)
    return lambda o: None if o.trace is None else o.trace.dz[li][s, j] * h(o)[s, i]


def items(point: Point) -> list[Item]:
    """Every row, the loss first, then the layers from the output back to the input."""
    out: list[Item] = [
        _row(point, f"loss E at step {point.step} (trace)",
             lambda o: None if o.trace is None else o.trace.loss),
        _row(point, "loss E (train_step's return)", lambda o: o.step_loss)]
    for li in reversed(range(len(point.spec.model.layers))):
        dense = point.spec.model.layers[li].kind == "dense"
        out += _layer(point, li) if dense else _image_layer(point, li)
    return out


# What an image layer computes, in the words of its header line (`h` is its input).
FORMULAS = {"conv2d": "conv({h}, W{li}) + b{li} (cross-correlation, NCHW, W (F, C, k, k))",
            "maxpool2d": "max of each window of {h}", "avgpool2d": "mean of each window of {h}",
            "flatten": "{h} read in C, H, W order"}


def _image_layer(point: Point, li: int) -> list[Item]:
    """A conv, pool or flatten layer: its shapes, its first units (C, H, W order) with their
    chain rule, norms over the others, and a conv's kernel and bias gradients as norms (a
    kernel entry is shared by every position: its gradient sums over all of them)."""
    spec, s = point.spec, point.sample
    layer = spec.model.layers[li]
    h = f"h{li - 1}" if li else "x"
    window = f", kernel {layer.kernel}, stride {layer.stride}" if layer.kernel else ""
    pad = f", padding {layer.padding}" if layer.kind == "conv2d" else ""
    formula = FORMULAS[layer.kind].format(li=li, h=h)
    out: list[Item] = [
        "", f"layer {li} ({layer.kind} {describe(layer.in_shape)} -> "
        f"{describe(layer.out_shape)}{window}{pad}): z{li} = {formula}, a{li} = "
        f"{layer.activation}(z{li})"]
    for j in range(min(SHOWN, layer.size)):
        out += [f"  unit {j}",
                _row(point, f"    net       z{li}[{j}]", _traced("z", li), (s, j)),
                _row(point, f"    out       a{li}[{j}]", _traced("a", li), (s, j)),
                _row(point, f"    dE/dnet   dz{li}[{j}]", _traced("dz", li), (s, j))]
    if layer.size > SHOWN:
        out += [_row(point, f"  |{k}{li}[{SHOWN}:]|  ({layer.size - SHOWN} more units)",
                     _traced(k, li), (s, REST), norm) for k in ("z", "a", "dz")]
    if layer.has_params:
        out += [_row(point, f"  |dE/dW{li}|  (batch)", _tensor("grads", li, 0), (), norm),
                _row(point, f"  |W{li}| after the step", _tensor("updated", li, 0), (), norm),
                _row(point, f"  |dE/db{li}|  (batch)", _tensor("grads", li, 1), (), norm),
                _row(point, f"  |b{li}| after the step", _tensor("updated", li, 1), (), norm)]
    return out


def _fan_in(spec: Spec, li: int) -> int:
    return spec.model.layers[li].in_shape[0]


def _layer(point: Point, li: int) -> list[Item]:
    spec, s = point.spec, point.sample
    layer, fan_in = spec.model.layers[li], _fan_in(spec, li)
    h = f"h{li - 1}" if li else "x"
    kind = "output" if li == len(spec.model.layers) - 1 else "hidden"
    frozen = ", b frozen" if not layer.trainable_bias else ""
    below = spec.model.layers[li - 1].drop_prob if li else 0.0
    dropout = f"; {h} = a{li - 1} * mask{li - 1} (drop_prob {below})" if below else ""
    out: list[Item] = [
        "", f"layer {li} ({kind}): z{li} = {h} @ W{li} + b{li}, a{li} = "
        f"{layer.activation}(z{li}); W{li} {fan_in}x{layer.size}{frozen}{dropout}"]
    out += [_row(point, f"  input {h}[{i}] = dz{li}[j]/dW{li}[{i},j]", _inputs(li), (s, i))
            for i in range(min(SHOWN, fan_in))]
    if fan_in > SHOWN:
        out.append(_row(point, f"  |{h}[{SHOWN}:]|  ({fan_in - SHOWN} more inputs)",
                        _inputs(li), (s, REST), norm))
    for j in range(min(SHOWN, layer.size)):
        out += _unit(point, li, j)
    if layer.size > SHOWN:
        out += _rest(point, li)
    return out


def _slope(point: Point, li: int, j: int) -> list[Item]:
    """dE/dout and dout/dnet of unit j, or why a loss computed from the logits has neither."""
    s, spec = point.sample, point.spec
    act = spec.model.layers[li].activation
    if li == len(spec.model.layers) - 1 and spec.loss.name in LOGIT_LOSSES:
        return [_row(point, "    dE/dout, dout/dnet", lambda o: None,
                     note=f"loss from logits ({act} + {spec.loss.name}): dE/dnet directly")]
    note = "softmax is not elementwise: no f'" if act == "softmax" \
        else "dE/dout is 0: f' not recoverable"
    return [_row(point, f"    dE/dout   da{li}[{j}]", _traced("da", li), (s, j)),
            _row(point, f"    dout/dnet f'(z{li}[{j}]) = dz/da", _derivative(li, s, j),
                 note=note)]


def _unit(point: Point, li: int, j: int) -> list[Item]:
    """Unit j of layer li: net, out, the chain rule to dE/dnet, then its weights and bias."""
    s, act = point.sample, point.spec.model.layers[li].activation
    fan_in, h = _fan_in(point.spec, li), f"h{li - 1}" if li else "x"
    out: list[Item] = [
        f"  unit {j}",
        _row(point, f"    net       z{li}[{j}]", _traced("z", li), (s, j)),
        _row(point, f"    out       a{li}[{j}] = {act}(net)", _traced("a", li), (s, j)),
        *_slope(point, li, j),
        _row(point, f"    dE/dnet   dz{li}[{j}]", _traced("dz", li), (s, j))]
    for i in range(min(SHOWN, fan_in)):
        out += [_row(point, f"    dz{li}[{j}] * {h}[{i}]  (sample {s})", _product(li, s, i, j)),
                _row(point, f"    dE/dW{li}[{i},{j}]  (batch)", _tensor("grads", li, 0), (i, j)),
                _row(point, f"    W{li}[{i},{j}] after the step", _tensor("updated", li, 0),
                     (i, j))]
    if fan_in > SHOWN:
        out += [_row(point, f"    |dE/dW{li}[{SHOWN}:,{j}]|  ({fan_in - SHOWN} more)",
                     _tensor("grads", li, 0), (REST, j), norm),
                _row(point, f"    |W{li}[{SHOWN}:,{j}]| after the step",
                     _tensor("updated", li, 0), (REST, j), norm)]
    return [*out,
            _row(point, f"    dE/db{li}[{j}]  (batch; dz/db = 1)", _tensor("grads", li, 1), j),
            _row(point, f"    b{li}[{j}] after the step", _tensor("updated", li, 1), j)]


def _rest(point: Point, li: int) -> list[Item]:
    """Norms over the units after the first SHOWN; max diff over their elements."""
    s, size = point.sample, point.spec.model.layers[li].size
    cols = (slice(None), REST)
    rows = [(f"|z{li}[{SHOWN}:]|", _traced("z", li), (s, REST)),
            (f"|a{li}[{SHOWN}:]|", _traced("a", li), (s, REST)),
            (f"|dz{li}[{SHOWN}:]|", _traced("dz", li), (s, REST)),
            (f"|dE/dW{li}[:,{SHOWN}:]|  (batch)", _tensor("grads", li, 0), cols),
            (f"|W{li}[:,{SHOWN}:]| after the step", _tensor("updated", li, 0), cols),
            (f"|dE/db{li}[{SHOWN}:]|  (batch)", _tensor("grads", li, 1), REST),
            (f"|b{li}[{SHOWN}:]| after the step", _tensor("updated", li, 1), REST)]
    return [f"  units {SHOWN}..{size - 1} ({size - SHOWN} more; sample {s}): norms, max diff "
            "over their elements",
            *(_row(point, f"    {label}", get, index, norm) for label, get, index in rows)]


def header(point: Point) -> list[str]:
    """What was run, from where, and how to read the table."""
    spec, names = point.spec, list(point.observed)
    title = spec.name + (f" [{spec.variant}]" if spec.variant else "")
    lines = [f"{title} ({spec.dtype}), step {point.step} of {point.steps} (batch of "
             f"{point.batch_size}), sample {point.sample}; backends "
             + ", ".join([f"{names[0]} (reference)", *names[1:]]),
             f"every backend starts from {names[0]}'s parameters and optimizer state after "
             f"{point.step} steps",
             "W{l} is stored (fan_in, fan_out): W{l}[i,j] connects input i to unit j; b{l}[j] "
             "is unit j's bias",
             *(["a conv's W{l} is (filters, channels, kh, kw); an image layer's units are "
                "numbered in C, H, W order"] if any(layer.kind != "dense"
                                                    for layer in spec.model.layers) else []),
             f"values of sample {point.sample}, but (batch) = the batch gradient (the sample's "
             "product for a batch of one);",
             "|.| = a norm; max diff = the largest absolute difference between backends, "
             "element by element"]
    lines += [f"{n}: {', '.join(o.notes)}" for n, o in point.observed.items() if o.notes]
    return lines + [f"skipped {n}: {why}" for n, why in point.skipped.items()]


def text(point: Point) -> str:
    """The whole explanation: header, table, and where the backends differ most."""
    rows = items(point)
    worst = largest(rows)
    footer = "largest max diff: -" if worst is None else \
        f"largest max diff: {worst.diff:.1e} at {worst.label.strip()}"
    return "\n".join([*header(point), "", *table(rows, list(point.observed)), footer])
