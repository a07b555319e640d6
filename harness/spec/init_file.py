"""The spec's `model.init_file`: an .npz of W0, b0, W1, b1, ... checked for keys, shapes and
finite numbers, read once, without pickle (`harness.spec.npz.Npz`). Part of reading the
spec, so a bad file stops the run before anything is done or written, and a file changed or
deleted during a run changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import pairwise
from pathlib import Path

import numpy as np

from harness.spec.npz import Member, Npz
from harness.spec.schema import SpecError
from harness.spec.types import InitParams, Spec

FIELD = "model.init_file"
# (W shape, b shape) of every layer: W is (fan_in, fan_out) for a dense layer, (filters,
# channels, kernel, kernel) for a conv, and (0,), (0,) for a layer without parameters
# (`harness.spec.layers.param_shapes`).
Shapes = tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
# How a spec's init file is read: `read`, or a cache of it shared by a sweep's points.
Reader = Callable[[Path, Shapes, str], InitParams]


def shapes_of(inputs: int, sizes: list[int]) -> Shapes:
    """The (W, b) shapes of a network with `inputs` features and layers of `sizes` units."""
    fans = [inputs, *sizes]
    return tuple(((a, b), (b,)) for a, b in pairwise(fans))


def read(path: Path, shapes: Shapes, dtype: str) -> InitParams:
    """W0, b0, W1, b1, ... of the .npz at `path`: the keys and every array's declared shape
    are checked before any data is read, then the values (finite, and finite in a run of
    `dtype`). Read-only float64 arrays."""
    keys = {f"{k}{i}": shape for i, pair in enumerate(shapes) for k, shape in zip("Wb", pair,
                                                                                   strict=True)}
    with Npz(path, FIELD) as npz:
        _check_keys(path.name, npz.members, list(keys))
        for key, shape in keys.items():
            _check_shape(path.name, key, npz.members[key], shape)
        arrays = {key: _values(path.name, key, npz.read(key), dtype) for key in keys}
    return tuple((arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(len(shapes)))


def load(spec: Spec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Writable copies of the arrays the spec's `init_file` held when the spec was read."""
    return [(w.copy(), b.copy()) for w, b in spec.model.init_params]


def _check_keys(name: str, members: Mapping[str, Member], keys: list[str]) -> None:
    """Exactly the keys W0, b0, ... of this network: none missing, none extra."""
    expected = f"W0, b0, ... {keys[-1]}"
    extra = sorted(set(members) - set(keys))
    if extra:
        raise SpecError(FIELD, f"{name} has an unexpected array {extra[0]!r} (allowed keys: "
                        f"{expected})")
    for key in keys:
        if key not in members:
            raise SpecError(FIELD, f"{name} has no array {key!r} (expected one per layer: "
                            f"{expected})")


def _check_shape(name: str, key: str, member: Member, shape: tuple[int, ...]) -> None:
    """The shape the member's header declares is the layer's."""
    if member.shape != shape:
        raise SpecError(FIELD, f"{name}[{key}] has shape {member.shape}, expected {shape} "
                        "(W is fan_in x fan_out)")


def _values(name: str, key: str, arr: np.ndarray, dtype: str) -> np.ndarray:
    """One array as float64, read-only: finite numbers that stay finite in the run's dtype."""
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise SpecError(FIELD, f"{name}[{key}] must hold finite numbers (allowed: float or "
                        "integer arrays without NaN or Inf)")
    big = float(np.finfo(dtype).max)
    if values.size and float(np.abs(values).max()) > big:
        raise SpecError(FIELD, f"{name}[{key}] holds {float(np.abs(values).max()):g}, beyond "
                        f"{dtype}'s range in this {dtype} run (allowed: |value| <= {big:.4g})")
    values.flags.writeable = False
    return values
