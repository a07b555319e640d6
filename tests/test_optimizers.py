"""The closed forms themselves (harness/closed_form.py). Every backend's two optimizer steps
are held against them by the conformance suite (the optimizer_* checks)."""

from __future__ import annotations

import numpy as np

from harness.conformance import closed_form
from harness.verify import tolerances as tol


def test_conventions_really_differ():
    """The closed forms would not catch a wrong eps placement if the variants coincided: each
    pair must differ by more than the tolerance the optimizer checks allow."""
    p, g1, g2 = np.array([0.3]), np.array([0.02]), np.array([-0.01])
    for a, b in (("adam", "adam_eps_inside"), ("adam", "adam_folded"),
                 ("rmsprop", "rmsprop_eps_inside"), ("momentum", "nesterov"),
                 ("adam", "adamw"), ("momentum", "momentum_decoupled_decay")):
        _, rel = tol.errors(closed_form.two_steps(a, p, g1, g2),
                                  closed_form.two_steps(b, p, g1, g2))
        assert rel > tol.FLOAT64.grad_rtol, (a, b, rel)

