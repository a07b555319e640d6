"""C += alpha * A @ B in NumPy's own BLAS: the one GEMM form `np.matmul` does not expose.

Why: a hand-written SGD step that computes dW = h^T delta into a buffer and then W -= dW
makes two extra passes over every weight matrix after the product. GEMM can add its
product straight into W (beta = 1) and save them (measurements: docs/benchmarking.md).
The library called is the very one NumPy links (its scipy-openblas, found by file and symbol
name), so the step and the roofline (NumPy's matmul) still share one BLAS and one thread
pool. Where it is not found (NumPy built against MKL or Accelerate, an unusual wheel), or
fails a self-check, `accumulator` returns None and the caller keeps its plain NumPy path.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Callable

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112                  # CBLAS enum values
# (symbol template, integer type): scipy-openblas64 (ILP64: NumPy 2 on 64-bit), then the LP64 build
SYMBOLS = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("scipy_cblas_{}gemm", ctypes.c_int32))
SCALARS = {np.dtype(np.float32): ("s", ctypes.c_float),
           np.dtype(np.float64): ("d", ctypes.c_double)}
LIBRARY_GLOBS = ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*")

AddProduct = Callable[[np.ndarray, np.ndarray, np.ndarray, float], None]


def _library() -> ctypes.CDLL | None:
    """NumPy's bundled OpenBLAS (already loaded by NumPy; opening it again shares it)."""
    site = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in LIBRARY_GLOBS:
        for path in sorted(glob.glob(os.path.join(site, pattern))):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def _layout(m: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(transpose flag, leading dimension, array) for BLAS: `m` as it is when it or its
    transpose is C-contiguous (a `.T` view costs nothing), else a contiguous copy."""
    if m.flags.c_contiguous:
        return NO_TRANS, max(m.shape[1], 1), m
    if m.T.flags.c_contiguous:
        return TRANS, max(m.shape[0], 1), m
    return NO_TRANS, max(m.shape[1], 1), np.ascontiguousarray(m)


def _bind(gemm: ctypes._CFuncPtr, scalar: type) -> AddProduct:
    """A Python `add_product(c, a, b, alpha)` over the raw cblas_?gemm symbol."""
    def add_product(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float) -> None:
        """c += alpha * a @ b, in place; c C-contiguous, a and b any 2-D layout, one dtype."""
        if not (c.flags.c_contiguous and c.dtype == a.dtype == b.dtype
                and c.shape == (a.shape[0], b.shape[1]) and a.shape[1] == b.shape[0]):
            raise ValueError(f"add_product: c {c.shape} {c.dtype} += a {a.shape} {a.dtype} "
                             f"@ b {b.shape} {b.dtype} needs matching shapes, one dtype, "
                             "c C-contiguous")
        (ta, lda, a), (tb, ldb, b) = _layout(a), _layout(b)
        m, n = c.shape
        gemm(ROW_MAJOR, ta, tb, m, n, a.shape[1], scalar(alpha), a.ctypes.data, lda,
             b.ctypes.data, ldb, scalar(1.0), c.ctypes.data, max(n, 1))
    return add_product


def _self_test(add_product: AddProduct, dtype: np.dtype) -> bool:
    """A wrong integer width or calling convention shows as a wrong product: refuse it."""
    a = np.arange(6, dtype=dtype).reshape(3, 2)
    b = np.arange(8, dtype=dtype).reshape(4, 2).T
    c = np.ones((3, 4), dtype)
    add_product(c, a, b, -2.0)
    return bool(np.array_equal(c, 1 - 2 * (a @ b)))


@functools.cache
def accumulator(dtype: np.dtype) -> AddProduct | None:
    """`add_product(c, a, b, alpha)`: c += alpha * a @ b in NumPy's BLAS, or None where
    that BLAS cannot be reached (the caller then uses np.matmul and an update pass)."""
    dtype = np.dtype(dtype)
    lib = _library() if dtype in SCALARS else None
    if lib is None:
        return None
    letter, scalar = SCALARS[dtype]
    for template, integer in SYMBOLS:
        gemm = getattr(lib, template.format(letter), None)
        if gemm is None:
            continue
        gemm.restype = None
        gemm.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [
            scalar, ctypes.c_void_p, integer, ctypes.c_void_p, integer,
            scalar, ctypes.c_void_p, integer]
        add_product = _bind(gemm, scalar)
        return add_product if _self_test(add_product, dtype) else None
    return None
