"""harness.optim, the definition of the spec's optimizers, checked independently of itself:
two steps of every convention of the conformance suite (harness.conformance.candidates)
against closed forms derived by hand here, and against optax and torch.optim configured to
the convention. An injected error (eps inside the square root, a bias correction one step
off) is caught. Purity: nothing given to init/update is written into.

The conformance optimizer cases hold every backend to harness.optim; these tests are what
keeps harness.optim itself right."""

from __future__ import annotations

import numpy as np
import pytest

from harness import optim
from harness.conformance.candidates import B1, B2, CONVENTIONS, EPS, LR, MU, RHO
from harness.spec import Optimizer
from harness.verify import tolerances as tol

P0 = np.array([0.3, -1.2, 0.0, 2.5])
G1 = np.array([0.02, -0.5, 1e-3, 0.0])
G2 = np.array([-0.01, 0.4, 2e-3, 1e-4])
RTOL = tol.FLOAT64.grad_rtol          # what the conformance optimizer cases allow


def opt_of(case: str) -> Optimizer:
    return Optimizer(**CONVENTIONS[case])


# ---- two steps by hand: gradient g1 at p0, then g2 at p1; t = 1, 2 -------------------------

def _momentum(opt: Optimizer, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, ...]:
    v1 = g1                                   # v0 = 0
    v2 = MU * g1 + g2
    return (g1 + MU * v1, g2 + MU * v2) if opt.nesterov else (v1, v2)


def _rmsprop(opt: Optimizer, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, ...]:
    s1 = (1 - RHO) * g1**2
    s2 = RHO * s1 + (1 - RHO) * g2**2
    if opt.eps_placement == "inside":
        return g1 / np.sqrt(s1 + EPS), g2 / np.sqrt(s2 + EPS)
    return g1 / (np.sqrt(s1) + EPS), g2 / (np.sqrt(s2) + EPS)


def _adam(opt: Optimizer, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, ...]:
    m1, v1 = (1 - B1) * g1, (1 - B2) * g1**2
    m2, v2 = B1 * m1 + (1 - B1) * g2, B2 * v1 + (1 - B2) * g2**2
    if opt.bias_correction == "folded":
        return (np.sqrt(1 - B2) / (1 - B1) * m1 / (np.sqrt(v1) + EPS),
                np.sqrt(1 - B2**2) / (1 - B1**2) * m2 / (np.sqrt(v2) + EPS))
    if opt.eps_placement == "inside":
        return (m1 / (1 - B1) / np.sqrt(v1 / (1 - B2) + EPS),
                m2 / (1 - B1**2) / np.sqrt(v2 / (1 - B2**2) + EPS))
    return (m1 / (1 - B1) / (np.sqrt(v1 / (1 - B2)) + EPS),
            m2 / (1 - B1**2) / (np.sqrt(v2 / (1 - B2**2)) + EPS))


def by_hand(case: str, p0: np.ndarray = P0, g1: np.ndarray = G1,
            g2: np.ndarray = G2) -> np.ndarray:
    """p2 of convention `case`, each step p - LR (d + weight_decay p)."""
    opt = opt_of(case)
    directions = {"sgd": lambda o, a, b: (a, b), "momentum": _momentum, "rmsprop": _rmsprop,
                  "adam": _adam}
    d1, d2 = directions[opt.name](opt, g1, g2)
    p1 = p0 - LR * (d1 + opt.weight_decay * p0)
    return p1 - LR * (d2 + opt.weight_decay * p1)


def by_optim(case: str, p0: np.ndarray = P0, g1: np.ndarray = G1,
             g2: np.ndarray = G2) -> np.ndarray:
    opt = opt_of(case)
    p, state = (p0,), optim.init((p0,), opt)
    for g in (g1, g2):
        p, state = optim.update((g,), state, p, opt, LR)
    return p[0]


def wrong_conventions() -> list[str]:
    """The conventions where harness.optim misses the hand-derived closed form."""
    return [case for case in CONVENTIONS
            if tol.errors(by_optim(case), by_hand(case))[1] > RTOL]


@pytest.mark.parametrize("case", list(CONVENTIONS))
def test_two_steps_match_the_closed_form(case):
    _, rel = tol.errors(by_optim(case), by_hand(case))
    assert rel <= RTOL, (case, rel)


def test_conventions_really_differ():
    """The closed forms would not catch a wrong eps placement if the variants coincided: each
    pair must differ by more than the tolerance the optimizer checks allow."""
    for a, b in (("adam", "adam_eps_inside"), ("adam", "adam_folded"),
                 ("rmsprop", "rmsprop_eps_inside"), ("momentum", "nesterov"),
                 ("adam", "adamw"), ("adam_folded", "adamw_folded"),
                 ("adamw", "adamw_folded"), ("momentum", "momentum_decoupled_decay")):
        _, rel = tol.errors(by_hand(a), by_hand(b))
        assert rel > RTOL, (a, b, rel)


def test_eps_placed_inside_everywhere_is_caught(monkeypatch):
    monkeypatch.setattr(optim, "root", lambda x, opt: np.sqrt(x + x.dtype.type(opt.eps)))
    assert set(wrong_conventions()) == {"rmsprop", "adam", "adam_folded", "adamw",
                                        "adamw_folded"}


def test_bias_correction_one_step_late_is_caught(monkeypatch):
    right = optim.direction
    monkeypatch.setattr(optim, "direction",
                        lambda g, first, second, t, opt: right(g, first, second, t + 1, opt))
    assert set(wrong_conventions()) == {"adam", "adam_eps_inside", "adam_folded",
                                        "adamw", "adamw_folded"}


def test_decay_applied_to_the_new_point_is_caught(monkeypatch):
    """(p - lr d)(1 - lr wd): decay after the step instead of p (1 - lr wd) - lr d."""
    def decay_after(p, d, opt, lr):
        return (p - lr * d) * (1 - lr * opt.weight_decay)

    monkeypatch.setattr(optim, "step", decay_after)
    assert set(wrong_conventions()) == {"adamw", "adamw_folded",
                                        "momentum_decoupled_decay"}


# ---- optax and torch.optim configured to each convention ----------------------------------

def _optax(case: str):
    optax = pytest.importorskip("optax")
    opt = opt_of(case)
    inside = opt.eps_placement == "inside"
    if opt.name == "adam" and opt.bias_correction == "folded":
        pytest.skip("optax has no folded Adam (test_conventions.py checks scikit-learn's)")
    direction = {
        "sgd": optax.identity,
        "momentum": lambda: optax.trace(decay=MU, nesterov=opt.nesterov),
        "rmsprop": lambda: optax.scale_by_rms(decay=RHO, eps=EPS, initial_scale=0.0,
                                              eps_in_sqrt=inside),
        "adam": lambda: optax.scale_by_adam(b1=B1, b2=B2, eps=0.0 if inside else EPS,
                                            eps_root=EPS if inside else 0.0),
    }[opt.name]()
    decay = [optax.add_decayed_weights(opt.weight_decay)] if opt.weight_decay else []
    return optax.chain(direction, *decay, optax.scale(-LR))


def by_optax(case: str) -> np.ndarray:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    transform = _optax(case)
    import optax

    p = jax.numpy.asarray(P0)
    state = transform.init(p)
    for g in (G1, G2):
        updates, state = transform.update(jax.numpy.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
    return np.asarray(p)


def by_torch(case: str) -> np.ndarray:
    torch = pytest.importorskip("torch")
    opt = opt_of(case)
    if opt.eps_placement == "inside" or opt.bias_correction == "folded":
        pytest.skip("torch.optim cannot express eps inside or the folded bias correction")
    p = torch.tensor(P0, dtype=torch.float64, requires_grad=True)
    make = {"sgd": lambda: torch.optim.SGD([p], lr=LR),
            "momentum": lambda: torch.optim.SGD([p], lr=LR, momentum=MU,
                                                nesterov=opt.nesterov),
            "rmsprop": lambda: torch.optim.RMSprop([p], lr=LR, alpha=RHO, eps=EPS),
            "adam": lambda: torch.optim.AdamW([p], lr=LR, betas=(B1, B2), eps=EPS,
                                              weight_decay=opt.weight_decay)}
    step = make[opt.name]()
    for g in (G1, G2):
        if opt.weight_decay and opt.name != "adam":          # decoupled, as AdamW does
            with torch.no_grad():
                p.mul_(1 - LR * opt.weight_decay)
        p.grad = torch.tensor(g, dtype=torch.float64)
        step.step()
    return p.detach().numpy()


@pytest.mark.parametrize("framework", [by_optax, by_torch], ids=["optax", "torch"])
@pytest.mark.parametrize("case", list(CONVENTIONS))
def test_two_steps_match_the_frameworks(case, framework):
    _, rel = tol.errors(by_optim(case), framework(case))
    assert rel <= RTOL, (case, rel)


# ---- purity, frozen tensors, dtype --------------------------------------------------------

@pytest.mark.parametrize("case", list(CONVENTIONS))
def test_update_writes_into_nothing_it_is_given(case):
    opt = opt_of(case)
    params, grads = (P0.copy(), -P0.copy()), (G1.copy(), G2.copy())
    state = optim.init(params, opt)
    before = [a.copy() for a in (*params, *grads)]
    kept = [a.copy() for a in (*state.first, *state.second) if a is not None]
    for _ in range(2):
        optim.update(grads, state, params, opt, LR)
    for a, b in zip((*params, *grads), before, strict=True):
        assert np.array_equal(a, b)
    for a, b in zip([a for a in (*state.first, *state.second) if a is not None], kept,
                    strict=True):
        assert np.array_equal(a, b)
    assert isinstance(state.first, tuple) and isinstance(state.second, tuple)


def test_frozen_tensors_keep_no_state_and_never_move():
    opt = opt_of("adamw")
    params, trainable = (P0, P0 + 1.0), (True, False)
    state = optim.init(params, opt, trainable)
    assert state.first[1] is None and state.second[1] is None
    new, state = optim.update((G1, G1), state, params, opt, LR, trainable)
    assert new[1] is params[1] and not np.array_equal(new[0], params[0])
    assert state.count == 1


@pytest.mark.parametrize("case", list(CONVENTIONS))
def test_float32_stays_float32(case):
    p = P0.astype(np.float32)
    opt = opt_of(case)
    new, state = optim.update((G1.astype(np.float32),), optim.init((p,), opt), (p,), opt, LR)
    assert new[0].dtype == np.float32
    assert all(s.dtype == np.float32 for s in (*state.first, *state.second) if s is not None)
