"""Conv shapes for `harness bench`: `conv:CxHxW-FcK-...-CLASSES:BATCH`, e.g.
`conv:3x16x16-16c3-32c3-10:64` (a 3x16x16 image, a 3x3 conv with 16 filters, one with 32, both
"valid" with ReLU, flatten, a dense softmax of 10, batches of 64).

The roofline of a conv is its im2col products: a conv of F filters of k x k on C channels with
an oh x ow output is, per batch of n, the matrix products of a dense layer with n oh ow rows,
fan_in C k k and fan_out F (forward cols @ W^T, weight gradient delta^T @ cols, input gradient
delta @ W). So a conv shape gives the bench the same (rows, fan_in, fan_out) triples a dense
one does, and its flops are 6 * sum(rows * fan_in * fan_out); what a backend spends beyond
them (im2col, col2im, the layout of its own convolution) is its distance to the roofline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.spec import MAX_PARAMS, Layer, SpecError
from harness.spec.datasets import MAX_SAMPLES
from harness.spec.layers import param_count
from harness.spec.layers import parse as parse_layer
from harness.spec.schema import Table, shown

PREFIX = "conv:"
_TEXT = re.compile(r"^conv:(\d{1,4})x(\d{1,4})x(\d{1,4})((?:-\d{1,5}c\d{1,3})+)"
                   r"-(\d{1,5}):(\d{1,7})$")
_CONV = re.compile(r"-(\d+)c(\d+)")
# (filters, kernel) of every conv: stride 1, "valid", ReLU (the classic benchmark's convs)
Convs = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ConvShape:
    image: tuple[int, int, int]           # (C, H, W)
    convs: Convs
    classes: int
    batch: int

    @classmethod
    def parse(cls, text: str) -> ConvShape:
        """conv:CxHxW-FcK-...-CLASSES:BATCH, within the bounds of a spec's network."""
        m = _TEXT.match(text)
        if not m:
            raise ValueError(f"--shapes: {shown(text)} is not conv:CxHxW-FcK-...-CLASSES:BATCH "
                             "like conv:3x16x16-16c3-32c3-10:64")
        c, h, w, convs, classes, batch = m.groups()
        shape = cls((int(c), int(h), int(w)),
                    tuple((int(f), int(k)) for f, k in _CONV.findall(convs)),
                    int(classes), int(batch))
        if min(*shape.image, shape.classes, shape.batch,
               *(v for conv in shape.convs for v in conv)) < 1:
            raise ValueError(f"--shapes: {shown(text)} has a zero size")
        shape.check_bounds(text)
        return shape

    def check_bounds(self, text: str) -> None:
        """ValueError, one line, where the network is not one a spec may hold."""
        try:
            layers = self.layers()
        except SpecError as err:
            raise ValueError(f"--shapes: {shown(text)}: {err.message}") from None
        for what, value, limit in (("rows in the batch", self.batch, MAX_SAMPLES),
                                   ("parameters", param_count(layers), MAX_PARAMS)):
            if value > limit:
                raise ValueError(f"--shapes: {shown(text)} has {value} {what} (allowed: at "
                                 f"most {limit})")

    def layers(self) -> tuple[Layer, ...]:
        """The convs, flatten and the softmax head, read as a spec's layers are."""
        tables = [*({"type": "conv2d", "filters": f, "kernel": k, "activation": "relu"}
                    for f, k in self.convs),
                  {"type": "flatten"}, {"size": self.classes, "activation": "softmax"}]
        out, shape = [], self.image
        for i, table in enumerate(tables):
            out.append(parse_layer(Table(table, f"layers[{i}]"), shape))
            shape = out[-1].out_shape
        return tuple(out)

    @property
    def inputs(self) -> int:
        return math.prod(self.image)

    @property
    def params(self) -> int:
        return param_count(self.layers())

    @property
    def units(self) -> int:
        """Per sample: every layer's outputs and every conv's im2col columns."""
        layers = self.layers()
        cols = sum(math.prod(layer.out_shape[1:]) * layer.in_shape[0] * layer.kernel ** 2
                   for layer in layers if layer.kind == "conv2d")
        return sum(layer.size for layer in layers) + cols

    def gemms(self) -> list[tuple[int, int, int]]:
        """(rows, fan_in, fan_out) of every layer's im2col or dense products."""
        out = []
        for layer in self.layers():
            if layer.kind == "conv2d":
                positions = math.prod(layer.out_shape[1:])
                out.append((self.batch * positions, layer.in_shape[0] * layer.kernel ** 2,
                            layer.out_shape[0]))
            elif layer.kind == "dense":
                out.append((self.batch, layer.in_shape[0], layer.size))
        return out

    @property
    def label(self) -> str:
        convs = "".join(f"-{f}c{k}" for f, k in self.convs)
        return f"{PREFIX}{'x'.join(map(str, self.image))}{convs}-{self.classes}:{self.batch}"

    @property
    def flops(self) -> float:
        return 6.0 * sum(r * a * b for r, a, b in self.gemms())
