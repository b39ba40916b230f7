"""The three linear maps of a convolution: forward, input gradient, weight gradient.

All work in float64 on NCHW arrays. The integer path passes integer-valued arrays: every product
and partial sum it produces stays below 2^53 (int8 x int8-range operands, at most a few
thousand terms), so float64 BLAS gives the exact integer result, far faster than NumPy's
integer matmul. The float64 reference path passes real values through the same functions.

Padding is `K // 2` zeros on every side (the caller centres activations so zero is the real 0);
stride is 1 or 2; groups is 1 or the channel count (depthwise).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def output_size(size: int, kernel: int, stride: int) -> int:
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """(N, C, Ho, Wo, K, K) view of the zero-padded input."""
    pad = kernel // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (kernel, kernel), axis=(2, 3))
    ho = output_size(x.shape[2], kernel, stride)
    wo = output_size(x.shape[3], kernel, stride)
    return win[:, :, : (ho - 1) * stride + 1 : stride, : (wo - 1) * stride + 1 : stride]


def conv_forward(x: np.ndarray, weight: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """y[n,c,i,j] = sum_{ci in group(c),u,v} W[c,ci,u,v] x[n,ci,i*S+u-P,j*S+v-P] (no bias)."""
    kernel = weight.shape[2]
    win = _windows(x, kernel, stride)
    if groups == 1:
        y = np.tensordot(win, weight, axes=([1, 4, 5], [1, 2, 3]))   # (N, Ho, Wo, O)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    return np.einsum("nchwuv,cuv->nchw", win, weight[:, 0], optimize=True)


def conv_input_grad(g: np.ndarray, weight: np.ndarray, stride: int, groups: int,
                    input_hw: tuple[int, int]) -> np.ndarray:
    """dX[n,ci,h,w] = sum over (c,u,v) with h = i*S+u-P, w = j*S+v-P of W[c,ci,u,v] g[n,c,i,j]."""
    kernel = weight.shape[2]
    pad = kernel // 2
    n, _, ho, wo = g.shape
    c_in = weight.shape[1] * groups
    h, w = input_hw
    dxp = np.zeros((n, c_in, h + 2 * pad + stride, w + 2 * pad + stride))
    for u in range(kernel):
        for v in range(kernel):
            if groups == 1:
                contrib = np.tensordot(g, weight[:, :, u, v], axes=([1], [0]))  # (N, Ho, Wo, Ci)
                contrib = contrib.transpose(0, 3, 1, 2)
            else:
                contrib = g * weight[:, 0, u, v][None, :, None, None]
            dxp[:, :, u : u + (ho - 1) * stride + 1 : stride,
                v : v + (wo - 1) * stride + 1 : stride] += contrib
    return np.ascontiguousarray(dxp[:, :, pad : pad + h, pad : pad + w])


def conv_weight_grad(x: np.ndarray, g: np.ndarray, kernel: int, stride: int,
                     groups: int) -> np.ndarray:
    """dW[c,ci,u,v] = sum_{n,i,j} g[n,c,i,j] x[n,ci,i*S+u-P,j*S+v-P].

    For groups == 1 the result is (O, Ci, K, K) over the channels of `x` given (pass only the
    selected input channels). For depthwise, `x` and `g` hold the same channels and the result
    is (C, 1, K, K).
    """
    win = _windows(x, kernel, stride)
    if groups == 1:
        return np.tensordot(g, win, axes=([0, 2, 3], [0, 2, 3]))
    return np.einsum("nchw,nchwuv->cuv", g, win, optimize=True)[:, None]
