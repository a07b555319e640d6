"""The spec's vocabulary: the allowed names, the bounds and the frozen dataclasses a TOML file
is read into (by `harness.spec.parse`). Every hyper-parameter default lives here, once. The
optimizer maths each backend must follow is `harness.optim` (written out in
`docs/optimizers.md`); the option names below are the ones used there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DTYPES = ("float64", "float32")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax")
LOSSES = ("mse", "half_sse", "bce", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
LAYER_TYPES = ("dense", "conv2d", "maxpool2d", "avgpool2d", "flatten")
# The layer types that see an image (channels, height, width) and keep it one.
IMAGE_TYPES = ("conv2d", "maxpool2d", "avgpool2d")
POOL_TYPES = ("maxpool2d", "avgpool2d")
PADDINGS = ("valid", "same")
# The TOML keys each layer type reads; any other key is refused on it (`size` means units
# on a dense layer and the window side on a pool, so it is never silently ignored).
TYPE_KEYS = {
    "dense": ("size", "activation", "negative_slope", "drop_prob", "trainable_bias",
              "weights", "bias"),
    "conv2d": ("filters", "kernel", "stride", "padding", "activation", "negative_slope",
               "drop_prob", "trainable_bias", "weights", "bias"),
    "maxpool2d": ("size", "stride"),
    "avgpool2d": ("size", "stride"),
    "flatten": (),
}
# Where a max-pool sends the gradient of a window whose maximum is reached more than once:
# all of it to the first maximum in row-major order, or split evenly among the tied inputs.
POOL_TIES = ("first", "split")
INITS = ("xavier_normal", "xavier_uniform", "he_normal", "he_uniform")
EPS_PLACEMENTS = ("outside", "inside")
BIAS_CORRECTIONS = ("standard", "folded")
# The losses computed from the logits z (never through a = f(z)): a trace's dJ/da is None at
# their output layer.
LOGIT_LOSSES = ("cross_entropy", "bce")
# The output activation each loss is defined on.
LOSS_OUTPUT = {"cross_entropy": ("softmax",), "bce": ("sigmoid",),
               "mse": ("sigmoid", "tanh", "relu", "leaky_relu", "identity"),
               "half_sse": ("sigmoid", "tanh", "relu", "leaky_relu", "identity")}
# Which optimizer keys each optimizer reads; any other key is an error, not silently ignored.
OPTIMIZER_KEYS = {"sgd": (), "momentum": ("momentum", "nesterov"),
                  "rmsprop": ("rho", "eps", "eps_placement"),
                  "adam": ("beta1", "beta2", "eps", "eps_placement", "bias_correction")}
# Layer options that only some activations read (every other option, every layer reads): the
# parser refuses them elsewhere, and a backend's declared convention applies only there.
LAYER_KEYS = {"negative_slope": ("leaky_relu",)}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
NAME_MAX = 100                            # it names a folder: well below any file system limit
# Bounds that keep a typo (size = 1000000000) from exhausting memory instead of failing cleanly.
MAX_UNITS = 10_000                        # units in one layer
# Image sides and kernel sides: digits are 8x8; a side beyond this is a typo, and a kernel's
# patch count (side^2 per channel) must stay far below MAX_UNITS.
MAX_SIDE = 1_000
MAX_CHANNELS = MAX_UNITS                  # channels of an image or filters of a conv
MAX_PARAMS = 10_000_000                   # weights and biases of the whole network
MAX_STEPS = 1_000_000                     # optimizer steps of one run
# A sweep's points run one after another in one command: together they get one run's steps.
MAX_SWEEP_STEPS = MAX_STEPS
# Each point is a whole run however short (setup, JIT compilation, oracle, plots: seconds
# each), so a thousand points is already an hour; the shipped sweeps have at most five.
MAX_SWEEP_POINTS = 1_000
# The seed is stored in meta.json and the results' tables, which pandas reads back as int64.
MAX_SEED = 2**63 - 1
# An init file's arrays as read once when the spec is validated: [(W, b), ...], read-only float64.
InitParams = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class Layer:
    """One layer. `kind` "dense": z = h_prev @ W + b, h = activation(z), then dropout on hidden
    layers. "conv2d": z = cross-correlation of the image h_prev (C, H, W) with W (filters,
    C, kernel, kernel) plus b (filters,). "maxpool2d"/"avgpool2d": z = max / mean of each
    kernel x kernel window, no parameters. "flatten": z = h_prev read in C, H, W order.
    Pools and flatten have the identity activation and no dropout.

    `size` is the layer's output units for every kind (filters x out_h x out_w for a conv,
    so masks and traces are (rows, size)); `in_shape` and `out_shape` are what it reads and
    writes, (C, H, W) for an image and (units,) for a flat vector, fixed by the parser."""
    size: int
    activation: str
    negative_slope: float = 0.01          # leaky_relu: f(z) = z if z > 0 else slope * z
    drop_prob: float = 0.0                # probability of DROPPING a unit (inverted dropout)
    trainable_bias: bool = True
    weights: tuple | None = None          # explicit W: (fan_in, fan_out) or (F, C, k, k)
    bias: tuple[float, ...] | None = None
    kind: str = "dense"                   # the TOML key `type`
    kernel: int = 0                       # conv kernel side, or pool window side
    stride: int = 1
    padding: str = "valid"                # conv2d: "same" pads (kernel - 1) / 2 on each side
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    @property
    def has_params(self) -> bool:
        """Dense and conv layers have (W, b); pools and flatten hold two empty arrays."""
        return self.kind in ("dense", "conv2d")

    @property
    def pad(self) -> int:
        """Zeros added on each side of the image (conv2d "same" with an odd kernel)."""
        return (self.kernel - 1) // 2 if self.padding == "same" else 0


@dataclass(frozen=True)
class Model:
    inputs: int
    layers: tuple[Layer, ...]
    init: str = "xavier_normal"
    init_file: Path | None = None         # .npz with W0, b0, W1, b1, ... (overrides init)
    # its arrays, read once with the spec (so a file changed during the run changes nothing)
    init_params: InitParams | None = field(default=None, compare=False, repr=False)
    pool_ties: str = "first"              # see POOL_TIES; read only where a max-pool is


@dataclass(frozen=True)
class Loss:
    name: str
    l2: float = 0.0                       # adds l2/2 * sum of squared weights (not biases)


@dataclass(frozen=True)
class Optimizer:
    name: str = "sgd"
    momentum: float = 0.9                 # v = momentum * v + g ; p -= lr * v (torch/optax form)
    nesterov: bool = False
    rho: float = 0.99                     # RMSprop: s = rho * s + (1 - rho) * g^2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    eps_placement: str = "outside"        # g / (sqrt(s) + eps)  vs  g / sqrt(s + eps)
    bias_correction: str = "standard"     # m_hat/(sqrt(v_hat)+eps) vs lr folded (sklearn, Keras)
    weight_decay: float = 0.0             # decoupled: p -= lr * weight_decay * p, every optimizer


@dataclass(frozen=True)
class EarlyStopping:
    patience: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class Training:
    learning_rate: float
    batch_size: int | None                # None = full batch
    epochs: int | None = None
    steps: int | None = None              # exactly one of epochs / steps
    shuffle: bool = True
    grad_check_steps: tuple[int, ...] = (0,)
    early_stopping: EarlyStopping | None = None


@dataclass(frozen=True)
class Data:
    name: str
    n_samples: int | None = None
    noise: float | None = None
    classes: int | None = None
    validation: float = 0.15
    test: float = 0.15
    standardize: bool = True
    x: tuple[tuple[float, ...], ...] | None = None         # inline data only
    y: tuple[tuple[float, ...], ...] | None = None
    shape: tuple[int, int, int] | None = None    # inline data: (C, H, W) of each row


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    dtype: str
    model: Model
    loss: Loss
    optimizer: Optimizer
    training: Training
    data: Data
    backends: tuple[str, ...] | None = None
    variant: str = ""                     # label of the sweep point this spec is ("" = none)
