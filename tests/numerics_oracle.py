"""Exact-arithmetic oracle for numerics sections 2-3 (Python ints and Fractions), shared by tests."""
from __future__ import annotations

import math
from fractions import Fraction


def ref_round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def ref_floor_log2(x: Fraction) -> int:
    """floor(log2(x)) of a positive Fraction, exactly."""
    e = x.numerator.bit_length() - x.denominator.bit_length()
    while Fraction(2) ** e > x:
        e -= 1
    while Fraction(2) ** (e + 1) <= x:
        e += 1
    return e


def ref_multiplier(m: float) -> tuple[int, int]:
    """numerics 3 with exact arithmetic on the float64 constant."""
    m = Fraction(m)
    if m < Fraction(1, 2 ** 32):
        return 0, 1
    n = 30 - ref_floor_log2(m)
    M = ref_round_half_up(m * Fraction(2) ** n)
    if M == 2 ** 31:
        M, n = 2 ** 30, n - 1
    return M, n
