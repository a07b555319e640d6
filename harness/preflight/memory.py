"""The memory a run will hold at its peak, counted from the spec's shapes before anything is
allocated: the data (and its float64 copies while it is split); per backend instance
(training, probe, a float64 probe for the oracle in a float32 run, and one more for the
shadow run or the diagnosis replay) its parameters, gradients and optimizer slots; the
records of every step; and the largest transient: one call on a batch, the traces a check
step holds for every backend, or a forward pass over a whole split at an epoch's end. On a
GPU the arrays live in device memory; they are still counted here, against the host's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.backend import Backend, frozen_flags
from harness.spec import Spec, datasets, planned_steps
from harness.spec.layers import macs, param_shapes

MB = 2**20
# Python, NumPy, pandas and the harness itself (measured: 70 MB resident).
INTERPRETER_BYTES = 100 * MB
# What importing a backend's framework and starting its runtime keeps resident (measured:
# torch 185 MB; jax 160 MB, ~250 MB once a step is compiled); a plug-in's framework, unknown,
# is taken as the larger. scikit-learn, imported for the digits and breast_cancer data
# sets: 80 MB.
FRAMEWORK_BYTES = {"numpy": 0, "torch": 200 * MB, "jax": 250 * MB}
OTHER_FRAMEWORK_BYTES = 300 * MB
SKLEARN_BYTES = 80 * MB
# One backend's step in the records while its sweep point runs (a steps row and a timings
# row, as Python dicts), and once it is a DataFrame kept for the results folder.
RECORD_BYTES_PER_STEP = 600
TABLE_BYTES_PER_STEP = 200
# Arrays of one unit and one row that a training call holds at once: z, a, h, delta, dJ/dh
# and f'(z) (the textbook backend; the frameworks' autograd keeps as many).
WORK_ARRAYS = 6
# A layer trace keeps z, a, dJ/da and dJ/dz; a check step holds one per backend and two more
# for the reference's sensitivity.
TRACE_ARRAYS = 4
SENSITIVITY_TRACES = 2
# A forward pass over a whole split keeps z, a and h per layer.
EVAL_ARRAYS = 3
# float64 copies of the raw data while it is standardized and split: raw, standardized, and
# the split's rows.
GENERATE_COPIES = 3
# A value written inline in the spec: a Python float and its slot in a tuple.
INLINE_VALUE_BYTES = 32
# Optimizer state slots per parameter; a parameter lives as itself and its gradient.
SLOTS = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}
PARAM_COPIES = 2


@dataclass(frozen=True)
class Part:
    """One thing that holds memory at the run's peak, and the spec key that sizes it."""
    what: str
    key: str
    bytes: int


def total(parts: Sequence[Part]) -> int:
    return sum(p.bytes for p in parts)


@dataclass(frozen=True)
class Shape:
    """The sizes of one sweep point that cost memory and time."""
    itemsize: int
    rows: tuple[int, int, int]            # train, validation, test
    batch: int                            # rows of a training batch
    features: int
    targets: int                          # width of the encoded targets
    units: int                            # over all layers
    weights: int                          # multiply-adds per sample (sum of fan_in * fan_out
                                          # for dense layers): the products' work
    params: int
    tensors: tuple[int, ...]              # sizes of the trainable W0, b0, W1, ...
    slots: int
    steps: int
    epochs: int
    inline_values: int

    @classmethod
    def of(cls, spec: Spec) -> Shape:
        rows = datasets.split_sizes(spec.data)
        layers = spec.model.layers
        sizes = [math.prod(shape) for layer in layers for shape in param_shapes(layer)]
        batch = min(spec.training.batch_size or rows[0], rows[0])
        steps = planned_steps(spec)
        inline = 0 if spec.data.x is None else \
            len(spec.data.x) * (len(spec.data.x[0]) + len(spec.data.y[0]))
        trainable = tuple(n for n, frozen in zip(sizes, frozen_flags(spec), strict=True)
                          if not frozen)
        return cls(np.dtype(spec.dtype).itemsize, rows, batch, spec.model.inputs,
                   layers[-1].size, sum(layer.size for layer in layers),
                   sum(map(macs, layers)), sum(sizes), trainable, SLOTS[spec.optimizer.name], steps,
                   math.ceil(steps / math.ceil(rows[0] / batch)), inline)


def libraries(specs: Sequence[Spec], classes: Sequence[type[Backend]]) -> Part:
    """The interpreter, the backends' frameworks and scikit-learn for its data sets."""
    frameworks = {cls.framework for cls in classes}
    sklearn = any(spec.data.name in datasets.SIZES for spec in specs)
    held = INTERPRETER_BYTES + SKLEARN_BYTES * sklearn + \
        sum(FRAMEWORK_BYTES.get(f, OTHER_FRAMEWORK_BYTES) for f in frameworks if f)
    return Part("the interpreter and the frameworks", "backends", held)


def _data(sh: Shape) -> tuple[Part, Part]:
    """(the data while it is generated and split, the encoded splits it leaves)."""
    n = sum(sh.rows)
    kept = INLINE_VALUE_BYTES * sh.inline_values + \
        sh.itemsize * n * (sh.features + sh.targets) + 8 * n
    preparing = GENERATE_COPIES * 8 * n * (sh.features + 1)
    return (Part(f"the {n} rows of data while they are split", "data", kept + preparing),
            Part(f"the {n} rows of data", "data", kept))


def _largest_transient(sh: Shape, n_backends: int) -> Part:
    """The largest short-lived arrays: one call on a batch, a check step's traces (and the
    oracle's float64 call), or a forward pass over the largest split."""
    s, b = sh.itemsize, sh.batch
    call = WORK_ARRAYS * b * sh.units * s
    trace = TRACE_ARRAYS * b * sh.units * s + PARAM_COPIES * sh.params * s
    checks = (n_backends + SENSITIVITY_TRACES) * trace + WORK_ARRAYS * b * sh.units * 8
    widest = max(sh.rows)
    evaluation = widest * (EVAL_ARRAYS * sh.units + sh.features + sh.targets) * s
    return max(Part(f"a training call on {b} rows", "training.batch_size", call),
               Part(f"a check step's traces of {b} rows", "training.batch_size", checks),
               Part(f"a forward pass over a split of {widest} rows", "data", evaluation),
               key=lambda p: p.bytes)


def variant_memory(spec: Spec, n_backends: int) -> tuple[Part, ...]:
    """What holds memory at one sweep point's peak, beyond the libraries."""
    sh = Shape.of(spec)
    preparing, kept = _data(sh)
    instances = (2 * n_backends + 1) * sh.itemsize
    if spec.dtype != "float64":
        instances += n_backends * 8                  # the oracle's float64 probes
    state = Part(f"parameters and optimizer state of {2 * n_backends + 1} instances",
                 "model.layers", instances * sh.params * (PARAM_COPIES + sh.slots))
    records = Part(f"the records of {sh.steps} steps", "training",
                   RECORD_BYTES_PER_STEP * sh.steps * (n_backends + 1))
    training = (kept, state, records, _largest_transient(sh, n_backends))
    return training if total(training) >= preparing.bytes else (preparing,)


def run_memory(specs: Sequence[Spec],
               classes: Sequence[Sequence[type[Backend]]]) -> tuple[Part, ...]:
    """What holds memory at a run's peak: the libraries, and the largest sweep point with the
    tables of the points before it (or all the tables, merged, at the end)."""
    peak: tuple[Part, ...] = ()
    kept = 0
    for i, (spec, ran) in enumerate(zip(specs, classes, strict=True)):
        here = (*variant_memory(spec, len(ran)),
                Part(f"the tables of {i} earlier sweep points", "sweep", kept))
        if total(here) > total(peak):
            peak = here
        kept += TABLE_BYTES_PER_STEP * planned_steps(spec) * (len(ran) + 1)
    if 2 * kept > total(peak):
        peak = (Part(f"the tables of {len(specs)} sweep points, merged", "sweep", 2 * kept),)
    return (libraries(specs, [c for ran in classes for c in ran]), *peak)


def oracle_memory(specs: Sequence[Spec],
                  classes: Sequence[Sequence[type[Backend]]]) -> tuple[Part, ...]:
    """What holds memory in `harness check` at its largest sweep point: the data, one float64
    instance with the oracle's copy of the parameters, one float64 call."""
    peak: tuple[Part, ...] = ()
    for spec in specs:
        sh = Shape.of(spec)
        preparing, kept = _data(sh)
        checking = (kept, Part("the float64 parameters", "model.layers",
                               8 * sh.params * (PARAM_COPIES + 1)),
                    Part(f"a float64 call on {sh.batch} rows", "training.batch_size",
                         WORK_ARRAYS * sh.batch * sh.units * 8))
        here = checking if total(checking) >= preparing.bytes else (preparing,)
        peak = max(peak, here, key=total)
    return (libraries(specs, [c for ran in classes for c in ran]), *peak)
