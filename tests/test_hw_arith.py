# amaranth: UnusedElaboratable=no
"""The engine's arithmetic units (hw/) in Amaranth's simulator, bit for bit against the golden model.

Each pipelined unit gets a few thousand seeded random operand sets plus edge cases pushed back to
back, one per cycle; `run_pipeline` checks that `out_valid` rises exactly LATENCY cycles after
`valid` and stays high for as many cycles, and returns the results in order. The oracles are the
golden functions themselves (golden/fixedpoint.py, golden/prng.py, golden/train.py); only where
the golden model's int64 arithmetic would wrap (absurdly long left shifts) is the unit checked
against the unbounded-integer formula of docs/numerics.md instead.
"""
import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from golden.fixedpoint import MultiplierVector, bitlen, quantize_gradient, round_shift
from golden.prng import ZERO_SEED_REPLACEMENT
from golden.prng import Xorshift32 as GoldenXorshift32
from golden.train import apply_bias_update, apply_weight_update
from hw.gradient_quantizer import AbsMaxTracker, GradientNarrower
from hw.requantizer import Requantizer
from hw.shared_product import SharedProduct
from hw.weight_updater import BiasUpdater, Rounding, WeightUpdater
from hw.xorshift import Xorshift32

INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1


class WithSharedProduct(Elaboratable):
    """A unit built with `shared_product=True` and a `SharedProduct` serving it alone, as the
    engine's lanes wire them: the same ports and latency as the unit with its own multiplier."""

    def __init__(self, unit_class):
        self.unit = unit_class(shared_product=True)
        self.LATENCY = self.unit.LATENCY

    def __getattr__(self, name):
        return getattr(self.__dict__["unit"], name)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        m.submodules.shared = shared = SharedProduct([(unit.product_valid, unit.product_a, unit.product_b)])
        m.d.comb += unit.product.eq(shared.product)
        return m


# Each unit is checked with its own multiplier and with the lane's shared one (hw/shared_product.py).
UNIT_BUILDS = pytest.mark.parametrize("build", [lambda cls: cls(), WithSharedProduct],
                                      ids=["own-product", "shared-product"])
MODES = {"stochastic": Rounding.STOCHASTIC, "truncate": Rounding.TRUNCATE,
         "nearest": Rounding.NEAREST}


def run_pipeline(dut, operands: dict, results: list[str]) -> dict[str, np.ndarray]:
    """Operand set i in cycle i; the results of every set, in order (asserts the latency)."""
    count = len(next(iter(operands.values())))
    latency = dut.LATENCY
    ports = [(getattr(dut, name), [v if isinstance(v, Rounding) else int(v) for v in values])
             for name, values in operands.items()]
    for port, values in ports:
        shape = port.shape()
        if not isinstance(shape, type):       # not an enum: the test's own values must fit
            low, high = (-2 ** (shape.width - 1), 2 ** (shape.width - 1) - 1) if shape.signed \
                else (0, 2 ** shape.width - 1)
            assert low <= min(values) and max(values) <= high, f"{port.name} out of range"
    outputs = [getattr(dut, name) for name in results]
    cycles = count + latency + 2
    valid_trace, collected = [], []

    async def testbench(ctx):
        for cycle in range(cycles):
            if cycle < count:
                for port, values in ports:
                    ctx.set(port, values[cycle])
            ctx.set(dut.valid, cycle < count)
            await ctx.tick()
            valid = ctx.get(dut.out_valid)
            valid_trace.append(valid)
            if valid:
                collected.append([ctx.get(output) for output in outputs])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    # After the tick ending cycle c the outputs hold operand set c + 1 - LATENCY.
    assert valid_trace == [int(latency - 1 <= c < count + latency - 1) for c in range(cycles)]
    table = np.array(collected, dtype=np.int64).reshape(count, len(results))
    return {name: table[:, i] for i, name in enumerate(results)}


def random_int32(rng, count, max_bits=32):
    """Signed values whose magnitudes spread over every bit length up to max_bits."""
    bits = rng.integers(0, max_bits + 1, count)
    magnitude = np.array([int(rng.integers(0, 2 ** b)) if b else 0 for b in bits], dtype=np.int64)
    sign = rng.choice([-1, 1], count)
    return np.clip(sign * magnitude, INT32_MIN, INT32_MAX)


def random_multipliers(rng, count, zero_fraction=0.03, small_fraction=0.0):
    """The contract's M in [2^30, 2^31] or 0; optionally some below 2^30, which the port allows."""
    M = rng.integers(2 ** 30, 2 ** 31 + 1, count)
    M[rng.random(count) < zero_fraction] = 0
    small = rng.random(count) < small_fraction
    M[small] = 2 ** rng.integers(0, 30, small.sum()) + rng.integers(0, 4, small.sum())
    return M


def bit_lengths(values) -> np.ndarray:
    return np.array([bitlen(abs(int(v))) for v in values], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Requantizer (numerics 4.2)

def golden_requantize(acc, bias, M, n, zero_out):
    acc_sat = np.clip(acc + bias, INT32_MIN, INT32_MAX)          # sat32(b + sum)
    pre = zero_out + MultiplierVector(M, n).apply(acc_sat)
    return np.clip(pre, -128, 127), ((pre >= -128) & (pre <= 127)).astype(np.int64)


def requantizer_cases(seed=1, count=4000):
    rng = np.random.default_rng(seed)
    acc = random_int32(rng, count)
    bias = random_int32(rng, count, 24)
    pinned = rng.random(count) < 0.1          # MIT's biases pinned at the int32 limits
    bias[pinned] = rng.choice([INT32_MIN, INT32_MAX], pinned.sum())
    acc[pinned] = random_int32(rng, pinned.sum())
    M = random_multipliers(rng, count, 0.05)
    acc_sat = np.clip(acc + bias, INT32_MIN, INT32_MAX)
    # Mostly shifts that land near the int8 range, so rounding and clamping both get exercised.
    n = bit_lengths(acc_sat * M) - rng.integers(-2, 10, count)
    wild = rng.random(count) < 0.25
    n[wild] = rng.integers(1, 63, wild.sum())
    n = np.clip(n, 1, 62)
    zero_out = rng.integers(-128, 128, count)
    # Edge cases: n = 1 and 62, M = 0, 2^30, 2^31, saturating sums, exact ties at several n.
    edge = []
    for j in range(25):
        odd = int(rng.integers(-40, 40)) * 2 + 1
        edge.append((odd << j, 0, 2 ** 30, 31 + j, int(rng.integers(-128, 128))))
    edge += [
        (INT32_MAX, INT32_MAX, 2 ** 31, 62, 0), (INT32_MIN, INT32_MIN, 2 ** 31, 62, 0),
        (INT32_MAX, 1, 2 ** 30, 62, 127), (INT32_MIN, -1, 2 ** 30, 62, -128),
        (INT32_MIN, INT32_MIN, 2 ** 31, 1, 0), (INT32_MAX, INT32_MAX, 2 ** 31, 1, 0),
        (100, 0, 2 ** 30, 31, 0), (-100, 0, 2 ** 30, 31, 0), (1, 0, 2 ** 30, 31, 0),
        (-1, 0, 2 ** 30, 31, 0), (-3, 0, 2 ** 30, 31, 0), (3, 0, 2 ** 30, 1, 0),
        (12345, -7, 0, 1, 5), (INT32_MIN, 0, 0, 1, -128), (0, 0, 2 ** 31, 62, 127),
        (255, 0, 2 ** 30, 30, -128), (256, 0, 2 ** 30, 30, -128), (-2 ** 30, 2 ** 30, 2 ** 31, 31, 0),
        (127, 0, 2 ** 30, 30, 0), (128, 0, 2 ** 30, 30, 0), (-128, 0, 2 ** 30, 30, 0),
        (-129, 0, 2 ** 30, 30, 0), (-257, 0, 2 ** 30, 31, 0), (255, 0, 2 ** 30, 31, 0),
    ]
    edge = np.array(edge, dtype=np.int64)
    columns = [np.concatenate([a, edge[:, i]]) for i, a in enumerate((acc, bias, M, n, zero_out))]
    return dict(zip(("acc", "bias", "multiplier", "shift", "zero_out"), columns))


@UNIT_BUILDS
def test_requantizer_matches_golden(build):
    operands = requantizer_cases()
    got = run_pipeline(build(Requantizer), operands, ["y", "in_range"])
    y, in_range = golden_requantize(*operands.values())
    np.testing.assert_array_equal(got["y"], y)
    np.testing.assert_array_equal(got["in_range"], in_range)
    # The vectors reach every corner: both clamps, in-range values and saturating sums.
    assert (y == 127).sum() > 50 and (y == -128).sum() > 50 and in_range.sum() > 1000
    sums = operands["acc"] + operands["bias"]
    assert ((sums > INT32_MAX) | (sums < INT32_MIN)).sum() > 50


# ---------------------------------------------------------------------------------------------
# Weight update (numerics 7.1-7.2)

def weight_update_cases(seed=2, count=1500):
    """Base cases (weight, grad, U, r), each later run in all three rounding modes."""
    rng = np.random.default_rng(seed)
    grad = random_int32(rng, count)
    U = random_multipliers(rng, count, small_fraction=0.05)
    D = grad * U
    # Fraction bits putting Q = D / 2^r near 2^t, t in -4..9, so the weight moves but not always
    # to the clamp; a quarter anywhere in -8..127. Left shifts stay where int64 does not wrap.
    r = bit_lengths(D) - rng.integers(-4, 10, count)
    wild = rng.random(count) < 0.25
    r[wild] = rng.integers(-8, 128, wild.sum())
    r = np.clip(np.maximum(r, bit_lengths(D) - 60), -128, 127)
    weight = rng.integers(-127, 128, count)
    edge = [(127, 1, 2 ** 30, 0), (-127, -1, 2 ** 30, 0), (-128, 0, 2 ** 30, 0),
            (-128, 1, 2 ** 30, 31), (5, 3, 2 ** 30, -1), (5, -3, 2 ** 30, -5),
            (0, 1, 2 ** 30, -30), (0, -1, 2 ** 30, -31), (100, 7, 0, 40), (-100, -7, 0, -3)]
    # Tiny D (U below the contract's 2^30) shifted left just past the clamp: 127 - (1 << 8).
    for r_left in range(-10, 1):
        for w, g in ((127, 1), (-127, -1), (0, 1), (0, -1), (-128, -1), (60, 1)):
            edge.append((w, g, 1, r_left))
    # D near 2^62 (|D| < 2^62 is the compiler's guarantee), at r = 55..62 and beyond.
    for r_big in (55, 60, 61, 62, 63, 64, 80, 127):
        for sign in (1, -1):
            edge.append((int(rng.integers(-127, 128)), sign * (2 ** 31 - 1), 2 ** 31 - 1, r_big))
            edge.append((int(rng.integers(-127, 128)), sign * (2 ** 31 - 1), 2 ** 31, r_big))
    edge.append((0, -2 ** 31, 2 ** 31 - 1, 62))
    edge.append((0, -2 ** 31, 2 ** 31 - 1, 63))
    # r = 62, 63, 80 with small D (the floor of a negative D leaves -1) and r = 32, 33.
    for r_fixed in (1, 32, 33, 61, 62, 63, 64, 80):
        for g in (1, -1, 12345, -12345, 2 ** 31 - 1, -2 ** 31 + 1):
            edge.append((int(rng.integers(-127, 128)), g, int(rng.integers(2 ** 30, 2 ** 31)), r_fixed))
    # Exact ties (D = odd * 2^(r-1)) and exact multiples (no fraction bits) with U = 2^30.
    for j in range(0, 22, 2):
        odd = int(rng.integers(-60, 60)) * 2 + 1
        edge.append((int(rng.integers(-127, 128)), odd << j, 2 ** 30, 31 + j))
        edge.append((int(rng.integers(-127, 128)), odd << (j + 1), 2 ** 30, 31 + j))
    edge = np.array(edge, dtype=np.int64)
    weight, grad, U, r = (np.concatenate([a, edge[:, i]]) for i, a in enumerate((weight, grad, U, r)))
    assert np.all(np.abs(grad * U) < 2 ** 62)
    return weight, grad, U, r


def golden_weight_updates(weight, grad, U, r, modes, seed=7):
    """New weights from golden apply_weight_update (per-row r as U.n with e_y = 0) and the draws.

    The stochastic rows take consecutive draws of one stream in order, as golden does; the other
    rows get unrelated random words, which the unit must ignore.
    """
    new = np.zeros(len(weight), dtype=np.int64)
    random = np.random.default_rng(seed).integers(0, 2 ** 32, len(weight))
    for name in MODES:
        rows = np.flatnonzero(modes == name)
        if name == "stochastic":
            random[rows] = GoldenXorshift32(seed).draw(len(rows))
        new[rows] = apply_weight_update(
            weight[rows, None], grad[rows, None], 0, MultiplierVector(U[rows], r[rows]),
            name, GoldenXorshift32(seed))[:, 0]
    return new, random


@UNIT_BUILDS
def test_weight_updater_matches_golden_in_every_rounding_mode(build):
    base = weight_update_cases()
    count = len(base[0])
    weight, grad, U, r = (np.tile(a, 3) for a in base)
    modes = np.repeat(np.array(list(MODES)), count)
    expected, random = golden_weight_updates(weight, grad, U, r, modes)
    got = run_pipeline(build(WeightUpdater), {
        "weight": weight, "grad": grad, "multiplier": U, "fraction_bits": r,
        "rounding": [MODES[m] for m in modes], "random": random}, ["new_weight"])
    np.testing.assert_array_equal(got["new_weight"], expected)
    # The vectors move weights without always clamping, and the modes really differ.
    moved = (expected != weight) & (np.abs(expected) < 127)
    assert moved.sum() > 1000
    by_mode = expected.reshape(3, count)
    assert (by_mode[0] != by_mode[2]).sum() > 100 and (by_mode[1] != by_mode[2]).sum() > 100


def contract_weight_update(weight, grad, U, r, mode, x):
    """numerics 7.2 on unbounded Python integers (for left shifts where int64 would wrap)."""
    D = grad * U
    if r > 62:
        D, r = D >> (r - 62), 62
    if r <= 0:
        new = weight - (D << -r)
    elif mode == "stochastic":
        R = x >> (32 - r) if r <= 32 else x << (r - 32)
        new = weight - ((D + R) >> r)
    elif mode == "truncate":
        a = weight - (D >> r)
        new = a - 1 if (D % 2 ** r) and a > 0 else a
    else:
        new = weight - ((D + 2 ** (r - 1)) >> r)
    return max(-127, min(127, new))


@UNIT_BUILDS
def test_weight_updater_left_shifts_beyond_int64_follow_the_contract(build):
    cases = [(w, g, 2 ** 30, r, m) for w in (-127, 0, 126) for g in (1, -1, 2 ** 31 - 1, -2 ** 31)
             for r in (-33, -63, -64, -100, -128) for m in MODES]
    assert_weight_updates_follow_the_contract(build, cases, 0x12345678)


def assert_weight_updates_follow_the_contract(build, cases, draw):
    """Run (weight, grad, U, r, mode) cases through the unit with one random word; returns the
    contract's new weights after checking the unit's against them."""
    weight, grad, U, r, modes = (list(c) for c in zip(*cases))
    expected = [contract_weight_update(*c, draw) for c in cases]
    got = run_pipeline(build(WeightUpdater), {
        "weight": weight, "grad": grad, "multiplier": U, "fraction_bits": r,
        "rounding": [MODES[m] for m in modes], "random": [draw] * len(cases)}, ["new_weight"])
    np.testing.assert_array_equal(got["new_weight"], expected)
    return expected


@UNIT_BUILDS
def test_weight_updater_saturates_q_where_the_contract_does(build):
    """Q near and past the unit's saturation bounds (+-512), and values whose low 11 bits alone
    would wrap, for left shifts 1..10 and right shifts 0..3: the bounds are compared before the
    shift (hw/weight_updater.py, s3), so every side of them is exercised."""
    cases = []
    for r in list(range(-10, 0)) + [0, 1, 2, 3]:
        scale = 2.0 ** r
        for target in (-3000, -2049, -1500, -1025, -1024, -600, -513, -512, -511, -300, -254, 254, 300,
                       511, 512, 513, 600, 1023, 1024, 1500, 2047, 3000):
            centre = int(round(target / scale))
            for D in range(centre - 2, centre + 3):
                for w in (-127, 0, 127):
                    for mode in ("nearest", "truncate"):
                        cases.append((w, D, 1, r, mode))
    expected = assert_weight_updates_follow_the_contract(build, cases, 0)
    assert {-127, 127} <= set(expected)


# ---------------------------------------------------------------------------------------------
# Bias update (numerics 7.3)

def bias_update_cases(seed=3, count=4000):
    rng = np.random.default_rng(seed)
    bias = random_int32(rng, count)
    grad = np.maximum(random_int32(rng, count), -2 ** 31 + 1)      # |db| < 2^31
    V = random_multipliers(rng, count, small_fraction=0.05)
    product = grad * V
    # Deltas around the bias's own size, some tiny, some beyond int32 (saturating).
    shift = bit_lengths(product) - bit_lengths(bias) - rng.integers(-3, 6, count)
    wild = rng.random(count) < 0.25
    shift[wild] = rng.integers(-20, 128, wild.sum())
    shift = np.clip(np.maximum(shift, bit_lengths(product) - 61), -128, 127)
    edge = [(INT32_MAX, -1, 2 ** 30, 30), (INT32_MIN, 1, 2 ** 30, 30),
            (INT32_MAX, -(2 ** 31 - 1), 2 ** 31, 0), (INT32_MIN, 2 ** 31 - 1, 2 ** 31, 0),
            (INT32_MAX, 1, 2 ** 30, -1), (INT32_MIN, -1, 2 ** 30, -1), (0, -2 ** 31 + 1, 2 ** 31, 62),
            (0, 2 ** 31 - 1, 2 ** 31, 63), (0, -2 ** 31 + 1, 2 ** 31, 63), (0, -2 ** 31 + 1, 2 ** 31, 64),
            (5, 123, 0, -20), (5, 123, 2 ** 31, 127), (-5, -3, 2 ** 30, 31), (-5, 3, 2 ** 30, 31)]
    # Tiny p (V below the contract's 2^30) shifted left to just past the int32 range.
    for s_left in range(-34, -28):
        for b, g in ((INT32_MAX, 1), (INT32_MIN, -1), (INT32_MAX, -1), (INT32_MIN, 1), (0, 1)):
            edge.append((b, g, 1, s_left))
    for j in range(20):   # ties: p = odd * 2^(30 + j) shifted by 31 + j
        odd = int(rng.integers(-1000, 1000)) * 2 + 1
        edge.append((int(rng.integers(-1000, 1000)), odd << j, 2 ** 30, 31 + j))
    edge = np.array(edge, dtype=np.int64)
    return tuple(np.concatenate([a, edge[:, i]]) for i, a in enumerate((bias, grad, V, shift)))


@UNIT_BUILDS
def test_bias_updater_matches_golden(build):
    bias, grad, V, shift = bias_update_cases()
    expected = apply_bias_update(bias, grad, 0, MultiplierVector(V, shift)).astype(np.int64)
    got = run_pipeline(build(BiasUpdater), {"bias": bias, "grad": grad, "multiplier": V, "shift": shift},
                       ["new_bias"])
    np.testing.assert_array_equal(got["new_bias"], expected)
    assert (expected == INT32_MAX).sum() > 20 and (expected == INT32_MIN).sum() > 20
    assert ((expected != bias) & (expected > INT32_MIN) & (expected < INT32_MAX)).sum() > 1000


@UNIT_BUILDS
def test_bias_updater_left_shifts_beyond_int64_follow_the_contract(build):
    cases = [(b, g, V, s) for b in (INT32_MIN, 0, INT32_MAX) for g in (1, -1, 2 ** 31 - 1, -2 ** 31 + 1)
             for V in (2 ** 30, 2 ** 31) for s in (-2, -31, -33, -40, -128)]
    bias, grad, V, shift = (list(c) for c in zip(*cases))
    expected = [max(INT32_MIN, min(INT32_MAX, b - ((g * v) << -s))) for b, g, v, s in cases]
    got = run_pipeline(build(BiasUpdater), {"bias": bias, "grad": grad, "multiplier": V, "shift": shift},
                       ["new_bias"])
    np.testing.assert_array_equal(got["new_bias"], expected)


# ---------------------------------------------------------------------------------------------
# xorshift32 (numerics 8)

def run_xorshift(dut, script):
    """script: per cycle (load, seed, next); returns `state` after each cycle's clock edge."""
    states = []

    async def testbench(ctx):
        states.append(ctx.get(dut.state))          # after reset
        for load, seed, step in script:
            ctx.set(dut.load, load)
            ctx.set(dut.seed, seed)
            ctx.set(dut.next, step)
            await ctx.tick()
            states.append(ctx.get(dut.state))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return states


def test_xorshift32_matches_golden_for_10000_draws():
    seed = 0xC0FFEE42
    draws = 10_000
    states = run_xorshift(Xorshift32(), [(1, seed, 0)] + [(0, 0, 1)] * draws)
    assert states[0] == ZERO_SEED_REPLACEMENT
    assert states[1] == seed
    np.testing.assert_array_equal(states[2:], GoldenXorshift32(seed).draw(draws))


def test_xorshift32_seed_zero_hold_and_load_priority():
    golden = GoldenXorshift32(0).draw(6)
    script = ([(1, 0, 0)] + [(0, 0, 1)] * 3 + [(0, 0, 0)] * 2 + [(0, 0, 1)] * 3
              + [(1, 77, 1), (0, 0, 1)])
    states = run_xorshift(Xorshift32(reset_seed=5), script)
    assert states[0] == 5
    assert states[1] == ZERO_SEED_REPLACEMENT
    assert states[2:5] == list(golden[:3])
    assert states[5:7] == [golden[2]] * 2            # next low holds the draw
    assert states[7:10] == list(golden[3:6])
    assert states[10:] == [77, GoldenXorshift32(77).next()]   # load wins over next


def test_xorshift32_rejects_a_bad_reset_seed():
    with pytest.raises(ValueError, match=r"Reset seed must be an integer in \[0, 2\^32\), not -1"):
        Xorshift32(reset_seed=-1)


# ---------------------------------------------------------------------------------------------
# Gradient quantizer (numerics 5)

def gradient_tensors(seed=4):
    rng = np.random.default_rng(seed)
    tensors = [np.zeros(5, dtype=np.int64), np.array([INT32_MIN]), np.array([127, -127, 3]),
               np.array([-128, 5]), np.array([128]), np.array([255, -1]), np.array([-256, 7, 0]),
               np.array([INT32_MAX, INT32_MIN, 0, 1, -1])]
    for _ in range(40):
        bits = int(rng.integers(0, 33))
        size = int(rng.integers(1, 60))
        tensors.append(np.clip(rng.integers(-2 ** bits, 2 ** bits + 1, size), INT32_MIN, INT32_MAX))
    return tensors


def test_gradient_quantizer_halves_match_golden_quantize_gradient():
    tensors = gradient_tensors()
    values = np.concatenate(tensors)
    starts = np.cumsum([0] + [len(t) for t in tensors])[:-1]
    clear = np.zeros(len(values), dtype=np.int64)
    clear[starts] = 1
    # Two idle cycles with a bare clear between tensors 1 and 2 restart from 0 as well.
    script = [(int(c), 1, int(v)) for c, v in zip(clear, values)]
    at = starts[2]
    script[at:at] = [(1, 0, 0), (0, 0, 12345)]

    tracker = AbsMaxTracker()
    trace = []

    async def testbench(ctx):
        for clr, valid, value in script + [(0, 0, 0)] * tracker.LATENCY:
            ctx.set(tracker.clear, clr)
            ctx.set(tracker.valid, valid)
            ctx.set(tracker.value, value)
            await ctx.tick()
            trace.append((ctx.get(tracker.amax), ctx.get(tracker.shift)))

    sim = Simulator(tracker)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()

    # A reference of the register itself: a value in cycle t counts from cycle t + LATENCY.
    amax, expected = 0, []
    for clr, valid, value in script:
        amax = max(0 if clr else amax, abs(value) if valid else 0)
        expected.append(amax)
    observed = trace[tracker.LATENCY - 1:]
    assert [a for a, _ in observed[:len(expected)]] == expected
    assert [k for _, k in observed[:len(expected)]] == [max(0, bitlen(a) - 7) for a in expected]
    assert observed[at][0] == 0 and observed[at + 1][0] == 0 and observed[at + 2][0] == abs(values[at])

    # The tracker's final amax and shift of each tensor drive the narrower: together they are
    # golden quantize_gradient.
    ends = [i + (2 if i >= at else 0) for i in starts[1:] - 1] + [len(script) - 1]
    shifts = []
    for tensor, end in zip(tensors, ends):
        g, e = quantize_gradient(tensor, 0)
        final_amax, final_shift = observed[end]
        assert final_amax == int(np.abs(tensor).max())
        assert final_shift == e
        shifts.append(final_shift)
    got = run_pipeline(GradientNarrower(), {
        "value": values, "shift": np.repeat(shifts, [len(t) for t in tensors])}, ["gradient"])
    np.testing.assert_array_equal(got["gradient"],
                                  np.concatenate([quantize_gradient(t, 0)[0] for t in tensors]))


def test_gradient_narrower_matches_golden_round_shift():
    rng = np.random.default_rng(5)
    count = 4000
    value = random_int32(rng, count)
    shift = np.clip(bit_lengths(value) - rng.integers(5, 10, count), 0, 31)
    wild = rng.random(count) < 0.25
    shift[wild] = rng.integers(0, 32, wild.sum())
    # Ties: odd * 2^(k-1) at every k, and the extremes.
    k = np.arange(1, 26)
    tie_values = (rng.integers(-60, 60, len(k)) * 2 + 1) << (k - 1)
    value = np.concatenate([value, tie_values, [INT32_MIN, INT32_MAX, INT32_MIN, INT32_MAX, -1, 0]])
    shift = np.concatenate([shift, k, [25, 25, 31, 0, 0, 0]])
    expected = np.clip(round_shift(value, shift), -127, 127)
    got = run_pipeline(GradientNarrower(), {"value": value, "shift": shift}, ["gradient"])
    np.testing.assert_array_equal(got["gradient"], expected)
    assert (np.abs(expected) < 127).sum() > 1500 and (expected == -127).sum() > 50


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", [Requantizer, WeightUpdater, BiasUpdater, Xorshift32,
                                  AbsMaxTracker, GradientNarrower])
def test_converts_to_verilog(unit):
    text = verilog.convert(unit(), name=unit.__name__)
    assert f"module {unit.__name__}" in text
