"""Each row of the conventions table in docs/optimizers.md: a framework optimizer with its
OWN defaults equals the spec's maths (harness/optim.py) under the convention the table names.
Three steps with different gradients, so state (momentum, moments, step count) matters."""

from __future__ import annotations

import numpy as np
import pytest

from harness import optim
from harness.spec import Optimizer

P0 = np.array([0.5, -1.5, 2.0, 0.01])
GRADS = [np.array([0.3, -0.2, 1e-3, 0.0]), np.array([-0.1, 0.4, 2e-3, 1e-4]),
         np.array([0.05, 0.05, -0.5, 2e-4])]
LR = 0.01


def spec_maths(opt: Optimizer, grads=GRADS) -> np.ndarray:
    p, state = (P0,), optim.init([P0], opt)
    for g in grads:
        p, state = optim.update([g], state, p, opt, LR)
    return p[0]


def torch_steps(make, grads=GRADS) -> np.ndarray:
    torch = pytest.importorskip("torch")
    p = torch.tensor(P0, dtype=torch.float64, requires_grad=True)
    opt = make([p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def optax_steps(transform, grads=GRADS) -> np.ndarray:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import optax

    p = jax.numpy.asarray(P0)
    state = transform.init(p)
    for g in grads:
        updates, state = transform.update(jax.numpy.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
    return np.asarray(p)


def close(a, b):
    assert np.max(np.abs(a - b)) <= 1e-14, (a, b)


def test_momentum_form_torch_and_optax():
    torch = pytest.importorskip("torch")
    optax = pytest.importorskip("optax")
    ours = spec_maths(Optimizer("momentum", momentum=0.9))
    close(torch_steps(lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9)), ours)
    close(optax_steps(optax.sgd(LR, momentum=0.9)), ours)
    nesterov = spec_maths(Optimizer("momentum", momentum=0.9, nesterov=True))
    close(torch_steps(lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, nesterov=True)),
          nesterov)
    close(optax_steps(optax.sgd(LR, momentum=0.9, nesterov=True)), nesterov)


def test_momentum_form_sklearn_equal_at_constant_lr():
    sgd = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    opt = sgd.SGDOptimizer([P0.copy()], learning_rate_init=LR, momentum=0.9, nesterov=False)
    p = [P0.copy()]
    for g in GRADS:
        opt.update_params(p, [g])
    close(p[0], spec_maths(Optimizer("momentum", momentum=0.9)))


def test_rmsprop_torch_defaults_are_the_spec_defaults():
    torch = pytest.importorskip("torch")
    close(torch_steps(lambda p: torch.optim.RMSprop(p, lr=LR)), spec_maths(Optimizer("rmsprop")))


def test_rmsprop_optax_defaults_are_rho_09_eps_inside():
    optax = pytest.importorskip("optax")
    ours = spec_maths(Optimizer("rmsprop", rho=0.9, eps_placement="inside"))
    close(optax_steps(optax.rmsprop(LR)), ours)
    assert np.max(np.abs(ours - spec_maths(Optimizer("rmsprop")))) > 1e-6   # rows differ


def test_adam_torch_and_optax_defaults_are_standard_eps_outside():
    torch = pytest.importorskip("torch")
    optax = pytest.importorskip("optax")
    ours = spec_maths(Optimizer("adam"))
    close(torch_steps(lambda p: torch.optim.Adam(p, lr=LR)), ours)
    close(optax_steps(optax.adam(LR)), ours)


def test_adam_eps_inside_is_optax_eps_root():
    optax = pytest.importorskip("optax")
    eps = 1e-4   # large enough for the placement to matter at these gradients
    ours = spec_maths(Optimizer("adam", eps=eps, eps_placement="inside"))
    close(optax_steps(optax.adam(LR, eps=0.0, eps_root=eps)), ours)


def test_adam_sklearn_is_folded():
    sgd = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    eps = 1e-3   # large, so folded and standard differ visibly
    opt = sgd.AdamOptimizer([P0.copy()], learning_rate_init=LR, epsilon=eps)
    p = [P0.copy()]
    for g in GRADS:
        opt.update_params(p, [g])
    folded = spec_maths(Optimizer("adam", eps=eps, bias_correction="folded"))
    close(p[0], folded)
    assert np.max(np.abs(folded - spec_maths(Optimizer("adam", eps=eps)))) > 1e-6


def test_torch_adam_weight_decay_is_l2_on_the_gradient():
    torch = pytest.importorskip("torch")
    wd = 0.1
    got = torch_steps(lambda p: torch.optim.Adam(p, lr=LR, weight_decay=wd))
    p, state = (P0,), optim.init([P0], Optimizer("adam"))
    for g in GRADS:                                  # L2: the gradient gets wd * p added
        p, state = optim.update([g + wd * p[0]], state, p, Optimizer("adam"), LR)
    close(got, p[0])
    assert np.max(np.abs(got - spec_maths(Optimizer("adam", weight_decay=wd)))) > 1e-6


def test_decoupled_decay_is_torch_adamw_and_optax_adamw():
    torch = pytest.importorskip("torch")
    optax = pytest.importorskip("optax")
    ours = spec_maths(Optimizer("adam", weight_decay=0.1))
    close(torch_steps(lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=0.1)), ours)
    close(optax_steps(optax.adamw(LR, weight_decay=0.1)), ours)
