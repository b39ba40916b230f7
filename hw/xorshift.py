"""xorshift32 stream (docs/numerics.md section 8): the engine's stochastic-rounding PRNG.

    x ^= x << 13;  x ^= x >> 17;  x ^= x << 5        (32-bit, logical shifts)

Ports: `seed` unsigned 32 and `load` (strobe): the state becomes `seed`, or 0x9E3779B9 for seed 0,
so the state is never 0; `next` (strobe): the state steps once; `state` unsigned 32: the current
draw. A `next` asserted in cycle t makes `state` show the next draw from cycle t + 1 on, so
holding `next` high gives one draw per cycle, exactly the sequence of golden/prng.py's
`Xorshift32(seed).draw(n)`. `load` wins over `next` in the same cycle. After reset the state is
the stream of `reset_seed` (default 0, i.e. 0x9E3779B9). The step is pure XOR wiring, three
levels deep, so it needs no pipelining. The state is part of the training state: the engine
saves it by reading `state` and restores it with `load`.
"""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.prng import ZERO_SEED_REPLACEMENT

__all__ = ["Xorshift32", "xorshift32_step"]


def xorshift32_step(x):
    """One xorshift32 step of a 32-bit Value, as a 32-bit Value."""
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


class Xorshift32(wiring.Component):
    """The xorshift32 PRNG; see the module docstring for the port timing."""

    def __init__(self, *, reset_seed=0):
        if not isinstance(reset_seed, int) or not 0 <= reset_seed < 2 ** 32:
            raise ValueError(f"Reset seed must be an integer in [0, 2^32), not {reset_seed!r}")
        self._reset_seed = reset_seed
        super().__init__({
            "seed": In(32),
            "load": In(1),
            "next": In(1),
            "state": Out(32, init=reset_seed or ZERO_SEED_REPLACEMENT),
        })

    @property
    def reset_seed(self):
        return self._reset_seed

    def elaborate(self, platform):
        m = Module()
        with m.If(self.load):
            m.d.sync += self.state.eq(Mux(self.seed == 0, ZERO_SEED_REPLACEMENT, self.seed))
        with m.Elif(self.next):
            m.d.sync += self.state.eq(xorshift32_step(self.state))
        return m
