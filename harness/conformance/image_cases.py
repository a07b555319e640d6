"""The conformance cases of the image layers (conv2d, pools, flatten), for every backend that
declares them (Capabilities.layer_types); a backend that does not is skipped with its reason.

The canonical layout is where ports go wrong, so it is tested, not assumed: kernels
(filters, channels, kh, kw) with no symmetry (a transposed or flipped kernel changes every
number), images NCHW with two channels (an NHWC reading mixes them), "same" and "valid"
padding, strides that skip input cells, overlapping max-pool windows with tied maxima
(integer pixels and kernels in multiples of 1/4, so ties are exact), and average pools.
"""

from __future__ import annotations

import numpy as np

from harness import params
from harness.conformance.candidates import SEED
from harness.conformance.cases import (
    REFERENCE,
    _batches,
    _close,
    _fresh,
    _identical,
    _not_the_reference,
    _pick,
    _within,
    trace_against_reference,
)
from harness.parity import tolerances
from harness.spec import Spec

SHAPE = (2, 5, 5)                 # two channels: an NHWC reading of the rows mixes them
ROWS = 12
PIXELS = 4                        # integer pixels 0..PIXELS-1: ties in every max-pool window
# a 2x2 kernel per (filter, channel) with four different entries, multiples of 1/4 (exact)
TIED_KERNEL = [[[[0.25, 0.5], [0.0, 0.75]], [[0.5, 0.0], [0.25, 0.25]]],
               [[[0.0, 0.25], [0.75, 0.5]], [[0.25, 0.25], [0.5, 0.0]]]]


def _data(integer: bool) -> dict:
    """Inline image rows (C, H, W order) and two regression targets."""
    rng = np.random.default_rng(SEED)
    size = (ROWS, int(np.prod(SHAPE)))
    x = rng.integers(0, PIXELS, size).astype(float) if integer else rng.normal(size=size)
    return {"name": "inline", "x": x.tolist(), "y": rng.normal(size=(ROWS, 2)).tolist(),
            "shape": list(SHAPE)}


def _table(layers: list[dict], integer: bool = False, **model: object) -> dict:
    return {"name": "conformance_image", "seed": SEED, "data": _data(integer),
            "model": {"layers": [*layers, {"type": "flatten"},
                                 {"size": 2, "activation": "identity"}], **model},
            "loss": {"name": "mse"}, "optimizer": {"name": "sgd"},
            "training": {"learning_rate": 0.05, "batch_size": 6, "steps": 3}}


# case -> the spec tables it runs on (the first one the backend supports)
TABLES = {
    "padding": [_table([{"type": "conv2d", "filters": 3, "kernel": 3, "padding": "same",
                         "activation": "tanh"},
                        {"type": "conv2d", "filters": 2, "kernel": 2, "stride": 2,
                         "activation": "sigmoid"}])],
    "pooling": [_table([{"type": "conv2d", "filters": 2, "kernel": 2, "activation": "relu",
                         "weights": TIED_KERNEL, "bias": [0.125, 0.125]},
                        {"type": "maxpool2d", "size": 2, "stride": 1},
                        {"type": "avgpool2d", "size": 2}], integer=True)],
}


def image_spec(name: str, case: str, dtype: str = "float64") -> Spec:
    return _pick(name, TABLES[case], dtype)


def conv_layout_roundtrip(name: str) -> str:
    """params() after load(p) is p bit for bit: the kernels go into the backend's own layout
    and come back (F, C, kh, kw), the empty pairs of parameter-less layers stay empty."""
    spec = image_spec(name, "pooling")
    p0 = params.initial_params(spec)
    _identical("params() after load(p), image layers", _fresh(name, spec).params(), p0)
    shapes = [w.shape for w, _ in p0]
    return f"kernels {shapes[0]} and empty {shapes[1]} returned exactly"


def _versus_reference(name: str, case: str, dtype: str) -> str:
    """Loss, gradients and one step against the reference's at the same point."""
    _not_the_reference(name)
    spec = image_spec(name, case, dtype)
    bounds, batch = tolerances(spec), _batches(spec, 1)[0]
    backend, ref = _fresh(name, spec), _fresh(REFERENCE, spec)
    value, grads = backend.loss_and_grads(batch)
    ref_value, ref_grads = ref.loss_and_grads(batch)
    _close(f"loss vs {REFERENCE}", value, ref_value, bounds.value_rtol)
    err = _within("gradient", grads, ref_grads, bounds.grad_rtol)
    backend.train_step(batch)
    ref.train_step(batch)
    err = max(err, _within("params after one step", backend.params(), ref.params(),
                           bounds.grad_rtol))
    return f"{dtype}: max rel err {err:.1e} (tolerance {bounds.grad_rtol:.1e})"


def conv_padding(name: str, dtype: str = "float64") -> str:
    """A "same" conv and a strided "valid" conv, two channels, against the reference."""
    return _versus_reference(name, "padding", dtype)


def pooling(name: str, dtype: str = "float64") -> str:
    """Overlapping max-pool windows with exact ties (routed by the spec's pool_ties) and an
    average pool, against the reference."""
    return _versus_reference(name, "pooling", dtype)


def image_trace(name: str, dtype: str = "float64") -> str:
    """The layer trace of the pooling spec (conv, overlapping max-pool with ties, average
    pool, flatten, dense) against the reference's: every z, a, dJ/dz, dJ/da (rows, units)
    in C, H, W order, a tie's dJ/da routed by the spec's rule, and the gradients."""
    _not_the_reference(name)
    return trace_against_reference(name, image_spec(name, "pooling", dtype))
