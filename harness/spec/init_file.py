"""The spec's `model.init_file`: an .npz of W0, b0, W1, b1, ... checked for keys, shapes and
finite numbers, read without pickle. Part of reading the spec, so a bad file stops the run
before anything is done or written.
"""

from __future__ import annotations

import zipfile
import zlib
from itertools import pairwise
from pathlib import Path

import numpy as np

from harness.spec.schema import SpecError
from harness.spec.types import Spec

# What a damaged or foreign file can raise while numpy reads it as an archive.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def shapes(spec: Spec) -> list[tuple[tuple[int, int], tuple[int]]]:
    """The (W, b) shapes of every layer: W is (fan_in, fan_out)."""
    fans = [spec.model.inputs, *(layer.size for layer in spec.model.layers)]
    return [((a, b), (b,)) for a, b in pairwise(fans)]


def load(spec: Spec) -> list[tuple[np.ndarray, np.ndarray]]:
    """W0, b0, W1, b1, ... from the spec's `init_file`, checking keys, shapes and finiteness.

    Called once when the spec is loaded (so a bad file stops the run before anything is done)
    and again by `harness.params.initial_params`. allow_pickle=False: a stranger's .npz must
    never run code."""
    path = spec.model.init_file
    arrays = _read_npz(path)
    keys = [k for i in range(len(spec.model.layers)) for k in (f"W{i}", f"b{i}")]
    expected = f"W0, b0, ... b{len(spec.model.layers) - 1}"
    extra = sorted(set(arrays) - set(keys))
    if extra:
        raise SpecError("model.init_file", f"{path.name} has an unexpected array {extra[0]!r} "
                        f"(allowed keys: {expected})")
    return [(_array(path.name, arrays, f"W{i}", w_shape),
             _array(path.name, arrays, f"b{i}", b_shape))
            for i, (w_shape, b_shape) in enumerate(shapes(spec))]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive; anything unreadable is a one-line SpecError."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _UNREADABLE as err:
        raise _unreadable(path, err) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise SpecError("model.init_file", f"{path.name} holds a single array, not an .npz "
                        "archive (allowed: an np.savez file with W0, b0, W1, b1, ...)")
    with loaded as npz:
        try:
            return {k: npz[k] for k in npz.files}
        except _UNREADABLE as err:
            raise _unreadable(path, err) from None


def _unreadable(path: Path, err: Exception) -> SpecError:
    """The error for a file numpy cannot read as an archive, with numpy's reason on one line."""
    reason = " ".join(str(err).split())         # one line, whatever numpy or zipfile said
    return SpecError("model.init_file", f"cannot read {path.name} as .npz: {reason} (allowed: "
                     "an archive written by np.savez, without object arrays)")


def _array(name: str, arrays: dict[str, np.ndarray], key: str, shape: tuple) -> np.ndarray:
    """One checked array of the init file, as float64."""
    if key not in arrays:
        raise SpecError("model.init_file", f"{name} has no array {key!r} (expected one per "
                        "layer: W0, b0, W1, b1, ...)")
    arr = arrays[key]
    if arr.shape != shape:
        raise SpecError("model.init_file", f"{name}[{key}] has shape {arr.shape}, expected "
                        f"{shape} (W is fan_in x fan_out)")
    if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
        raise SpecError("model.init_file", f"{name}[{key}] must hold finite numbers (allowed: "
                        "float or integer arrays without NaN or Inf)")
    return arr.astype(np.float64)
