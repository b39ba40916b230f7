"""Seeded random engine operations for RTL-versus-golden tests (and the cases that must fail).

`random_op_case(rng, config)` returns a one-descriptor program (plus END) with random shape,
stride, padding, zero points, lane tails, parameters and data, placed in a random layout of
the scratchpad and external memory, for every kind the compiler emits: regular, pointwise,
depthwise and strided convs with requantization and masks, average pooling, residual adds,
raw int32 outputs, and dot-product reductions. `bad_program_cases(config)` returns programs
whose descriptor `index` must stop the engine with `code`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.conv import output_size
from golden.engine import layout
from golden.engine import program as isa
from golden.engine.config import EngineConfig


@dataclass
class OpCase:
    name: str
    descriptors: list[isa.Descriptor]        # without the END
    scratchpad: np.ndarray
    external: np.ndarray
    expect_code: int = isa.OK
    expect_index: int = 0

    @property
    def program(self) -> list[isa.Descriptor]:
        return self.descriptors + [isa.Descriptor()]


def _ceil(a, b):
    return -(-a // b)


def _params(rng, channels):
    bias = rng.integers(-2 ** 20, 2 ** 20, channels)
    bias[rng.random(channels) < 0.05] = 2 ** 31 - 1        # pinned biases saturate
    mult = rng.integers(2 ** 30, 2 ** 31, channels)
    shift = rng.integers(30, 46, channels)
    return layout.param_bytes(bias, mult, shift)


def _update_row0(h: int) -> int:
    """The first input row of the update kinds' window, whose taps run along a row: padded
    above (-1), except a one-row input, whose only row would then be padding; a 1 x 1 input
    is the one-step-per-vector update worth having."""
    return 0 if h == 1 else -1


def _background(config: EngineConfig):
    """Random scratchpad and external contents, the same for every case of a configuration:
    cases differ in placement, shape and parameters, and a simulator reloads only what changed."""
    rng = np.random.default_rng(12345)
    return (rng.integers(0, 256, config.scratchpad_bytes, dtype=np.uint8),
            rng.integers(0, 256, EXTERNAL_BODY, dtype=np.uint8))


EXTERNAL_BASE = 4096              # program area below it
EXTERNAL_BODY = 32 * 1024
# A configuration small enough that hundreds of cases reload quickly, at the least external
# latency the plain scratchpad allows (the RTL tests run the pumped one at its least, 4).
CASE_CONFIG = EngineConfig(lanes=8, scratchpad_bytes=32 * 1024, external_bytes=64 * 1024,
                           external_latency_cycles=3, scratchpad_pumped=False)


def random_op_case(rng: np.random.Generator, config: EngineConfig = CASE_CONFIG, kind: str | None = None,
                   hw: tuple[int, int] | None = None) -> OpCase:
    """One random operation; `kind` and the input's `hw` (height, width) pin those choices."""
    L = config.lanes
    if config.scratchpad_bytes < 32 * 1024 or config.external_bytes < EXTERNAL_BASE + EXTERNAL_BODY:
        raise ValueError("random cases need at least 32 KiB of scratchpad and 36 KiB of external memory")
    kind = kind or rng.choice(["conv", "pointwise", "depthwise", "avgpool", "add", "raw32", "dot", "update",
                       "bias-update", "grad-scale", "grad-dot", "grad-sum", "update-list", "update-list-dw",
                       "raw32-list", "grad-sums"],
                      p=[0.08, 0.06, 0.08, 0.05, 0.06, 0.06, 0.06, 0.07, 0.07, 0.07, 0.06, 0.06, 0.06, 0.07, 0.04,
                         0.05])
    spad, ext_body = _background(config)
    spad = spad.copy()
    ext_base = EXTERNAL_BASE
    c_in = int(rng.integers(1, 3 * L))
    c_out = int(rng.integers(1, 3 * L))
    h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    h, w = hw or (h, w)
    k = int(rng.choice([1, 3, 5])) if kind == "conv" else (1 if kind == "pointwise" else 3)
    s = int(rng.choice([1, 2]))
    p = k // 2
    with_mask = bool(rng.random() < 0.5)
    region = config.scratchpad_bytes // 4
    x_addr = int(rng.integers(0, region // 2 - 2048))   # reads never overlap the outputs
    y_addr = region + int(rng.integers(0, region // 4))
    mask_addr = 2 * region + int(rng.integers(0, 1024))
    param_addr = ext_base + int(rng.integers(0, 1024))
    w_addr = ext_base + 4096 + int(rng.integers(0, 1024))
    zero_x, zero_y = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    d = isa.Descriptor(opcode=isa.MAC, epilogue=isa.REQUANT,
                       flags=isa.FLAG_B_EXTERNAL | isa.FLAG_PARAMS_EXTERNAL, param_base=param_addr,
                       zero_out=zero_y, a_zero=zero_x)
    if kind in ("conv", "pointwise", "depthwise"):
        if kind == "depthwise":
            c_out = c_in
        ho, wo = output_size(h, k, s), output_size(w, k, s)
        mask_ok = c_out % 8 == 0 or ho * wo == 1
        d.chunk_loop, d.lanes_total = 0, c_out
        d.counts = [_ceil(c_out, L), ho, wo, 1 if kind == "depthwise" else c_in, k, k]
        d.a_base, d.a_row_stride, d.a_col_stride = x_addr, w * c_in, c_in
        d.a_row0 = d.a_col0 = -p
        d.a_row_coefs, d.a_col_coefs = [0, s, 0, 0, 1, 0], [0, 0, s, 0, 0, 1]
        d.a_rows, d.a_cols = h, w
        d.b_base, d.out_base, d.out_strides = w_addr, y_addr, [L, wo * c_out, c_out]
        if kind == "depthwise":
            d.mode, d.a_strides, d.b_strides = isa.ELEMENTWISE, [L, 0, 0, 0, 0, 0], [L, 0, 0, 0, k * c_out, c_out]
        else:
            d.mode, d.a_strides = isa.BROADCAST, [0, 0, 0, 1, 0, 0]
            d.b_strides = [L, 0, 0, k * k * c_out, k * c_out, c_out]
        if with_mask and mask_ok:
            d.flags |= isa.FLAG_WRITE_MASK
            d.mask_base = mask_addr
        name = f"{kind} {c_in}->{c_out} {h}x{w} k{k} s{s}"
    elif kind == "avgpool":
        d.mode, d.flags = isa.ELEMENTWISE, isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL
        d.lanes_total, d.counts = c_in, [_ceil(c_in, L), 1, 1, 1, h, w]
        d.a_base, d.a_strides, d.a_row_stride, d.a_col_stride = x_addr, [L, 0, 0, 0, 0, 0], w * c_in, c_in
        d.a_row_coefs, d.a_col_coefs, d.a_rows, d.a_cols = [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1], h, w
        d.out_base, d.out_strides = y_addr, [L, 0, 0]
        c_out = c_in
        name = f"avgpool {c_in} {h}x{w}"
    elif kind == "add":
        c = 8 * int(rng.integers(1, 6)) if with_mask else c_in
        n = 30 - int(rng.integers(0, 3))
        d = isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE, chunk_loop=0, lanes_total=c,
                           counts=[_ceil(c, L), h * w, 1, 1, 1, 1], a_base=x_addr,
                           a_strides=[L, c, 0, 0, 0, 0], a_zero=zero_x, b_base=x_addr + region // 2,
                           b_strides=[L, c, 0, 0, 0, 0], b_zero=int(rng.integers(-128, 128)),
                           out_base=y_addr, out_strides=[L, c, 0], zero_out=zero_y,
                           add_m1=int(rng.integers(0, 2 ** 31)), add_m2=int(rng.integers(0, 2 ** 31)),
                           add_shift=n)
        if with_mask:
            d.flags |= isa.FLAG_WRITE_MASK
            d.mask_base = mask_addr
        name = f"add {c} x {h * w}"
    elif kind == "raw32":
        c_in, c_out = min(c_in, L + 4), min(c_out, L + 4)
        # weight-gradient shaped: outputs (ci, u, v) x lanes of c, reduced over pixels
        ho, wo = output_size(h, 3, s), output_size(w, 3, s)
        d.epilogue, d.mode, d.flags = isa.RAW32, isa.BROADCAST, 0
        d.chunk_loop, d.lanes_total = 0, c_out
        d.counts = [_ceil(c_out, L), c_in, 9, 1, ho, wo]
        d.a_base, d.a_row_stride, d.a_col_stride = x_addr, w * c_in, c_in
        d.a_strides = [0, 1, 0, 0, 0, 0]
        d.a_row0 = d.a_col0 = -1
        # u = index1 // 3 is not linear, so the 3x3 window is flattened with row coefficient on
        # loop 2 only for a 1-D kernel: use 9 taps along a row instead
        d.a_row_coefs, d.a_col_coefs = [0, 0, 0, 0, s, 0], [0, 0, 1, 0, 0, s]
        d.a_rows, d.a_cols = h, w
        d.b_base, d.b_strides = region // 2 + x_addr % 1024, [L, 0, 0, 0, wo * c_out, c_out]
        d.out_base, d.out_strides = y_addr, [4 * L, 9 * c_out * 4, c_out * 4]
        name = f"raw32 {c_in}x{c_out} {h}x{w} s{s}"
    elif kind == "update":
        # fused weight gradient + update of a k x k conv over `selected` input channels
        ho, wo = output_size(h, 3, s), output_size(w, 3, s)
        selected = int(rng.integers(1, c_in + 1))
        rounding = int(rng.integers(0, 3))
        d.epilogue, d.mode = isa.UPDATE, isa.BROADCAST
        d.flags = isa.FLAG_PARAMS_EXTERNAL | (rounding << isa.ROUNDING_SHIFT)
        d.chunk_loop, d.lanes_total = 2, c_out
        d.counts = [selected, 9, _ceil(c_out, L), 1, ho, wo]
        d.a_base, d.a_row_stride, d.a_col_stride = x_addr, w * selected, selected
        d.a_strides = [1, 0, 0, 0, 0, 0]
        d.a_row0, d.a_col0 = _update_row0(h), -1
        d.a_row_coefs, d.a_col_coefs = [0, 0, 0, 0, s, 0], [0, 1, 0, 0, 0, s]
        d.a_rows, d.a_cols = h, w
        d.b_base, d.b_strides = region // 2 + x_addr % 1024, [0, 0, L, 0, wo * c_out, c_out]
        d.out_base, d.out_strides = y_addr, [9 * c_out, c_out, L]
        d.exp_addr, d.prng_addr = mask_addr + 64, mask_addr + 128
        name = f"update {selected}/{c_in}x{c_out} {h}x{w} s{s} rounding {rounding}"
    elif kind == "bias-update":
        ho, wo = h, w
        d.epilogue, d.mode = isa.BIAS_UPDATE, isa.ELEMENTWISE
        d.flags = isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL
        d.lanes_total, d.counts = c_out, [_ceil(c_out, L), 1, 1, 1, h, w]
        d.a_base, d.a_strides, d.a_row_stride, d.a_col_stride = x_addr, [L, 0, 0, 0, 0, 0], w * c_out, c_out
        d.a_zero = 0
        d.a_row_coefs, d.a_col_coefs, d.a_rows, d.a_cols = [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1], h, w
        d.out_base, d.out_strides = y_addr, [4 * L, 0, 0]
        d.exp_addr = mask_addr + 64
        name = f"bias-update {c_out} {h}x{w}"
    elif kind == "grad-scale":
        # gradient quantizer over an int8 tensor, optionally times a channel factor (input-grad
        # prescale) and broadcast over positions (average-pool backward), with masks
        c = 8 * int(rng.integers(1, 4)) if with_mask else c_in
        broadcast = bool(rng.random() < 0.3)
        d.epilogue, d.mode = isa.GRADIENT, isa.ELEMENTWISE
        d.flags = isa.FLAG_B_ONES | (isa.FLAG_SCALE | isa.FLAG_PARAMS_EXTERNAL if rng.random() < 0.7 else 0)
        d.lanes_total, d.counts = c, [_ceil(c, L), h * w, 1, 1, 1, 1]
        d.a_base, d.a_strides = x_addr, [L, 0 if broadcast else c, 0, 0, 0, 0]
        d.a_zero = int(rng.integers(-128, 128)) if rng.random() < 0.3 else 0
        d.out_base, d.out_strides = y_addr, [L, c, 0]
        c_out = c
        name = f"grad-scale {c} x {h * w}{' broadcast' if broadcast else ''}"
    elif kind == "grad-dot":
        # input gradient of a pointwise conv straight to int8: dot over output channels
        d.epilogue, d.mode, d.flags = isa.GRADIENT, isa.DOT, isa.FLAG_B_EXTERNAL
        d.chunk_loop, d.lanes_total = 3, c_out
        d.counts = [h * w, c_in, 1, _ceil(c_out, L), 1, 1]
        d.a_base, d.a_strides, d.a_zero = x_addr, [c_out, 0, 0, L, 0, 0], 0
        d.b_base, d.b_strides = w_addr, [0, c_out, 0, L, 0, 0]
        d.out_base, d.out_strides = y_addr, [c_in, 1, 0]
        name = f"grad-dot {c_out}->{c_in} x {h * w}"
    elif kind == "grad-sums":
        # the gradient of int32 sums (a pointwise input gradient's, written by one dot pass):
        # each vector loads L of them from 4 rows; here the background's random words
        c = L * int(rng.integers(1, 3))
        d.epilogue, d.mode, d.flags = isa.GRADIENT, isa.SUMS, isa.FLAG_B_ONES
        d.chunk_loop, d.lanes_total = 1, c
        d.counts = [h * w, c // L, 1, 1, 1, isa.SUMS_STEPS]
        d.a_base, d.a_strides, d.a_zero = x_addr, [4 * c, 4 * L, 0, 0, 0, L], 0
        d.out_base, d.out_strides = y_addr, [c, L, 0]
        c_out = c
        name = f"grad-sums {c} x {h * w}"
    elif kind == "grad-sum":
        c = 8 * int(rng.integers(1, 4)) if with_mask else c_in
        d = isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT, chunk_loop=0,
                           lanes_total=c, counts=[_ceil(c, L), h * w, 1, 1, 1, 1], a_base=x_addr,
                           a_strides=[L, c, 0, 0, 0, 0], b_base=x_addr + region // 2,
                           b_strides=[L, c, 0, 0, 0, 0], out_base=y_addr, out_strides=[L, c, 0])
        name = f"grad-sum {c} x {h * w}"
    elif kind in ("update-list", "update-list-dw", "raw32-list"):
        # weight gradient + update (or raw) over a listed subset of input channels: the list is
        # data in the scratchpad, the trip count of the list loop is the subset's size
        ho, wo = output_size(h, 3, s), output_size(w, 3, s)
        rounding = int(rng.integers(0, 3))
        c = c_in if kind != "update-list-dw" else c_out
        selected = int(rng.integers(1, c + 1))
        entries = np.sort(rng.choice(c, selected, replace=False))
        if rng.random() < 0.2:
            # lists need not be sorted; only a raw output may name a channel twice (an update
            # would read a weight its own earlier output is still writing: docs/engine.md)
            entries = rng.integers(0, c, selected) if kind == "raw32-list" else rng.permutation(c)[:selected]
        d.list_addr, d.list_limit = mask_addr + 256, c
        spad[d.list_addr:d.list_addr + 2 * selected] = entries.astype("<u2").view(np.uint8)
        d.epilogue = isa.RAW32 if kind == "raw32-list" else isa.UPDATE
        d.flags = isa.FLAG_PARAMS_EXTERNAL | (rounding << isa.ROUNDING_SHIFT)
        d.a_row_stride, d.a_col_stride = w * c, c
        d.a_row0, d.a_col0 = _update_row0(h), -1
        d.a_rows, d.a_cols = h, w
        d.exp_addr, d.prng_addr = mask_addr + 64, mask_addr + 128
        if kind == "update-list-dw":
            # list-chunk mode: one lane, outputs (u, v, listed channel)
            d.mode, d.chunk_loop, d.lanes_total = isa.ELEMENTWISE, 2, 1
            d.counts = [3, 3, selected, 1, ho, wo]
            d.a_base, d.a_strides = x_addr, [0, 0, 1, 0, 0, 0]
            d.a_row_coefs, d.a_col_coefs = [1, 0, 0, 0, s, 0], [0, 1, 0, 0, 0, s]
            d.b_base, d.b_strides = region // 2 + x_addr % 1024, [0, 0, 1, 0, wo * c, c]
            d.out_base, d.out_strides = y_addr, [3 * c, c, 1]
            d.flags |= 3 << isa.LIST_SHIFT
        else:
            d.mode, d.chunk_loop, d.lanes_total = isa.BROADCAST, 1, c_out
            d.counts = [selected, _ceil(c_out, L), 1, 1, ho, wo]
            d.a_base, d.a_strides = x_addr, [1, 0, 0, 0, 0, 0]
            d.a_row_coefs, d.a_col_coefs = [0, 0, 0, 0, s, 0], [0, 0, 0, 0, 0, s]
            d.b_base, d.b_strides = region // 2 + x_addr % 1024, [0, L, 0, 0, wo * c_out, c_out]
            element = 4 if kind == "raw32-list" else 1
            d.out_base, d.out_strides = y_addr, [c_out * element, L * element, 0]
            d.flags |= 1 << isa.LIST_SHIFT
        if kind == "raw32-list":
            d.flags &= ~isa.FLAG_PARAMS_EXTERNAL
        # which operands go through the list: all (as a gather-free update), or a random subset
        d.flags |= isa.LIST_ALL if rng.random() < 0.5 else int(rng.integers(0, 8)) << 11
        name = f"{kind} {selected}/{c}x{c_out} {h}x{w} s{s} rounding {rounding}"
    else:   # dot: input-gradient shaped, lanes over the reduced channels
        d.epilogue, d.mode, d.flags = isa.RAW32, isa.DOT, isa.FLAG_B_EXTERNAL
        d.chunk_loop, d.lanes_total = 3, c_out
        d.counts = [h, w, c_in, _ceil(c_out, L), 3, 3]
        d.a_base, d.a_row_stride, d.a_col_stride = x_addr, w * c_out, c_out
        d.a_strides, d.a_zero = [0, 0, 0, L, 0, 0], 0
        d.a_row0 = d.a_col0 = 1
        d.a_row_coefs, d.a_col_coefs = [1, 0, 0, 0, -1, 0], [0, 1, 0, 0, 0, -1]
        d.a_rows, d.a_cols = h, w
        d.b_base, d.b_strides = w_addr, [0, 0, 9 * c_out, L, 3 * c_out, c_out]
        d.out_base, d.out_strides = y_addr, [w * c_in * 4, c_in * 4, 4]
        name = f"dot {c_out}->{c_in} {h}x{w}"
    ext = np.zeros(ext_base + ext_body.size, np.uint8)
    ext[ext_base:] = ext_body
    ext[param_addr:param_addr + 9 * isa.param_count(d)] = _params(rng, isa.param_count(d))
    if kind.startswith("grad"):
        if with_mask:
            d.flags |= isa.FLAG_MASK_IN
            d.mask_base = mask_addr
        d.exp_addr, d.exp2_addr, d.exp_out_addr = 3 * region, 3 * region + 4, 3 * region + 8
        d.exp_offset = int(rng.integers(-20, 5))
        e1 = int(rng.integers(-40, 10))
        e2 = e1 + int(rng.choice([0, 1, -3, 7, 23, 24, -26, 40]))
        spad[d.exp_addr:d.exp_addr + 8] = np.array([e1, e2], "<i4").view(np.uint8)
        name += f"{' masked' if with_mask else ''} e {e1},{e2}"
    if kind in ("update", "bias-update", "update-list", "update-list-dw"):
        # e_y sets the updates' right shift (numerics 7.1): in this range most lanes change,
        # some saturate and a few round to nothing
        spad[d.exp_addr:d.exp_addr + 4] = np.array([rng.integers(-10, 40)], "<i4").view(np.uint8)
        if kind != "bias-update":
            spad[d.prng_addr:d.prng_addr + 4] = np.array([rng.integers(0, 2 ** 32)], "<u4").view(np.uint8)
    words = isa.encode([d, isa.Descriptor()])
    ext[:words.size * 4] = words.view(np.uint8)
    return OpCase(name, [d], spad, ext)


def tight_cases(config: EngineConfig = CASE_CONFIG) -> list[OpCase]:
    """Operations whose output vectors come as close together as the writer allows (a 1 x 1
    input: one reduction step per vector), the timing the epilogues' pipelines must keep up with;
    then weight updates of 1 to 4 steps per vector around the shared updaters' pause
    (`EngineConfig.weight_update_cycles`)."""
    rng = np.random.default_rng(11)
    closest = [random_op_case(rng, config, kind=kind, hw=(1, 1))
               for kind in ("bias-update", "bias-update", "update", "raw32", "pointwise", "add")]
    for case in (c for c in closest if c.name.startswith("bias-update")):
        # a one-pixel bias gradient is one int8 value: e_y = 20 leaves every bias a shift of
        # 10-25 (n[c] is 30-45), so each lane's bias changes and the writes are seen
        d = case.descriptors[0]
        case.scratchpad[d.exp_addr:d.exp_addr + 4] = np.array([20], "<i4").view(np.uint8)
    short = [random_op_case(rng, config, kind=kind, hw=hw)
             for kind in ("update", "update-list", "update-list-dw") for hw in ((1, 1), (1, 2), (1, 3), (2, 2))]
    return closest + short


def fraction_sweep_cases(config: EngineConfig = CASE_CONFIG, per_kind: int = 4, exponent_step: int = 9) -> list[OpCase]:
    """Updates whose new values do not saturate, at every form of numerics 7.2's rounding: the
    random cases' multipliers (about 2^30) clip nearly every new weight to +-127 and so hide
    the rounding. Each case takes multipliers below 2^12, and copies of it take the gradient's
    exponent e_y from below the smallest shift n - 70 to above the largest, so the fraction
    bits r = n - e_y run from negative (a left shift) through both forms of the stochastic draw
    (r <= 32 and r > 32) to past the 62-bit cap."""
    rng = np.random.default_rng(13)
    cases = []
    for kind in ("update", "update-list", "bias-update"):
        for _ in range(per_kind):
            case = random_op_case(rng, config, kind=kind)
            d = case.descriptors[0]
            assert d.flags & isa.FLAG_PARAMS_EXTERNAL
            channels, external = isa.param_count(d), case.external.copy()
            mult_at = d.param_base + 4 * channels
            external[mult_at:mult_at + 4 * channels] = rng.integers(1, 1 << 12, channels).astype("<u4").view(np.uint8)
            shifts = external[d.param_base + 8 * channels:d.param_base + 9 * channels].astype(int) & 63
            for e_y in range(int(shifts.min()) - 70, int(shifts.max()) + 12, exponent_step):
                scratchpad = case.scratchpad.copy()
                scratchpad[d.exp_addr:d.exp_addr + 4] = np.array([e_y], "<i4").view(np.uint8)
                cases.append(OpCase(f"{case.name}, small multipliers, e_y {e_y}", case.descriptors, scratchpad,
                                    external))
    return cases


def bad_program_cases(config: EngineConfig) -> list[OpCase]:
    """One case per error code: a good descriptor followed by a bad one (index 1)."""
    rng = np.random.default_rng(7)
    cases = []
    good = random_op_case(np.random.default_rng(3), config)
    while good.descriptors[0].opcode != isa.MAC or good.descriptors[0].epilogue != isa.REQUANT:
        good = random_op_case(rng, config)
    base = good.descriptors[0]
    spad = config.scratchpad_bytes

    def variant(name, code, **changes):
        bad = isa.with_fields(base, **changes)
        assert isa.check(bad, config) == code, (name, isa.check(bad, config))
        program = [base, bad]
        ext = good.external.copy()
        words = isa.encode(program + [isa.Descriptor()])
        ext[:words.size * 4] = words.view(np.uint8)
        cases.append(OpCase(name, program, good.scratchpad.copy(), ext, code, 1))

    variant("unknown opcode", isa.ERR_OPCODE, opcode=9)
    variant("zero trip count", isa.ERR_SHAPE, counts=[0] + base.counts[1:])
    variant("unknown mode", isa.ERR_SHAPE, mode=4)
    variant("sums without the gradient epilogue", isa.ERR_SHAPE, mode=isa.SUMS)
    variant("empty lane group", isa.ERR_SHAPE, lanes_total=1, counts=[2] + base.counts[1:])
    variant("A past the scratchpad", isa.ERR_A_RANGE, a_base=spad - 2)
    variant("A below zero", isa.ERR_A_RANGE, a_base=-5000)
    variant("B past external", isa.ERR_B_RANGE, b_base=config.external_bytes - 4)
    variant("output past the scratchpad", isa.ERR_OUT_RANGE, out_base=spad - 3)
    variant("parameters past external", isa.ERR_PARAM_RANGE, param_base=config.external_bytes - 16)
    # a channel list entry at or above list_limit: found while the list loads, nothing written
    listed = random_op_case(np.random.default_rng(11), config)
    while not listed.name.startswith("update-list "):
        listed = random_op_case(rng, config)
    d = listed.descriptors[0]
    scratchpad = listed.scratchpad.copy()
    entries = scratchpad[d.list_addr:d.list_addr + 2 * d.counts[0]].view("<u2")
    d.flags |= isa.LIST_ALL
    entries[-1] = d.list_limit
    program = [base, d]
    ext = listed.external.copy()
    words = isa.encode(program + [isa.Descriptor()])
    ext[:words.size * 4] = words.view(np.uint8)
    ext[good.descriptors[0].param_base:good.descriptors[0].param_base + 9 * base.lanes_total] = \
        good.external[base.param_base:base.param_base + 9 * base.lanes_total]
    cases.append(OpCase("channel list entry past its limit", program, scratchpad, ext, isa.ERR_LIST_ENTRY, 1))
    return cases
