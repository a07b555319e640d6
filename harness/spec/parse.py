"""Parsers for the spec's TOML tables: each reads one table (or key) into `harness.spec` values.

The entry point is `from_dict` (the document `harness.spec.reading` parsed); the rules across
tables (`_validate_run`) run last. The vocabulary (constants, dataclasses) is
`harness.spec.types`. Every check raises a one-line `SpecError` that names the offending key and
what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.spec import datasets, init_file
from harness.spec import layers as layer_table
from harness.spec.schema import (
    SpecError,
    Table,
    boolean,
    choice,
    each,
    integer,
    join,
    listof,
    number,
    shown,
    string,
)
from harness.spec.types import (
    BIAS_CORRECTIONS,
    DTYPES,
    EPS_PLACEMENTS,
    IMAGE_TYPES,
    INITS,
    LOSS_OUTPUT,
    LOSSES,
    MAX_PARAMS,
    MAX_SEED,
    MAX_STEPS,
    NAME_CHARS,
    NAME_MAX,
    OPTIMIZER_KEYS,
    OPTIMIZERS,
    POOL_TIES,
    EarlyStopping,
    Layer,
    Loss,
    Model,
    Optimizer,
    Spec,
    Training,
)


def _model(t: Table, dims: datasets.Dims, loss: str, base: Path,
           read_init: init_file.Reader) -> Model:
    """The [model] table: layers checked against the data's shape and the loss; the arrays
    of an `init_file` read (by `read_init`) and checked against the layers."""
    inputs = integer(t, "inputs", dims.features, low=1)
    if inputs != dims.features:
        raise SpecError(join(t.path, "inputs"), f"{shown(inputs)} does not match the data "
                        f"({dims.features} features)")
    raw = listof(t, "layers")
    if not raw:
        raise SpecError(join(t.path, "layers"), "needs at least one layer")
    layers, shape = [], _input_shape(raw[0], dims)
    for i, item in enumerate(raw):
        layers.append(layer_table.parse(Table(item, join(join(t.path, "layers"), i), t.dtype),
                                        shape))
        shape = layers[-1].out_shape
    _validate_layers(join(t.path, "layers"), layers, dims, loss)
    _validate_size(join(t.path, "layers"), layers)
    init = choice(t, "init", INITS, "xavier_normal")
    ties = _pool_ties(t, layers)
    path = _init_file(t, base) if t.has("init_file") else None
    arrays = None if path is None else read_init(
        path, tuple(map(layer_table.param_shapes, layers)), t.dtype)
    t.finish(("inputs", "layers", "init", "pool_ties", "init_file"))
    return Model(inputs, tuple(layers), init, path, arrays, ties)


def _input_shape(first: Any, dims: datasets.Dims) -> tuple[int, ...]:
    """What the first layer reads: the data's image shape when it is an image layer or a
    flatten, else the flat rows (a dense net on image data reads the pixels as features, as
    before)."""
    image = isinstance(first, dict) and first.get("type") in (*IMAGE_TYPES, "flatten")
    return dims.shape if image and dims.shape else (dims.features,)


def _pool_ties(t: Table, layers: list[Layer]) -> str:
    """Where a max-pool's tied maxima get the gradient: only a spec with a max-pool says."""
    ties = choice(t, "pool_ties", POOL_TIES, "first")
    if t.has("pool_ties") and not any(layer.kind == "maxpool2d" for layer in layers):
        raise SpecError(join(t.path, "pool_ties"), "only a model with a maxpool2d layer "
                        "reads pool_ties")
    return ties


def _validate_size(path: str, layers: list[Layer]) -> None:
    """The whole network must fit in memory several times over (one copy per backend)."""
    count = layer_table.param_count(layers)
    if count > MAX_PARAMS:
        raise SpecError(path, f"{count} parameters is too many (allowed: at most {MAX_PARAMS})")


def _init_file(t: Table, base: Path) -> Path:
    """The resolved .npz path (its contents are read by `harness.spec.init_file.read`).

    The path is shown quoted and shortened (`shown`): a name with a newline must not break
    the one-line error."""
    path = join(t.path, "init_file")
    raw = base / string(t, "init_file")
    try:
        resolved = raw.resolve()
        exists, regular = resolved.exists(), resolved.is_file()
    except (OSError, ValueError) as err:      # a NUL byte, a name too long for the OS, ...
        raise SpecError(path, f"unusable path {shown(str(raw))}: {err}") from None
    if not regular:                           # missing, or a folder, a device, a pipe
        what = "not a regular file" if exists else "file not found"
        raise SpecError(path, f"{what}: {shown(str(resolved))} (allowed: an existing .npz "
                        "file, relative to the spec file)")
    return resolved


def _validate_layers(path: str, layers: list[Layer], dims: datasets.Dims, loss: str) -> None:
    last = len(layers) - 1
    if layers[last].kind != "dense":
        raise SpecError(join(join(path, last), "type"), f"the output layer is a "
                        f"{layers[last].kind} layer (allowed: dense)")
    for i, layer in enumerate(layers[:-1]):
        if layer.activation == "softmax":
            raise SpecError(join(join(path, i), "activation"),
                            "softmax is only allowed on the output layer")
    if layers[last].drop_prob:
        raise SpecError(join(join(path, last), "drop_prob"), "the output layer cannot have "
                        "dropout (allowed: 0)")
    out_act = layers[last].activation
    if out_act not in LOSS_OUTPUT[loss]:
        raise SpecError(join(join(path, last), "activation"), f"loss {loss!r} needs the output "
                        f"activation to be one of {', '.join(LOSS_OUTPUT[loss])}")
    want = dims.outputs_for(loss)
    if layers[last].size != want:
        raise SpecError(join(join(path, last), "size"), f"{layers[last].size} does not match the "
                        f"data: loss {loss!r} on this data set needs {want} outputs")


def _optimizer(t: Table) -> Optimizer:
    """The [optimizer] table: a key the chosen optimizer does not read is an error."""
    name = choice(t, "name", OPTIMIZERS, "sgd")
    allowed = ("name", "weight_decay", *OPTIMIZER_KEYS[name])
    known = {key for keys in OPTIMIZER_KEYS.values() for key in keys}
    for key in t.raw:
        if key not in allowed:
            what = f"not used by {name}" if key in known else "unknown key"
            raise SpecError(join(t.path, key), f"{what} (allowed: {', '.join(allowed)})")
    d = Optimizer()
    return Optimizer(
        name=name,
        momentum=number(t, "momentum", d.momentum, low=0.0, high=1.0, high_open=True),
        nesterov=boolean(t, "nesterov", d.nesterov),
        rho=number(t, "rho", d.rho, low=0.0, high=1.0, high_open=True),
        beta1=number(t, "beta1", d.beta1, low=0.0, high=1.0, high_open=True),
        beta2=number(t, "beta2", d.beta2, low=0.0, high=1.0, high_open=True),
        eps=number(t, "eps", d.eps, low=0.0, low_open=True),
        eps_placement=choice(t, "eps_placement", EPS_PLACEMENTS, d.eps_placement),
        bias_correction=choice(t, "bias_correction", BIAS_CORRECTIONS, d.bias_correction),
        weight_decay=number(t, "weight_decay", 0.0, low=0.0))


def _training(t: Table) -> Training:
    """The [training] table: exactly one of epochs / steps, optional early stopping."""
    lr = number(t, "learning_rate", low=0.0, low_open=True)
    batch = _batch_size(t)
    if t.has("epochs") == t.has("steps"):
        raise SpecError(join(t.path, "epochs"), "give exactly one of epochs, steps")
    epochs = integer(t, "epochs", low=1) if t.has("epochs") else None
    steps = integer(t, "steps", low=1) if t.has("steps") else None
    checks = each(t, "grad_check_steps", integer, [0], low=0)
    stop = None
    if t.has("early_stopping"):
        es = t.sub("early_stopping")
        stop = EarlyStopping(integer(es, "patience", low=1), number(es, "min_delta", 0.0, low=0))
        es.finish()
    shuffle = boolean(t, "shuffle", True)
    t.finish(("learning_rate", "batch_size", "epochs", "steps", "shuffle", "grad_check_steps",
              "early_stopping"))
    return Training(lr, batch, epochs, steps, shuffle, tuple(sorted(set(checks))), stop)


def _batch_size(t: Table) -> int | None:
    """An integer >= 1, or "full" (the default): one batch of the whole training split. No data
    set has more than MAX_SAMPLES rows, so a larger batch is a typo (and `n / batch_size`
    would underflow to 0)."""
    value = t.get("batch_size", "full")
    if value == "full":
        return None
    if isinstance(value, str):
        raise SpecError(join(t.path, "batch_size"), f"{shown(value)} is not a batch size "
                        "(allowed: integer >= 1, or \"full\")")
    return integer(t, "batch_size", low=1, high=datasets.MAX_SAMPLES)


def _name(t: Table) -> str:
    """The experiment's name: it becomes results/<name>/, so it must stay one plain folder."""
    value = string(t, "name")
    if not set(value) <= NAME_CHARS:
        raise SpecError("name", f"{shown(value)} may only use a-z, 0-9, '_' and '-' (it names the "
                        "results folder)")
    if len(value) > NAME_MAX:
        raise SpecError("name", f"is {len(value)} characters long (allowed: at most {NAME_MAX}; "
                        "it names the results folder)")
    return value


def _backends(t: Table) -> tuple[str, ...]:
    """Backend names as written; whether they are registered is checked by harness.experiment,
    which knows the registry. An empty list would silently mean "the defaults"."""
    names = tuple(each(t, "backends", string))
    if not names:
        raise SpecError("backends", "needs at least one backend (allowed: leave `backends` out "
                        "to use the defaults)")
    return names


def _validate_run(spec: Spec) -> None:
    """Rules across tables: early stopping needs validation rows; the run has a bounded length
    (the batch plan of every step is built before training starts)."""
    n_val = datasets.split_sizes(spec.data)[1]
    rule = spec.training.early_stopping
    if rule is not None and n_val == 0:
        raise SpecError("training.early_stopping", "needs validation data, but the split has "
                        "no validation rows (allowed: only with data.validation > 0)")
    total = planned_steps(spec)
    if total > MAX_STEPS:
        key = "training.steps" if spec.training.steps else "training.epochs"
        raise SpecError(key, f"the run would take {shown(total)} steps (allowed: at most "
                        f"{MAX_STEPS})")
    checks = spec.training.grad_check_steps
    if not checks or checks[-1] >= total:
        got = "none" if not checks else f"step {shown(checks[-1])}"
        raise SpecError("training.grad_check_steps", f"{got} is not a step of this run "
                        f"(allowed: at least one of 0 .. {total - 1}; the first also runs the "
                        "finite-difference oracle)")


def planned_steps(spec: Spec) -> int:
    """Optimizer steps the run takes (before early stopping): `steps`, or epochs x batches."""
    n_train = datasets.split_sizes(spec.data)[0]
    batch = min(spec.training.batch_size or n_train, n_train)
    return spec.training.steps or spec.training.epochs * -(-n_train // batch)


def from_dict(raw: dict[str, Any], base: Path = Path("."),
              read_init: init_file.Reader = init_file.read) -> Spec:
    """Validate a parsed TOML document; `base` resolves relative file paths, `read_init`
    reads an init file (a sweep's points share one reading)."""
    t = Table(raw, "")
    dtype = t.dtype = choice(t, "dtype", DTYPES, "float64")   # every number is read in it
    name = _name(t)
    seed = integer(t, "seed", 0, low=0, high=MAX_SEED)
    data = datasets.parse(t.sub("data", required=True))
    lt = t.sub("loss", required=True)
    loss = Loss(choice(lt, "name", LOSSES), number(lt, "l2", 0.0, low=0.0))
    lt.finish()
    model = _model(t.sub("model", required=True), datasets.dims(data), loss.name, base,
                   read_init)
    opt_t = t.sub("optimizer")
    optimizer = _optimizer(opt_t)
    training = _training(t.sub("training", required=True))
    backends = _backends(t) if t.has("backends") else None
    t.get("sweep")                        # expanded by harness.spec.sweep before we get here
    t.finish(("name", "seed", "dtype", "data", "loss", "model", "optimizer", "training",
              "backends", "sweep"))
    spec = Spec(name, seed, dtype, model, loss, optimizer, training, data, backends)
    _validate_run(spec)
    return spec
