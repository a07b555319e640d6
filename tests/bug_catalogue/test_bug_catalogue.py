"""The diagnosis against a catalogue of realistic backprop and optimizer bugs (bugs.py): every
bug must be caught, the phase, tensor and step where it starts named for at least
LOCATED_RATE of them, and every convention swap named as that convention. Without a bug,
none of the catalogue's specs may raise an alarm, in float64 or float32, among numpy, torch
and jax. The `outcomes` fixture (conftest.py) runs each bug once; the terminal summary
prints every diagnosis and miss."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

import harness
from harness.registry import backend_class
from harness.spec import DTYPES
from harness.verify.phases import PHASES
from tests.bug_catalogue import scoring, specs
from tests.bug_catalogue.bugs import CATALOGUE, Expected
from tests.bug_catalogue.hooked import Hooked
from tests.bug_catalogue.scoring import Outcome, rates

MIN_BUGS = 45
# The convention swaps the convention finder must name (harness.verify.conventions).
SWAPS = {"optimizer.eps_placement=inside", "optimizer.bias_correction=folded",
         "optimizer.nesterov=true", "optimizer.nesterov=false", "weight_decay=coupled",
         "momentum=dampened", "rmsprop=centered", "rmsprop.initial=1",
         "hyperparameters=float32"}
NO_BUG_BACKENDS = ["numpy", "torch", "jax"]
SPEC_IDS = list(specs.ALL)


def test_the_catalogue_covers_what_it_claims():
    names = [bug.name for bug in CATALOGUE]
    assert len(names) >= MIN_BUGS
    assert len(set(names)) == len(names)
    assert {bug.expected.convention for bug in CATALOGUE} - {None} == SWAPS
    assert {bug.expected.phase for bug in CATALOGUE} == set(PHASES)
    late = {bug.expected.phase for bug in CATALOGUE if bug.expected.step > 0}
    assert late >= {"data", "forward", "loss", "backward", "update"}
    single = {bug.expected.phase for bug in CATALOGUE if bug.on["dtype"] == "float32"}
    assert single >= {"forward", "backward", "update"}


def test_every_bug_runs_on_a_spec_the_no_bug_runs_cover():
    assert {bug.on["name"] for bug in CATALOGUE} == set(specs.ALL)
    assert all({**bug.on, "dtype": "float64"} == specs.ALL[bug.on["name"]]
               for bug in CATALOGUE)


def test_every_bug_is_detected(outcomes: list[Outcome]):
    missed = [o.name for o in outcomes if not o.detected]
    assert rates(outcomes).detected >= scoring.DETECTED_RATE, missed


def test_the_phase_tensor_and_step_of_most_bugs_are_named(outcomes: list[Outcome]):
    wrong = [o.name for o in outcomes if not o.located]
    assert rates(outcomes).located >= scoring.LOCATED_RATE, wrong


def test_every_convention_swap_is_named(outcomes: list[Outcome]):
    wrong = [o.name for o in outcomes if o.swap and not o.convention_right]
    assert rates(outcomes).swap_conventions >= scoring.SWAP_CONVENTION_RATE, wrong


def test_bugs_that_are_no_convention_are_rarely_given_one(outcomes: list[Outcome]):
    wrong = [o.name for o in outcomes if not o.convention_right]
    assert rates(outcomes).conventions >= scoring.CONVENTION_RATE, wrong


EXPECTED = Expected("update", "W2.first", 1, "momentum=dampened")
RIGHT = {"phase": "update", "tensor": "W2.first", "step": 1, "convention": "momentum=dampened"}


@pytest.mark.parametrize(("key", "wrong"), [("phase", "loss"), ("tensor", "W2"), ("step", 0),
                                            ("convention", None)])
def test_one_wrong_field_of_a_diagnosis_is_a_miss(key: str, wrong: object):
    right = Outcome("bug", EXPECTED, "disagree", RIGHT)
    off = Outcome("bug", EXPECTED, "disagree", {**RIGHT, key: wrong})
    assert not right.miss
    assert off.miss
    assert rates([right, off]) != rates([right, right])


def test_an_agreeing_run_is_not_detected():
    missed = Outcome("bug", EXPECTED, "agree", None)
    assert (missed.detected, missed.located, missed.convention_right) == (False, False, False)
    assert rates([missed]).detected == 0.0


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch's intra-op threads spin against XLA's while the two interleave in one run:
    on 2 cores that made the no-bug runs four times slower (measured). One thread for these
    runs, restored after."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    backend_class("torch").set_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", list(specs.ALL.values()), ids=SPEC_IDS)
def test_no_false_alarm_without_a_bug(spec: dict, dtype: str):
    variant = harness.run(spec, backends=NO_BUG_BACKENDS, dtype=dtype).summary["variants"][0]
    assert (variant["verdict"], variant["diagnosis"]) == ("agree", {})


@pytest.mark.parametrize("spec", list(specs.ALL.values()), ids=SPEC_IDS)
def test_the_hooked_textbook_is_the_textbook(spec: dict):
    """The hooks the bugs override change nothing by themselves."""
    variant = harness.run(spec, backends=["numpy", Hooked]).summary["variants"][0]
    assert (variant["verdict"], variant["diagnosis"]) == ("agree", {})
