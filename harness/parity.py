"""The parity run: every backend starts from the same parameters and consumes the same batches,
in the same order, with the same dropout masks; everything observed goes into tidy tables.

Backends advance step by step in rounds (A B C, A B C, ...), so a change in the machine's load
hits all of them alike; each `train_step` is timed with `sync()` before the clock stops.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness import data, params
from harness.backend import Backend
from harness.progress import Position, bars
from harness.registry import backend_class, missing_framework
from harness.spec import Spec
from harness.verify import diagnose, oracle, same_point, verdict
from harness.verify import tolerances as tol

HARNESS = "harness"                       # the `backend` of the harness's own timed phases
# The diagnosis replays at most this many steps looking for where a disagreement starts: each
# costs about four training steps per backend, paid only by a run that disagrees.
MAX_SCAN_STEPS = 5_000
# A backend as callers name it: a registered name, or a Backend subclass (its `name` is its key).
BackendRef = str | type[Backend]


@dataclass
class Lane:
    """One backend's progress through the run."""
    name: str
    backend: Backend
    probe: Backend                        # a second instance, loaded with others' parameters
    probe64: Backend                      # float64 instance for the finite-difference oracle
    active: bool = True
    best: float = math.inf                # early stopping: best validation loss so far
    waited: int = 0


@dataclass
class Record:
    """The tables of one variant, before they are written; `skipped` maps name -> reason."""
    spec: Spec
    backends: list[str]
    tables: dict[str, list[dict]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, table: str, rows: list[dict] | dict) -> None:
        self.tables.setdefault(table, []).extend([rows] if isinstance(rows, dict) else rows)

    def frames(self) -> dict[str, pd.DataFrame]:
        cols = {"steps": ["backend", "step", "epoch", "loss"],
                "gradients": ["step", "parameter", "backend", "compared_to", "evaluated_at",
                              "max_abs_err", "max_rel_err"],
                "same_point": ["quantity", "step", "backend", "compared_to", "max_abs_err",
                               "max_rel_err", "sensitivity", "tolerance"],
                "shadow": ["step", "loss"],
                "shadow_params": ["parameter", "max_abs_err", "max_rel_err"],
                "grad_norms": ["backend", "step", "parameter", "norm"],
                "final_params": ["backend", "compared_to", "parameter", "max_abs_err",
                                 "max_rel_err"],
                "timings": ["backend", "phase", "seconds"],
                "events": ["backend", "step", "event", "detail"],
                "test": ["backend", "test_loss", "test_accuracy"],
                "phases": ["step", "phase", "layer", "tensor", "backend", "compared_to",
                           "max_abs_err", "max_rel_err", "tolerance", "status", "note",
                           "convention", "convention_err", "scan"]}
        frames = {name: pd.DataFrame(self.tables.get(name, []), columns=None
                                     if self.tables.get(name) else c)
                  for name, c in cols.items()}
        # text that is missing in every row is still text (as a results folder reads it)
        frames["phases"] = frames["phases"].astype({"note": "str", "convention": "str"})
        return frames


def _classes(backends: Sequence[BackendRef]) -> dict[str, type[Backend]]:
    """name -> class, in the given order: a name is looked up in the registry, a class stands
    for itself under its `name` (so a test can run a deliberately broken subclass next to the
    registered backends)."""
    out: dict[str, type[Backend]] = {}
    for backend in backends:
        name = backend if isinstance(backend, str) else backend.name
        if name in out:
            raise ValueError(f"backend {name!r} is given twice")
        out[name] = backend_class(backend) if isinstance(backend, str) else backend
    return out


def runnable(spec: Spec, backends: Sequence[BackendRef],
             device: str) -> tuple[dict[str, type[Backend]], dict[str, str]]:
    """The backends that can run `spec` here, and why each other one is skipped. A registered
    name or a class whose framework is not installed is skipped."""
    ok, skipped = {}, {}
    for name, cls in _classes(backends).items():
        reason = missing_framework(cls) or cls.unsupported(spec, device)
        if reason:
            skipped[name] = reason
        else:
            ok[name] = cls
    return ok, skipped


def _lane(name: str, cls: type[Backend], spec: Spec, device: str, p0: params.Params,
          rec: Record) -> Lane:
    t0 = time.perf_counter()
    backend = cls(spec, device)
    backend.load(params.copy(p0))
    rec.add("timings", {"backend": name, "phase": "setup", "seconds": time.perf_counter() - t0})
    probe = cls(spec, device)
    probe64 = probe if spec.dtype == "float64" else oracle.float64_backend(cls, spec)
    return Lane(name, backend, probe, probe64)


BCE_DECISION = 0.5                        # a sigmoid output above this predicts class 1


def accuracy(outputs: np.ndarray, labels: np.ndarray | None, loss: str) -> float:
    """Fraction of correct predictions (NaN for regression)."""
    if labels is None:
        return math.nan
    pred = (outputs[:, 0] > BCE_DECISION).astype(int) if loss == "bce" \
        else outputs.argmax(axis=1)
    return float(np.mean(pred == labels))


def _epoch_end(lane: Lane, spec: Spec, ds: data.Dataset, row: dict) -> None:
    """Train/validation metrics into the step's row, then the early-stopping rule."""
    for split, prefix in ((ds.train, "train"), (ds.validation, "val")):
        if len(split.x) == 0:
            continue
        value, out = lane.backend.evaluate(data.eval_batch(split))
        row[f"{prefix}_loss"] = value
        row[f"{prefix}_accuracy"] = accuracy(out, split.labels, spec.loss.name)
    rule = spec.training.early_stopping
    if rule is None or "val_loss" not in row:
        return
    if row["val_loss"] < lane.best - rule.min_delta:
        lane.best, lane.waited = row["val_loss"], 0
    else:
        lane.waited += 1
    if lane.waited >= rule.patience:
        lane.active = False
        row["stopped"] = True


def held_out(ds: data.Dataset) -> data.Batch:
    """What evaluate() is compared on at a check step: the validation split, else the test
    split, else the training split."""
    split = next(s for s in (ds.validation, ds.test, ds.train) if len(s.x))
    return data.eval_batch(split)


def _compare_step(rec: Record, lanes: list[Lane], step: int, batch: data.Batch,
                ds: data.Dataset) -> None:
    """Same-point comparisons (and the oracle at the first check step) before the update."""
    active = [lane for lane in lanes if lane.active]
    if not active:
        return
    t0 = time.perf_counter()
    spec = rec.spec
    with_oracle = step == spec.training.grad_check_steps[0]
    out = same_point.compare_at_step(step, batch, held_out(ds), active, spec, with_oracle,
                                     tolerances(spec),
                                     data.rng_for(spec.seed, "sensitivity", step))
    rec.add("timings", {"backend": HARNESS, "phase": "checks",
                        "seconds": time.perf_counter() - t0})
    rec.add("gradients", out.gradients)
    rec.add("same_point", out.same_point)
    rec.add("phases", [dict(row, scan=False) for row in out.phases])
    rec.add("grad_norms", out.norms)
    for lane in active:
        if not same_point.finite(out.own[lane.name]):
            _diverge(rec, lane, step, "gradient is NaN or Inf")


def _diverge(rec: Record, lane: Lane, step: int, what: str) -> None:
    lane.active = False
    rec.add("events", {"backend": lane.name, "step": step, "event": "diverged", "detail": what})


def run_variant(spec: Spec, backends: Sequence[BackendRef], device: str = "cpu",
                progress: bool = True, position: Position | None = None) -> Record:
    """Train every runnable backend of `backends` (names or classes, the first is the
    reference) on `spec` and record everything."""
    ok, skipped = runnable(spec, backends, device)
    rec = Record(spec, list(ok), skipped=skipped)
    for name, reason in skipped.items():
        rec.add("events", {"backend": name, "step": -1, "event": "skipped", "detail": reason})
    if not ok:
        return rec
    t0 = time.perf_counter()
    ds = data.prepare(spec)
    plan = data.plan(spec, len(ds.train.x))
    p0 = params.initial_params(spec)
    rec.add("timings", {"backend": HARNESS, "phase": "data", "seconds": time.perf_counter() - t0})
    lanes = [_lane(name, cls, spec, device, p0, rec) for name, cls in ok.items()]
    checks = set(spec.training.grad_check_steps)
    # Overflow and NaN are detected and reported per backend (events); NumPy's warnings
    # about them would only repeat that, once per operation.
    with bars(list(ok), plan.steps, progress, spec.variant, position) as bar, \
            np.errstate(all="ignore"):
        for step in range(plan.steps):
            batch = data.train_batch(spec, ds, plan, step)
            if step in checks:
                _compare_step(rec, lanes, step, batch, ds)
            epoch_ends = step + 1 == plan.steps or plan.epochs[step + 1] != plan.epochs[step]
            for lane in lanes:
                if lane.active:
                    _step(rec, lane, step, int(plan.epochs[step]), batch, epoch_ends, ds, bar)
            if not any(lane.active for lane in lanes):
                break
        t0 = time.perf_counter()
        _finish(rec, lanes, ds)
        frames = rec.frames()
        if len(lanes) > 1 and verdict.needs_shadow(frames, list(ok), tolerances(spec)):
            ran = frames["steps"]
            _shadow(rec, lanes[0], p0, ds, plan, device,
                    int(ran[ran.backend == lanes[0].name].step.max()))
        rec.add("timings", {"backend": HARNESS, "phase": "checks",
                            "seconds": time.perf_counter() - t0})
        t0 = time.perf_counter()
        _locate(rec, lanes, p0, ds, plan, device)
    rec.add("timings", {"backend": HARNESS, "phase": "diagnosis",
                        "seconds": time.perf_counter() - t0})
    return rec


def _locate(rec: Record, lanes: list[Lane], p0: params.Params, ds: data.Dataset,
            plan: data.Plan, device: str) -> None:
    """When the run disagrees: replay the reference and put every backend at its parameters
    and optimizer state at each step up to where the disagreement showed (phase rows, the
    check steps' already there), until each disagreeing backend's first difference is found
    or MAX_SCAN_STEPS steps were scanned (a note in events says so)."""
    prelim = summarize(rec)
    if prelim["verdict"] != "disagree":
        return
    names = diagnose.needing(prelim["checks"], prelim["divergence"])
    last = scan_bound(prelim["checks"], rec.frames()["steps"], names)
    ref_diverged = (prelim["divergence"] or {"at": {}})["at"].get(lanes[0].name)
    if ref_diverged is not None:                  # its loss there is already NaN/Inf
        last = min(last, ref_diverged - 1)
    spec, checks = rec.spec, set(rec.spec.training.grad_check_steps)
    replay = type(lanes[0].backend)(spec, device)
    replay.load(params.copy(p0))
    held, base = held_out(ds), tolerances(spec)
    for step in range(min(last, MAX_SCAN_STEPS) + 1):
        batch = data.train_batch(spec, ds, plan, step)
        at, state = replay.params(), replay.export_state()
        if not all(np.isfinite(t).all() for t in params.flatten(at)):
            return                        # the reference diverged: nothing left to compare
        if step not in checks:
            seen = same_point.observe(lanes, at, batch, held, base,
                                      data.rng_for(spec.seed, "sensitivity", step))
            rec.add("phases", [dict(row, scan=True) for row in same_point.phase_rows(
                step, batch, lanes, seen, at, state, spec, base)])
        if diagnose.explained(pd.DataFrame(rec.tables["phases"]), rec.backends, names, step):
            return
        replay.train_step(batch)
    if last > MAX_SCAN_STEPS:
        rec.add("events", {"backend": HARNESS, "step": MAX_SCAN_STEPS, "event": "scan_capped",
                           "detail": f"the diagnosis scanned steps 0-{MAX_SCAN_STEPS} of "
                                     f"0-{last}"})


def scan_bound(checks: list[dict], steps: pd.DataFrame, names: list[str]) -> int:
    """The last step the diagnosis may have to scan: for each disagreeing backend, the
    latest step where one of its checks first failed, or its last step where a failing check
    names none (final parameters). Not the earliest: an oracle failure at step 0 can have
    no same-point difference before a later step (a bias the forward pass ignores matters
    only once it is no longer zero). The scan stops at the first difference anyway."""
    bound = 0
    for name in names:
        failed = [c["first_step"] for c in checks if c["backend"] == name and
                  c["status"] == "fail"]
        ran = steps[steps.backend == name].step
        last = int(ran.max()) if len(ran) else 0
        bound = max(bound, *(last if s is None else s for s in failed))
    return bound


def _nudge(a: np.ndarray, rng: np.random.Generator, ulps: float) -> np.ndarray:
    """`ulps` units of a's rounding, random signs."""
    return same_point.nudged(a, rng.choice([-1.0, 1.0], a.shape),
                             ulps * tol.UNIT_ROUNDOFF[a.dtype.name])


def _shadow(rec: Record, ref: Lane, p0: params.Params, ds: data.Dataset, plan: data.Plan,
            device: str, last: int) -> None:
    """Replay the reference, up to its `last` step, from a rounding-level nudge of its start
    and of every batch's inputs (tol.SHADOW_ULPS): how far it ends from itself is what this
    run makes of rounding, the yardstick for the drift between backends (compare: drift vs
    disagreement)."""
    spec, rng = rec.spec, data.rng_for(rec.spec.seed, "shadow")
    shadow = type(ref.backend)(spec, device)
    shadow.load([(_nudge(w, rng, tol.SHADOW_ULPS), _nudge(b, rng, tol.SHADOW_ULPS))
                 for w, b in params.copy(p0)])
    for step in range(last + 1):
        batch = data.train_batch(spec, ds, plan, step)
        loss = shadow.train_step(data.Batch(_nudge(batch.x, rng, tol.SHADOW_ULPS), batch.y,
                                            batch.masks))
        rec.add("shadow", {"step": step, "loss": loss})
        if not math.isfinite(loss):
            break
    rec.add("shadow_params", _param_rows(shadow.params(), ref.backend.params()))


def _step(rec: Record, lane: Lane, step: int, epoch: int, batch: data.Batch, epoch_ends: bool,
          ds: data.Dataset, bar) -> None:
    t0 = time.perf_counter()
    loss = lane.backend.train_step(batch)
    lane.backend.sync()
    seconds = time.perf_counter() - t0
    rec.add("timings", {"backend": lane.name, "phase": "first_step" if step == 0 else "step",
                        "seconds": seconds})
    row = {"backend": lane.name, "step": step, "epoch": epoch, "loss": loss}
    bar.update(lane.name, loss)
    if not math.isfinite(loss):
        rec.add("steps", row)
        _diverge(rec, lane, step, f"loss is {loss}")
        return
    if epoch_ends:
        t0 = time.perf_counter()
        _epoch_end(lane, rec.spec, ds, row)
        rec.add("timings", {"backend": lane.name, "phase": "evaluate",
                            "seconds": time.perf_counter() - t0})
        if row.pop("stopped", False):
            rec.add("events", {"backend": lane.name, "step": step, "event": "early_stopped",
                               "detail": f"no val_loss improvement for "
                               f"{rec.spec.training.early_stopping.patience} epochs"})
    rec.add("steps", row)


def _finish(rec: Record, lanes: list[Lane], ds: data.Dataset) -> None:
    """Final-parameter agreement and the test-set evaluation."""
    final = {lane.name: lane.backend.params() for lane in lanes}
    ref = lanes[0].name
    for lane in lanes[1:]:
        rec.add("final_params", [dict(r, backend=lane.name, compared_to=ref)
                                 for r in _param_rows(final[lane.name], final[ref])])
    for lane in lanes:
        row = {"backend": lane.name, "test_loss": math.nan, "test_accuracy": math.nan}
        if len(ds.test.x):
            value, out = lane.backend.evaluate(data.eval_batch(ds.test))
            row.update(test_loss=value,
                       test_accuracy=accuracy(out, ds.test.labels, rec.spec.loss.name))
        rec.add("test", row)


def _param_rows(a: params.Params, b: params.Params) -> list[dict]:
    names = oracle.parameter_names(len(a))
    return [dict(zip(("parameter", "max_abs_err", "max_rel_err"),
                     (n, *tol.diverged_errors(x, y)), strict=True))
            for n, x, y in zip(names, params.flatten(a), params.flatten(b), strict=True)]


def summarize(rec: Record) -> dict:
    """The verdict of one variant plus what happened to each backend."""
    frames = rec.frames()
    out = {"variant": rec.spec.variant, "dtype": rec.spec.dtype, "backends": rec.backends,
           "skipped": rec.skipped, "layers": [layer.kind for layer in rec.spec.model.layers]}
    if not rec.backends:
        return {**out, **verdict.decide([], [], None), "checks": [], "odd_one_out": None,
                "divergence": None, "diagnosis": {}}
    div = divergence(frames["events"], rec.backends)
    out.update(verdict.verdict(frames, rec.backends, tolerances(rec.spec),
                               list(rec.spec.training.grad_check_steps), div))
    out["divergence"] = div
    out["diagnosis"] = diagnose.diagnose(frames["phases"], rec.backends, out["checks"], div) \
        if out["verdict"] == "disagree" else {}
    return out


def tolerances(spec: Spec) -> tol.Tolerances:
    """Size-aware tolerances: the longest sum is a fan-in, a fan-out or the rows of the batch
    actually used (a batch_size above the training split's size uses the whole split)."""
    rows = min(spec.training.batch_size or math.inf, data.train_size(spec))
    widths = [spec.model.inputs, *(layer.size for layer in spec.model.layers), rows]
    return tol.for_run(spec.dtype, max(widths), len(spec.model.layers))


def divergence(events: pd.DataFrame, backends: list[str]) -> dict | None:
    """'all': every backend diverged at the same step (the spec's fault: e.g. a learning rate
    that explodes); 'some': only some did (a backend's fault)."""
    div = events[events.event == "diverged"] if len(events) else events
    if div.empty:
        return None
    steps = dict(zip(div.backend, div.step.astype(int), strict=True))
    same = set(steps) == set(backends) and len(set(steps.values())) == 1
    return {"kind": "all" if same else "some", "at": steps}

