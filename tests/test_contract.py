"""The contract's template (implementations/template_backend.py). Whether each registered
backend keeps the contract is the conformance suite's job: tests/test_conformance.py."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import Batch
from harness.registry import registry
from implementations.template_backend import TemplateBackend
from tests.conftest import spec_from

CALLS = {
    "load": lambda b: b.load([(np.zeros((2, 5)), np.zeros(5)), (np.zeros((5, 3)), np.zeros(3))]),
    "loss_and_grads": lambda b: b.loss_and_grads(Batch(np.zeros((1, 2)), np.zeros((1, 3)))),
    "train_step": lambda b: b.train_step(Batch(np.zeros((1, 2)), np.zeros((1, 3)))),
    "params": lambda b: b.params(),
    "evaluate": lambda b: b.evaluate(Batch(np.zeros((1, 2)), np.zeros((1, 3)))),
    "sync": lambda b: b.sync(),
}


def test_template_is_not_registered():
    assert not any(target.startswith("implementations.template_backend:")
                   for target in registry().values())


def test_template_claims_no_limits():
    assert TemplateBackend.unsupported(spec_from()) is None


@pytest.mark.parametrize("method", list(CALLS))
def test_every_template_method_names_what_is_missing(method):
    with pytest.raises(NotImplementedError, match=rf"cannot .+ fill in TemplateBackend\.{method}"):
        CALLS[method](TemplateBackend(spec_from()))
