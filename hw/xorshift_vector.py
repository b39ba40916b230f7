"""L consecutive xorshift32 draws in one cycle, by GF(2) jump-ahead.

xorshift32 is linear over GF(2): k steps from state s are a fixed 32x32 bit matrix T^k times s.
`jump_outputs(state, count)` returns the Values T^1 s, ..., T^count s, each output bit an XOR of
state bits (golden/prng.py computes the same matrices). The engine's weight-update epilogue
gives lane l the draw T^(l+1) s and moves the state to T^active s, which is exactly `active`
calls of numerics 8's step.
"""
from amaranth.hdl import Cat, Const

from golden.prng import _STEP, _power


def jump_outputs(state, count: int) -> list:
    outputs = []
    for k in range(1, count + 1):
        columns = _power(_STEP, k)          # columns[i] = image of state bit i
        bits = []
        for j in range(32):
            terms = [state[i] for i in range(32) if (columns[i] >> j) & 1]
            bit = Const(0, 1)
            for t in terms:
                bit = bit ^ t
            bits.append(bit)
        outputs.append(Cat(*bits))
    return outputs
