"""The experiment spec: a TOML file read into frozen dataclasses, every field checked.

This module holds the spec's vocabulary (the allowed names, the bounds and the dataclasses),
its public entry points (`read_toml`, `from_dict`, `planned_steps`) and the rules across
tables; the parsers of the individual tables live in `harness.spec_parse`. Every
hyper-parameter default lives here, once. The optimizer maths each backend must follow is
written in `docs/optimizers.md`; the option names below are the ones used there.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import datasets
from harness.schema import SpecError, Table, choice, integer, number

DTYPES = ("float64", "float32")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax")
LOSSES = ("mse", "half_sse", "bce", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
INITS = ("xavier_normal", "xavier_uniform", "he_normal", "he_uniform")
EPS_PLACEMENTS = ("outside", "inside")
BIAS_CORRECTIONS = ("standard", "folded")
# The output activation each loss is defined on (bce and cross_entropy work from the logits).
LOSS_OUTPUT = {"cross_entropy": ("softmax",), "bce": ("sigmoid",),
               "mse": ("sigmoid", "tanh", "relu", "leaky_relu", "identity"),
               "half_sse": ("sigmoid", "tanh", "relu", "leaky_relu", "identity")}
# Which optimizer keys each optimizer reads; any other key is an error, not silently ignored.
OPTIMIZER_KEYS = {"sgd": (), "momentum": ("momentum", "nesterov"),
                  "rmsprop": ("rho", "eps", "eps_placement"),
                  "adam": ("beta1", "beta2", "eps", "eps_placement", "bias_correction")}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
NAME_MAX = 100                            # it names a folder: well below any file system limit
# Bounds that keep a typo (size = 1000000000) from exhausting memory instead of failing cleanly.
MAX_UNITS = 10_000                        # units in one layer
MAX_PARAMS = 10_000_000                   # weights and biases of the whole network
MAX_STEPS = 1_000_000                     # optimizer steps of one run


@dataclass(frozen=True)
class Layer:
    """One dense layer: z = h_prev @ W + b, h = activation(z), then dropout on hidden layers."""
    size: int
    activation: str
    negative_slope: float = 0.01          # leaky_relu: f(z) = z if z > 0 else slope * z
    drop_prob: float = 0.0                # probability of DROPPING a unit (inverted dropout)
    trainable_bias: bool = True
    weights: tuple[tuple[float, ...], ...] | None = None   # explicit W, (fan_in, fan_out)
    bias: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Model:
    inputs: int
    layers: tuple[Layer, ...]
    init: str = "xavier_normal"
    init_file: Path | None = None         # .npz with W0, b0, W1, b1, ... (overrides init)


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


def _check_run(spec: Spec) -> None:
    """Rules across tables: early stopping needs validation rows; the run has a bounded length
    (the batch plan of every step is built before training starts)."""
    n_val = datasets.split_sizes(spec.data)[1]
    rule = spec.training.early_stopping
    if rule is not None and n_val == 0:
        raise SpecError("training.early_stopping", "needs validation data, but the split has "
                        "no validation rows (allowed: only with data.validation > 0)")
    total = planned_steps(spec)
    if total > MAX_STEPS:
        key = "training.steps" if spec.training.steps else "training.epochs"
        raise SpecError(key, f"the run would take {total} steps (allowed: at most {MAX_STEPS})")
    checks = spec.training.grad_check_steps
    if not checks or checks[-1] >= total:
        got = "none" if not checks else f"step {checks[-1]}"
        raise SpecError("training.grad_check_steps", f"{got} is not a step of this run "
                        f"(allowed: at least one of 0 .. {total - 1}; the first also runs the "
                        "finite-difference oracle)")


def planned_steps(spec: Spec) -> int:
    """Optimizer steps the run takes (before early stopping): `steps`, or epochs x batches."""
    n_train = datasets.split_sizes(spec.data)[0]
    batch = min(spec.training.batch_size or n_train, n_train)
    return spec.training.steps or spec.training.epochs * -(-n_train // batch)


def from_dict(raw: dict[str, Any], base: Path = Path(".")) -> Spec:
    """Validate a parsed TOML document; `base` resolves relative file paths."""
    from harness import spec_parse  # it builds on the dataclasses above: import it lazily

    t = Table(raw, "")
    name = spec_parse.name(t)
    seed = integer(t, "seed", 0, low=0)
    dtype = choice(t, "dtype", DTYPES, "float64")
    data = datasets.parse(t.sub("data", required=True))
    lt = t.sub("loss", required=True)
    loss = Loss(choice(lt, "name", LOSSES), number(lt, "l2", 0.0, low=0.0))
    lt.finish()
    model = spec_parse.model(t.sub("model", required=True), datasets.dims(data), loss.name, base)
    opt_t = t.sub("optimizer")
    optimizer = spec_parse.optimizer(opt_t)
    training = spec_parse.training(t.sub("training", required=True))
    backends = spec_parse.backends(t) if t.has("backends") else None
    t.get("sweep")                        # expanded by harness.sweep before we get here
    t.finish(("name", "seed", "dtype", "data", "loss", "model", "optimizer", "training",
              "backends", "sweep"))
    spec = Spec(name, seed, dtype, model, loss, optimizer, training, data, backends)
    _check_run(spec)
    return spec


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors become a one-line SpecError."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SpecError("", f"no such spec file: {path}") from None
    except OSError as err:                # a folder, no permission, ...
        raise SpecError("", f"cannot read the spec file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise SpecError("", f"TOML syntax error: not UTF-8 text (byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError("", f"TOML syntax error: {err}") from None
