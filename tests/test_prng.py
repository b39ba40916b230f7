"""Tests of golden/prng.py (xorshift32) against docs/numerics.md section 8."""
from __future__ import annotations

import numpy as np
import pytest

from golden.prng import Xorshift32

MASK = 0xFFFFFFFF


def ref_step(x: int) -> int:
    """numerics 8 on Python ints, 32-bit logical shifts."""
    x ^= (x << 13) & MASK
    x ^= x >> 17
    x ^= (x << 5) & MASK
    return x & MASK


def ref_stream(seed: int, n: int) -> list[int]:
    x = seed & MASK or 0x9E3779B9
    out = []
    for _ in range(n):
        x = ref_step(x)
        out.append(x)
    return out


def test_first_outputs_of_seed_1_by_hand():
    # x = 1: x ^= x << 13 -> 0x2001; x ^= x >> 17 -> 0x2001; x ^= x << 5 -> 0x2001 ^ 0x40020
    assert ref_step(1) == (1 ^ (1 << 13)) ^ ((1 ^ (1 << 13)) << 5) == 270369
    assert ref_step(270369) == 67634689
    rng = Xorshift32(1)
    expected = ref_stream(1, 20)
    assert expected[:2] == [270369, 67634689]
    assert [rng.next() for _ in range(20)] == expected
    assert rng.state == expected[-1]


@pytest.mark.parametrize("seed", [2, 12345, 0xDEADBEEF, 0xFFFFFFFF, 2 ** 31])
def test_next_matches_reference(seed):
    rng = Xorshift32(seed)
    assert [rng.next() for _ in range(500)] == ref_stream(seed, 500)


def test_outputs_are_32_bit_and_nonzero():
    rng = Xorshift32(7)
    xs = [rng.next() for _ in range(5000)]
    assert all(0 < x <= MASK for x in xs)


def test_zero_seed_replaced():
    rng = Xorshift32(0)
    assert rng.state == 0x9E3779B9
    assert rng.next() == ref_step(0x9E3779B9)
    # a seed that is 0 modulo 2^32 is also replaced
    assert Xorshift32(2 ** 32).state == 0x9E3779B9
    assert [Xorshift32(0).next() for _ in range(1)] == ref_stream(0x9E3779B9, 1)


@pytest.mark.parametrize("n", [0, 1, 5, 255, 256, 257, 1000, 12345])
def test_draw_equals_sequential_next(n):
    seed = 987654321
    a, b = Xorshift32(seed), Xorshift32(seed)
    drawn = a.draw(n)
    assert drawn.dtype == np.uint32 and drawn.shape == (n,)
    singles = [b.next() for _ in range(n)]
    assert drawn.tolist() == singles
    assert drawn.tolist() == ref_stream(seed, n)
    assert a.state == b.state
    # the streams continue identically afterwards, through further draws of either kind
    assert [a.next() for _ in range(10)] == [b.next() for _ in range(10)]
    assert a.draw(300).tolist() == [b.next() for _ in range(300)]
    assert a.draw(7).tolist() == b.draw(7).tolist()


def test_draw_chunks_compose():
    a, b = Xorshift32(42), Xorshift32(42)
    parts = np.concatenate([a.draw(k) for k in (3, 600, 0, 255, 256, 1)])
    assert parts.tolist() == b.draw(len(parts)).tolist() == ref_stream(42, len(parts))


def test_draw_rough_uniformity():
    x = Xorshift32(2024).draw(100_000).astype(np.float64) / 2.0 ** 32
    assert abs(x.mean() - 0.5) < 0.01
    assert abs(x.var() - 1 / 12) < 0.005
    hist = np.histogram(x, bins=16, range=(0, 1))[0]
    assert hist.min() > 100_000 / 16 * 0.9 and hist.max() < 100_000 / 16 * 1.1
    # the low bits are uniform too (used as x mod (C - i) by channel selection)
    low = Xorshift32(2024).draw(100_000) % 7
    counts = np.bincount(low.astype(np.int64), minlength=7)
    assert counts.min() > 100_000 / 7 * 0.95
