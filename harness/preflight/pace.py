"""The time a run will take, measured rather than guessed: each runnable backend's own
train_step, evaluate and float64 loss_and_grads are timed on the spec's shapes (on fewer rows,
scaled up, where a call would cost more than MEASURE_FLOPS), then multiplied by the run's
counts: steps, rows evaluated at each epoch's end, the calls of each check step, and the
finite-difference oracle's loss evaluations, counted as harness.verify.oracle makes them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness import data, params
from harness.backend import Backend
from harness.preflight.memory import EVAL_ARRAYS, MB, WORK_ARRAYS, Shape
from harness.spec import Spec, datasets
from harness.verify import oracle
from harness.verify import tolerances as tol

# Calls of one check step per backend (its own gradients; loss_and_grads and trace at the
# reference's parameters; the update phase's step) and for the reference's sensitivity (two
# more points, each loss_and_grads and trace), besides evaluate on the held-out split.
CHECK_CALLS = 4
SENSITIVITY_CALLS = 4
# The finite-difference oracle's loss evaluations (harness.verify.oracle): each tensor's noise
# from six steps, its step from the ladder (two evaluations a rung on a few probes), then +-h
# and +-2h per probe (every element, or FD_DIRECTIONS directions); and the oracle's own work
# per evaluation around the loss (the probe's copy, the stencil: measured 60-100 us).
NOISE_EVALS = 6
EVALS_PER_PROBE = 4
ORACLE_EVAL_OVERHEAD_S = 80e-6
# A timed call does at most about this many floating-point operations (fewer rows than the
# batch's where it would do more, the time scaled up): a few milliseconds each, so a
# backend's pre-flight takes well under a second.
MEASURE_FLOPS = 3e7
# Floating-point operations per weight and row: a forward pass is one product (two per
# multiply-add), a training step three (forward, weight gradient, input gradient).
FORWARD_FLOPS = 2
STEP_FLOPS = 6
# Calls before timing (a JIT compiles on the first); then calls are timed for at least
# TIMING_S and TIMED_CALLS calls (at most MAX_TIMED_CALLS), and their median counts: the
# run meets the machine's load as it is, not at its best, and a burst of another program's
# work shorter than the timing does not set it.
WARMUP_CALLS = 1
TIMED_CALLS = 3
MAX_TIMED_CALLS = 50
TIMING_S = 0.1
# A pass whose arrays outgrow the caches runs slower per row than a smaller timed one
# (measured, numpy on 128-128 units: 1.6-1.7x from 880 to 88,000 rows).
CACHE_BYTES = 32 * MB
OUT_OF_CACHE = 1.7
# The harness's own work per step (the batch, its dropout draw, the loop) and per backend and
# step (its records and timer); measured on xor with one-row batches.
HARNESS_STEP_S = 80e-6
HARNESS_BACKEND_STEP_S = 20e-6
# Importing scikit-learn for its data sets (measured 0.8-2 s).
SKLEARN_IMPORT_S = 1.5


@dataclass(frozen=True)
class Pace:
    """Seconds one backend took on a spec's shapes, and on how many rows."""
    step: float                           # train_step
    evaluate: float                       # evaluate (a forward pass)
    oracle_eval: float                    # load + loss_and_grads in float64
    rows: int                             # of the step's and the oracle's batch
    eval_rows: int


Measure = Callable[[type[Backend], Spec, str], Pace]


def _random_batch(spec: Spec, rows: int, dtype: str, training: bool = True) -> data.Batch:
    """A batch of the spec's shapes, with its dropout masks when `training` (the values do
    not matter to the time)."""
    rng = data.rng_for(spec.seed, "preflight")
    x = rng.normal(size=(rows, spec.model.inputs)).astype(dtype)
    width = spec.model.layers[-1].size
    if spec.loss.name == "cross_entropy":
        y = np.eye(width, dtype=dtype)[rng.integers(0, width, rows)]
    else:
        y = rng.uniform(size=(rows, width)).round().astype(dtype)
    if not training:
        return data.Batch(x, y)
    masks = data.dropout_masks(dataclasses.replace(spec, dtype=dtype), 0, rows)
    return data.Batch(x, y, masks if any(m is not None for m in masks) else ())


def _timed(call: Callable[[], object], sync: Callable[[], object]) -> float:
    """The median seconds of `call` after warming up."""
    for _ in range(WARMUP_CALLS):
        call()
    times: list[float] = []
    while len(times) < MAX_TIMED_CALLS and (len(times) < TIMED_CALLS or
                                            sum(times) < TIMING_S):
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(cls: type[Backend], spec: Spec, device: str) -> Pace:
    """Time `cls`'s calls on the spec's shapes, each on at most MEASURE_FLOPS of work."""
    sh = Shape.of(spec)
    weights = max(sh.weights, 1)
    rows = max(1, min(sh.batch, int(MEASURE_FLOPS // (STEP_FLOPS * weights))))
    eval_rows = max(1, min(max(sh.rows), int(MEASURE_FLOPS // (FORWARD_FLOPS * weights))))
    p0 = params.initial_params(spec)
    backend = cls(spec, device)
    backend.load(params.copy(p0))
    batch = _random_batch(spec, rows, spec.dtype)
    step = _timed(lambda: backend.train_step(batch), backend.sync)
    held = _random_batch(spec, eval_rows, spec.dtype, training=False)
    evaluate = _timed(lambda: backend.evaluate(held), backend.sync)
    probe = oracle.float64_backend(cls, spec) if spec.dtype != "float64" else backend
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in p0]
    batch64 = _random_batch(spec, rows, "float64")

    def evaluation() -> None:
        probe.load(p64)
        probe.loss_and_grads(batch64)
    return Pace(step, evaluate, _timed(evaluation, probe.sync), rows, eval_rows)


# A pace no CPU this runs on is slower than: a floor on dense throughput (one old core does
# 1e9 flop/s in BLAS) and a ceiling on one call's fixed cost (framework dispatch, a Python
# loop over layers: 0.1-1 ms measured here), plus a ceiling on compiling one backend's
# functions for one spec (jit and graph tracing: 1-5 s measured). A run this pessimistic
# pace finishes within the limit is accepted without timing anything.
FLOOR_FLOPS_PER_S = 1e8
CALL_CEILING_S = 5e-3
COMPILE_CEILING_S = 30.0


def pessimistic(spec: Spec) -> Pace:
    """A pace slower than any backend's here: what `check` accepts on, when it can."""
    sh = Shape.of(spec)
    rows, eval_rows = max(sh.batch, 1), max(max(sh.rows), 1)
    weights = max(sh.weights, 1)
    return Pace(step=STEP_FLOPS * weights * rows / FLOOR_FLOPS_PER_S + CALL_CEILING_S,
                evaluate=FORWARD_FLOPS * weights * eval_rows / FLOOR_FLOPS_PER_S
                + CALL_CEILING_S,
                oracle_eval=STEP_FLOPS * weights * rows / FLOOR_FLOPS_PER_S + CALL_CEILING_S,
                rows=rows, eval_rows=eval_rows)


_paces: dict[tuple, Pace] = {}


def cached_measure(cls: type[Backend], spec: Spec, device: str) -> Pace:
    """`measure`, once per backend, device and shapes in this process (the points of a
    learning-rate sweep are measured once)."""
    sh = Shape.of(spec)
    layers = tuple((layer.size, layer.activation, layer.drop_prob > 0)
                   for layer in spec.model.layers)
    key = (cls, device, spec.dtype, spec.model.inputs, layers, spec.loss.name,
           spec.optimizer.name, sh.batch, max(sh.rows))
    if key not in _paces:
        _paces[key] = measure(cls, spec, device)
    return _paces[key]


def scaled(seconds: float, measured: int, rows: int, row_bytes: int) -> float:
    """A call timed on `measured` rows, on `rows`: in proportion, and OUT_OF_CACHE times
    slower per row where only the larger call's arrays outgrow the caches."""
    factor = rows / measured
    if rows * row_bytes > CACHE_BYTES >= measured * row_bytes:
        factor *= OUT_OF_CACHE
    return seconds * factor


def oracle_evaluations(tensors: Sequence[int], full: bool) -> int:
    """Loss evaluations of one oracle check (harness.verify.oracle.check) of trainable
    tensors of these sizes: every element when `full` and the net is small, else
    FD_DIRECTIONS directions per tensor; on a smooth loss (a kink's retries cost more)."""
    central = full and sum(tensors) <= tol.FD_FULL_MAX_PARAMS
    count = 1
    for n in tensors:
        probes = n if central else tol.FD_DIRECTIONS
        ladder = min(tol.FD_LADDER_PROBES, n) if central else tol.FD_LADDER_PROBES
        count += NOISE_EVALS + 2 * tol.FD_LADDER_RUNGS * ladder + EVALS_PER_PROBE * probes
    return count


def oracle_seconds(spec: Spec, pace: Pace, full: bool) -> float:
    """One backend's finite-difference check on the first batch."""
    sh = Shape.of(spec)
    evaluation = scaled(pace.oracle_eval, pace.rows, sh.batch, WORK_ARRAYS * sh.units * 8)
    return oracle_evaluations(sh.tensors, full) * (evaluation + ORACLE_EVAL_OVERHEAD_S)


def variant_seconds(spec: Spec, paces: Sequence[Pace]) -> tuple[float, float]:
    """(all of it, the oracle's share) in seconds for one sweep point, the first pace the
    reference's: each backend's steps and the harness's work around them, the training and
    validation splits evaluated at each epoch's end and the test split at the run's, every
    check step, the shadow run a float32 run's drift needs, and the oracle."""
    if not paces:
        return 0.0, 0.0
    sh = Shape.of(spec)
    n_train, n_val, n_test = sh.rows
    held = n_val or n_test or n_train
    checks = len(spec.training.grad_check_steps)

    def step(p: Pace) -> float:
        return scaled(p.step, p.rows, sh.batch, WORK_ARRAYS * sh.units * sh.itemsize)

    def evaluate(p: Pace, rows: int) -> float:
        return scaled(p.evaluate, p.eval_rows, rows, EVAL_ARRAYS * sh.units * sh.itemsize)

    seconds = sh.steps * HARNESS_STEP_S
    for p in paces:
        seconds += sh.steps * (step(p) + HARNESS_BACKEND_STEP_S) + evaluate(p, n_test) \
            + sh.epochs * (evaluate(p, n_train) + evaluate(p, n_val)) \
            + checks * (CHECK_CALLS * step(p) + evaluate(p, held))
    ref = paces[0]
    seconds += checks * (SENSITIVITY_CALLS * step(ref) + 2 * evaluate(ref, held))
    if len(paces) > 1 and spec.dtype != "float64":
        seconds += sh.steps * step(ref)
    fd = sum(oracle_seconds(spec, p, full=i == 0) for i, p in enumerate(paces))
    return seconds + fd, fd


def data_seconds(specs: Sequence[Spec]) -> float:
    """Importing scikit-learn for its data sets, where this process has not yet."""
    sklearn = any(spec.data.name in datasets.SIZES for spec in specs)
    return SKLEARN_IMPORT_S if sklearn and "sklearn" not in sys.modules else 0.0
