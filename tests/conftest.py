"""Shared helpers: small specs built from dicts, and the registry's backends as test ids; and
the property tests' settings profile."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import settings

from harness import data, params
from harness.registry import backend_class, missing_framework, registry
from harness.spec import Spec, from_dict

# Property tests draw fresh examples on every run (CI pins the seed: .ci/run). A failure prints
# its example and the @reproduce_failure decorator that replays it; the next run on the same
# checkout replays it first anyway (from .hypothesis/).
settings.register_profile("harness", print_blob=True)
settings.load_profile("harness")

BASE = {
    "name": "t",
    "seed": 3,
    "dtype": "float64",
    "data": {"name": "spirals", "n_samples": 60},
    "model": {"layers": [{"size": 5, "activation": "tanh"},
                         {"size": 3, "activation": "softmax"}]},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "sgd"},
    "training": {"learning_rate": 0.1, "batch_size": 16, "epochs": 2},
}


def spec_from(**changes) -> Spec:
    """BASE with loss/optimizer/training tables updated, any other key replaced."""
    raw = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and key in ("loss", "optimizer", "training"):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return from_dict(raw)


def mlp(hidden: list[tuple[int, str]], out: tuple[int, str], **layer_extra) -> dict:
    layers = [{"size": s, "activation": a, **layer_extra} for s, a in hidden]
    return {"layers": [*layers, {"size": out[0], "activation": out[1]}]}


def first_batch(spec: Spec) -> data.Batch:
    ds = data.prepare(spec)
    return data.train_batch(spec, ds, data.plan(spec, len(ds.train.x)), 0)


def build(name: str, spec: Spec):
    """A backend loaded with the spec's initial parameters; skipped if it cannot run here."""
    reason = missing_framework(name) or backend_class(name).unsupported(spec)
    if reason:
        pytest.skip(reason)
    backend = backend_class(name)(spec)
    backend.load(params.initial_params(spec))
    return backend


BACKENDS = list(registry())


def float32(spec: Spec) -> Spec:
    return dataclasses.replace(spec, dtype="float32")
