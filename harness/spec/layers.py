"""One `[[model.layers]]` table read into a `Layer`, its shape arithmetic checked before
training: dense, conv2d, maxpool2d, avgpool2d and flatten.

Shapes are (C, H, W) for an image and (units,) for a flat vector. A conv or pool reads an
image and writes one; flatten turns an image into (C*H*W,) in C, H, W order; a dense layer
needs a flat input (an explicit flatten, as in Keras, so the order is never guessed).
Output side of a conv or pool: (side + 2 pad - kernel) // stride + 1, floored as every
framework does. "same" padding needs stride 1 and an odd kernel: only then is it the same
number of zeros on both sides in every framework (an even kernel pads one side more, and
which side differs between TensorFlow and PyTorch).
"""

from __future__ import annotations

import math

import numpy as np

from harness.spec.schema import (
    SpecError,
    Table,
    boolean,
    choice,
    integer,
    join,
    matrix,
    number,
)
from harness.spec.types import (
    ACTIVATIONS,
    IMAGE_TYPES,
    LAYER_KEYS,
    LAYER_TYPES,
    MAX_CHANNELS,
    MAX_SIDE,
    MAX_UNITS,
    PADDINGS,
    POOL_TYPES,
    TYPE_KEYS,
    Layer,
)

Shape = tuple[int, ...]


def describe(shape: Shape) -> str:
    """An image as "1x8x8", a flat vector as "64 units"."""
    return "x".join(map(str, shape)) if len(shape) == 3 else f"{shape[0]} units"


def output_side(side: int, kernel: int, stride: int, pad: int) -> int:
    """Positions of a kernel sliding over `side` + 2 `pad` cells by `stride` (0: none fits)."""
    return max((side + 2 * pad - kernel) // stride + 1, 0)


def param_shapes(layer: Layer) -> tuple[Shape, Shape]:
    """(W, b) shapes: dense (fan_in, fan_out) and (fan_out,); conv (filters, C, k, k) and
    (filters,); a layer without parameters two empty arrays (0,), so layer l stays params[l]."""
    if layer.kind == "dense":
        return (layer.in_shape[0], layer.size), (layer.size,)
    if layer.kind == "conv2d":
        filters = layer.out_shape[0]
        return (filters, layer.in_shape[0], layer.kernel, layer.kernel), (filters,)
    return (0,), (0,)


def fans(layer: Layer) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras and torch define them: a conv's receptive field times its
    input channels, and times its filters."""
    w_shape, _ = param_shapes(layer)
    if layer.kind == "conv2d":
        field = layer.kernel * layer.kernel
        return w_shape[1] * field, w_shape[0] * field
    return w_shape[0], w_shape[1]


def macs(layer: Layer) -> int:
    """Multiply-adds of the layer's forward pass per sample: fan_in x fan_out for a dense
    layer, every output times its receptive field for a conv (C k k) or a pool (k k), none
    for flatten. What a step's time and the pre-flight estimate scale with."""
    if layer.kind == "dense":
        return layer.in_shape[0] * layer.size
    if layer.kind == "flatten":
        return 0
    field = layer.kernel * layer.kernel * (layer.in_shape[0] if layer.kind == "conv2d" else 1)
    return layer.size * field


def param_count(layers: list[Layer] | tuple[Layer, ...]) -> int:
    """Weights and biases of the whole network."""
    return sum(math.prod(w) + math.prod(b) for w, b in map(param_shapes, layers))


def parse(t: Table, in_shape: Shape) -> Layer:
    """One layer table, read for an input of `in_shape`."""
    kind = choice(t, "type", LAYER_TYPES, "dense")
    allowed = ("type", *TYPE_KEYS[kind])
    known = {key for keys in TYPE_KEYS.values() for key in keys}
    for key in t.raw:
        if key not in allowed:
            what = f"not a key of a {kind} layer" if key in known else "unknown key"
            raise SpecError(join(t.path, key), f"{what} (allowed: {', '.join(allowed)})")
    if kind in IMAGE_TYPES and len(in_shape) != 3:
        raise SpecError(join(t.path, "type"), f"{kind} needs an image input, got "
                        f"{describe(in_shape)} (allowed: image data, e.g. digits 1x8x8, or "
                        "inline data with a shape)")
    if kind == "dense" and len(in_shape) == 3:
        raise SpecError(join(t.path, "type"), f"dense needs a flat input, got the image "
                        f"{describe(in_shape)} (allowed: a flatten layer before it)")
    if kind == "flatten" and len(in_shape) != 3:
        raise SpecError(join(t.path, "type"), f"flatten needs an image input, got "
                        f"{describe(in_shape)}")
    if kind == "flatten":
        units = math.prod(in_shape)
        return Layer(units, "identity", kind=kind, in_shape=in_shape, out_shape=(units,))
    if kind in POOL_TYPES:
        return _pool(t, kind, in_shape)
    return _conv(t, in_shape) if kind == "conv2d" else _dense(t, in_shape)


def _activation(t: Table) -> tuple[str, float, float, bool]:
    """activation, negative_slope, drop_prob and trainable_bias of a dense or conv layer."""
    act = choice(t, "activation", ACTIVATIONS)
    slope = number(t, "negative_slope", 0.01, low=0.0, high=1.0, high_open=True)
    if t.has("negative_slope") and act not in LAYER_KEYS["negative_slope"]:
        raise SpecError(join(t.path, "negative_slope"),
                        f"only {', '.join(LAYER_KEYS['negative_slope'])} has a negative_slope")
    drop = number(t, "drop_prob", 0.0, low=0.0, high=1.0, high_open=True)
    return act, slope, drop, boolean(t, "trainable_bias", True)


def _dense(t: Table, in_shape: Shape) -> Layer:
    size = integer(t, "size", low=1, high=MAX_UNITS)
    act, slope, drop, bias_ok = _activation(t)
    layer = Layer(size, act, slope, drop, bias_ok, in_shape=in_shape, out_shape=(size,))
    return _inline_params(t, layer)


def _conv(t: Table, in_shape: Shape) -> Layer:
    filters = integer(t, "filters", low=1, high=MAX_CHANNELS)
    kernel = integer(t, "kernel", low=1, high=MAX_SIDE)
    stride = integer(t, "stride", 1, low=1, high=MAX_SIDE)
    padding = choice(t, "padding", PADDINGS, "valid")
    if padding == "same" and (kernel % 2 == 0 or stride != 1):
        raise SpecError(join(t.path, "padding"), f"same needs an odd kernel and stride 1, got "
                        f"kernel {kernel} stride {stride} (the zeros would differ per side "
                        "between frameworks; allowed: valid)")
    act, slope, drop, bias_ok = _activation(t)
    pad = (kernel - 1) // 2 if padding == "same" else 0
    out = _slide(t, "conv2d", in_shape, kernel, stride, pad, padding)
    layer = Layer(filters * out[0] * out[1], act, slope, drop, bias_ok, kind="conv2d",
                  kernel=kernel, stride=stride, padding=padding, in_shape=in_shape,
                  out_shape=(filters, *out))
    _check_units(t, layer)
    return _inline_params(t, layer)


def _pool(t: Table, kind: str, in_shape: Shape) -> Layer:
    size = integer(t, "size", low=1, high=MAX_SIDE)
    stride = integer(t, "stride", size, low=1, high=MAX_SIDE)
    out = _slide(t, kind, in_shape, size, stride, 0, "valid")
    return Layer(in_shape[0] * out[0] * out[1], "identity", kind=kind, kernel=size,
                 stride=stride, in_shape=in_shape, out_shape=(in_shape[0], *out))


def _slide(t: Table, kind: str, in_shape: Shape, kernel: int, stride: int, pad: int,
           padding: str) -> tuple[int, int]:
    """The output (height, width) of a kernel sliding over the image, or a SpecError naming
    the arithmetic when the kernel does not fit."""
    _, h, w = in_shape
    if kernel > min(h, w) + 2 * pad:
        key = "kernel" if kind == "conv2d" else "window size"
        raise SpecError(t.path, f"{kind} {key} {kernel} > input {h}x{w} with padding "
                        f"{padding}")
    return output_side(h, kernel, stride, pad), output_side(w, kernel, stride, pad)


def _check_units(t: Table, layer: Layer) -> None:
    """A conv's output image must stay within the units one layer may have."""
    if layer.size > MAX_UNITS:
        raise SpecError(t.path, f"conv2d output {describe(layer.out_shape)} = {layer.size} "
                        f"units is too many (allowed: at most {MAX_UNITS})")


def _inline_params(t: Table, layer: Layer) -> Layer:
    """Weights and biases written inline, checked against the layer's (W, b) shapes."""
    w_shape, b_shape = param_shapes(layer)
    weights = _shaped(t, "weights", w_shape) if t.has("weights") else None
    bias = _shaped(t, "bias", b_shape) if t.has("bias") else None
    return Layer(**{**layer.__dict__, "weights": weights, "bias": bias})


def _shaped(t: Table, key: str, shape: Shape) -> tuple:
    """Weights or biases written inline: finite in the run's dtype, of the layer's shape."""
    path = join(t.path, key)
    big = float(np.finfo(t.dtype).max)
    rows = matrix(path, t.get(key), len(shape), big, f" in a {t.dtype} run")
    try:
        got = np.shape(rows)
    except ValueError:                     # equal lengths per level, ragged below
        raise SpecError(path, f"is not a regular array (expected shape {shape})") from None
    if got != shape:
        layout = {2: "(fan_in, fan_out)", 4: "(filters, channels, kernel, kernel)"}.get(
            len(shape), "one per unit")
        raise SpecError(path, f"has shape {got}, expected {shape} ({layout})")
    return _frozen(rows)


def _frozen(rows: list | float) -> tuple | float:
    """Nested lists as nested tuples (a frozen dataclass field must be hashable)."""
    return tuple(map(_frozen, rows)) if isinstance(rows, list) else rows
