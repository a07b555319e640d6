"""Convolutional layers: the spec's shape arithmetic, the canonical layout (kernels (F, C, k, k),
images NCHW, flatten in C, H, W order), the textbook's conv and pool backward against finite
differences, and the smallest errors each check is meant to catch, injected and caught: a
kernel not flipped in the input gradient, a kernel read transposed in the weight gradient, a
pool gradient routed to the wrong window cell, an NHWC image read as NCHW."""

from __future__ import annotations

import numpy as np
import pytest

from harness import params
from harness.spec import Spec, SpecError, from_dict
from harness.spec.layers import fans
from harness.verify import oracle
from harness.verify import tolerances as tol
from implementations import im2col as fast_conv
from implementations import textbook_layers as image
from implementations.numpy_textbook import NumpyTextbook

RNG_SEED = 3
SHAPE = (2, 4, 4)                         # two channels, so a channel mix-up shows
ROWS = 6
# The same sums in another order differ by float64 rounding only: the same-point bound.
SAME_SUMS = tol.FLOAT64.value_rtol
# A tie routed by the other rule moves a kernel gradient by a share of a whole window's
# delta (7.5e-3 relative in pool_ties at step 0), orders of magnitude beyond rounding: a
# difference above this bound shows that ties matter in the spec.
TIES_MATTER = 1e-3


def inline_data(shape: tuple[int, int, int] = SHAPE, rows: int = ROWS) -> dict:
    rng = np.random.default_rng(RNG_SEED)
    x = rng.normal(size=(rows, int(np.prod(shape))))
    y = rng.normal(size=(rows, 2))
    return {"name": "inline", "x": x.tolist(), "y": y.tolist(), "shape": list(shape)}


def conv_spec(layers: list[dict], data: dict | None = None, **model: object) -> Spec:
    """A tiny image network on inline data, a dense identity output of 2 and mse."""
    return from_dict({"name": "conv", "seed": 1, "data": data or inline_data(),
                      "model": {"layers": [*layers, {"size": 2, "activation": "identity"}],
                                **model},
                      "loss": {"name": "mse"},
                      "training": {"learning_rate": 0.1, "steps": 1}})


# conv -> conv -> overlapping max-pool -> flatten: a second conv makes the first conv's
# gradients go through an input gradient (dJ/dx), and stride 1 pools overlap
STACK = [{"type": "conv2d", "filters": 3, "kernel": 3, "padding": "same", "activation": "tanh"},
         {"type": "conv2d", "filters": 2, "kernel": 2, "activation": "tanh"},
         {"type": "maxpool2d", "size": 2, "stride": 1},
         {"type": "flatten"}]
AVG_STACK = [{"type": "conv2d", "filters": 2, "kernel": 2, "stride": 2, "activation": "sigmoid"},
             {"type": "avgpool2d", "size": 2},
             {"type": "flatten"}]


# (layers, expected (C, H, W) of each image layer's output)
SHAPES = {
    "valid": ([{"type": "conv2d", "filters": 5, "kernel": 3, "activation": "relu"}],
              [(5, 2, 2)]),
    "same": ([{"type": "conv2d", "filters": 5, "kernel": 3, "padding": "same",
               "activation": "relu"}], [(5, 4, 4)]),
    "stride_floors": ([{"type": "conv2d", "filters": 1, "kernel": 2, "stride": 3,
                        "activation": "relu"}], [(1, 1, 1)]),
    "pool_default_stride": ([{"type": "maxpool2d", "size": 2}], [(2, 2, 2)]),
    "pool_stride_1": ([{"type": "avgpool2d", "size": 3, "stride": 1}], [(2, 2, 2)]),
}


@pytest.mark.parametrize("case", SHAPES, ids=str)
def test_shape_arithmetic(case: str) -> None:
    layers, shapes = SHAPES[case]
    spec = conv_spec([*layers, {"type": "flatten"}])
    assert [layer.out_shape for layer in spec.model.layers[:len(shapes)]] == shapes
    assert spec.model.layers[len(shapes)].size == int(np.prod(shapes[-1]))


# (layers, key path the error names, fragment of the message)
BAD = {
    "kernel_too_big": ([{"type": "conv2d", "filters": 1, "kernel": 5, "activation": "relu"}],
                       "model.layers[0]", "conv2d kernel 5 > input 4x4 with padding valid"),
    "size_on_conv": ([{"type": "conv2d", "filters": 1, "kernel": 2, "size": 3,
                       "activation": "relu"}], "model.layers[0].size", "not a key of a conv2d"),
    "dense_on_image": ([{"type": "conv2d", "filters": 1, "kernel": 2, "activation": "relu"},
                        {"size": 3, "activation": "relu"}], "model.layers[1].type",
                       "a flatten layer before it"),
    "even_kernel_same": ([{"type": "conv2d", "filters": 1, "kernel": 2, "padding": "same",
                           "activation": "relu"}], "model.layers[0].padding", "odd kernel"),
}


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_shapes_are_one_line_errors(case: str) -> None:
    layers, path, fragment = BAD[case]
    with pytest.raises(SpecError) as err:
        conv_spec([*layers, {"type": "flatten"}])
    assert err.value.path == path and fragment in str(err.value) and "\n" not in str(err.value)


def test_dense_specs_on_image_data_read_flat_rows() -> None:
    """Every existing digits spec (dense first) reads the 64 pixels as features, unchanged."""
    spec = from_dict({"name": "d", "data": {"name": "digits"},
                      "model": {"layers": [{"size": 10, "activation": "softmax"}]},
                      "loss": {"name": "cross_entropy"},
                      "training": {"learning_rate": 0.1, "steps": 1}})
    assert spec.model.layers[0].in_shape == (64,)


def test_layout_and_fans() -> None:
    """Kernels (F, C, k, k), bias (F,), empty pairs for parameter-less layers; the init's fans
    are torch's _calculate_fan_in_and_fan_out (C k^2, F k^2)."""
    spec = conv_spec(STACK)
    shapes = [(w.shape, b.shape) for w, b in params.initial_params(spec)]
    assert shapes == [((3, 2, 3, 3), (3,)), ((2, 3, 2, 2), (2,)), ((0,), (0,)), ((0,), (0,)),
                      ((8, 2), (2,))]
    assert fans(spec.model.layers[0]) == (2 * 9, 3 * 9)


def test_conv_fans_are_torchs() -> None:
    torch = pytest.importorskip("torch")
    spec = conv_spec(STACK)
    w = torch.empty(*params.initial_params(spec)[1][0].shape)
    assert fans(spec.model.layers[1]) == torch.nn.init._calculate_fan_in_and_fan_out(w)


def conv_forward_by_definition(layer, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z[n, f, i, j] = b[f] + sum W[f, c, u, v] xp[n, c, i s + u, j s + v], element by element:
    the definition the vectorised textbook code must equal."""
    xp, k, s = image.pad(x, layer.pad), layer.kernel, layer.stride
    z = np.empty((len(x), *layer.out_shape))
    for n, f, i, j in np.ndindex(z.shape):
        z[n, f, i, j] = b[f] + np.sum(W[f] * xp[n, :, i * s:i * s + k, j * s:j * s + k])
    return z


@pytest.mark.parametrize("stack", [STACK, AVG_STACK], ids=["same_valid", "strided"])
def test_conv_forward_is_the_definition(stack: list[dict]) -> None:
    spec = conv_spec(stack)
    layer, (W, b) = spec.model.layers[0], params.initial_params(spec)[0]
    x = np.asarray(spec.data.x).reshape(ROWS, *SHAPE)
    got, want = image.conv_forward(layer, x, W, b), conv_forward_by_definition(layer, x, W, b)
    assert tol.errors(got, want)[1] <= SAME_SUMS


def failed_tensors(spec: Spec) -> list[str]:
    return [c.parameter for c in oracle.check_at_start(NumpyTextbook, spec)
            if c.status != "ok"]


@pytest.mark.parametrize("stack", [STACK, AVG_STACK], ids=["same_valid", "strided"])
def test_textbook_conv_and_pools_match_finite_differences(stack: list[dict]) -> None:
    assert failed_tensors(conv_spec(stack)) == []


def unflipped(layer, x, W, delta):
    """The classic bug: dJ/dx as a correlation with the kernel NOT flipped."""
    return _with_kernel(layer, x, W, delta, W[:, :, ::-1, ::-1])


def transposed(layer, x, W, delta):
    """The kernel read (kw, kh) instead of (kh, kw) in the input gradient."""
    return _with_kernel(layer, x, W, delta, W.transpose(0, 1, 3, 2))


def _with_kernel(layer, x, W, delta, used):
    dW, db, _ = CORRECT_BACKWARD(layer, x, W, delta)
    return dW, db, CORRECT_BACKWARD(layer, x, used, delta)[2]


CORRECT_BACKWARD = image.conv_backward


@pytest.mark.parametrize("bug", [unflipped, transposed], ids=lambda f: f.__name__)
def test_a_wrong_input_gradient_is_caught(bug, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first conv's gradients reach it through the second conv's dJ/dx: a kernel used
    unflipped or transposed there fails W0 and b0 (the second conv's own W1 stays right)."""
    monkeypatch.setattr(image, "conv_backward", bug)
    failed = failed_tensors(conv_spec(STACK))
    assert "W0" in failed and "W1" not in failed


def test_a_weight_gradient_read_transposed_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(layer, x, W, delta):
        dW, db, dx = CORRECT_BACKWARD(layer, x, W, delta)
        return dW.transpose(0, 1, 3, 2), db, dx
    monkeypatch.setattr(image, "conv_backward", bug)
    assert {"W0", "W1"} <= set(failed_tensors(conv_spec(STACK)))


# one 1x1x2x4 image: the left window ties (3 at (0,1) and (1,0)), the right one does not
TIED = np.array([[[[1.0, 3.0, 0.0, 5.0],
                   [3.0, 2.0, 1.0, 4.0]]]])
ROUTED = {"first": [[0.0, 1.0, 0.0, 2.0],
                    [0.0, 0.0, 0.0, 0.0]],
          "split": [[0.0, 0.5, 0.0, 2.0],
                    [0.5, 0.0, 0.0, 0.0]]}


def tied_pool() -> tuple:
    spec = conv_spec([{"type": "maxpool2d", "size": 2}, {"type": "flatten"}],
                     data=inline_data((1, 2, 4), 2))
    layer = spec.model.layers[0]
    z = image.pool_forward(layer, TIED)
    return layer, z, np.array([[[[1.0, 2.0]]]])


@pytest.mark.parametrize("ties", ROUTED, ids=str)
def test_maxpool_routes_a_tie_by_the_rule(ties: str) -> None:
    layer, z, delta = tied_pool()
    assert np.array_equal(image.maxpool_backward(layer, TIED, z, delta, ties)[0, 0],
                          ROUTED[ties])


def test_a_tie_sent_to_the_wrong_input_is_caught() -> None:
    """The check above fails for a rule that sends a tie to the LAST maximum."""
    layer, z, delta = tied_pool()
    flipped = image.maxpool_backward(layer, TIED[..., ::-1, ::-1], z[..., ::-1, ::-1],
                                     delta[..., ::-1, ::-1], "first")[..., ::-1, ::-1]
    assert not np.array_equal(flipped[0, 0], ROUTED["first"])


def test_rows_are_read_as_nchw() -> None:
    """Row pixels are (C, H, W): a 1x1 conv whose kernel keeps channel 1 sees exactly the
    second half of every row; reading the row as NHWC (channels interleaved) would not."""
    spec = conv_spec([{"type": "conv2d", "filters": 1, "kernel": 1, "activation": "identity",
                       "weights": [[[[0.0]], [[1.0]]]], "bias": [0.0]},
                      {"type": "flatten"}])
    backend = NumpyTextbook(spec)
    backend.load(params.initial_params(spec))
    x = np.asarray(spec.data.x)
    seen = backend.forward(x, ())[0].z.reshape(ROWS, -1)
    half = x.shape[1] // 2
    assert np.array_equal(seen, x[:, half:])
    nhwc = x.reshape(ROWS, 4, 4, 2).transpose(0, 3, 1, 2).reshape(ROWS, -1)
    assert not np.array_equal(seen, nhwc[:, half:])


# ---- max-pool ties: what the frameworks do, what backends declare, what the diagnosis says

FRAMEWORK_TIES = ("torch", "jax", "tensorflow")


def framework_pool_grad(framework: str, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """dJ/dx of J = sum(delta * maxpool2x2(x)) by the framework's own autodiff, NCHW."""
    if framework == "torch":
        torch = pytest.importorskip("torch")
        t = torch.tensor(x, requires_grad=True)
        (torch.nn.functional.max_pool2d(t, 2) * torch.tensor(delta)).sum().backward()
        return t.grad.numpy()
    if framework == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)

        def f(a):
            pooled = jax.lax.reduce_window(a, -np.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                           "VALID")
            return (pooled * delta).sum()
        return np.asarray(jax.grad(f)(x))
    tf = pytest.importorskip("tensorflow")
    v = tf.Variable(x.transpose(0, 2, 3, 1))                        # TF pools NHWC
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.nn.max_pool2d(v, 2, 2, "VALID") * delta.transpose(0, 2, 3, 1))
    return tape.gradient(y, v).numpy().transpose(0, 3, 1, 2)


@pytest.mark.parametrize("framework", FRAMEWORK_TIES)
def test_frameworks_send_a_tie_to_the_first_maximum(framework: str) -> None:
    """What torch, JAX and TensorFlow really do on CPU (the `first` rule, not `split`)."""
    _, _, delta = tied_pool()
    got = framework_pool_grad(framework, TIED, delta)[0, 0]
    assert np.array_equal(got, ROUTED["first"]) and not np.array_equal(got, ROUTED["split"])


TIES_SPEC = "experiments/pool_ties.toml"


def ties_spec(rule: str) -> Spec:
    from harness.spec import sweep
    return next(s for s in sweep.load(TIES_SPEC) if s.model.pool_ties == rule)


@pytest.mark.parametrize(("backend", "split_ok"), [("numpy", True), ("numpy_fast", True),
                                                   ("torch", False), ("jax", False),
                                                   ("tensorflow", False)])
def test_backends_declare_their_tie_rule(backend: str, split_ok: bool) -> None:
    from harness.registry import backend_class
    cls = backend_class(backend)
    assert cls.unsupported(ties_spec("first")) is None
    why = cls.unsupported(ties_spec("split"))
    assert (why is None) == split_ok and (split_ok or "first maximum" in why)


def first_step_grads(backend: str, spec: Spec) -> list[np.ndarray]:
    from harness import data
    from harness.registry import backend_class
    if backend in ("torch", "jax", "tensorflow"):
        pytest.importorskip(backend)
    ds = data.prepare(spec)
    batch = data.train_batch(spec, ds, data.plan(spec, len(ds.train.x)), 0)
    b = backend_class(backend)(spec)
    b.load(params.initial_params(spec))
    return params.flatten(b.loss_and_grads(batch)[1])


def largest_rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(tol.errors(x, y)[1] for x, y in zip(a, b, strict=True) if x.size)


@pytest.mark.parametrize("backend", ["numpy_fast", "torch", "jax", "tensorflow"])
def test_every_backend_follows_first_where_ties_matter(backend: str) -> None:
    spec = ties_spec("first")
    ref, split = first_step_grads("numpy", spec), first_step_grads("numpy", ties_spec("split"))
    assert largest_rel_diff(ref, split) > TIES_MATTER
    assert largest_rel_diff(first_step_grads(backend, spec), ref) <= tol.FLOAT64.grad_rtol


def test_numpy_fast_splits_ties_as_the_textbook() -> None:
    spec = ties_spec("split")
    assert largest_rel_diff(first_step_grads("numpy_fast", spec),
                            first_step_grads("numpy", spec)) <= tol.FLOAT64.grad_rtol


class _Splits(NumpyTextbook):
    """Routes ties by `split` whatever the spec says (a framework's other convention)."""

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        import dataclasses
        super().__init__(dataclasses.replace(
            spec, model=dataclasses.replace(spec.model, pool_ties="split")), device)


class _Last(NumpyTextbook):
    """Routes ties to the LAST maximum: no convention of the spec, a bug."""

    def backward(self, caches, delta):
        original = image.maxpool_backward

        def last(layer, x, z, d, ties):
            flip = (..., slice(None, None, -1), slice(None, None, -1))
            return original(layer, x[flip], z[flip], d[flip], ties)[flip]
        image.maxpool_backward = last
        try:
            return super().backward(caches, delta)
        finally:
            image.maxpool_backward = original


@pytest.mark.parametrize(("cls", "named"), [(_Splits, "model.pool_ties=split"), (_Last, None)],
                         ids=["split_is_a_convention", "last_is_a_bug"])
def test_the_diagnosis_tells_a_tie_rule_from_a_bug(cls: type, named: str | None) -> None:
    import pandas as pd

    from harness import data
    from harness.verify import diagnose, phases, same_point
    spec = ties_spec("first")
    ds = data.prepare(spec)
    batch = data.train_batch(spec, ds, data.plan(spec, len(ds.train.x)), 0)
    p0 = params.initial_params(spec)
    ref = same_point.evaluate_at(NumpyTextbook(spec), p0, batch, data.eval_batch(ds.validation))
    odd = same_point.evaluate_at(cls(spec), p0, batch, data.eval_batch(ds.validation))
    limits = {k: tol.FLOAT64.grad_rtol for k in ref.quantities()}
    rows = phases.pair_rows(0, "odd", "numpy", odd.quantities(), ref.quantities(), limits)
    rows = phases.tie_convention(rows, spec, p0, batch, odd.quantities(), limits)
    found = diagnose.diagnosis(pd.DataFrame(rows), "odd", ["numpy", "odd"])
    assert found["phase"] == "backward" and found["convention"] == named


# ---- the conformance suite's image cases catch the port errors they exist for


def test_conformance_image_cases_pass_for_every_backend_that_declares_them() -> None:
    from harness.conformance import image_cases
    for backend in ("numpy_fast", "torch", "jax", "tensorflow"):
        if backend != "numpy_fast":
            pytest.importorskip(backend)
        image_cases.conv_layout_roundtrip(backend)
        image_cases.conv_padding(backend)
        image_cases.pooling(backend)
        image_cases.image_trace(backend)


def test_a_backend_without_image_layers_is_skipped_with_the_reason() -> None:
    from harness.conformance import image_cases
    from harness.conformance.cases import Skip
    pytest.importorskip("sklearn")
    with pytest.raises(Skip, match="does not support layer type 'conv2d'"):
        image_cases.conv_padding("sklearn")


class _SplitsInFast:
    """numpy_fast's view of the textbook layers, its max-pool routing ties by `split`."""

    def __getattr__(self, name: str):
        return getattr(image, name)

    @staticmethod
    def maxpool_backward(layer, x, z, delta, ties):
        return image.maxpool_backward(layer, x, z, delta, "split")


def _nhwc_cols(layer, x):
    """im2col of the image read NHWC: the rows' pixels taken as (H, W, C)."""
    n, c, h, w = x.shape
    return CORRECT_IM2COL(layer, x.reshape(n, h, w, c).transpose(0, 3, 1, 2))


def _unflipped_col2im(layer, dcols, x_shape, out):
    """col2im adding every receptive field back with its kernel offsets reversed."""
    k = layer.kernel
    n, oh, ow = x_shape[0], *layer.out_shape[1:]
    fields = dcols.reshape(n, oh, ow, x_shape[1], k, k)[..., ::-1, ::-1]
    CORRECT_COL2IM(layer, np.ascontiguousarray(fields).reshape(dcols.shape), x_shape, out)


CORRECT_IM2COL, CORRECT_COL2IM = fast_conv.im2col, fast_conv.col2im


# (what is patched, the bug, the case that must catch it, what its failure names): a wrong
# forward pass shows in the loss, a wrong backward pass in a kernel's gradient
PORT_ERRORS = {
    "tie_routed_split": ("implementations.numpy_fast.image", _SplitsInFast(), "pooling",
                         r"gradient: W0 rel err"),
    "tie_routed_split_in_the_trace": ("implementations.numpy_fast.image", _SplitsInFast(),
                                      "image_trace", r"da0 vs numpy: rel err"),
    "nhwc_read_as_nchw": ("implementations.im2col.im2col", _nhwc_cols, "conv_padding",
                          r"loss vs numpy"),
    "kernel_unflipped_in_dx": ("implementations.im2col.col2im", _unflipped_col2im,
                               "conv_padding", r"gradient: W0 rel err"),
}


@pytest.mark.parametrize("error", PORT_ERRORS, ids=str)
def test_conformance_catches_a_port_error_in_numpy_fast(error: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.conformance import image_cases
    target, bug, case, caught = PORT_ERRORS[error]
    monkeypatch.setattr(target, bug)
    with pytest.raises(AssertionError, match=caught):
        getattr(image_cases, case)("numpy_fast")


def test_explain_writes_out_the_image_layers() -> None:
    from harness.explain import explain
    text = explain(conv_spec(STACK), ["numpy", "numpy_fast"], 0, 0)
    assert "layer 0 (conv2d 2x4x4 -> 3x4x4, kernel 3, stride 1, padding same)" in text
    assert "layer 2 (maxpool2d 2x3x3 -> 2x2x2, kernel 2, stride 1)" in text
    assert "|dE/dW1|  (batch)" in text and "layer 3 (flatten 2x2x2 -> 8 units)" in text


def test_grad_norm_plot_labels_conv_layers() -> None:
    import pandas as pd

    from harness.plots import training
    norms = pd.DataFrame({"backend": "numpy", "step": 0, "parameter": ["W0", "b0", "W2", "W3"],
                          "norm": [1.0, 0.5, 0.0, 2.0]})
    fig = training.grad_norms(norms, ["numpy"], "t", ["conv2d", "maxpool2d", "flatten", "dense"])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["W0\nconv2d", "W3\ndense"]


def test_input_gradient_is_the_full_correlation_with_the_flipped_kernel() -> None:
    """The docstring's claim, stride 1: dJ/dx = delta padded by k - 1, cross-correlated with
    W flipped in both spatial axes and its F and C axes swapped; unflipped it is wrong."""
    import dataclasses
    spec = conv_spec([{"type": "conv2d", "filters": 3, "kernel": 3, "activation": "tanh"},
                      {"type": "flatten"}])
    layer, (W, _) = spec.model.layers[0], params.initial_params(spec)[0]
    x = np.asarray(spec.data.x).reshape(ROWS, *SHAPE)
    delta = np.random.default_rng(RNG_SEED).normal(size=(ROWS, *layer.out_shape))
    dx = image.conv_backward(layer, x, W, delta)[2]
    k = layer.kernel
    full = dataclasses.replace(layer, in_shape=delta.shape[1:], out_shape=x.shape[1:])
    padded = np.pad(delta, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    zero = np.zeros(SHAPE[0])
    assert tol.errors(conv_forward_by_definition(full, padded, flipped, zero), dx)[1] \
        <= SAME_SUMS
    unflipped = W.transpose(1, 0, 2, 3)
    assert tol.errors(conv_forward_by_definition(full, padded, unflipped, zero), dx)[1] \
        > SAME_SUMS


# ---- the bench's conv shapes: their roofline is the im2col products


def test_conv_bench_shape_counts_its_im2col_products() -> None:
    from harness.bench import suite
    shape = suite.Shape.parse("conv:3x16x16-16c3-32c3-10:64")
    assert shape.label == "conv:3x16x16-16c3-32c3-10:64"
    # conv 1: 64 x 14 x 14 positions, 3 x 3 x 3 columns, 16 filters; conv 2: 64 x 12 x 12,
    # 16 x 3 x 3, 32; the head: 64 rows, 32 x 12 x 12 = 4608 inputs, 10 classes
    assert shape.gemms() == [(12544, 27, 16), (9216, 144, 32), (64, 4608, 10)]
    assert shape.flops == 6.0 * (12544 * 27 * 16 + 9216 * 144 * 32 + 64 * 4608 * 10)
    spec = suite.bench_spec(shape, "float64")
    assert [layer.kind for layer in spec.model.layers] == ["conv2d", "conv2d", "flatten",
                                                           "dense"]
    ops = suite.operands(shape, "float64")
    assert [h.shape for h, _, _ in ops] == [(12544, 27), (9216, 144), (64, 4608)]


@pytest.mark.parametrize(("text", "fragment"), [
    ("conv:1x8x8-16c9-10:256", "conv2d kernel 9 > input 8x8"),
    ("conv:1x8x8-10:2", "is not conv:CxHxW"),
    ("conv:3x64x64-64c3-10:8", "units is too many"),
])
def test_bad_conv_bench_shapes_are_one_line_errors(text: str, fragment: str) -> None:
    from harness.bench import suite
    with pytest.raises(ValueError, match=fragment):
        suite.Shape.parse(text)


def test_a_conv_bench_step_runs_for_numpy_fast() -> None:
    from harness.bench import suite
    from implementations.numpy_fast import NumpyFast
    shape = suite.Shape.parse("conv:1x6x6-2c3-3:4")
    spec = suite.bench_spec(shape, "float64")
    backend = NumpyFast(spec)
    backend.load(params.initial_params(spec))
    assert np.isfinite(backend.train_step(suite.bench_batch(shape, "float64")))


def test_finite_differences_check_split_ties_and_leave_first_ties_unresolved() -> None:
    """At exact ties of two the central difference is the mean of the one-sided slopes:
    `split`'s gradient passes exactly here; `first`'s, with several windows tied at once, can
    lie outside the loss's one-sided slopes, so the oracle calls that tensor unresolved, not
    failed; and as a tie of three breaks split the same way, under either rule wherever the
    network has a max-pool."""
    statuses = {rule: {c.parameter: c.status
                       for c in oracle.check_at_start(NumpyTextbook, ties_spec(rule))}
                for rule in ("first", "split")}
    assert statuses["split"]["W0"] == "ok" and statuses["first"]["W0"] == "unresolved"
    assert statuses["first"]["W3"] == statuses["split"]["W3"] == "ok"
    assert oracle.ties_unresolvable(ties_spec("first"))
    assert oracle.ties_unresolvable(ties_spec("split"))
    assert not oracle.ties_unresolvable(conv_spec(AVG_STACK))


def test_the_verdict_says_why_a_tied_tensor_is_unresolved() -> None:
    import math

    import pandas as pd

    from harness.verify import verdict
    rows = pd.DataFrame({"parameter": ["W0", "W3"], "status": ["unresolved", "ok"],
                         "max_rel_err": [7.5e-3, 1e-10], "resolution": [math.inf, 1e-9],
                         "tolerance": [math.inf, 1e-7], "kinks": [8, 0], "step": [0, 0]})
    check = verdict._oracle(rows, "numpy", None)
    assert check.status == "unresolved" and "only at kinks, max-pool ties" in check.detail


def test_preflight_counts_a_conv_nets_parameters_and_work() -> None:
    """The memory and time estimate reads kernels, not units x units: 3x2x3x3 + 3 and
    2x3x2x2 + 2 and 8x2 + 2 parameters; a conv's work is its outputs times C k k."""
    from harness.preflight.memory import Shape
    from harness.spec.layers import param_count
    spec = conv_spec(STACK)
    shape = Shape.of(spec)
    assert shape.params == param_count(spec.model.layers) == 57 + 26 + 18
    assert shape.weights == 3 * 4 * 4 * 2 * 9 + 2 * 3 * 3 * 3 * 4 + 2 * 2 * 2 * 4 + 8 * 2


POOL_FIRST = {"name": "pool_first", "seed": 0,
              "data": {"name": "digits"},
              "model": {"layers": [{"type": "maxpool2d", "size": 2}, {"type": "flatten"},
                                   {"size": 10, "activation": "softmax"}]},
              "loss": {"name": "cross_entropy"},
              "training": {"learning_rate": 0.1, "batch_size": 16, "steps": 3}}


def test_a_net_that_starts_without_parameters_runs_and_traces_in_every_backend() -> None:
    """A leading pool's z and a depend on no parameter: torch's trace once asked autograd for
    their gradients outside the graph and crashed."""
    import harness

    result = harness.run(POOL_FIRST, ["numpy", "numpy_fast", "torch", "jax"])
    assert result.verdict == "agree"
    assert set(result.tables["phases"].backend) >= {"torch", "jax"}


def test_a_tie_of_three_under_split_is_not_a_disagreement() -> None:
    """pool_ties with an overlapping (stride 1) max-pool: windows tie three ways, where
    split's share is not the central difference; the oracle must not call the textbook's
    correct gradient a failure (a review found this false "disagree")."""
    import tomllib
    from pathlib import Path

    import harness

    raw = tomllib.loads((Path(__file__).parents[1] / "experiments/pool_ties.toml").read_text())
    assert raw["model"]["layers"][1]["type"] == "maxpool2d"
    raw["model"]["layers"][1]["stride"] = 1
    raw.pop("sweep")
    raw["model"]["pool_ties"] = "split"
    raw["training"] = {**{k: v for k, v in raw["training"].items() if k != "epochs"},
                       "batch_size": 16, "steps": 3}
    result = harness.run(raw, ["numpy", "numpy_fast"])
    (point,) = result.summary["variants"]
    oracle_rows = {c["backend"]: c["status"] for c in point["checks"] if c["check"] == "oracle"}
    assert "fail" not in oracle_rows.values() and result.verdict != "disagree"
    assert {c["status"] for c in point["checks"] if c["check"] == "gradients"} == {"ok"}


def test_a_flatten_first_reads_the_image_and_a_dense_first_its_pixels() -> None:
    flat = from_dict({**POOL_FIRST, "model": {"layers": [
        {"type": "flatten"}, {"size": 10, "activation": "softmax"}]}})
    dense = from_dict({**POOL_FIRST, "model": {"layers": [
        {"size": 10, "activation": "softmax"}]}})
    assert flat.model.layers[0].in_shape == (1, 8, 8) and flat.model.layers[1].in_shape == (64,)
    assert dense.model.layers[0].in_shape == (64,)
