"""Requantizer: int32 accumulator to int8 activation (docs/numerics.md sections 2, 3 and 4.2).

    acc' = sat32(bias + acc)                               saturating add (4.2)
    pre  = zero_out + round_shift(acc' * M, n)             round half up, arithmetic shift (2, 3)
    y    = clamp(pre, -128, 127);   in_range = [-128 <= pre <= 127]   (the backward mask bit)

Operands: `acc`, `bias` signed 32; `multiplier` M unsigned 32 (the contract's M in [2^30, 2^31]
or 0, but every 32-bit value is exact: |acc' * M| < 2^63); `shift` n unsigned 6 (the contract's
1..62; 0 and 63 are exact too); `zero_out` signed 8. Results: `y` signed 8, `in_range`.

Timing: fully pipelined, one operand set accepted every cycle, no stalls. `out_valid`, `y` and
`in_range` show the result of the operands presented with `valid` exactly `LATENCY` cycles
earlier. Stages: s1 registers the raw operands, s2 the saturated sum (the multiplier's operand
registers), s3 the 64-bit product (a 32x32 multiply maps to MULT18X18D blocks with registered
inputs and output on an ECP5), s4 the rounded shift, s5 the clamped outputs.

`round_shift` and `saturate` are the two narrowing primitives every arithmetic unit in `hw/`
uses; they live here because the requantizer is the unit that defines them in the contract.
"""
from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .shared_product import registered_product, unit_members

__all__ = ["Requantizer", "round_shift", "saturate"]

INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1


def round_shift(value, shift):
    """round_shift(value, shift) of numerics 2 on a signed `value` and unsigned `shift` Value.

    (value + 2^(shift-1)) >> shift for shift >= 1, value for shift == 0, computed as
    (((value << 1) >> shift) + 1) >> 1: one barrel shifter and one incrementer, no shifted
    half constant and no special case for 0. Exact for every shift amount (a shift past the
    width gives 0, as the unbounded formula does). The result is one bit wider than `value`.
    """
    doubled = Value.cast(value) << 1
    return ((doubled >> shift) + 1) >> 1


def clamped_round_shift(value, shift, limit, bound):
    """clamp(round_shift(value, shift), -limit, limit), the clamp decided beside the shift
    instead of after it: round_shift(v, s) > limit iff 2v >= (2 limit + 1) 2^s, and < -limit
    iff 2v < -(2 limit + 1) 2^s. `bound` is that (2 limit + 1) 2^s, formed by the caller a stage
    earlier (it depends on the shift alone; past the shift where |2v| can reach it, any larger
    bound gives the same result). Unclamped, the result fits its low bits, so only those go
    through the rounding increment."""
    doubled = Value.cast(value) << 1
    bits = (2 * limit).bit_length()          # signed bits of +-limit
    rounded = (((doubled >> shift)[:bits + 1] + 1) >> 1)[:bits].as_signed()
    return Mux(doubled >= bound, limit, Mux(doubled < -bound, -limit, rounded))


def saturate(value, low, high):
    """clamp(value, low, high) as a Value (low <= high are Python ints)."""
    return Mux(value < low, low, Mux(value > high, high, value))


class Requantizer(wiring.Component):
    """Requantizer of numerics 4.2; see the module docstring for timing and widths. With
    `shared_product` its s3 product comes from the lane's shared multiplier (hw/shared_product.py)."""

    LATENCY = 5

    PORTS = {
        "valid": In(1), "acc": In(signed(32)), "bias": In(signed(32)), "multiplier": In(32),
        "shift": In(6), "zero_out": In(signed(8)),
        "out_valid": Out(1), "y": Out(signed(8)), "in_range": Out(1)}

    def __init__(self, shared_product: bool = False):
        self.shared_product = shared_product
        super().__init__(unit_members(Requantizer.PORTS, shared_product))

    def elaborate(self, platform):
        m = Module()

        # s1: the raw operands, so no logic hangs on the ports.
        s1_valid = Signal()
        s1_acc = Signal(signed(32), reset_less=True)
        s1_bias = Signal(signed(32), reset_less=True)
        s1_multiplier = Signal(32, reset_less=True)
        s1_shift = Signal(6, reset_less=True)
        s1_zero = Signal(signed(8), reset_less=True)
        m.d.sync += [
            s1_valid.eq(self.valid),
            s1_acc.eq(self.acc),
            s1_bias.eq(self.bias),
            s1_multiplier.eq(self.multiplier),
            s1_shift.eq(self.shift),
            s1_zero.eq(self.zero_out),
        ]

        # s2: acc' = sat32(bias + acc); these registers are the multiplier's operand registers.
        s2_valid = Signal()
        s2_acc = Signal(signed(32), reset_less=True)
        s2_multiplier = Signal(32, reset_less=True)
        s2_shift = Signal(6, reset_less=True)
        s2_zero = Signal(signed(8), reset_less=True)
        m.d.sync += [
            s2_valid.eq(s1_valid),
            s2_acc.eq(saturate(s1_acc + s1_bias, INT32_MIN, INT32_MAX)),
            s2_multiplier.eq(s1_multiplier),
            s2_shift.eq(s1_shift),
            s2_zero.eq(s1_zero),
        ]

        # s3: the product. |acc'| <= 2^31 and M < 2^32, so |acc' * M| < 2^63 fits signed 64.
        s3_valid = Signal()
        s3_product = registered_product(self, m, s2_valid, s2_acc, s2_multiplier, "s3_product")
        s3_shift = Signal(6, reset_less=True)
        s3_zero = Signal(signed(8), reset_less=True)
        m.d.sync += [
            s3_valid.eq(s2_valid),
            s3_shift.eq(s2_shift),
            s3_zero.eq(s2_zero),
        ]

        # s4: round_shift(product, n). For n >= 1 the result is at most half the product;
        # for n == 0 it is the product: either way it fits signed 64.
        s4_valid = Signal()
        s4_rounded = Signal(signed(64), reset_less=True)
        s4_zero = Signal(signed(8), reset_less=True)
        m.d.sync += [
            s4_valid.eq(s3_valid),
            s4_rounded.eq(round_shift(s3_product, s3_shift)),
            s4_zero.eq(s3_zero),
        ]

        # s5: pre = zero_out + rounded, clamped; the mask bit says whether the clamp was idle.
        pre = s4_rounded + s4_zero
        m.d.sync += [
            self.out_valid.eq(s4_valid),
            self.y.eq(saturate(pre, -128, 127)),
            self.in_range.eq((pre >= -128) & (pre <= 127)),
        ]
        return m
