"""The data sets: four synthetic ones drawn with NumPy, two real ones shipped inside scikit-learn,
and `inline` data written in the spec. Each knows its shape without being loaded, so a spec can
be checked against it before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.spec.schema import (
    SpecError,
    Table,
    boolean,
    choice,
    each,
    integer,
    join,
    matrix,
    number,
    shown,
)
from harness.spec.types import DTYPES, MAX_SIDE, MAX_UNITS, Data

# name -> (features, classes or None for regression, the options it reads with their defaults)
CATALOG: dict[str, tuple[int, int | None, dict[str, float]]] = {
    "xor": (2, 2, {"n_samples": 200, "noise": 0.1}),
    "spirals": (2, 3, {"n_samples": 300, "noise": 0.2, "classes": 3}),
    "moons": (2, 2, {"n_samples": 200, "noise": 0.1}),
    "sine": (1, None, {"n_samples": 200, "noise": 0.05}),
    "digits": (64, 10, {}),
    "breast_cancer": (30, 2, {}),
    "inline": (0, None, {}),
}


# The data sets whose rows are images, as (channels, height, width): each row holds the
# pixels in that (C, H, W) order, so a conv layer reads row.reshape(shape).
IMAGE_SHAPES = {"digits": (1, 8, 8)}

# Rows of the data sets that have a fixed size (scikit-learn's copies).
SIZES = {"digits": 1797, "breast_cancer": 569}
MAX_SAMPLES = 1_000_000                   # rows of any data set: a typo must not exhaust memory
# The largest |value| a data set may hold in a run of each dtype: a column's deviations from
# its mean (at most twice that), squared and summed over MAX_SAMPLES rows (the
# standardisation's variance, a squared-error loss), stay finite.
DATA_LIMIT = {dtype: math.sqrt(float(np.finfo(dtype).max) / (4 * MAX_SAMPLES))
              for dtype in DTYPES}
# A synthetic data set adds normal noise to values of order 1; beyond this many standard
# deviations a draw has probability below 1e-23, so noise * NOISE_SIGMAS bounds every value.
NOISE_SIGMAS = 10


@dataclass(frozen=True)
class Dims:
    """What a data set looks like to the network."""
    features: int
    classes: int | None                   # None: regression targets
    targets: int                          # width of the regression targets
    shape: tuple[int, int, int] | None = None    # (C, H, W) of an image data set, else None

    def outputs_for(self, loss: str) -> int:
        """Output-layer width the loss needs on this data set (one-hot, one logit, or targets)."""
        if self.classes is None:
            if loss in ("cross_entropy", "bce"):
                raise SpecError("loss.name", f"{loss!r} needs class labels; this data set has "
                                "regression targets (allowed: mse, half_sse)")
            return self.targets
        if loss == "bce":
            if self.classes != 2:
                raise SpecError("loss.name", f"'bce' needs 2 classes, this data set has "
                                f"{self.classes} (allowed: cross_entropy, mse, half_sse)")
            return 1
        return self.classes


def parse(t: Table) -> Data:
    """Read the [data] table into a `harness.spec.Data`."""

    name = choice(t, "name", tuple(CATALOG))
    defaults = CATALOG[name][2]
    opts = {k: t.get(k) for k in ("n_samples", "noise", "classes") if t.has(k)}
    for key in opts:
        if key not in defaults:
            allowed = ", ".join(defaults) or "none"
            raise SpecError(join(t.path, key), f"not an option of data set {shown(name)} "
                            f"(allowed: {allowed})")
    n = integer(t, "n_samples", defaults.get("n_samples"), low=8, high=MAX_SAMPLES) \
        if "n_samples" in defaults else None
    noise = number(t, "noise", defaults["noise"], low=0.0,
                   high=DATA_LIMIT[t.dtype] / NOISE_SIGMAS) if "noise" in defaults else None
    # one output unit per class
    classes = integer(t, "classes", 3, low=2, high=MAX_UNITS) if name == "spirals" else None
    val = number(t, "validation", 0.0 if name == "inline" else 0.15, low=0.0, high=1.0,
                 high_open=True)
    test = number(t, "test", 0.0 if name == "inline" else 0.15, low=0.0, high=1.0,
                  high_open=True)
    if val + test >= 1.0:
        raise SpecError(join(t.path, "test"), f"validation + test = {val + test:g} leaves no "
                        "training data (allowed: sum < 1)")
    standardize = boolean(t, "standardize", name != "inline")
    x = y = shape = None
    if name == "inline":
        x, y = _inline(t)
        shape = _shape(t, len(x[0])) if t.has("shape") else None
    t.finish(("name", "validation", "test", "standardize", *defaults,
              *(("x", "y", "shape") if name == "inline" else ())))
    data = Data(name, n, noise, classes, val, test, standardize, x, y, shape)
    _validate_split(t.path, data)
    return data


def rows(data: Data) -> int:
    """How many rows `data` has, without generating it."""
    if data.name == "inline":
        return len(data.x)
    return data.n_samples or SIZES[data.name]


def split_sizes(data: Data) -> tuple[int, int, int]:
    """(train, validation, test) rows, rounded exactly as `harness.data.prepare` cuts them."""
    n = rows(data)
    n_val, n_test = round(data.validation * n), round(data.test * n)
    return n - n_val - n_test, n_val, n_test


def _validate_split(path: str, data: Data) -> None:
    """Rounding can leave no training rows even when validation + test < 1 (8 rows, 0.45 each)."""
    n_train, n_val, n_test = split_sizes(data)
    if n_train < 1:
        raise SpecError(join(path, "test"), f"validation ({n_val} rows) + test ({n_test} rows) "
                        f"leave none of the {rows(data)} rows for training (allowed: a split "
                        "that leaves at least 1)")


def _inline(t: Table) -> tuple[tuple, tuple]:
    """x and y written in the spec: at most MAX_SAMPLES rows like every data set, values the
    run's dtype can square and sum (DATA_LIMIT)."""
    why = f" in a {t.dtype} run, so that a column's squares sum to a finite number"
    x, y = (_rows(t, key, why) for key in ("x", "y"))
    if len(x) != len(y):
        raise SpecError(join(t.path, "y"), f"has {len(y)} rows but x has {len(x)}")
    return tuple(map(tuple, x)), tuple(map(tuple, y))


def _rows(t: Table, key: str, why: str) -> list:
    """One inline matrix, its row count checked before its values are read."""
    value = t.get(key)
    if isinstance(value, list) and len(value) > MAX_SAMPLES:
        raise SpecError(join(t.path, key), f"has {len(value)} rows (allowed: at most "
                        f"{MAX_SAMPLES}, as for every data set)")
    return matrix(join(t.path, key), value, 2, DATA_LIMIT[t.dtype], why)


def _shape(t: Table, features: int) -> tuple[int, int, int]:
    """Inline rows read as images: [channels, height, width], whose product is the row width."""
    path = join(t.path, "shape")
    sides = each(t, "shape", integer, low=1, high=MAX_SIDE)
    if len(sides) != 3:
        raise SpecError(path, f"has {len(sides)} numbers (allowed: [channels, height, width])")
    c, h, w = sides
    if c * h * w != features:
        raise SpecError(path, f"{c}x{h}x{w} = {c * h * w} does not match the {features} "
                        "columns of x")
    return c, h, w


def dims(data: Data) -> Dims:
    """The shape of `data` without generating it."""
    if data.name == "inline":
        return Dims(len(data.x[0]), None, len(data.y[0]), data.shape)
    features, classes, _ = CATALOG[data.name]
    if data.name == "spirals":
        classes = data.classes
    return Dims(features, classes, 1, IMAGE_SHAPES.get(data.name))


def generate(data: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) in float64: y holds int class labels, or float regression targets (n, k)."""
    if data.name == "inline":
        return np.array(data.x, dtype=np.float64), np.array(data.y, dtype=np.float64)
    return GENERATORS[data.name](data, rng)


def _xor(d: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    corners = rng.integers(0, 2, size=(d.n_samples, 2))
    x = corners + rng.normal(0.0, d.noise, size=corners.shape)
    return x, corners[:, 0] ^ corners[:, 1]


def _spirals(d: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms (the cs231n toy problem), one arm per class."""
    labels = np.arange(d.n_samples) % d.classes
    radius = rng.uniform(0.05, 1.0, size=d.n_samples)
    angle = labels * 2 * np.pi / d.classes + 4.0 * radius + rng.normal(0, d.noise, d.n_samples)
    return np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1), labels


def _moons(d: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, like sklearn's make_moons."""
    labels = np.arange(d.n_samples) % 2
    t = rng.uniform(0.0, np.pi, size=d.n_samples)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(labels[:, None] == 0, upper, lower)
    return x + rng.normal(0.0, d.noise, size=x.shape), labels


def _sine(d: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-np.pi, np.pi, size=(d.n_samples, 1))
    return x, np.sin(x) + rng.normal(0.0, d.noise, size=x.shape)


def _sklearn(loader: str) -> Callable:
    def load(d: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        try:
            from sklearn import datasets as skd
        except ImportError:
            raise SpecError("data.name", f"{d.name!r} ships inside scikit-learn, which is not "
                            "installed (pip install 'backprop-harness[data]')") from None
        x, y = getattr(skd, loader)(return_X_y=True)
        return x.astype(np.float64), y.astype(np.int64)
    return load


GENERATORS = {"xor": _xor, "spirals": _spirals, "moons": _moons, "sine": _sine,
              "digits": _sklearn("load_digits"), "breast_cancer": _sklearn("load_breast_cancer")}
