"""Two steps of every optimizer convention, in every backend, against closed-form maths written
here independently of harness/optim.py. eps is large (1e-3) so that the placement of eps
(inside / outside the square root, bias-corrected or not) visibly changes the result."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data, params
from tests.conftest import BACKENDS, build, mlp, spec_from

LR, MU, RHO, B1, B2, EPS, WD = 0.05, 0.9, 0.9, 0.8, 0.95, 1e-3, 0.1

CASES = {
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
    "momentum_decoupled_decay": {"name": "momentum", "momentum": MU, "weight_decay": WD},
}


def closed_form(case: str, p0: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """p2 after two steps (gradients g1 at p0, g2 at p1), written out by hand."""
    opt = CASES[case]
    wd = opt.get("weight_decay", 0.0)
    if opt["name"] == "sgd":
        d1, d2 = g1, g2
    elif opt["name"] == "momentum":
        v1, v2 = g1, MU * g1 + g2
        d1, d2 = (g1 + MU * v1, g2 + MU * v2) if opt.get("nesterov") else (v1, v2)
    elif opt["name"] == "rmsprop":
        s1 = (1 - RHO) * g1**2
        s2 = RHO * s1 + (1 - RHO) * g2**2
        root = (lambda s: np.sqrt(s + EPS)) if opt.get("eps_placement") == "inside" \
            else (lambda s: np.sqrt(s) + EPS)
        d1, d2 = g1 / root(s1), g2 / root(s2)
    else:
        m1, v1 = (1 - B1) * g1, (1 - B2) * g1**2
        m2, v2 = B1 * m1 + (1 - B1) * g2, B2 * v1 + (1 - B2) * g2**2
        if opt.get("bias_correction") == "folded":
            d1 = np.sqrt(1 - B2) / (1 - B1) * m1 / (np.sqrt(v1) + EPS)
            d2 = np.sqrt(1 - B2**2) / (1 - B1**2) * m2 / (np.sqrt(v2) + EPS)
        elif opt.get("eps_placement") == "inside":
            d1 = m1 / (1 - B1) / np.sqrt(v1 / (1 - B2) + EPS)
            d2 = m2 / (1 - B1**2) / np.sqrt(v2 / (1 - B2**2) + EPS)
        else:
            d1 = m1 / (1 - B1) / (np.sqrt(v1 / (1 - B2)) + EPS)
            d2 = m2 / (1 - B1**2) / (np.sqrt(v2 / (1 - B2**2)) + EPS)
    p1 = p0 - LR * (d1 + wd * p0)
    return p1 - LR * (d2 + wd * p1)


def spec_for(case: str):
    return spec_from(model=mlp([(4, "tanh")], (3, "softmax")), optimizer=CASES[case],
                     training={"learning_rate": LR})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_two_steps_match_closed_form(backend, case):
    spec = spec_for(case)
    b = build(backend, spec)
    probe = build("numpy", spec)
    ds = data.prepare(spec)
    plan = data.plan(spec, len(ds.train.x))
    batches = [data.train_batch(spec, ds, plan, s) for s in range(2)]
    p0 = params.initial_params(spec)
    g1 = probe.loss_and_grads(batches[0])[1]
    b.train_step(batches[0])
    probe.load(b.params())
    g2 = probe.loss_and_grads(batches[1])[1]
    b.train_step(batches[1])
    for i, (w, bias) in enumerate(b.params()):
        for got, k in ((w, 0), (bias, 1)):
            want = closed_form(case, p0[i][k], g1[i][k], g2[i][k])
            assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))


def test_conventions_really_differ():
    """The cases above would not catch a wrong eps placement if the variants coincided."""
    p, g1, g2 = np.array([0.3]), np.array([0.02]), np.array([-0.01])
    for a, b in (("adam", "adam_eps_inside"), ("adam", "adam_folded"),
                 ("rmsprop", "rmsprop_eps_inside"), ("momentum", "nesterov"),
                 ("adam", "adamw")):
        assert abs(closed_form(a, p, g1, g2) - closed_form(b, p, g1, g2))[0] > 1e-6
