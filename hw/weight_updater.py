"""Weight and bias update units (docs/numerics.md sections 7.1-7.3).

`WeightUpdater` computes one new int8 weight per cycle (numerics 7.1-7.2):

    D = grad * multiplier                     64-bit signed (dW * U[c])
    r = fraction_bits                         (nu[c] - e_y)
    if r > 62: D = D >> (r - 62) (floor), r = 62
    stochastic: Q = (D + R) >> r, R = random >> (32 - r) if r <= 32 else random << (r - 32)
    truncate:   a = W - (D >> r); new = a - 1 if (D mod 2^r != 0 and a > 0) else a
    nearest:    Q = round_shift(D, r)
    r <= 0 (every mode): Q = D << -r
    new_weight = clamp(W - Q, -127, 127)

Operands: `weight` signed 8, `grad` signed 32, `multiplier` unsigned 32, `fraction_bits` signed 8,
`rounding` a `Rounding` (2 bits; the unused code 3 rounds to nearest, as the golden model's
fall-through does), `random` unsigned 32 (the xorshift32 draw; ignored unless stochastic, but the
caller still steps its stream once per weight so the stream position never depends on data).
Result: `new_weight` signed 8. Every input is exact, not only the contract's |D| < 2^62: the
product of signed 32 and unsigned 32 always fits signed 64, and Q is saturated to +-512 before
the subtraction, which changes nothing after the clamp to [-127, 127] (|W| <= 128). So a left
shift of any length (r down to -128) gives the contract's unbounded result, where the golden
model's int64 `D << -r` would wrap once |D| * 2^-r >= 2^63.

`BiasUpdater` computes one new int32 bias per cycle (numerics 7.3):

    new_bias = sat32(bias - shift_signed(grad * multiplier, shift))
    shift_signed(p, s) = round_shift(p, s) for s >= 0, p << -s for s < 0

Operands: `bias`, `grad` signed 32, `multiplier` V unsigned 32, `shift` signed 8 (nv[c] - e_y).
Result: `new_bias` signed 32. The product is exact in 64 bits for every operand (the contract's
|db| < 2^31, V <= 2^31 give |p| <= 2^62, the golden model's int64 range); right shifts of any
length are exact; the shifted delta is saturated to +-2^32 before the subtraction, which changes
nothing after the int32 saturation (|bias| <= 2^31), so left shifts of any length are exact too.
Assumed bound: none. The golden model agrees wherever its int64 does not wrap, that is
|p| * 2^-shift < 2^63 - 2^31 (all products for shift >= 0; |p| < 2^(62 + shift) for shift < 0).

Timing (both units): fully pipelined, one operand set per cycle, no stalls; `out_valid` and the
result follow the operands presented with `valid` exactly `LATENCY` cycles later. Stages: s1
operand registers, s2 the 64-bit product (DSP blocks with registered inputs and output) and the
decoded shift amounts, s3 and s4 the shifts and roundings, s5 the final subtract and clamp.
"""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .requantizer import INT32_MAX, INT32_MIN, clamped_round_shift, saturate
from .shared_product import registered_product, unit_members

__all__ = ["Rounding", "WeightUpdater", "BiasUpdater"]

MAX_FRACTION_BITS = 62   # numerics 7.1: r above this is floored down to it first
Q_LIMIT = 512            # |Q| beyond this clamps the weight no matter what W is
LEFT_SHIFT_LIMIT = 10    # a nonzero D shifted left by 10 has |Q| >= 1024 > Q_LIMIT
DELTA_LIMIT = 2 ** 32    # |delta| beyond this saturates the bias no matter what it is
BIAS_LEFT_SHIFT_LIMIT = 33
SATURATING_RIGHT_SHIFTS = 31   # a bias delta shifted right by more never reaches +-2^32


class Rounding(enum.Enum, shape=2):
    """Weight rounding mode (numerics 7.2); code 3 is unused and rounds to nearest."""
    STOCHASTIC = 0
    TRUNCATE = 1
    NEAREST = 2


class WeightUpdater(wiring.Component):
    """New int8 weight per numerics 7.2; see the module docstring for timing and widths."""

    LATENCY = 5

    PORTS = {
        "valid": In(1), "weight": In(signed(8)), "grad": In(signed(32)), "multiplier": In(32),
        "fraction_bits": In(signed(8)), "rounding": In(Rounding), "random": In(32),
        "out_valid": Out(1), "new_weight": Out(signed(8))}

    def __init__(self, shared_product: bool = False):
        self.shared_product = shared_product    # s2's D from the lane's shared multiplier
        super().__init__(unit_members(WeightUpdater.PORTS, shared_product))

    def elaborate(self, platform):
        m = Module()

        s1_valid = Signal()
        s1_weight = Signal(signed(8), reset_less=True)
        s1_grad = Signal(signed(32), reset_less=True)
        s1_multiplier = Signal(32, reset_less=True)
        s1_fraction_bits = Signal(signed(8), reset_less=True)
        s1_rounding = Signal(Rounding, reset_less=True)
        s1_random = Signal(32, reset_less=True)
        m.d.sync += [
            s1_valid.eq(self.valid),
            s1_weight.eq(self.weight),
            s1_grad.eq(self.grad),
            s1_multiplier.eq(self.multiplier),
            s1_fraction_bits.eq(self.fraction_bits),
            s1_rounding.eq(self.rounding),
            s1_random.eq(self.random),
        ]

        # s2: D = dW * U, and everything that depends only on r, the mode and the draw.
        # All right shifts below are by r in 0..62 (0 when r <= 0); the rounding addend is
        # formed at weight 2^62 and shifted right by 62 - r, which gives
        # R = x >> (32 - r) for r <= 32 and x << (r - 32) above from one shifter, and the
        # nearest-rounding half 2^(r-1) from the same shifter (both are 0 for r = 0).
        r = s1_fraction_bits
        fraction = Signal(range(MAX_FRACTION_BITS + 1))
        fraction_complement = Signal(range(MAX_FRACTION_BITS + 1))   # shift amounts: unsigned
        m.d.comb += [
            fraction.eq(Mux(r > MAX_FRACTION_BITS, MAX_FRACTION_BITS, Mux(r > 0, r, 0))),
            fraction_complement.eq(MAX_FRACTION_BITS - fraction),
        ]
        addend_at_62 = Signal(62)
        with m.Switch(s1_rounding):
            with m.Case(Rounding.STOCHASTIC):
                m.d.comb += addend_at_62.eq(Cat(Const(0, 30), s1_random))
            with m.Case(Rounding.TRUNCATE):
                m.d.comb += addend_at_62.eq(0)
            with m.Default():
                m.d.comb += addend_at_62.eq(1 << 61)
        s2_valid = Signal()
        s2_product = registered_product(self, m, s1_valid, s1_grad, s1_multiplier, "s2_product")
        s2_excess = Signal(range(128 - MAX_FRACTION_BITS), reset_less=True)
        s2_fraction = Signal(range(MAX_FRACTION_BITS + 1), reset_less=True)
        s2_left = Signal(range(LEFT_SHIFT_LIMIT + 1), reset_less=True)
        s2_addend = Signal(62, reset_less=True)
        s2_fraction_mask = Signal(MAX_FRACTION_BITS, reset_less=True)
        s2_weight = Signal(signed(8), reset_less=True)
        s2_truncate = Signal(reset_less=True)
        m.d.sync += [
            s2_valid.eq(s1_valid),
            s2_excess.eq(Mux(r > MAX_FRACTION_BITS, r - MAX_FRACTION_BITS, 0)),
            s2_fraction.eq(fraction),
            s2_left.eq(Mux(r < -LEFT_SHIFT_LIMIT, LEFT_SHIFT_LIMIT, Mux(r < 0, -r, 0))),
            s2_addend.eq(addend_at_62 >> fraction_complement),
            s2_fraction_mask.eq(Const(2 ** MAX_FRACTION_BITS - 1, MAX_FRACTION_BITS)
                                >> fraction_complement),
            s2_weight.eq(s1_weight),
            s2_truncate.eq(s1_rounding == Rounding.TRUNCATE),
        ]

        # s3: floor away the fraction bits beyond 62, add the rounding addend.
        # |D >> excess| < 2^63 and the addend < 2^62: the sum fits signed 65.
        # Beside it, the bounds that tell from the sum alone whether s4's Q saturates, so s4
        # compares the sum with them while it shifts instead of after:
        #   r > 0:  sum >> r  >  512  iff  sum >= 513 * 2^r,   <  -512  iff  sum <  -512 * 2^r
        #   r < 0 (sum = D, shifted left by l = -r >= 1):
        #           D << l    >  512  iff  D >= ceil(513 / 2^l),  <  -512  iff  D < -(512 >> l)
        #   (for l = 10, ceil(-512 / 2^10) = 0 = -(512 >> 10)). r = 0 is the first case.
        s3_valid = Signal()
        s3_sum = Signal(signed(65), reset_less=True)
        s3_fraction = Signal.like(s2_fraction)
        s3_left = Signal.like(s2_left)
        s3_fraction_mask = Signal.like(s2_fraction_mask)
        s3_weight = Signal.like(s2_weight)
        s3_truncate = Signal.like(s2_truncate)
        bound_bits = 2 + (Q_LIMIT + 1).bit_length() + MAX_FRACTION_BITS
        s3_above = Signal(signed(bound_bits), reset_less=True)    # Q saturates at +512 from here
        s3_below = Signal(signed(bound_bits), reset_less=True)    # and at -512 below this
        left = s2_left
        m.d.sync += [
            s3_valid.eq(s2_valid),
            s3_sum.eq((s2_product >> s2_excess) + s2_addend),
            s3_fraction.eq(s2_fraction),
            s3_left.eq(s2_left),
            s3_fraction_mask.eq(s2_fraction_mask),
            s3_weight.eq(s2_weight),
            s3_truncate.eq(s2_truncate),
            s3_above.eq(Mux(left != 0, (Q_LIMIT + 1 + (Const(1, LEFT_SHIFT_LIMIT + 1) << left) - 1) >> left,
                            Const(Q_LIMIT + 1, bound_bits) << s2_fraction)),
            s3_below.eq(Mux(left != 0, -(Const(Q_LIMIT, 11) >> left),
                            -(Const(Q_LIMIT, bound_bits) << s2_fraction))),
        ]

        # s4: Q = sum >> r, or D << -r for r < 0 (then r's shift is 0 and the sum is D: the
        # addend is below 2^-62 of it), saturated to +-512 by the bounds of s3. Unsaturated,
        # |Q| <= 512 fits the shifted value's low 11 bits. The truncation also needs to know
        # whether D had fraction bits (the addend is 0 then, so they are the sum's low r bits).
        s4_valid = Signal()
        s4_quotient = Signal(range(-Q_LIMIT, Q_LIMIT + 1), reset_less=True)
        s4_inexact = Signal(reset_less=True)
        s4_weight = Signal.like(s3_weight)
        s4_truncate = Signal.like(s3_truncate)
        shifted = Signal(signed(11))
        m.d.comb += shifted.eq(Mux(s3_left != 0, (s3_sum << s3_left)[:11], (s3_sum >> s3_fraction)[:11]))
        m.d.sync += [
            s4_valid.eq(s3_valid),
            s4_quotient.eq(Mux(s3_sum >= s3_above, Q_LIMIT, Mux(s3_sum < s3_below, -Q_LIMIT, shifted))),
            s4_inexact.eq((s3_sum[:MAX_FRACTION_BITS] & s3_fraction_mask).any()),
            s4_weight.eq(s3_weight),
            s4_truncate.eq(s3_truncate),
        ]

        # s5: subtract, truncate toward zero, clamp.
        floored = s4_weight - s4_quotient
        toward_zero = s4_truncate & s4_inexact & (floored > 0)
        m.d.sync += [
            self.out_valid.eq(s4_valid),
            self.new_weight.eq(saturate(floored - toward_zero, -127, 127)),
        ]
        return m


class BiasUpdater(wiring.Component):
    """New int32 bias per numerics 7.3; see the module docstring for timing and widths."""

    LATENCY = 5

    PORTS = {
        "valid": In(1), "bias": In(signed(32)), "grad": In(signed(32)), "multiplier": In(32),
        "shift": In(signed(8)),
        "out_valid": Out(1), "new_bias": Out(signed(32))}

    def __init__(self, shared_product: bool = False):
        self.shared_product = shared_product    # s2's p from the lane's shared multiplier
        super().__init__(unit_members(BiasUpdater.PORTS, shared_product))

    def elaborate(self, platform):
        m = Module()

        s1_valid = Signal()
        s1_bias = Signal(signed(32), reset_less=True)
        s1_grad = Signal(signed(32), reset_less=True)
        s1_multiplier = Signal(32, reset_less=True)
        s1_shift = Signal(signed(8), reset_less=True)
        m.d.sync += [
            s1_valid.eq(self.valid),
            s1_bias.eq(self.bias),
            s1_grad.eq(self.grad),
            s1_multiplier.eq(self.multiplier),
            s1_shift.eq(self.shift),
        ]

        # s2: p = db * V (signed 64 always suffices) and the decoded shifts. A right shift
        # past 64 gives the same 0 as 64 does, so the amount is capped there.
        s2_valid = Signal()
        s2_product = registered_product(self, m, s1_valid, s1_grad, s1_multiplier, "s2_product")
        s2_right = Signal(range(65), reset_less=True)
        s2_left = Signal(range(BIAS_LEFT_SHIFT_LIMIT + 1), reset_less=True)
        s2_bias = Signal(signed(32), reset_less=True)
        # The bound s3 compares 2p with, so it saturates beside the shift instead of after it:
        # round_shift(p, s) > 2^32  iff  2p >= (2^33 + 1) * 2^s,  < -2^32  iff  2p < -(that).
        # |2p| < 2^64 <= the bound for s >= 31: no larger shift saturates, so s is capped there.
        s2_bound = Signal(2 + DELTA_LIMIT.bit_length() + SATURATING_RIGHT_SHIFTS, reset_less=True)
        shift = s1_shift
        right = Signal(range(65))
        m.d.comb += right.eq(Mux(shift > 64, 64, Mux(shift > 0, shift, 0)))
        m.d.sync += [
            s2_valid.eq(s1_valid),
            s2_right.eq(right),
            s2_left.eq(Mux(shift < -BIAS_LEFT_SHIFT_LIMIT, BIAS_LEFT_SHIFT_LIMIT,
                           Mux(shift < 0, -shift, 0))),
            s2_bias.eq(s1_bias),
            s2_bound.eq(Const(2 * DELTA_LIMIT + 1, len(s2_bound))
                        << Mux(right > SATURATING_RIGHT_SHIFTS, SATURATING_RIGHT_SHIFTS, right)),
        ]

        # s3: round_shift by the right amount (0 for a left shift), saturated to +-2^32 by the
        # bound. Unsaturated, the result fits 34 bits, so only the shifted value's low 35 bits
        # go through the rounding increment.
        s3_valid = Signal()
        s3_rounded = Signal(range(-DELTA_LIMIT, DELTA_LIMIT + 1), reset_less=True)
        s3_left = Signal.like(s2_left)
        s3_bias = Signal.like(s2_bias)
        bound = Cat(s2_bound, Const(0, 1)).as_signed()      # positive
        m.d.sync += [
            s3_valid.eq(s2_valid),
            s3_rounded.eq(clamped_round_shift(s2_product, s2_right, DELTA_LIMIT, bound)),
            s3_left.eq(s2_left),
            s3_bias.eq(s2_bias),
        ]

        # s4: the left shift (a nonzero value shifted by 33 is beyond the limit anyway).
        s4_valid = Signal()
        s4_delta = Signal.like(s3_rounded)
        s4_bias = Signal.like(s3_bias)
        m.d.sync += [
            s4_valid.eq(s3_valid),
            s4_delta.eq(saturate(s3_rounded << s3_left, -DELTA_LIMIT, DELTA_LIMIT)),
            s4_bias.eq(s3_bias),
        ]

        # s5: the saturating subtract.
        m.d.sync += [
            self.out_valid.eq(s4_valid),
            self.new_bias.eq(saturate(s4_bias - s4_delta, INT32_MIN, INT32_MAX)),
        ]
        return m
