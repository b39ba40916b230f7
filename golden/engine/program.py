"""Engine programs: descriptors, their binary encoding, and the static checks the engine makes.

A program is a list of descriptors; each is DESCRIPTOR_WORDS little-endian 32-bit words, one
field per word (docs/engine.md, "Program format", is the normative table). The engine reads a
descriptor, checks it (`check`) before touching memory, and runs it; a failed check stops the
engine with (error code, descriptor index) and nothing of that descriptor is written.

This module is the one place that knows the encoding: the compiler builds `Descriptor`s, the
golden executor and the RTL testbench use `encode`/`decode`, and the RTL's decoder is generated
from FIELDS, so field positions are never restated by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from .config import EngineConfig

DESCRIPTOR_WORDS = 53
LOOPS = 6                 # loops 0..2 produce outputs, loops 3..5 are reduced
OUTPUT_LOOPS = 3

# Opcodes
END, MAC, ADD = 0, 1, 2
OPCODES = {END: "end", MAC: "mac", ADD: "add"}
# MAC modes
BROADCAST, ELEMENTWISE, DOT, SUMS = 0, 1, 2, 3
MODES = {BROADCAST: "broadcast", ELEMENTWISE: "elementwise", DOT: "dot", SUMS: "sums"}
SUMS_STEPS = 4            # SUMS: L int32 sums are 4 rows of L bytes, one row a step
# Epilogues
REQUANT, RAW32, UPDATE, BIAS_UPDATE, GRADIENT = 0, 1, 2, 3, 4
EPILOGUES = {REQUANT: "requant", RAW32: "raw32", UPDATE: "weight update", BIAS_UPDATE: "bias update",
             GRADIENT: "gradient"}
UPDATES = (UPDATE, BIAS_UPDATE)
# Weight rounding of UPDATE (flags bits 4-5), numerics 7.2
ROUND_STOCHASTIC, ROUND_TRUNCATE, ROUND_NEAREST = 0, 1, 2
ROUNDING_CODES = {"stochastic": ROUND_STOCHASTIC, "truncate": ROUND_TRUNCATE, "nearest": ROUND_NEAREST}
ROUNDING_SHIFT = 4
# Flags
FLAG_B_EXTERNAL = 1 << 0     # B operand read from external memory (else scratchpad)
FLAG_B_ONES = 1 << 1         # B operand is all ones (no reads): sums for average pooling
FLAG_WRITE_MASK = 1 << 2     # write the clamp mask bits of REQUANT / ADD outputs
FLAG_PARAMS_EXTERNAL = 1 << 3  # per-channel parameter table in external memory
FLAG_SCALE = 1 << 6          # GRADIENT (MAC, not dot): multiply by the channel factor M[c] (low 16 bits)
FLAG_MASK_IN = 1 << 7        # GRADIENT: multiply each output by its bit of the mask at mask_base
LIST_SHIFT = 8               # flags bits 8-10: 1 + the output loop whose index goes through the channel list
FLAG_LIST_A = 1 << 11        # the list applies to A's address ...
FLAG_LIST_B = 1 << 12        # ... to B's ...
FLAG_LIST_OUT = 1 << 13      # ... to the output's (an operand without its bit uses the index itself)
LIST_ALL = FLAG_LIST_A | FLAG_LIST_B | FLAG_LIST_OUT
KNOWN_FLAGS = (FLAG_B_EXTERNAL | FLAG_B_ONES | FLAG_WRITE_MASK | FLAG_PARAMS_EXTERNAL | (3 << ROUNDING_SHIFT)
               | FLAG_SCALE | FLAG_MASK_IN | (7 << LIST_SHIFT) | LIST_ALL)

# Error codes (the engine's error_code register)
OK = 0
ERR_OPCODE = 1          # unknown opcode
ERR_SHAPE = 2           # a field the engine cannot run (count, lanes, mode, epilogue, flags...)
ERR_A_RANGE = 3         # operand A would leave the scratchpad
ERR_B_RANGE = 4         # operand B would leave its memory
ERR_OUT_RANGE = 5       # output or mask would leave the scratchpad
ERR_PARAM_RANGE = 6     # parameter table would leave its memory
ERR_PROGRAM_RANGE = 7   # the program runs past the external window without an END
ERR_LIST_ENTRY = 8      # a channel list entry is not below list_limit (found while loading the list)
ERROR_NAMES = {OK: "ok", ERR_OPCODE: "unknown opcode", ERR_SHAPE: "unsupported shape or field",
               ERR_A_RANGE: "operand A out of range", ERR_B_RANGE: "operand B out of range",
               ERR_OUT_RANGE: "output out of range", ERR_PARAM_RANGE: "parameter table out of range",
               ERR_PROGRAM_RANGE: "program out of range", ERR_LIST_ENTRY: "channel list entry out of range"}

COEF_BITS = 4             # row/col coefficients: signed 4-bit, packed six to a word
PARAM_BYTES_PER_CHANNEL = 9   # bias int32, multiplier uint32, shift uint8 (three arrays)


def _six(value=0):
    return field(default_factory=lambda: [value] * LOOPS)


@dataclass
class Descriptor:
    """One engine operation. Field order here is the word order of the encoding."""
    opcode: int = END
    mode: int = BROADCAST
    epilogue: int = REQUANT
    flags: int = 0
    chunk_loop: int = 0          # the loop whose index selects a group of `lanes` channels
    lanes_total: int = 1         # channels spread over the lanes (last group may be partial)
    counts: list = _six(1)       # trip counts of loops 0..5 (all >= 1)
    a_base: int = 0
    a_strides: list = _six(0)
    a_row_stride: int = 0
    a_col_stride: int = 0
    a_zero: int = 0
    a_row0: int = 0
    a_col0: int = 0
    a_row_coefs: list = _six(0)  # row = a_row0 + sum coef[k] * index[k]
    a_col_coefs: list = _six(0)
    a_rows: int = 1              # A is read only where 0 <= row < a_rows and 0 <= col < a_cols
    a_cols: int = 1
    b_base: int = 0
    b_strides: list = _six(0)
    b_zero: int = 0              # ADD only
    out_base: int = 0
    out_strides: list = field(default_factory=lambda: [0] * OUTPUT_LOOPS)
    mask_base: int = 0           # mask bit i of the output element at out_base + i
    param_base: int = 0
    zero_out: int = 0
    add_m1: int = 0              # ADD: (M1, M2, n) of numerics 4.3
    add_m2: int = 0
    add_shift: int = 0
    exp_addr: int = 0            # UPDATE, BIAS_UPDATE: int32 exponent e_y of the gradient
    prng_addr: int = 0           # UPDATE: uint32 state of the `sr` xorshift32 stream
    exp_offset: int = 0          # GRADIENT (MAC): e_A = word[exp_addr] + exp_offset
    exp_out_addr: int = 0        # GRADIENT: where the result's exponent e = e_A + k is written
    exp2_addr: int = 0           # GRADIENT (ADD): exponent of the B input (A's is at exp_addr)
    list_addr: int = 0           # channel list (uint16 entries, one per index of the list loop)
    list_limit: int = 1          # every list entry must be below this (the tensor's channels)

    def describe(self) -> str:
        op = OPCODES.get(self.opcode, f"opcode {self.opcode}")
        if self.opcode == MAC:
            return f"{op} {MODES.get(self.mode, self.mode)} -> {EPILOGUES.get(self.epilogue, self.epilogue)}"
        return op


# (name, number of words) in encoding order
FIELDS: list[tuple[str, int]] = []
for _f in fields(Descriptor):
    if _f.name in ("a_row_coefs", "a_col_coefs"):
        FIELDS.append((_f.name, 1))
    elif _f.name in ("counts", "a_strides", "b_strides"):
        FIELDS.append((_f.name, LOOPS))
    elif _f.name == "out_strides":
        FIELDS.append((_f.name, OUTPUT_LOOPS))
    else:
        FIELDS.append((_f.name, 1))
FIELD_OFFSETS = {}
_offset = 0
for _name, _n in FIELDS:
    FIELD_OFFSETS[_name] = _offset
    _offset += _n
assert _offset <= DESCRIPTOR_WORDS


def _pack_coefs(coefs) -> int:
    word = 0
    for k, c in enumerate(coefs):
        if not -(1 << (COEF_BITS - 1)) <= c < (1 << (COEF_BITS - 1)):
            raise ValueError(f"row/col coefficient {c} does not fit {COEF_BITS} signed bits")
        word |= (c & ((1 << COEF_BITS) - 1)) << (COEF_BITS * k)
    return word


def _unpack_coefs(word: int) -> list[int]:
    out = []
    for k in range(LOOPS):
        c = (word >> (COEF_BITS * k)) & ((1 << COEF_BITS) - 1)
        out.append(c - (1 << COEF_BITS) if c >= 1 << (COEF_BITS - 1) else c)
    return out


def encode(program: list[Descriptor]) -> np.ndarray:
    """Descriptors -> uint32 words (DESCRIPTOR_WORDS each)."""
    words = np.zeros((len(program), DESCRIPTOR_WORDS), dtype=np.int64)
    for i, d in enumerate(program):
        for name, n in FIELDS:
            value = getattr(d, name)
            at = FIELD_OFFSETS[name]
            if name in ("a_row_coefs", "a_col_coefs"):
                words[i, at] = _pack_coefs(value)
            elif n > 1:
                words[i, at:at + n] = value
            else:
                words[i, at] = value
    if np.any(words < -2 ** 31) or np.any(words >= 2 ** 32):
        raise ValueError("a descriptor field does not fit 32 bits")
    return (words & 0xFFFFFFFF).astype(np.uint32).ravel()


def _signed(word: int) -> int:
    word = int(word) & 0xFFFFFFFF
    return word - (1 << 32) if word >= 1 << 31 else word


def decode_one(words) -> Descriptor:
    d = Descriptor()
    for name, n in FIELDS:
        at = FIELD_OFFSETS[name]
        if name in ("a_row_coefs", "a_col_coefs"):
            setattr(d, name, _unpack_coefs(int(words[at])))
        elif n > 1:
            setattr(d, name, [_signed(w) for w in words[at:at + n]])
        else:
            setattr(d, name, _signed(words[at]))
    return d


def decode(words: np.ndarray) -> list[Descriptor]:
    words = np.asarray(words, dtype=np.uint32).reshape(-1, DESCRIPTOR_WORDS)
    return [decode_one(w) for w in words]


def active_lanes(d: Descriptor, config: EngineConfig, chunk_index: int) -> int:
    return min(config.lanes, d.lanes_total - config.lanes * chunk_index)


def _extent(base: int, strides, counts) -> tuple[int, int]:
    """(lowest, highest) of base + sum stride[k] * i[k] over the loop box."""
    lo = hi = base
    for s, n in zip(strides, counts):
        span = s * (n - 1)
        lo += min(span, 0)
        hi += max(span, 0)
    return lo, hi


def lane_span(d: Descriptor, config: EngineConfig) -> int:
    return min(config.lanes, d.lanes_total)


def check(d: Descriptor, config: EngineConfig) -> int:
    """The static checks of docs/engine.md ("Checks"), in their order; returns an error code.

    Range checks are conservative in one documented way: a vector operand is taken to span
    min(lanes, lanes_total) bytes at every position (the compiler leaves that slack).
    """
    if d.opcode not in (MAC, ADD):
        return ERR_OPCODE
    L = config.lanes
    if any(n < 1 or n > 65535 for n in d.counts) or not 1 <= d.lanes_total <= 65535:
        return ERR_SHAPE
    if d.flags & ~KNOWN_FLAGS or not 0 <= d.chunk_loop < LOOPS:
        return ERR_SHAPE
    looped = list_loop(d)
    if looped is not None:
        if d.opcode != MAC or d.epilogue == GRADIENT or looped >= OUTPUT_LOOPS or d.a_row_coefs[looped] \
                or d.a_col_coefs[looped] or not 1 <= d.list_limit <= 65535 or d.list_limit > config.param_channels \
                or d.counts[looped] > config.param_channels:
            return ERR_SHAPE        # a list indexes an output loop of a one-pass MAC, without row/col terms
        if looped == d.chunk_loop and not (d.epilogue == UPDATE and d.mode == ELEMENTWISE
                                            and d.lanes_total == 1):
            return ERR_SHAPE        # list-chunk mode: one lane, weight updates only
    if not list_chunk(d) and (-(d.counts[d.chunk_loop] - 1) * L + d.lanes_total < 1 or
                              (d.counts[d.chunk_loop] - 1) * L >= d.lanes_total):
        return ERR_SHAPE            # every chunk must have at least one active lane
    if d.opcode == MAC:
        if d.mode not in MODES or d.epilogue not in EPILOGUES:
            return ERR_SHAPE
        if d.mode == DOT and (d.chunk_loop < OUTPUT_LOOPS or d.epilogue not in (RAW32, GRADIENT)
                              or d.flags & FLAG_SCALE):
            return ERR_SHAPE        # dot reduces over the lanes: its chunk loop is a reduction loop
        if d.mode != DOT and d.chunk_loop >= OUTPUT_LOOPS:
            return ERR_SHAPE
        if d.mode == SUMS and (d.epilogue != GRADIENT or not d.flags & FLAG_B_ONES or d.flags & FLAG_SCALE
                               or d.a_zero or list(d.counts[OUTPUT_LOOPS:]) != [1, 1, SUMS_STEPS]
                               or d.lanes_total % L):
            return ERR_SHAPE        # sums: whole rows of int32 into the gradient quantizer, loop 5 over the 4 rows
        if d.epilogue == REQUANT and not (-128 <= d.zero_out <= 127
                                          and d.lanes_total <= config.param_channels):
            return ERR_SHAPE
        if d.epilogue in UPDATES and (d.mode == DOT or d.lanes_total > config.param_channels
                                      or (d.flags >> ROUNDING_SHIFT) & 3 == 3):
            return ERR_SHAPE
        if d.epilogue != REQUANT and d.flags & FLAG_WRITE_MASK:
            return ERR_SHAPE
        if d.epilogue != GRADIENT and d.flags & (FLAG_SCALE | FLAG_MASK_IN):
            return ERR_SHAPE
        if d.flags & FLAG_SCALE and d.lanes_total > config.param_channels:
            return ERR_SHAPE
        if not (1 <= d.a_rows <= 65535 and 1 <= d.a_cols <= 65535 and -128 <= d.a_zero <= 127):
            return ERR_SHAPE
    else:  # ADD: vectors over the channels (loop 0) at every position of loops 1-2
        if d.mode != ELEMENTWISE or d.chunk_loop != 0 or any(n != 1 for n in d.counts[OUTPUT_LOOPS:]):
            return ERR_SHAPE
        if d.epilogue not in (REQUANT, GRADIENT):
            return ERR_SHAPE        # REQUANT: residual add (numerics 4.3); GRADIENT: gradient sum
        if not (-128 <= d.a_zero <= 127 and -128 <= d.b_zero <= 127 and -128 <= d.zero_out <= 127):
            return ERR_SHAPE
        if d.epilogue == REQUANT and not (0 <= d.add_m1 <= 2 ** 31 and 0 <= d.add_m2 <= 2 ** 31
                                          and 1 <= d.add_shift <= 62):
            return ERR_SHAPE
        if d.epilogue == GRADIENT and (d.flags & (FLAG_WRITE_MASK | FLAG_SCALE) or d.a_zero or d.b_zero):
            return ERR_SHAPE        # gradients have no zero point
        if d.epilogue != GRADIENT and d.flags & (FLAG_SCALE | FLAG_MASK_IN):
            return ERR_SHAPE
        if d.flags & (FLAG_B_EXTERNAL | FLAG_B_ONES | FLAG_PARAMS_EXTERNAL):
            return ERR_SHAPE
    scalar_out = d.opcode == MAC and d.mode == DOT
    if d.flags & (FLAG_WRITE_MASK | FLAG_MASK_IN) and (
            d.mask_base < 0 or (not scalar_out and (L % 8 or any(s % 8 for s, n in zip(d.out_strides, d.counts)
                                                                 if n > 1)))):
        return ERR_SHAPE            # mask vectors start on a byte boundary of the bitmap
    span = lane_span(d, config)
    spad = config.scratchpad_bytes
    a_vector = d.opcode == ADD or d.mode != BROADCAST
    # a listed operand's list loop reaches entry list_limit - 1, whatever its trip count
    def spans(flag):
        return [d.list_limit if k == looped and d.flags & flag else n for k, n in enumerate(d.counts)]
    a_lo, a_hi = _extent(d.a_base, d.a_strides + [d.a_row_stride, d.a_col_stride],
                         spans(FLAG_LIST_A) + [d.a_rows, d.a_cols])
    if a_lo < 0 or a_hi + (span - 1 if a_vector else 0) >= spad:
        return ERR_A_RANGE
    if not d.flags & FLAG_B_ONES:
        b_size = config.external_bytes if d.flags & FLAG_B_EXTERNAL else spad
        b_lo, b_hi = _extent(d.b_base, d.b_strides, spans(FLAG_LIST_B))
        if b_lo < 0 or b_hi + span - 1 >= b_size:
            return ERR_B_RANGE
    element_bytes = 4 if d.opcode == MAC and d.epilogue in (RAW32, BIAS_UPDATE) else 1
    out_span = element_bytes * (1 if d.opcode == MAC and d.mode == DOT else span)
    o_lo, o_hi = _extent(d.out_base, d.out_strides, spans(FLAG_LIST_OUT)[:OUTPUT_LOOPS])
    if o_lo < 0 or o_hi + out_span - 1 >= spad:
        return ERR_OUT_RANGE
    if d.flags & (FLAG_WRITE_MASK | FLAG_MASK_IN):
        if d.mask_base + (o_hi - d.out_base + out_span + 7) // 8 - 1 >= spad:
            return ERR_OUT_RANGE
    if d.opcode == MAC and needs_params(d):
        p_size = config.external_bytes if d.flags & FLAG_PARAMS_EXTERNAL else spad
        if d.param_base < 0 or d.param_base + PARAM_BYTES_PER_CHANNEL * param_count(d) > p_size:
            return ERR_PARAM_RANGE
    if d.opcode == MAC and d.epilogue in UPDATES:
        if not (0 <= d.exp_addr <= spad - 4 and 0 <= d.prng_addr <= spad - 4):
            return ERR_PARAM_RANGE
    if d.epilogue == GRADIENT:
        words = [d.exp_addr, d.exp_out_addr] + ([d.exp2_addr] if d.opcode == ADD else [])
        if not all(0 <= w <= spad - 4 for w in words):
            return ERR_PARAM_RANGE
    if looped is not None and not (0 <= d.list_addr and d.list_addr + 2 * d.counts[looped] <= spad):
        return ERR_PARAM_RANGE
    return OK


def list_loop(d: Descriptor) -> int | None:
    """The output loop whose index is replaced by list[index] in the addresses, or None."""
    code = (d.flags >> LIST_SHIFT) & 7
    return code - 1 if code else None


def list_chunk(d: Descriptor) -> bool:
    """Single-lane gather mode: the list loop is the chunk loop, its entries are channels."""
    return list_loop(d) is not None and list_loop(d) == d.chunk_loop


def param_count(d: Descriptor) -> int:
    """Channels of the parameter table the engine loads: in list-chunk mode every channel a
    list entry may name, else the lanes' channels."""
    return d.list_limit if list_chunk(d) else d.lanes_total


def needs_params(d: Descriptor) -> bool:
    """Whether a MAC descriptor loads the per-channel parameter table."""
    return d.epilogue in (REQUANT, UPDATE, BIAS_UPDATE) or (d.epilogue == GRADIENT and bool(d.flags & FLAG_SCALE))


def with_fields(d: Descriptor, **changes) -> Descriptor:
    return replace(d, **{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in changes.items()})
