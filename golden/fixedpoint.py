"""Fixed-point primitives of docs/numerics.md sections 2, 3 and 5.

Everything here works on NumPy int64 arrays (or Python ints) and is exact: these functions are
the integer contract that the engine's requantizers and gradient quantizers implement.
The only floats are the host-side constructors (`Multiplier.from_real`, `ChannelScale.from_real`)
which run once per compiled program, never per value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRAD_MAX = 127          # gradients are int8 in [-127, 127]
MULT_BITS = 31          # multiplier M in [2^30, 2^31]
CHANNEL_SCALE_BITS = 15  # channel scale F[c] < 2^15 (+1 on a round-up)


def round_shift(a, k):
    """round_shift(a, k) = (a + 2^(k-1)) >> k for k >= 1, a for k == 0 (round half up).

    `a` and `k` broadcast; `k` must be non-negative. Works on int64 arrays and Python ints.
    """
    a = np.asarray(a, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    if np.any(k < 0):
        raise ValueError(f"round_shift needs non-negative shifts, got {int(k.min())}")
    # Shifts past 62 would overflow int64 (or be undefined past 63): floor the excess bits away
    # first, which is exact because floor(floor(a / 2^j) / 2^m + h) = floor(a / 2^(j+m) + h).
    excess = np.maximum(k - 62, 0)
    a = np.right_shift(a, np.minimum(excess, 63))
    k = k - excess
    half = np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0)
    return np.right_shift(a + half, k)


def shift_signed(a, k):
    """round_shift for k >= 0, exact left shift by -k for k < 0 (element-wise)."""
    a = np.asarray(a, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    right = round_shift(a, np.maximum(k, 0))
    return np.where(k < 0, np.left_shift(a, np.maximum(-k, 0)), right)


def bitlen(a) -> int:
    """Bits of the non-negative integer a (bitlen(0) == 0)."""
    return int(a).bit_length()


def _round_half_up_real(x: float) -> int:
    return int(math.floor(x + 0.5))


MULTIPLIER_LIMIT = 2.0 ** 29     # a constant this large or larger cannot be a Multiplier


@dataclass(frozen=True)
class Multiplier:
    """A positive real constant m stored as M * 2^-n, M in [2^30, 2^31], n in [1, 62].

    `apply(a)` = round_shift(a * M, n). m < 2^-32 is stored as (0, 1) and yields 0.
    """
    M: int
    n: int

    @classmethod
    def from_real(cls, m: float) -> "Multiplier":
        m = float(m)
        if not math.isfinite(m) or m < 0:
            raise ValueError(f"multiplier must be a finite non-negative number, not {m}")
        if m < 2.0 ** -32:
            return cls(0, 1)
        if m >= MULTIPLIER_LIMIT:
            raise ValueError(f"multiplier {m} is too large (at most 2^29 is supported)")
        n = 30 - math.floor(math.log2(m))
        M = _round_half_up_real(m * 2.0 ** n)
        if M >= 2 ** 31:
            M, n = 2 ** 30, n - 1
        return cls(M, n)

    def apply(self, a):
        return round_shift(np.asarray(a, dtype=np.int64) * self.M, self.n)

    @property
    def real(self) -> float:
        return self.M * 2.0 ** -self.n


@dataclass(frozen=True)
class MultiplierVector:
    """One Multiplier per channel, stored as arrays M[c], n[c] (int64)."""
    M: np.ndarray
    n: np.ndarray

    @classmethod
    def from_real(cls, values) -> "MultiplierVector":
        mults = [Multiplier.from_real(v) for v in np.asarray(values, dtype=np.float64).ravel()]
        return cls(np.array([m.M for m in mults], dtype=np.int64),
                   np.array([m.n for m in mults], dtype=np.int64))

    def apply(self, acc, channel_axis: int = 0):
        """round_shift(acc * M[c], n[c]) with c along `channel_axis` of acc."""
        acc = np.asarray(acc, dtype=np.int64)
        shape = [1] * acc.ndim
        shape[channel_axis] = -1
        return round_shift(acc * self.M.reshape(shape), self.n.reshape(shape))

    def __len__(self):
        return len(self.M)


@dataclass(frozen=True)
class ChannelScale:
    """Constants f[c] sharing one exponent: F[c] * 2^-N with max F in [2^14, 2^15].

    Used where the scaled values are summed across c afterwards (numerics section 3).
    """
    F: np.ndarray
    N: int

    @classmethod
    def from_real(cls, values) -> "ChannelScale":
        f = np.asarray(values, dtype=np.float64).ravel()
        if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f < 0) or f.max() <= 0:
            raise ValueError("channel scale needs finite non-negative values with a positive maximum")
        N = (CHANNEL_SCALE_BITS - 1) - math.floor(math.log2(f.max()))
        F = np.floor(f * 2.0 ** N + 0.5).astype(np.int64)
        if F.max() >= 2 ** CHANNEL_SCALE_BITS:
            N -= 1
            F = np.floor(f * 2.0 ** N + 0.5).astype(np.int64)
        return cls(F, int(N))


def quantize_gradient(A, e_A: int):
    """The gradient quantizer: wide integers A at exponent e_A -> (int8 g, exponent e).

    k = max(0, bitlen(max|A|) - 7); g = clamp(round_shift(A, k), -127, 127); e = e_A + k.
    """
    A = np.asarray(A, dtype=np.int64)
    amax = int(np.abs(A).max()) if A.size else 0
    k = max(0, bitlen(amax) - 7)
    g = np.clip(round_shift(A, k), -GRAD_MAX, GRAD_MAX).astype(np.int8)
    return g, int(e_A + k)


def add_gradients(g1, e1: int, g2, e2: int):
    """Sum of two gradient tensors of one shape, exactly aligned, then re-quantized (section 5)."""
    g1 = np.asarray(g1, dtype=np.int64)
    g2 = np.asarray(g2, dtype=np.int64)
    if e1 > e2:
        g1, e1, g2, e2 = g2, e2, g1, e1
    d = e2 - e1
    if d > 23:
        g1 = round_shift(g1, d - 23)
        e1, d = e2 - 23, 23
    return quantize_gradient(g1 + np.left_shift(g2, d), e1)


def dequantize_gradient(g, e: int) -> np.ndarray:
    return np.asarray(g, dtype=np.float64) * 2.0 ** e
