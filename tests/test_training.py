"""Training control: early stopping applied identically, explicit initial weights, steps."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from harness import params, parity
from harness.registry import missing_framework
from harness.spec import from_dict
from harness.spec.schema import SpecError
from tests.conftest import BASE, mlp, spec_from

NAMES = [n for n in ("numpy", "torch", "jax") if missing_framework(n) is None]


def test_early_stopping_stops_every_backend_at_the_same_step():
    spec = spec_from(data={"name": "spirals", "n_samples": 120},
                     model=mlp([(16, "relu")], (3, "softmax")),
                     optimizer={"name": "adam"},
                     training={"learning_rate": 0.3, "epochs": 60,
                               "early_stopping": {"patience": 2, "min_delta": 0.0}})
    rec = parity.run_variant(spec, NAMES, progress=False)
    frames = rec.frames()
    stops = frames["events"][frames["events"].event == "early_stopped"]
    assert set(stops.backend) == set(NAMES) and stops.step.nunique() == 1
    last = frames["steps"].groupby("backend").step.max()
    assert last.nunique() == 1 and last.iloc[0] < 60 * 6 - 1      # it did stop early
    assert parity.summarize(rec)["verdict"] == "agree"


def test_initial_weights_from_npz(tmp_path):
    spec = spec_from()
    ref = params.initial_params(spec)
    path = tmp_path / "w.npz"
    np.savez(path, **{f"{k}{i}": 2 * t for i, (w, b) in enumerate(ref)
                      for k, t in (("W", w), ("b", b + 0.5))})
    raw = copy.deepcopy(BASE)
    raw["model"] = {**raw["model"], "init_file": "w.npz"}
    loaded = params.initial_params(from_dict(raw, base=tmp_path))
    for (w, b), (w0, b0) in zip(loaded, ref, strict=True):
        assert np.array_equal(w, 2 * w0) and np.array_equal(b, 2 * (b0 + 0.5))


def test_npz_with_wrong_shape_is_rejected(tmp_path):
    np.savez(tmp_path / "w.npz", W0=np.zeros((3, 5)), b0=np.zeros(5), W1=np.zeros((5, 3)),
             b1=np.zeros(3))
    raw = copy.deepcopy(BASE)
    raw["model"] = {**raw["model"], "init_file": "w.npz"}
    with pytest.raises(SpecError, match=r"^model.init_file: w.npz\[W0\] has shape \(3, 5\)"):
        params.initial_params(from_dict(raw, base=tmp_path))


def test_steps_instead_of_epochs():
    raw = copy.deepcopy(BASE)
    raw["training"] = {"learning_rate": 0.1, "batch_size": 16, "steps": 7}
    rec = parity.run_variant(from_dict(raw), ["numpy"], progress=False)
    assert rec.frames()["steps"].step.tolist() == list(range(7))
