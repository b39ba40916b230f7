"""Weight and bias updates (docs/numerics.md section 7) of golden/train.py."""
from __future__ import annotations

import itertools
import math
import re
from fractions import Fraction

import numpy as np
import pytest

from golden.fixedpoint import MultiplierVector
from golden.graph import Conv, QParams
from golden.prng import Xorshift32
from golden.train import UpdateRule, apply_bias_update, apply_weight_update, update_multipliers

MASK32 = 0xFFFFFFFF


# ------------------------------------------------------------------ independent references

from numerics_oracle import ref_floor_log2, ref_multiplier, ref_round_half_up  # noqa: F401

def ref_step(x: int) -> int:
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


def ref_weight_update(W: int, dW: int, M: int, n: int, e_y: int, rounding: str, state: list[int]) -> int:
    """numerics 7.1/7.2 for one element on Python ints; `state` is the sr stream (mutated)."""
    D = dW * M
    r = n - e_y
    if r > 62:
        D >>= r - 62
        r = 62
    if rounding == "stochastic":
        state[0] = ref_step(state[0])
        x = state[0]
        if r <= 0:
            Q = D << -r
        else:
            R = x >> (32 - r) if r <= 32 else x << (r - 32)
            Q = (D + R) >> r          # floor
        new = W - Q
    elif rounding == "truncate":
        new = int(Fraction(W) - Fraction(D) * Fraction(2) ** (-r))    # int(): toward zero
    else:
        new = W - (ref_round_half_up(Fraction(D) * Fraction(2) ** (-r)) if r > 0 else D << -r)
    return min(127, max(-127, new))


def fresh_state_after(seed: int, steps: int) -> int:
    x = seed & MASK32 or 0x9E3779B9
    for _ in range(steps):
        x = ref_step(x)
    return x


def random_case(rng, r_lo, r_hi, shape=(3, 4, 3, 3)):
    """Random weights, gradients and per-row multipliers with r = n - e_y in [r_lo, r_hi]."""
    O = shape[0]
    lo_e, hi_e = 1 - r_lo, 62 - r_hi
    e_y = int(rng.integers(lo_e, hi_e + 1)) if lo_e <= hi_e else int(rng.integers(-20, 5))
    r = rng.integers(r_lo, r_hi + 1, size=O)
    n = np.clip(r + e_y, 1, 62)
    M = rng.integers(2 ** 30, 2 ** 31, size=O)
    W = rng.integers(-127, 128, size=shape).astype(np.int8)
    dW = np.empty(shape, dtype=np.int64)
    for c in range(O):
        # |D| = |dW| M < 2^61; for r <= 0 also |D << -r| < 2^62
        top = 21 if n[c] - e_y <= 0 else 31
        bound = 2 ** int(rng.integers(1, top))
        dW[c] = rng.integers(-bound, bound + 1, size=shape[1:])
    return W, dW, MultiplierVector(M.astype(np.int64), n.astype(np.int64)), e_y


# ------------------------------------------------------------------- exactness vs reference

@pytest.mark.parametrize("rounding", ["stochastic", "truncate", "nearest"])
@pytest.mark.parametrize("r_range", [(-6, 0), (1, 32), (33, 62), (63, 80), (-3, 70)])
def test_weight_update_vs_reference(rounding, r_range):
    rng = np.random.default_rng(hash((rounding, r_range)) % 2 ** 32)
    seed = 1234
    for trial in range(6):
        W, dW, U, e_y = random_case(rng, *r_range)
        sr = Xorshift32(seed + trial)
        state = [sr.state]
        before = sr.state
        new = apply_weight_update(W.copy(), dW, e_y, U, rounding, sr)
        assert new.dtype == np.int8 and new.shape == W.shape
        expected = np.empty(W.shape, dtype=np.int64)
        O, I, K, _ = W.shape
        for ci, u, v, c in np.ndindex(I, K, K, O):   # engine weight layout order (numerics 7.4)
            idx = (c, ci, u, v)
            expected[idx] = ref_weight_update(int(W[idx]), int(dW[idx]), int(U.M[c]), int(U.n[c]),
                                              e_y, rounding, state)
        np.testing.assert_array_equal(new.astype(np.int64), expected)
        if rounding == "stochastic":
            assert sr.state == state[0] == fresh_state_after(seed + trial, W.size)
        else:
            assert sr.state == before                 # no draws


@pytest.mark.parametrize("rounding", ["truncate", "nearest", "stochastic"])
def test_weight_update_r_le_zero_is_exact_left_shift(rounding):
    W = np.array([[[[5]], [[-5]], [[0]], [[100]]]], dtype=np.int8)       # (1, 4, 1, 1)
    dW = np.array([[[[1]], [[-1]], [[3]], [[-2]]]], dtype=np.int64)
    U = MultiplierVector(np.array([2 ** 30]), np.array([30]))
    # e_y = 32 -> r = -2: Q = D << 2 = dW * 2^32 -> every element clamps except where dW = 0
    new = apply_weight_update(W, dW, 32, U, rounding, Xorshift32(5))
    assert new.ravel().tolist() == [-127, 127, -127, 127]
    # e_y = 30 -> r = 0: Q = D = dW * 2^30
    new = apply_weight_update(W, np.zeros_like(dW), 30, U, rounding, Xorshift32(5))
    assert new.ravel().tolist() == W.ravel().tolist()


def test_truncate_by_hand():
    U = MultiplierVector(np.array([2 ** 30]), np.array([31]))   # factor 1/2 with e_y = 0: r = 31
    W = np.array([3, 3, -3, -3, 0, 0, 1, -1], dtype=np.int8).reshape(1, 8, 1, 1)
    dW = np.array([1, -1, 1, -1, 1, -1, 3, -3], dtype=np.int64).reshape(1, 8, 1, 1)
    # new real values: 2.5, 3.5, -3.5, -2.5, -0.5, 0.5, -0.5, 0.5 -> trunc toward zero
    new = apply_weight_update(W, dW, 0, U, "truncate", Xorshift32(1))
    assert new.ravel().tolist() == [2, 3, -3, -2, 0, 0, 0, 0]


def test_nearest_by_hand_ties_up():
    U = MultiplierVector(np.array([2 ** 30]), np.array([31]))   # delta = dW / 2
    W = np.array([3, 3, -3, -3, 0, 0], dtype=np.int8).reshape(1, 6, 1, 1)
    dW = np.array([1, -1, 1, -1, 3, -3], dtype=np.int64).reshape(1, 6, 1, 1)
    # Q = round_half_up(dW / 2): 1, 0, 1, 0, 2, -1
    new = apply_weight_update(W, dW, 0, U, "nearest", Xorshift32(1))
    assert new.ravel().tolist() == [2, 3, -4, -3, -2, 1]


@pytest.mark.parametrize("rounding", ["stochastic", "truncate", "nearest"])
def test_weight_update_clamps(rounding):
    U = MultiplierVector(np.array([2 ** 30, 2 ** 30]), np.array([30, 30]))   # delta = dW
    W = np.array([120, -120, 127, -127], dtype=np.int8).reshape(2, 2, 1, 1)
    dW = np.array([-50, 50, -1, 1], dtype=np.int64).reshape(2, 2, 1, 1)
    new = apply_weight_update(W, dW, 0, U, rounding, Xorshift32(3))
    assert new.ravel().tolist() == [127, -127, 127, -127]
    assert new.min() >= -127                      # never -128
    dW = np.array([300, 300, 300, 300], dtype=np.int64).reshape(2, 2, 1, 1)
    assert apply_weight_update(W, dW, 0, U, rounding, Xorshift32(3)).ravel().tolist() == [-127] * 4


# ------------------------------------------------------------------------- unbiasedness

@pytest.mark.parametrize("M,n,e_y,dW", [
    (1288490189, 32, 0, 1),        # 0.3 LSB (r = 32)
    (1288490189, 32, 0, -1),       # -0.3 LSB
    (1159641170, 30, 0, 5),        # 5 * 1.08 = 5.4 LSB (r = 30)
    (1503238554, 35, -5, 271),     # r = 40 > 32: 271 * M / 2^40 = 0.3705 LSB
    (1717986918, 31, 0, 1),        # 0.8 LSB
])
def test_stochastic_rounding_is_unbiased(M, n, e_y, dW):
    count = 100_000
    W = np.full((1, count, 1, 1), 10, dtype=np.int8)
    grad = np.full(W.shape, dW, dtype=np.int64)
    U = MultiplierVector(np.array([M]), np.array([n]))
    exact = Fraction(dW * M, 2 ** (n - e_y))
    sr = Xorshift32(77)
    new = apply_weight_update(W, grad, e_y, U, "stochastic", sr)
    updates = 10 - new.astype(np.float64).ravel()
    assert abs(updates.mean() - float(exact)) < 0.01
    # only the two neighbouring integers occur
    lo = math.floor(exact)
    assert set(np.unique(updates).tolist()) <= {lo, lo + 1}
    assert sr.state == fresh_state_after(77, count)


def test_stochastic_zero_gradient_never_moves():
    U = MultiplierVector(np.array([2 ** 30]), np.array([40]))
    W = np.arange(-100, 100, dtype=np.int8).reshape(1, 200, 1, 1)
    new = apply_weight_update(W, np.zeros(W.shape, np.int64), 0, U, "stochastic", Xorshift32(9))
    np.testing.assert_array_equal(new, W)


# ---------------------------------------------------------------------------------- bias

def ref_bias(b: int, db: int, V: int, nv: int, e_y: int) -> int:
    s = nv - e_y
    delta = db * V
    q = (delta + (1 << (s - 1))) >> s if s > 0 else delta << -s
    return min(2 ** 31 - 1, max(-2 ** 31, b - q))


def test_bias_update_vs_reference():
    rng = np.random.default_rng(42)
    for trial in range(200):
        O = 8
        bias = rng.integers(-2 ** 31, 2 ** 31, size=O).astype(np.int32)
        bias[:2] = rng.integers(-1000, 1000, size=2)
        db = rng.integers(-2 ** 14, 2 ** 14, size=O)
        V = rng.integers(2 ** 30, 2 ** 31, size=O)
        nv = rng.integers(1, 63, size=O)
        e_y = int(rng.integers(-30, 10))
        # keep left shifts in a range the contract covers (|db * V << s| < 2^62)
        nv = np.maximum(nv, e_y - 2)
        nv = np.minimum(nv, 63 + e_y) if 63 + e_y >= 1 else nv   # shifts <= 63 here; > 63 below
        mv = MultiplierVector(V.astype(np.int64), nv.astype(np.int64))
        new = apply_bias_update(bias, db, e_y, mv)
        assert new.dtype == np.int32
        expected = [ref_bias(int(b), int(d), int(v), int(s), e_y) for b, d, v, s in zip(bias, db, V, nv)]
        assert new.tolist() == expected


def test_bias_update_shift_beyond_63():
    # numerics 7.3: round_shift on unbounded integers. With QAS off (v = lr s_x s_w ~ 2^-18,
    # nv ~ 48) and a gradient exponent e_y ~ -20 the shift nv - e_y exceeds 63; the rounded
    # delta of a small product is then 0 and the bias must not move.
    V = np.array([1697651471, 2116553023, 2 ** 30, 2 ** 30])
    nv = np.array([60, 54, 48, 62])
    e_y = -27                                        # shifts 87, 81, 75, 89
    db = np.array([-12996, 15691, -1, 1])
    bias = np.array([-361604455, 503, 0, 7], dtype=np.int32)
    new = apply_bias_update(bias, db, e_y, MultiplierVector(V, nv))
    expected = [ref_bias(int(b), int(d), int(v), int(s), e_y) for b, d, v, s in zip(bias, db, V, nv)]
    assert expected == bias.tolist()
    assert new.tolist() == expected


def test_bias_update_saturates_int32():
    mv = MultiplierVector(np.array([2 ** 30] * 4), np.array([30] * 4))     # delta = db
    bias = np.array([2 ** 31 - 10, -2 ** 31 + 10, 2 ** 31 - 1, 5], dtype=np.int32)
    db = np.array([-100, 100, -1, 5])
    new = apply_bias_update(bias, db, 0, mv)
    assert new.tolist() == [2 ** 31 - 1, -2 ** 31, 2 ** 31 - 1, 0]
    # e_y = 10: shift -10 -> delta = db * 2^10
    new = apply_bias_update(bias, np.array([-2 ** 21, 2 ** 21, 0, 1]), 10, mv)
    assert new.tolist() == [2 ** 31 - 1, -2 ** 31, 2 ** 31 - 1, 5 - 1024]


def test_bias_update_rounds_half_up():
    mv = MultiplierVector(np.array([2 ** 30] * 4), np.array([31] * 4))     # delta = db / 2
    new = apply_bias_update(np.zeros(4, np.int32), np.array([1, -1, 3, -3]), 0, mv)
    assert new.tolist() == [-1, 0, -2, 1]


# --------------------------------------------------------------------------- multipliers

def make_node(rng, O=6):
    w = rng.integers(-127, 128, size=(O, 3, 1, 1)).astype(np.int8)
    w_scales = rng.uniform(0.001, 0.05, size=O)
    return Conv("c", "input", "y", w, np.zeros(O, np.int32), w_scales, 1, 1,
                QParams(float(rng.uniform(0.01, 0.2)), 3), QParams(0.1, 0))


@pytest.mark.parametrize("lr", [0.05, 0.001, 0.3])
def test_update_multipliers_qas(lr):
    node = make_node(np.random.default_rng(int(lr * 1000)))
    U, V = update_multipliers(node, UpdateRule(lr=lr, qas=True))
    s_x = node.x.scale
    for c, s_w in enumerate(node.w_scales.tolist()):
        u = lr * s_x / s_w
        v = lr / (s_x * s_w)
        assert (int(U.M[c]), int(U.n[c])) == ref_multiplier(u)
        assert (int(V.M[c]), int(V.n[c])) == ref_multiplier(v)
        # the represented values are the exact QAS factors to 31 bits
        exact_u = Fraction(lr) * Fraction(s_x) / Fraction(s_w)
        exact_v = Fraction(lr) / (Fraction(s_x) * Fraction(s_w))
        assert abs(Fraction(int(U.M[c]), 2 ** int(U.n[c])) / exact_u - 1) < Fraction(1, 2 ** 30)
        assert abs(Fraction(int(V.M[c]), 2 ** int(V.n[c])) / exact_v - 1) < Fraction(1, 2 ** 30)


@pytest.mark.parametrize("lr", [0.05, 0.5])
def test_update_multipliers_without_qas(lr):
    node = make_node(np.random.default_rng(7))
    U, V = update_multipliers(node, UpdateRule(lr=lr, qas=False))
    s_x = node.x.scale
    for c, s_w in enumerate(node.w_scales.tolist()):
        plain = lr * s_x * s_w
        assert (int(U.M[c]), int(U.n[c])) == ref_multiplier(plain)
        assert (int(V.M[c]), int(V.n[c])) == ref_multiplier(plain)


@pytest.mark.parametrize("qas", [True, False])
def test_a_factor_too_large_for_a_multiplier_is_refused_with_the_learning_rate_that_fits(qas):
    """A factor of 2^29 or more (numerics 7.1) cannot be a multiplier: the error names the conv,
    the worst channel and the learning rate below which every channel fits, and that rate works."""
    node = make_node(np.random.default_rng(11))
    node.w_scales = node.w_scales.copy()
    node.w_scales[2] = 1e-11 if qas else 1e12      # QAS divides by s_w, plain SGD multiplies
    lr = 0.05
    kind = "bias" if qas else "weight"             # without QAS both factors are lr s_x s_w
    with pytest.raises(ValueError, match=rf"conv 'c'.* {kind} update multiplier of channel 2 ") as exc:
        update_multipliers(node, UpdateRule(lr=lr, qas=qas))
    fits = float(re.search(r"a learning rate below (\S+) fits", str(exc.value)).group(1))
    factor = 1 / (node.x.scale * 1e-11) if qas else node.x.scale * 1e12
    assert fits == pytest.approx(2.0 ** 29 / factor, rel=1e-2)
    U, V = update_multipliers(node, UpdateRule(lr=fits * 0.99, qas=qas))
    assert int(V.M[2]) * 2.0 ** -int(V.n[2]) == pytest.approx(0.99 * 2 ** 29, rel=1e-2)   # near the top
    with pytest.raises(ValueError):
        update_multipliers(node, UpdateRule(lr=fits * 1.02, qas=qas))


def test_only_the_multipliers_asked_for_are_built():
    """With QAS the weight factor lr s_x / s_w is 1 / s_x^2 times smaller than the bias factor:
    a conv whose biases are frozen gets its weight multipliers even when the bias ones would not fit."""
    node = make_node(np.random.default_rng(12))
    node.w_scales = node.w_scales.copy()
    node.w_scales[0] = 1e-9
    U, V = update_multipliers(node, UpdateRule(lr=0.05), weights=True, biases=False)
    assert V is None and U.M.shape == (node.out_channels,)
    assert update_multipliers(node, UpdateRule(lr=0.05), weights=False, biases=False) == (None, None)


def test_qas_update_equals_sgd_on_real_weights():
    """D * 2^-r == lr * dL/dW_real / s_w with dL/dW_real = dW * s_x * 2^e_y (to 2^-30)."""
    rng = np.random.default_rng(3)
    node = make_node(rng)
    lr = 0.05
    U, _ = update_multipliers(node, UpdateRule(lr=lr))
    e_y = -12
    for c, s_w in enumerate(node.w_scales.tolist()):
        dW = int(rng.integers(1, 5000))
        D = Fraction(dW * int(U.M[c]), 2 ** (int(U.n[c]) - e_y))
        want = Fraction(lr) * Fraction(dW) * Fraction(node.x.scale) * Fraction(2) ** e_y / Fraction(s_w)
        assert abs(D / want - 1) < Fraction(1, 2 ** 29)


def test_update_rule_validation():
    with pytest.raises(ValueError):
        UpdateRule(lr=0)
    with pytest.raises(ValueError):
        UpdateRule(rounding="floor")
