"""xorshift32, the one PRNG of the project (docs/numerics.md section 8).

    x ^= x << 13; x ^= x >> 17; x ^= x << 5      (32-bit, logical shifts; state never 0)

The hardware steps it once per stochastically rounded weight; the CPU steps its own stream for
channel selection. `Xorshift32.draw(n)` returns the next n outputs exactly as n single steps
would, but vectorised: the stream is cut into blocks whose start states come from GF(2)
jump-ahead (xorshift is linear over GF(2)), and all blocks are stepped together.
"""
from __future__ import annotations

import numpy as np

ZERO_SEED_REPLACEMENT = 0x9E3779B9
_MASK = 0xFFFFFFFF


def step(x: int) -> int:
    """One xorshift32 step on a Python int."""
    x ^= (x << 13) & _MASK
    x ^= x >> 17
    x ^= (x << 5) & _MASK
    return x


def _step_array(x: np.ndarray) -> np.ndarray:
    x = x ^ (x << np.uint32(13))
    x = x ^ (x >> np.uint32(17))
    return x ^ (x << np.uint32(5))


def _matrix_of_step() -> list[int]:
    """Columns of the 32x32 GF(2) matrix of one step: column i = step(1 << i)."""
    return [step(1 << i) for i in range(32)]


def _apply(columns: list[int], x: int) -> int:
    out = 0
    i = 0
    while x:
        if x & 1:
            out ^= columns[i]
        x >>= 1
        i += 1
    return out


def _compose(a: list[int], b: list[int]) -> list[int]:
    """Matrix of applying b, then a."""
    return [_apply(a, col) for col in b]


def _power(columns: list[int], k: int) -> list[int]:
    result = [1 << i for i in range(32)]
    base = columns
    while k:
        if k & 1:
            result = _compose(base, result)
        base = _compose(base, base)
        k >>= 1
    return result


_STEP = _matrix_of_step()


class Xorshift32:
    """A stream; `state` is the last output (the next output is step(state))."""

    def __init__(self, seed: int):
        seed = int(seed) & _MASK
        self.state = seed if seed else ZERO_SEED_REPLACEMENT

    def next(self) -> int:
        self.state = step(self.state)
        return self.state

    def draw(self, n: int) -> np.ndarray:
        """The next n outputs as uint32, identical to n calls of next()."""
        n = int(n)
        if n <= 0:
            return np.zeros(0, dtype=np.uint32)
        if n < 256:
            out = np.empty(n, dtype=np.uint32)
            for i in range(n):
                out[i] = self.next()
            return out
        block = int(np.sqrt(n)) + 1
        blocks = (n + block - 1) // block
        jump = _power(_STEP, block)
        starts = np.empty(blocks, dtype=np.uint32)
        s = self.state
        for b in range(blocks):
            starts[b] = s
            s = _apply(jump, s)
        table = np.empty((block, blocks), dtype=np.uint32)
        x = starts
        for i in range(block):
            x = _step_array(x)
            table[i] = x
        out = table.T.reshape(-1)[:n]
        self.state = int(out[-1])
        return out
