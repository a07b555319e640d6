"""numpy_fast's convolution: im2col and one matrix product each way (the GEMM form of the
textbook's loops over kernel offsets in `textbook_layers`, which the conformance suite
proves it equal to).

For an image batch x (n, C, H, W) and kernels W (F, C, k, k):
    cols      (n oh ow, C k k)   every receptive field as a row, in (c, u, v) order
    z         = cols @ W.reshape(F, C k k)^T + b        -> (n, oh, ow, F) -> NCHW
    dJ/dW     = delta2^T @ cols                         delta2 = delta as (n oh ow, F)
    dJ/db     = sum of delta2 over its rows
    dJ/dcols  = delta2 @ W.reshape(F, C k k), added back into the image (col2im)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.spec import Layer
from implementations.textbook_layers import pad, window


def im2col(layer: Layer, x: np.ndarray) -> np.ndarray:
    """(n oh ow, C k k): the receptive field of every output position, one row each."""
    k, s = layer.kernel, layer.stride
    views = sliding_window_view(pad(x, layer.pad), (k, k), axis=(2, 3))[:, :, ::s, ::s]
    _, oh, ow = layer.out_shape
    views = views[:, :, :oh, :ow]                            # (n, C, oh, ow, k, k)
    return views.transpose(0, 2, 3, 1, 4, 5).reshape(len(x) * oh * ow, -1)


def conv_forward(layer: Layer, cols: np.ndarray, W: np.ndarray, b: np.ndarray,
                 out: np.ndarray) -> None:
    """z into `out` (n, F, oh, ow) from the columns of the input."""
    n, filters, oh, ow = out.shape
    z = cols @ W.reshape(filters, -1).T
    z += b
    np.copyto(out, z.reshape(n, oh, ow, filters).transpose(0, 3, 1, 2))


def conv_backward(layer: Layer, x_shape: tuple[int, ...], cols: np.ndarray, W: np.ndarray,
                  delta: np.ndarray, dW: np.ndarray | None, db: np.ndarray | None,
                  dx: np.ndarray | None) -> None:
    """dJ/dW, dJ/db and dJ/dx (of shape `x_shape`), each into its array unless it is None."""
    filters = W.shape[0]
    delta2 = delta.transpose(0, 2, 3, 1).reshape(-1, filters)
    if dW is not None:
        np.matmul(delta2.T, cols, out=dW.reshape(filters, -1))
    if db is not None:
        delta2.sum(axis=0, out=db)
    if dx is not None:
        col2im(layer, delta2 @ W.reshape(filters, -1), x_shape, dx)


def col2im(layer: Layer, dcols: np.ndarray, x_shape: tuple[int, ...], out: np.ndarray) -> None:
    """The adjoint of im2col: every column entry added back to the input cell it was read
    from (cells in several receptive fields sum), the padding cut off, into `out`."""
    n, c, h, w = x_shape
    k, s, p = layer.kernel, layer.stride, layer.pad
    _, oh, ow = layer.out_shape
    fields = dcols.reshape(n, oh, ow, c, k, k)
    padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dcols.dtype)
    for u in range(k):
        for v in range(k):
            window(padded, u, v, s, oh, ow)[...] += fields[:, :, :, :, u, v].transpose(0, 3, 1, 2)
    np.copyto(out, padded[:, :, p:p + h, p:p + w])
