"""The catalogue's small specs (dicts with the TOML file's structure). Six networks cover every
activation, every loss, dropout, L2, a frozen bias, decoupled weight decay and every
optimizer; each is small (a few units, a dozen steps) so the whole catalogue runs in CI.
A bug's spec makes its mistake visible: square weight matrices where a transpose would
otherwise fail on shapes, a nonzero frozen bias where decaying it must show, hidden layers of
one width where masks are swapped."""

from __future__ import annotations

import math

STEPS = 8                                # long enough for late-step bugs (step 1) to part
BATCH = 8
# 40 rows: 32 to train on (4 batches of 8) and 8 held out. One array shape for every batch
# and for evaluate keeps the jitted backends (jax) at one compilation each in the no-bug runs.
ROWS = 40
SPLIT = {"n_samples": ROWS, "validation": 0.2, "test": 0.0}


def _layer(size: int, activation: str, **extra: object) -> dict:
    return {"size": size, "activation": activation, **extra}


def _spec(name: str, data: dict, layers: list[dict], loss: dict, optimizer: dict,
          learning_rate: float, dtype: str = "float64") -> dict:
    return {"name": name, "seed": 7, "dtype": dtype, "data": data,
            "model": {"init": "he_uniform", "layers": layers}, "loss": loss,
            "optimizer": optimizer,
            "training": {"learning_rate": learning_rate, "batch_size": BATCH, "steps": STEPS}}


def _square_data() -> dict:
    """Inline regression with 2 inputs and 2 targets, so every weight matrix is 2 x 2: a
    smooth deterministic curve, no random draw."""
    x = [[math.cos(0.7 * k), math.sin(1.3 * k)] for k in range(ROWS)]
    y = [[a * b, 0.5 * a - b] for a, b in x]
    return {"name": "inline", "x": x, "y": y, "validation": SPLIT["validation"]}


MOONS = {"name": "moons", **SPLIT}

# tanh, softmax + cross_entropy, plain SGD: derivatives, reductions, data and loss reporting
TANH = _spec("tanh_sgd", MOONS, [_layer(4, "tanh"), _layer(4, "tanh"), _layer(2, "softmax")],
             {"name": "cross_entropy"}, {"name": "sgd"}, 0.1)

# every W square (2 x 2): transposes that shapes cannot catch; sigmoid, identity, half_sse
SQUARE = _spec("square_half_sse", _square_data(),
               [_layer(2, "tanh"), _layer(2, "sigmoid"), _layer(2, "identity")],
               {"name": "half_sse"}, {"name": "sgd"}, 0.02)

# sigmoid + bce, heavy-ball momentum (no Nesterov)
SIGMOID = _spec("sigmoid_momentum", MOONS,
                [_layer(4, "sigmoid"), _layer(4, "sigmoid"), _layer(1, "sigmoid")],
                {"name": "bce"}, {"name": "momentum", "momentum": 0.9}, 0.5)

# a frozen nonzero first-layer bias, Nesterov momentum with decoupled weight decay
FROZEN = _spec("frozen_nesterov_decay", MOONS,
               [_layer(4, "tanh", trainable_bias=False, bias=[0.3, -0.2, 0.5, -0.4]),
                _layer(4, "tanh"), _layer(2, "softmax")],
               {"name": "cross_entropy"},
               {"name": "momentum", "momentum": 0.8, "nesterov": True, "weight_decay": 0.05},
               0.1)

# relu, leaky_relu and identity with mse, Adam (eps 1e-6: its placement shows clearly)
ADAM = _spec("relu_adam", {"name": "sine", **SPLIT},
             [_layer(6, "relu"), _layer(6, "leaky_relu", negative_slope=0.1),
              _layer(1, "identity")],
             {"name": "mse"}, {"name": "adam", "eps": 1e-6}, 0.01)

# dropout on both hidden layers (same width), L2 in the loss, RMSprop
DROPOUT = _spec("dropout_l2_rmsprop", {"name": "spirals", **SPLIT},
                [_layer(6, "tanh", drop_prob=0.25), _layer(6, "relu", drop_prob=0.25),
                 _layer(3, "softmax")],
                {"name": "cross_entropy", "l2": 0.01}, {"name": "rmsprop", "rho": 0.9}, 0.01)

ALL = {s["name"]: s for s in (TANH, SQUARE, SIGMOID, FROZEN, ADAM, DROPOUT)}


def float32(spec: dict) -> dict:
    """The same spec computed in float32 (for the bugs that live in a float32 code path)."""
    return {**spec, "dtype": "float32"}
