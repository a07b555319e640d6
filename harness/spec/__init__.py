"""The spec: what the user writes (a TOML file and the files beside it), read and checked.

One-way imports inside: `schema` (generic validators, `SpecError`) <- `types` (vocabulary and
dataclasses) <- `reading` (the reading layer: a spec's text or dict, size and depth limits),
`npz` (the .npz archive beside a spec) <- `datasets`, `init_file` <- `parse` (`from_dict`) <-
`sweep` (`load`, `expand`).
Outside code imports from here.
"""

from harness.spec.parse import from_dict, planned_steps
from harness.spec.reading import Document, read_spec
from harness.spec.schema import SpecError
from harness.spec.types import (
    ACTIVATIONS,
    BIAS_CORRECTIONS,
    DTYPES,
    EPS_PLACEMENTS,
    INITS,
    LAYER_KEYS,
    LAYER_TYPES,
    LOGIT_LOSSES,
    LOSS_OUTPUT,
    LOSSES,
    MAX_PARAMS,
    MAX_STEPS,
    MAX_SWEEP_POINTS,
    MAX_SWEEP_STEPS,
    MAX_UNITS,
    NAME_CHARS,
    NAME_MAX,
    OPTIMIZER_KEYS,
    OPTIMIZERS,
    POOL_TIES,
    POOL_TYPES,
    Data,
    EarlyStopping,
    Layer,
    Loss,
    Model,
    Optimizer,
    Spec,
    Training,
)

__all__ = [
    "ACTIVATIONS",
    "BIAS_CORRECTIONS",
    "DTYPES",
    "EPS_PLACEMENTS",
    "INITS",
    "LAYER_KEYS",
    "LAYER_TYPES",
    "LOGIT_LOSSES",
    "LOSSES",
    "LOSS_OUTPUT",
    "MAX_PARAMS",
    "MAX_STEPS",
    "MAX_SWEEP_POINTS",
    "MAX_SWEEP_STEPS",
    "MAX_UNITS",
    "NAME_CHARS",
    "NAME_MAX",
    "OPTIMIZERS",
    "OPTIMIZER_KEYS",
    "POOL_TIES",
    "POOL_TYPES",
    "Data",
    "Document",
    "EarlyStopping",
    "Layer",
    "Loss",
    "Model",
    "Optimizer",
    "Spec",
    "SpecError",
    "Training",
    "from_dict",
    "planned_steps",
    "read_spec",
]
