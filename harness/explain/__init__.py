"""`harness explain`: the chain rule of one training step written out as the textbooks teach it,
layer by layer from the output back to the input, every backend's value side by side with the
largest difference between them (docs/explain.md).

Every backend starts from one point: the reference's parameters and optimizer state after
`step` steps (the reference, the first runnable backend, replayed from the initial parameters
on the run's own batches). Each is traced on that step's batch (Backend.trace) and then takes
one train_step from the same point, for the updated weights. This module gathers the values;
harness/explain/rows.py builds the rows from them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness import data, optim, params, parity
from harness.backend import Backend
from harness.explain.rows import Observed, Point, text
from harness.params import Params
from harness.spec import Spec
from harness.spec.schema import SpecError


def pick(specs: Sequence[Spec], variant: str | None) -> Spec:
    """The sweep point to explain: the one labelled `variant`, else the first."""
    if variant is None:
        return specs[0]
    for spec in specs:
        if spec.variant == variant:
            return spec
    raise SpecError("--variant", f"{variant!r} is not one of "
                    f"{', '.join(s.variant for s in specs) or '(no sweep)'}")


def _bounded(option: str, value: int, limit: int, what: str) -> None:
    if not 0 <= value < limit:
        raise SpecError(option, f"{value} is out of range (allowed: 0 to {limit - 1}: {what})")


def observe(spec: Spec, backends: Sequence[parity.BackendRef], step: int, sample: int,
            device: str = "cpu") -> Point:
    """Replay the reference `step` steps, then load every backend with its parameters and
    optimizer state, trace the step's batch and take one step. Backends that cannot run the
    spec here are skipped with their reason; out-of-range `step` or `sample` is a SpecError."""
    ok, skipped = parity.runnable(spec, backends, device)
    if not ok:
        raise SpecError("--backends", "no backend can run this spec here: "
                        + "; ".join(f"{n}: {why}" for n, why in skipped.items()))
    ds = data.prepare(spec)
    plan = data.plan(spec, len(ds.train.x))
    _bounded("--step", step, plan.steps, f"the run has {plan.steps} steps")
    batch = data.train_batch(spec, ds, plan, step)
    _bounded("--sample", sample, len(batch.x), f"step {step}'s batch size is {len(batch.x)}")
    ref = next(iter(ok.values()))(spec, device)
    ref.load(params.initial_params(spec))
    with np.errstate(all="ignore"):       # a diverging run is shown, not warned about
        for earlier in range(step):
            ref.train_step(data.train_batch(spec, ds, plan, earlier))
        start, state = ref.params(), ref.export_state()
        seen = {name: _one(cls(spec, device), start, state, batch, step)
                for name, cls in ok.items()}
    return Point(spec, step, plan.steps, sample, len(batch.x), seen, skipped)


def _one(backend: Backend, start: Params, state: optim.State | None, batch: data.Batch,
         step: int) -> Observed:
    """One backend from the common start: trace, gradients, one step."""
    backend.load(params.copy(start))
    loaded = state is not None and backend.load_state(optim.copy_state(state))
    notes = [] if loaded or step == 0 else ["fresh optimizer state"]
    traced = backend.trace(batch)
    if traced is None:
        notes.append("cannot trace")
    grads = traced.grads if traced is not None else backend.loss_and_grads(batch)[1]
    step_loss = backend.train_step(batch)
    return Observed(traced, grads, step_loss, backend.params(), tuple(notes))


def explain(spec: Spec, backends: Sequence[parity.BackendRef], step: int = 0, sample: int = 0,
            device: str = "cpu") -> str:
    """The text `harness explain` prints."""
    return text(observe(spec, backends, step, sample, device))
