"""The textbook's image layers: conv2d, max- and average-pooling and flatten, each a forward
function and its backward by the chain rule, in plain NumPy with explicit loops over the
kernel's offsets (readable first; `numpy_fast` is the tuned im2col version).

Layout: images NCHW (n, channels, height, width); a conv kernel W is (F, C, k, k) and b is
(F,). A layer's backward gets delta = dJ/dz of its output and returns dJ/dh of its input
(and dJ/dW, dJ/db for a conv).

Notation for a kernel offset (u, v), 0 <= u, v < k: `window(xp, u, v, s, oh, ow)` is the
(n, C, oh, ow) array of xp[:, :, i s + u, j s + v] over all output positions (i, j), i.e.
the input value every output position multiplies by W[:, :, u, v].
"""

from __future__ import annotations

import numpy as np

from harness.spec import Layer


def window(xp: np.ndarray, u: int, v: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """xp[:, :, i * stride + u, j * stride + v] for i < oh, j < ow (a strided view)."""
    return xp[:, :, u:u + stride * (oh - 1) + 1:stride, v:v + stride * (ow - 1) + 1:stride]


def pad(x: np.ndarray, p: int) -> np.ndarray:
    """p zeros on each side of the height and width."""
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def conv_forward(layer: Layer, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z[n, f, i, j] = b[f] + sum over c, u, v of W[f, c, u, v] xp[n, c, i s + u, j s + v]:
    a cross-correlation (no flip), as torch and JAX define a convolution layer."""
    _, oh, ow = layer.out_shape
    xp = pad(x, layer.pad)
    z = np.zeros((len(x), *layer.out_shape), x.dtype) + b[:, None, None]
    for u in range(layer.kernel):
        for v in range(layer.kernel):
            patch = window(xp, u, v, layer.stride, oh, ow)                 # (n, C, oh, ow)
            z += np.einsum("ncij,fc->nfij", patch, W[:, :, u, v])
    return z


def conv_backward(layer: Layer, x: np.ndarray, W: np.ndarray,
                  delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dJ/dW, dJ/db, dJ/dx) from delta = dJ/dz, each from z's formula above:
    dJ/dW[f, c, u, v] = sum over n, i, j of delta[n, f, i, j] xp[n, c, i s + u, j s + v]
                        (the input patch at offset (u, v) times delta, summed over positions);
    dJ/db[f]          = sum of delta[:, f] over samples and positions;
    dJ/dxp            = every delta[n, f, i, j] W[f, c, u, v] sent back to the input cell
                        (i s + u, j s + v) it came from. For stride 1 this is the "full"
                        cross-correlation of delta (padded by k - 1) with the kernel flipped
                        in both axes and its F and C axes swapped; then the padding is cut off."""
    _, oh, ow = layer.out_shape
    s, p = layer.stride, layer.pad
    xp = pad(x, p)
    dW, dxp = np.zeros_like(W), np.zeros_like(xp)
    for u in range(layer.kernel):
        for v in range(layer.kernel):
            dW[:, :, u, v] = np.einsum("nfij,ncij->fc", delta, window(xp, u, v, s, oh, ow))
            window(dxp, u, v, s, oh, ow)[...] += np.einsum("nfij,fc->ncij", delta,
                                                           W[:, :, u, v])
    dx = dxp[:, :, p:dxp.shape[2] - p, p:dxp.shape[3] - p]
    return dW, delta.sum(axis=(0, 2, 3)), dx


def pool_forward(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Max or mean of every k x k window (no padding)."""
    _, oh, ow = layer.out_shape
    k, s = layer.kernel, layer.stride
    windows = [window(x, u, v, s, oh, ow) for u in range(k) for v in range(k)]
    if layer.kind == "maxpool2d":
        return np.maximum.reduce(windows)
    return np.add.reduce(windows) / x.dtype.type(k * k)


def avgpool_backward(layer: Layer, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """dJ/dx: each input of a window gets delta / k^2 (summed where windows overlap)."""
    _, oh, ow = layer.out_shape
    k, s = layer.kernel, layer.stride
    dx, share = np.zeros_like(x), delta / x.dtype.type(k * k)
    for u in range(k):
        for v in range(k):
            window(dx, u, v, s, oh, ow)[...] += share
    return dx


def maxpool_backward(layer: Layer, x: np.ndarray, z: np.ndarray, delta: np.ndarray,
                     ties: str) -> np.ndarray:
    """dJ/dx: the derivative of a max is 1 at the maximum and 0 elsewhere, so delta goes to
    the input that is the window's maximum. Where several inputs tie for it, the max is not
    differentiable and the rule is a convention (`ties`): "first" sends all of delta to the
    first tied input in row-major order (u, then v), "split" sends delta / count to each."""
    _, oh, ow = layer.out_shape
    k, s = layer.kernel, layer.stride
    hits = [window(x, u, v, s, oh, ow) == z for u in range(k) for v in range(k)]
    if ties == "split":
        shares = [delta / np.add.reduce(hits).astype(x.dtype)] * len(hits)
    else:
        taken, shares = np.zeros(z.shape, bool), []
        for hit in hits:
            shares.append(np.where(hit & ~taken, delta, 0))
            taken |= hit
    dx = np.zeros_like(x)
    for (u, v), hit, share in zip(np.ndindex(k, k), hits, shares, strict=True):
        window(dx, u, v, s, oh, ow)[...] += np.where(hit, share, 0)
    return dx
