"""Tests of golden/fixedpoint.py against docs/numerics.md sections 2, 3 and 5.

Expected values are computed here independently: by hand, with Python big ints or with exact
Fractions; nothing is copied from the code under test.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from golden.fixedpoint import (ChannelScale, Multiplier, MultiplierVector, add_gradients,
                               dequantize_gradient, quantize_gradient, round_shift,
                               shift_signed)


# ------------------------------------------------------------------ independent references

from numerics_oracle import ref_floor_log2, ref_multiplier, ref_round_half_up  # noqa: F401

def ref_round_shift(a: int, k: int) -> int:
    """numerics 2 on unbounded Python ints: floor(a / 2^k + 1/2)."""
    a, k = int(a), int(k)
    return a if k == 0 else (a + (1 << (k - 1))) >> k


def ref_quantize(A, e_A: int):
    """numerics 5 gradient quantizer on Python ints."""
    A = [int(a) for a in np.ravel(A)]
    amax = max((abs(a) for a in A), default=0)
    k = max(0, amax.bit_length() - 7)
    g = [min(127, max(-127, ref_round_shift(a, k))) for a in A]
    return g, e_A + k


# ------------------------------------------------------------------------------ round_shift

@pytest.mark.parametrize("a,k,expected", [
    (3, 1, 2), (-3, 1, -1), (-5, 2, -1), (5, 2, 1), (6, 2, 2), (-6, 2, -1), (-7, 2, -2),
    (1, 1, 1), (-1, 1, 0), (2, 2, 1), (-2, 2, 0), (7, 0, 7), (-7, 0, -7), (0, 5, 0),
    (127, 1, 64), (-127, 1, -63), (255, 1, 128), (-255, 1, -127),
])
def test_round_shift_by_hand(a, k, expected):
    assert int(round_shift(a, k)) == expected


def test_round_shift_ties_go_up():
    # Every x.5 tie rounds toward +infinity, whatever the sign.
    for k in range(1, 20):
        for q in range(-40, 40):
            a = q * (1 << k) + (1 << (k - 1))    # exactly (q + 1/2) * 2^k
            assert int(round_shift(a, k)) == q + 1


def test_round_shift_vs_bigint_random_int64():
    rng = np.random.default_rng(11)
    a = rng.integers(-2 ** 62, 2 ** 62, size=4000, dtype=np.int64)
    # also small values so rounding actually matters for small k
    a[:1000] = rng.integers(-1000, 1000, size=1000)
    k = rng.integers(0, 63, size=a.size)
    got = round_shift(a, k)
    expected = [ref_round_shift(int(x), int(s)) for x, s in zip(a, k)]
    assert got.tolist() == expected
    # scalar shift broadcast over an array
    for s in (0, 1, 7, 31, 62):
        assert round_shift(a, s).tolist() == [ref_round_shift(int(x), s) for x in a]


@pytest.mark.parametrize("k", [63, 64, 65, 70, 90])
def test_round_shift_large_shifts(k):
    # numerics 2 is on unbounded integers: a value far below 2^(k-1) rounds to 0
    a = np.array([5, -5, 2 ** 40, -(2 ** 40), 0])
    assert [ref_round_shift(int(x), k) for x in a] == [0] * 5
    assert round_shift(a, k).tolist() == [0] * 5
    assert shift_signed(a, k).tolist() == [0] * 5


def test_round_shift_rejects_negative_shift():
    with pytest.raises(ValueError):
        round_shift(5, -1)


def test_shift_signed_left_for_negative():
    a = np.array([3, -3, 5, -5, 7])
    k = np.array([-2, -3, 1, 2, 0])
    assert shift_signed(a, k).tolist() == [12, -24, 3, -1, 7]


# ----------------------------------------------------------------------------- Multiplier

def test_multiplier_normalisation_random():
    rng = np.random.default_rng(1)
    values = np.concatenate([
        2.0 ** rng.uniform(-31.9, 28.9, size=3000),
        2.0 ** np.arange(-32, 29).astype(np.float64),                  # exact powers of two
        np.nextafter(2.0 ** np.arange(-31, 29).astype(np.float64), 0),  # just below them
    ])
    for m in values:
        mult = Multiplier.from_real(m)
        assert 2 ** 30 <= mult.M < 2 ** 31 + 1 and mult.M <= 2 ** 31
        assert 1 <= mult.n <= 62
        assert (mult.M, mult.n) == ref_multiplier(m), m
        # M * 2^-n represents m to within half a unit of M's last place
        assert abs(Fraction(mult.M, 2 ** mult.n) - Fraction(m)) <= Fraction(1, 2 ** (mult.n + 1))


def test_multiplier_by_hand():
    assert (Multiplier.from_real(1.0).M, Multiplier.from_real(1.0).n) == (2 ** 30, 30)
    assert (Multiplier.from_real(0.5).M, Multiplier.from_real(0.5).n) == (2 ** 30, 31)
    assert (Multiplier.from_real(0.75).M, Multiplier.from_real(0.75).n) == (3 * 2 ** 29, 31)
    # just below 1: m * 2^31 rounds to 2^31, which renormalises to (2^30, 30)
    m = 1.0 - 2.0 ** -40
    assert (Multiplier.from_real(m).M, Multiplier.from_real(m).n) == (2 ** 30, 30)
    # smallest representable constant 2^-32 -> n = 62
    assert (Multiplier.from_real(2.0 ** -32).M, Multiplier.from_real(2.0 ** -32).n) == (2 ** 30, 62)
    # largest accepted: just below 2^29 -> n = 2 (or 1 after renormalisation)
    big = Multiplier.from_real(2.0 ** 29 * (1 - 2.0 ** -52))
    assert big.n in (1, 2) and 2 ** 30 <= big.M <= 2 ** 31


@pytest.mark.parametrize("m", [2.0 ** -33, 1e-12, 2.0 ** -32 * 0.999, 0.0])
def test_multiplier_tiny_is_zero(m):
    mult = Multiplier.from_real(m)
    assert (mult.M, mult.n) == (0, 1)
    assert Multiplier.from_real(m).apply(np.array([2 ** 31 - 1, -2 ** 31])).tolist() == [0, 0]


@pytest.mark.parametrize("m", [2.0 ** 29, 2.0 ** 30, 1e12])
def test_multiplier_too_large_rejected(m):
    with pytest.raises(ValueError):
        Multiplier.from_real(m)


@pytest.mark.parametrize("m", [-1.0, float("nan"), float("inf")])
def test_multiplier_bad_values_rejected(m):
    with pytest.raises(ValueError):
        Multiplier.from_real(m)


def test_multiplier_apply_vs_fractions():
    rng = np.random.default_rng(2)
    for _ in range(200):
        m = float(2.0 ** rng.uniform(-20, 10))
        mult = Multiplier.from_real(m)
        M, n = ref_multiplier(m)
        a = rng.integers(-2 ** 31, 2 ** 31, size=50, dtype=np.int64)
        a[:5] = [0, 1, -1, 2 ** 31 - 1, -2 ** 31]
        got = mult.apply(a).tolist()
        expected = [ref_round_half_up(Fraction(int(x) * M, 2 ** n)) for x in a]
        assert got == expected


def test_multiplier_apply_ties_round_up():
    mult = Multiplier.from_real(0.5)     # (2^30, 31): a * 0.5 exactly
    a = np.arange(-9, 10)
    expected = [ref_round_half_up(Fraction(int(x), 2)) for x in a]
    assert mult.apply(a).tolist() == expected
    assert mult.apply(np.array([3, -3, 1, -1])).tolist() == [2, -1, 1, 0]


def test_multiplier_vector_per_channel():
    rng = np.random.default_rng(3)
    vals = 2.0 ** rng.uniform(-15, 5, size=6)
    mv = MultiplierVector.from_real(vals)
    assert len(mv) == 6
    acc = rng.integers(-2 ** 20, 2 ** 20, size=(2, 6, 3, 3))
    got = mv.apply(acc, channel_axis=1)
    for c, m in enumerate(vals):
        M, n = ref_multiplier(m)
        assert (int(mv.M[c]), int(mv.n[c])) == (M, n)
        exp = [ref_round_half_up(Fraction(int(x) * M, 2 ** n)) for x in acc[:, c].ravel()]
        assert got[:, c].ravel().tolist() == exp


# --------------------------------------------------------------------------- ChannelScale

def ref_channel_scale(values):
    f = [Fraction(float(v)) for v in values]
    N = 14 - ref_floor_log2(max(f))
    F = [ref_round_half_up(x * Fraction(2) ** N) for x in f]
    if max(F) == 2 ** 15:
        N -= 1
        F = [ref_round_half_up(x * Fraction(2) ** N) for x in f]
    return F, N


def test_channel_scale_random():
    rng = np.random.default_rng(4)
    for _ in range(300):
        c = int(rng.integers(1, 40))
        f = 2.0 ** rng.uniform(-12, 3, size=c) * rng.uniform(0.5, 1, size=c)
        cs = ChannelScale.from_real(f)
        assert 2 ** 14 <= cs.F.max() <= 2 ** 15
        assert cs.F.min() >= 0
        F, N = ref_channel_scale(f)
        assert cs.N == N and cs.F.tolist() == F


def test_channel_scale_by_hand_and_renormalisation():
    cs = ChannelScale.from_real([1.0, 0.5, 0.25])
    assert cs.N == 14 and cs.F.tolist() == [2 ** 14, 2 ** 13, 2 ** 12]
    cs = ChannelScale.from_real([1.0 / 16])           # f = 1/(H*W) for a 4x4 pool
    assert cs.N == 18 and cs.F.tolist() == [2 ** 14]
    # max f just below 2: rounds to 2^15, renormalised to N - 1 with F = 2^14
    cs = ChannelScale.from_real([2.0 - 2.0 ** -30, 0.3])
    assert cs.N == 13 and cs.F[0] == 2 ** 14
    assert cs.F[1] == ref_round_half_up(Fraction(0.3) * 2 ** 13)


@pytest.mark.parametrize("values", [[], [0.0, 0.0], [-1.0, 2.0], [float("nan")]])
def test_channel_scale_rejects_bad(values):
    with pytest.raises(ValueError):
        ChannelScale.from_real(values)


# --------------------------------------------------------------------- quantize_gradient

def test_quantize_gradient_random_vs_reference():
    rng = np.random.default_rng(5)
    for trial in range(400):
        bits = int(rng.integers(1, 32))
        A = rng.integers(-(2 ** bits), 2 ** bits, size=int(rng.integers(1, 60)), dtype=np.int64)
        e_A = int(rng.integers(-40, 10))
        g, e = quantize_gradient(A, e_A)
        g_ref, e_ref = ref_quantize(A, e_A)
        assert g.dtype == np.int8
        assert g.tolist() == g_ref and e == e_ref
        amax = int(np.abs(A).max())
        assert g.min() >= -127                               # never -128
        if amax > 127:
            assert 64 <= int(np.abs(g.astype(int)).max()) <= 127
        else:
            assert e == e_A and g.tolist() == A.tolist()      # fits int8: passes unchanged
        # dequantized error at most half a step, except where a value in [127.5, 128) steps
        # rounded to 128 and was clamped to 127 (numerics 5): there less than one step
        err = np.abs(dequantize_gradient(g, e) - A.astype(np.float64) * 2.0 ** e_A)
        clamped = np.abs(g.astype(int)) == 127
        assert np.all(err[~clamped] <= 2.0 ** (e - 1))
        assert np.all(err[clamped] < 2.0 ** e)
        # the exact 127.5 tie itself is within half a step
        ties = np.abs(A.astype(np.float64)) * 2.0 ** (e_A - e) == 127.5
        assert np.all(err[ties] <= 2.0 ** (e - 1))


def test_quantize_gradient_by_hand():
    g, e = quantize_gradient(np.array([255, -255, 3]), -15)
    # bitlen(255) = 8 -> k = 1; 255/2 = 127.5 rounds up to 128, clamped to 127
    assert e == -14 and g.tolist() == [127, -127, 2]
    g, e = quantize_gradient(np.array([-256, 1]), 0)   # k = 2; -64 exactly
    assert e == 2 and g.tolist() == [-64, 0]
    g, e = quantize_gradient(np.array([-128, 0]), 3)   # -128 does not fit: k = 1
    assert e == 4 and g.tolist() == [-64, 0]
    g, e = quantize_gradient(np.array([127, -127, 64]), 7)
    assert e == 7 and g.tolist() == [127, -127, 64]
    g, e = quantize_gradient(np.array([2 ** 20 - 1, -(2 ** 20 - 1)]), -5)
    # k = 13: (2^20 - 1) / 2^13 = 127.99... -> 128 -> clamped 127; negative -> -128 -> -127
    assert e == 8 and g.tolist() == [127, -127]


def test_quantize_gradient_negative_ties_never_minus_128():
    # -(127.5 * 2^k) rounds up to -127 and -(128 * 2^k - 1) to -128 -> clamp -127
    for k in range(1, 25):
        A = np.array([-(255 << (k - 1)), -((128 << k) - 1), 1])
        g, e = quantize_gradient(A, 0)
        assert e == k
        assert g.tolist()[:2] == [-127, -127]


def test_quantize_gradient_all_zero_keeps_exponent():
    g, e = quantize_gradient(np.zeros((3, 4), dtype=np.int64), -17)
    assert e == -17 and g.shape == (3, 4) and not g.any()


# -------------------------------------------------------------------------- add_gradients

def test_add_gradients_exact_when_d_le_23():
    rng = np.random.default_rng(6)
    for trial in range(600):
        n = int(rng.integers(1, 30))
        g1 = rng.integers(-127, 128, size=n)
        g2 = rng.integers(-127, 128, size=n)
        e1 = int(rng.integers(-40, 0))
        e2 = e1 + int(rng.integers(-23, 24))
        if trial % 2:
            e1, e2 = e2, e1
        g, e = add_gradients(g1.astype(np.int8), e1, g2.astype(np.int8), e2)
        # exact sum as Fractions, expressed on the grid 2^min(e1, e2) as Python ints
        lo = min(e1, e2)
        exact = [int(Fraction(int(a)) * Fraction(2) ** (e1 - lo) + Fraction(int(b)) * Fraction(2) ** (e2 - lo))
                 for a, b in zip(g1, g2)]
        g_ref, e_ref = ref_quantize(exact, lo)
        assert e == e_ref and g.tolist() == g_ref
        # value check: dequantized result within half a step of the exact real sum
        real = g1 * 2.0 ** e1 + g2 * 2.0 ** e2
        err = np.abs(dequantize_gradient(g, e) - real)
        clamped = np.abs(g.astype(int)) == 127
        assert np.all(err[~clamped] <= 2.0 ** (e - 1)) and np.all(err[clamped] < 2.0 ** e)


def test_add_gradients_large_difference_rule():
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 20))
        g1 = rng.integers(-127, 128, size=n)
        g2 = rng.integers(-127, 128, size=n)
        e1 = int(rng.integers(-60, -30))
        d = int(rng.integers(24, 40))
        e2 = e1 + d
        # numerics 5: g1 = round_shift(g1, d - 23), e1 = e2 - 23, then exact add + quantize
        g1s = [ref_round_shift(int(a), d - 23) for a in g1]
        A = [a + (int(b) << 23) for a, b in zip(g1s, g2)]
        g_ref, e_ref = ref_quantize(A, e2 - 23)
        for args in ((g1, e1, g2, e2), (g2, e2, g1, e1)):    # order does not matter
            g, e = add_gradients(args[0].astype(np.int8), args[1], args[2].astype(np.int8), args[3])
            assert e == e_ref and g.tolist() == g_ref


def test_add_gradients_d_24_by_hand():
    # g1 = 3 at 2^0, g2 = 0 at 2^24: g1 -> round_shift(3, 1) = 2 at 2^1; sum fits: (2, e=1)
    g, e = add_gradients(np.array([3], np.int8), 0, np.array([0], np.int8), 24)
    assert (g.tolist(), e) == ([2], 1)
    # g1 = -3 -> round_shift(-3, 1) = -1
    g, e = add_gradients(np.array([-3], np.int8), 0, np.array([0], np.int8), 24)
    assert (g.tolist(), e) == ([-1], 1)
