"""How tensors sit in engine memory: the one place that packs and unpacks them (STYLE 2).

- Activations and gradients: int8, HWC (channel fastest), `C*H*W` bytes.
- Regular conv weights: int8 `[ci][u][v][c]` (output channel fastest), so a lane vector holds
  consecutive output channels. Depthwise weights: `[u][v][c]`.
- Per-channel requantization parameters of C channels: int32 bias[C], uint32 M[C], uint8 n[C],
  back to back (9*C bytes).
- Clamp masks: one bit per activation element, element i at byte i//8, bit i%8 (LSB first),
  elements numbered in the HWC order of the activation.
"""
from __future__ import annotations

import numpy as np


def activation_bytes(x_chw: np.ndarray) -> np.ndarray:
    """int8 (C, H, W) -> HWC bytes."""
    x = np.asarray(x_chw)
    if x.ndim != 3:
        raise ValueError(f"an activation is (C, H, W), not {x.shape}")
    return np.ascontiguousarray(x.astype(np.int8).transpose(1, 2, 0)).view(np.uint8).ravel()


def activation_from_bytes(data: np.ndarray, shape_chw) -> np.ndarray:
    c, h, w = shape_chw
    return np.asarray(data, dtype=np.uint8)[:c * h * w].view(np.int8).reshape(h, w, c).transpose(2, 0, 1).copy()


def weight_bytes(weight: np.ndarray, depthwise: bool) -> np.ndarray:
    """int8 (O, I/groups, K, K) -> [ci][u][v][c] (regular) or [u][v][c] (depthwise) bytes."""
    w = np.asarray(weight, dtype=np.int8)
    if depthwise:
        return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)).view(np.uint8).ravel()
    return np.ascontiguousarray(w.transpose(1, 2, 3, 0)).view(np.uint8).ravel()


def weight_from_bytes(data: np.ndarray, shape, depthwise: bool) -> np.ndarray:
    o, i, k, _ = shape
    raw = np.asarray(data, dtype=np.uint8).view(np.int8)
    if depthwise:
        return raw[:k * k * o].reshape(k, k, o).transpose(2, 0, 1)[:, None].copy()
    return raw[:i * k * k * o].reshape(i, k, k, o).transpose(3, 0, 1, 2).copy()


def param_bytes(bias, multiplier, shift) -> np.ndarray:
    bias = np.asarray(bias, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if not (bias.shape == multiplier.shape == shift.shape) or bias.ndim != 1:
        raise ValueError("bias, multiplier and shift need one entry per channel")
    return np.concatenate([bias.astype("<i4").view(np.uint8), multiplier.astype("<u4").view(np.uint8),
                           shift.astype(np.uint8)])


def mask_bytes(mask_chw: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(np.asarray(mask_chw, dtype=bool).transpose(1, 2, 0)).ravel()
    return np.packbits(bits, bitorder="little")


def mask_from_bytes(data: np.ndarray, shape_chw) -> np.ndarray:
    c, h, w = shape_chw
    bits = np.unpackbits(np.asarray(data, dtype=np.uint8), bitorder="little")[:c * h * w]
    return bits.reshape(h, w, c).transpose(2, 0, 1).astype(bool)
