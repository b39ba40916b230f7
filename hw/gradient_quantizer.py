"""The gradient quantizer of docs/numerics.md section 5, as its two hardware halves.

    amax = max |A| over the tensor;  k = max(0, bitlen(amax) - 7)
    g    = clamp(round_shift(A, k), -127, 127);  e = e_A + k

`AbsMaxTracker` watches the int32 values of a tensor as they are produced and holds the running
`amax` (unsigned 32: |-2^31| = 2^31 fits) and `shift` k (0..25). `clear` (strobe) starts a new
tensor: with `valid` in the same cycle that value is the first of the new tensor, without it the
maximum restarts from 0. A value presented with `valid` in cycle t is included in `amax` from
cycle t + LATENCY (2: s1 registers |value|, s2 the maximum); `shift` is a priority encoder on the
`amax` register, combinational, so it always matches `amax`. The exponent `e = e_A + k` is the
caller's bookkeeping.

`GradientNarrower` is the second pass: `value` signed 32 and `shift` k unsigned 5 (the tracker's
0..25; every value up to 31 is exact) in, `gradient` int8 in [-127, 127] out. Fully pipelined, one
value per cycle, no stalls; `out_valid` and `gradient` follow `valid` and `value` exactly LATENCY
(3) cycles later: s1 operand registers, s2 the barrel shift, s3 the rounding increment and clamp.
"""
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .requantizer import saturate

__all__ = ["AbsMaxTracker", "GradientNarrower", "GRADIENT_BITS"]

GRADIENT_BITS = 7       # magnitude bits of an int8 gradient in [-127, 127]
MAX_SHIFT = 32 - GRADIENT_BITS


class AbsMaxTracker(wiring.Component):
    """Running max |value| and the quantizer shift k; see the module docstring for timing."""

    LATENCY = 2

    clear: In(1)
    valid: In(1)
    value: In(signed(32))

    amax: Out(32)
    shift: Out(range(MAX_SHIFT + 1))

    def elaborate(self, platform):
        m = Module()

        s1_clear = Signal()
        s1_valid = Signal()
        s1_magnitude = Signal(32, reset_less=True)
        m.d.sync += [
            s1_clear.eq(self.clear),
            s1_valid.eq(self.valid),
            s1_magnitude.eq(abs(self.value)),
        ]

        running = Mux(s1_clear, 0, self.amax)
        candidate = Mux(s1_valid, s1_magnitude, 0)
        m.d.sync += self.amax.eq(Mux(candidate > running, candidate, running))

        # k = bitlen(amax) - 7 when amax >= 128: the highest set bit i >= 7 gives k = i - 6.
        shift = 0
        for bit in range(GRADIENT_BITS, 32):
            shift = Mux(self.amax[bit], bit - GRADIENT_BITS + 1, shift)
        m.d.comb += self.shift.eq(shift)
        return m


class GradientNarrower(wiring.Component):
    """clamp(round_shift(value, shift), -127, 127); see the module docstring for timing."""

    LATENCY = 3

    valid: In(1)
    value: In(signed(32))
    shift: In(5)

    out_valid: Out(1)
    gradient: Out(signed(8))

    def elaborate(self, platform):
        m = Module()

        s1_valid = Signal()
        s1_value = Signal(signed(32), reset_less=True)
        s1_shift = Signal(5, reset_less=True)
        m.d.sync += [
            s1_valid.eq(self.valid),
            s1_value.eq(self.value),
            s1_shift.eq(self.shift),
        ]

        # round_shift(v, k) = (((v << 1) >> k) + 1) >> 1, split after the shifter.
        s2_valid = Signal()
        s2_shifted = Signal(signed(33), reset_less=True)
        m.d.sync += [
            s2_valid.eq(s1_valid),
            s2_shifted.eq((s1_value << 1) >> s1_shift),
        ]

        m.d.sync += [
            self.out_valid.eq(s2_valid),
            self.gradient.eq(saturate((s2_shifted + 1) >> 1, -127, 127)),
        ]
        return m
