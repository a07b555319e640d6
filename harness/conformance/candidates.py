"""The specs the conformance cases run on, as data: candidate spec tables (most demanding
first, so a backend is checked on the richest spec it supports) and one optimizer table per
convention. The optimizer cases expect what `harness.optim`, the definition, computes; its
maths is checked apart, against hand-derived closed forms (tests/test_optimizers.py).

eps is large (1e-3) so that where eps goes (inside or outside the square root, on the
bias-corrected or the raw second moment) visibly changes the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

LR, MU, RHO, B1, B2, EPS, WD = 0.05, 0.9, 0.9, 0.8, 0.95, 1e-3, 0.1
SEED, SAMPLES, BATCH, SPEC_LR, L2, DROP, FROZEN_BIAS = 3, 60, 16, 0.1, 0.01, 0.2, 0.5
STEPS = 10                        # planned steps of every candidate spec (the longest check)
# loss -> (data set, output layer (size, activation)) the spec allows for it
LOSS_DATA = {"cross_entropy": ("spirals", (3, "softmax")), "bce": ("moons", (1, "sigmoid")),
             "mse": ("sine", (1, "identity")), "half_sse": ("sine", (1, "identity"))}
HIDDEN2 = (("tanh", "relu"), ("tanh", "tanh"), ("sigmoid", "sigmoid"), ("relu", "relu"),
           ("identity", "identity"))
HIDDEN1 = (("tanh",), ("sigmoid",), ("relu",), ("identity",))
MAIN_OPTIMIZERS = ({"name": "adam"}, {"name": "adam", "bias_correction": "folded"},
                   {"name": "momentum"}, {"name": "sgd"})
FROZEN_OPTIMIZERS = ({"name": "momentum", "weight_decay": WD}, {"name": "momentum"},
                     {"name": "sgd"})
# the optimizer-state cases: case -> the conventions whose specs it may run on, in order of
# preference (where eps goes changes no moment, so either placement checks the state), and
# a frozen bias (its slots hold nothing)
FROZEN = "frozen_bias"
STATE_CASES: dict[str, tuple[str, ...]] = {
    "sgd": ("sgd",), "momentum": ("momentum",), "nesterov": ("nesterov",),
    "rmsprop": ("rmsprop", "rmsprop_eps_inside"), "adam": ("adam", "adam_eps_inside"),
    "adam_folded": ("adam_folded",), "adamw": ("adamw",),
    "momentum_decoupled_decay": ("momentum_decoupled_decay",),
    FROZEN: ("adamw", "adamw_folded", "momentum_decoupled_decay", "sgd"),
}

# convention name -> the [optimizer] table of a spec that selects it
CONVENTIONS: dict[str, dict] = {
    "sgd": {"name": "sgd"},
    "momentum": {"name": "momentum", "momentum": MU},
    "nesterov": {"name": "momentum", "momentum": MU, "nesterov": True},
    "rmsprop": {"name": "rmsprop", "rho": RHO, "eps": EPS},
    "rmsprop_eps_inside": {"name": "rmsprop", "rho": RHO, "eps": EPS, "eps_placement": "inside"},
    "adam": {"name": "adam", "beta1": B1, "beta2": B2, "eps": EPS},
    "adam_eps_inside": {"name": "adam", "beta1": B1, "beta2": B2, "eps": EPS,
                        "eps_placement": "inside"},
    "adam_folded": {"name": "adam", "beta1": B1, "beta2": B2, "eps": EPS,
                    "bias_correction": "folded"},
    "adamw": {"name": "adam", "beta1": B1, "beta2": B2, "eps": EPS, "weight_decay": WD},
    "adamw_folded": {"name": "adam", "beta1": B1, "beta2": B2, "eps": EPS, "weight_decay": WD,
                     "bias_correction": "folded"},
    "momentum_decoupled_decay": {"name": "momentum", "momentum": MU, "weight_decay": WD},
}


def table(hidden: tuple[str, ...], loss: str, optimizer: dict, sizes: tuple[int, ...],
          lr: float = SPEC_LR, l2: float = 0.0, drop: float = 0.0, frozen: bool = False) -> dict:
    """A spec table: hidden layers `sizes` with activations `hidden`, then the output layer
    and data set the loss needs; `frozen` fixes the first layer's bias at FROZEN_BIAS."""
    data_name, (out_size, out_act) = LOSS_DATA[loss]
    layers = [{"size": s, "activation": a, "drop_prob": drop}
              for s, a in zip(sizes, hidden, strict=True)]
    if frozen:
        layers[0].update(trainable_bias=False, bias=[FROZEN_BIAS] * sizes[0])
    return {"name": "conformance", "seed": SEED,
            "data": {"name": data_name, "n_samples": SAMPLES},
            "model": {"layers": [*layers, {"size": out_size, "activation": out_act}]},
            "loss": {"name": loss, "l2": l2}, "optimizer": optimizer,
            "training": {"learning_rate": lr, "batch_size": BATCH, "steps": STEPS}}


def main_tables() -> Iterator[dict]:
    """Two hidden layers with L2: dropout, mixed activations and Adam first, simpler after."""
    for drop, hidden, loss, opt in product((DROP, 0.0), HIDDEN2, LOSS_DATA, MAIN_OPTIMIZERS):
        yield table(hidden, loss, opt, (7, 5), l2=L2, drop=drop)


def optimizer_tables(case: str) -> Iterator[dict]:
    """One small hidden layer trained with optimizer convention `case` at learning rate LR."""
    for hidden, loss in product(HIDDEN1, LOSS_DATA):
        yield table(hidden, loss, CONVENTIONS[case], (4,), lr=LR)


def frozen_tables() -> Iterator[dict]:
    """A frozen first-layer bias, with decoupled weight decay first (it must not decay)."""
    for hidden, loss, opt in product(HIDDEN1, LOSS_DATA, FROZEN_OPTIMIZERS):
        yield table(hidden, loss, opt, (6,), frozen=True)


def state_tables(case: str) -> Iterator[dict]:
    """The spec tables of optimizer-state case `case`: its conventions' optimizer tables, or
    for FROZEN one small hidden layer with a frozen bias, richest state first."""
    conventions = STATE_CASES[case]
    if case != FROZEN:
        for convention in conventions:
            yield from optimizer_tables(convention)
        return
    for hidden, loss, convention in product(HIDDEN1, LOSS_DATA, conventions):
        yield table(hidden, loss, CONVENTIONS[convention], (4,), lr=LR, frozen=True)
