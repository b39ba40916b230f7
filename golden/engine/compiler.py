"""The compiler: (model, engine configuration) -> engine program + memory images.

It lowers each graph node to descriptors (docs/engine.md, "Lowering"), places tensors in the
scratchpad with a first-fit allocator that frees a tensor after its last reader, and packs the
frozen weights and per-channel parameters into the external image. The peak it reports is the
highest scratchpad byte any descriptor may touch plus one.

Limits it checks (a model it cannot run is refused with a sentence, before anything runs):
the MAC sum of every conv fits the 32-bit accumulators, counts fit 16 bits, the peak fits the
scratchpad.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..conv import output_size
from ..graph import Add, AvgPool, Conv, INPUT, Model, node_inputs
from ..int_ops import avgpool_mult
from ..memory import chain_blocks
from . import layout
from . import program as isa
from .config import EngineConfig

ALIGN = 8
STAGED = "staged:"     # optional blocks: a frozen conv's weights copied on chip for its descriptors
SUMS = "sums:"         # optional blocks: a pointwise input gradient's int32 sums, quantized in one pass


class CompileError(ValueError):
    """The model or scheme cannot run on this engine configuration."""


class Allocator:
    """First-fit scratchpad allocation; `peak` is the high-water mark in bytes.

    With `offsets` (from `plan_offsets` over a first compile's `events`), every block goes where
    the plan puts it instead: a compile run twice, first to learn each block's size and lifetime,
    then with the packing, wastes no space to fragmentation the way first-fit does.

    A block allocated `inside` a live block starts at that block's address and may outlive it:
    a striped block's output written over its dying input (`overwrite_lead`). The caller
    guarantees that no byte is overwritten while still to be read, and the block fits inside.

    An optional block (`alloc_optional`) is one the program can do without: frozen weights
    staged on chip, which the descriptors otherwise stream from external memory, or a gradient's
    int32 sums, without which its reduction runs twice. A recording compile allocates it and
    notes its `benefit`; with `offsets`, it exists only if the plan placed it
    (`plan_with_optional`).
    """

    def __init__(self, size: int, slack: int, offsets: dict[str, int] | None = None):
        self.size, self.slack = size, slack
        self.blocks: dict[str, tuple[int, int]] = {}
        self.peak = 0
        self.offsets = offsets
        self.events: list[tuple[str, str, int]] = []        # ("alloc", name, bytes) / ("free", name, 0)
        self.anchors: dict[str, str] = {}                   # block -> the block it was allocated inside
        # Occupancy over the program: after every alloc and free, (descriptors emitted so far,
        # bytes allocated, end of the highest block). The compilers set `clock` to count.
        self.clock = lambda: 0
        self.timeline: list[tuple[int, int, int]] = []
        # optional block -> what it saves: external bytes (an int), or (1, cycles), which ranks first
        self.benefits: dict[str, "int | tuple[int, int]"] = {}

    def _record(self) -> None:
        top = max((start + length for start, length in self.blocks.values()), default=0)
        self.timeline.append((self.clock(), self.used(), top))

    def alloc(self, name: str, nbytes: int, inside: str | None = None) -> int:
        nbytes = max(ALIGN, -(-nbytes // ALIGN) * ALIGN)
        if inside is not None:
            host_at, host_bytes = self.blocks[inside]
            if nbytes > host_bytes:
                raise CompileError(f"{name} ({nbytes:,} bytes) does not fit inside {inside} ({host_bytes:,} bytes)")
            self.anchors[name] = inside
        if self.offsets is not None:
            at = self.offsets[name]
        elif inside is not None:
            at = host_at
        else:
            at = 0
            for start, length in sorted(self.blocks.values()):
                if start - at >= nbytes:
                    break
                at = max(at, start + length)
        if at + nbytes + self.slack > self.size:
            raise CompileError(f"scratchpad of {self.size:,} bytes is full: {name} needs {nbytes:,} "
                               f"bytes with {self.size - self.used():,} free")
        self.blocks[name] = (at, nbytes)
        self.events.append(("alloc", name, nbytes))
        self.peak = max(self.peak, at + nbytes + self.slack)
        self._record()
        return at

    def alloc_optional(self, name: str, nbytes: int, benefit: "int | tuple[int, int]") -> int | None:
        """The block's address, or None when the plan left it out (class docstring)."""
        if self.offsets is not None and name not in self.offsets:
            return None
        self.benefits[name] = benefit
        return self.alloc(name, nbytes)

    def free(self, name: str) -> None:
        del self.blocks[name]
        self.events.append(("free", name, 0))
        self._record()

    def used(self) -> int:
        """Bytes covered by live blocks (a block inside another counts once)."""
        total, reach = 0, 0
        for start, length in sorted(self.blocks.values()):
            total += max(0, start + length - max(start, reach))
            reach = max(reach, start + length)
        return total

    def address(self, name: str) -> int:
        return self.blocks[name][0]


def plan_offsets(events: list[tuple[str, str, int]],
                 anchors: dict[str, str] | None = None) -> tuple[dict[str, int], int]:
    """Offline packing of blocks with known lifetimes (greedy by size, as TFLite's planner):
    largest first, each at the lowest offset clear of every placed block alive at the same
    time. A block allocated inside another (`anchors`) is placed with it, at the same offset,
    clear of everything else alive with either. Returns (offsets, bytes spanned)."""
    anchors = anchors or {}
    start, end, size = {}, {}, {}
    for t, (kind, name, nbytes) in enumerate(events):
        if kind == "alloc":
            start[name], size[name] = t, nbytes
        else:
            end[name] = t

    def root(name):
        while name in anchors:
            name = anchors[name]
        return name

    groups: dict[str, list[str]] = {}
    for name in start:
        groups.setdefault(root(name), []).append(name)
    order = sorted(groups, key=lambda r: (-max(size[n] for n in groups[r]), start[r]))
    placed: list[tuple[int, int, int, int]] = []           # (offset, size, start, end)
    offsets = {}
    for group in order:
        members = [(size[n], start[n], end.get(n, len(events))) for n in groups[group]]
        clashes = [sorted((o, n) for o, n, s, e in placed if s < hi and lo < e) for _, lo, hi in members]
        if len(members) == 1:
            at = 0
            for o, n in clashes[0]:
                if o - at >= members[0][0]:
                    break
                at = max(at, o + n)
        else:                  # the lowest offset where every member is clear of its own clashes
            candidates = sorted({0} | {o + n for clash in clashes for o, n in clash})
            at = next(c for c in candidates
                      if all(not (o < c + need and c < o + n) for (need, _, _), clash in zip(members, clashes)
                             for o, n in clash))
        for name in groups[group]:
            offsets[name] = at
            placed.append((at, size[name], start[name], end.get(name, len(events))))
    return offsets, max((o + n for o, n, _, _ in placed), default=0)


def plan_with_optional(events: list[tuple[str, str, int]], anchors: dict[str, str] | None,
                       benefits: "dict[str, int | tuple[int, int]]") -> tuple[dict[str, int], int]:
    """`plan_offsets` of every block but the optional ones (`benefits`: name -> external bytes
    it saves, or (1, cycles it saves), which rank before any bytes), then the optional blocks,
    most benefit first, each kept if the packing with it
    spans no more bytes than the packing without any: staging weights never costs scratchpad
    the iteration would not use. Every kept block repacks the rest (the packing is greedy by
    size, so a large block placed early can fill a hole the small ones left, and the packing
    may then span less). Returns the last kept packing: (offsets, bytes it spans)."""
    kept: set[str] = set()
    offsets, limit = plan_offsets([e for e in events if e[1] not in benefits], anchors)
    spanned = limit

    def rank(name):
        benefit = benefits[name]
        return benefit if isinstance(benefit, tuple) else (0, benefit)

    for name in sorted(benefits, key=rank, reverse=True):
        trial = kept | {name}
        trial_offsets, trial_spanned = plan_offsets([e for e in events if e[1] not in benefits or e[1] in trial],
                                                    anchors)
        if trial_spanned <= limit:
            kept, offsets, spanned = trial, trial_offsets, trial_spanned
    return offsets, spanned


class ExternalImage:
    """The read-only external memory: appended blobs, each aligned to a lane row."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.chunks: list[np.ndarray] = []
        self.size = 0

    def add(self, data: np.ndarray) -> int:
        row = self.config.lanes
        at = -(-self.size // row) * row
        if at > self.size:
            self.chunks.append(np.zeros(at - self.size, np.uint8))
        self.chunks.append(np.asarray(data, dtype=np.uint8).ravel())
        self.size = at + data.size
        if self.size + row > self.config.external_bytes:
            raise CompileError(f"external memory of {self.config.external_bytes:,} bytes is full")
        return at


@dataclass
class Compiled:
    """A compiled program and where everything is."""
    config: EngineConfig
    descriptors: list[isa.Descriptor]
    external: np.ndarray
    tensors: dict[str, tuple[int, tuple[int, int, int]]]      # name -> (address, (C, H, W))
    masks: dict[str, int] = field(default_factory=dict)       # tensor name -> mask address
    ops: list[str] = field(default_factory=list)              # one label per descriptor
    peak_bytes: int = 0
    # conv name -> (weight address or None, bias address) of what is resident in the scratchpad
    # (None: the weights stay in external memory, only the bias is resident); the int32 biases
    # are the first 4*C bytes of the parameter table the conv's forward step assembles
    resident: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    preload: list[tuple[int, np.ndarray]] = field(default_factory=list)   # host writes before a run
    saved: dict[str, int] = field(default_factory=dict)   # conv name -> its selected input channels' copy
    # with the image in external memory: where the host writes it (HWC), else None (tensors[INPUT])
    input_external: int | None = None
    ones: int | None = None     # the scratchpad's constant byte 1 (`copy_descriptors`), if the program has it

    @property
    def program_words(self) -> np.ndarray:
        return isa.encode(self.descriptors + [isa.Descriptor()])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_counts(name: str, *counts: int) -> None:
    if any(n > 65535 for n in counts):
        raise CompileError(f"{name}: a loop of {max(counts)} iterations exceeds the engine's 16-bit counters")


def conv_descriptor(node: Conv, config: EngineConfig, in_shape, x_addr: int, y_addr: int,
                    w_addr: int, param_addr: int, mask_addr: int | None) -> isa.Descriptor:
    """Forward conv (regular, depthwise, pointwise, classifier) as one MAC descriptor."""
    L = config.lanes
    c_in, h, w = in_shape
    k, s, p = node.kernel, node.stride, node.kernel // 2
    c_out = node.out_channels
    ho, wo = output_size(h, k, s), output_size(w, k, s)
    macs = k * k * (1 if node.depthwise else c_in)
    if macs * 127 * 255 >= 2 ** 31:
        raise CompileError(f"{node.name}: {macs} products per output may overflow the 32-bit accumulator")
    _check_counts(node.name, ho, wo, c_in, _ceil_div(c_out, L))
    d = isa.Descriptor(opcode=isa.MAC, epilogue=isa.REQUANT, flags=isa.FLAG_B_EXTERNAL | isa.FLAG_PARAMS_EXTERNAL,
                       chunk_loop=0, lanes_total=c_out,
                       counts=[_ceil_div(c_out, L), ho, wo, 1 if node.depthwise else c_in, k, k],
                       a_base=x_addr, a_row_stride=w * c_in, a_col_stride=c_in, a_zero=node.x.zero,
                       a_row0=-p, a_col0=-p, a_row_coefs=[0, s, 0, 0, 1, 0],
                       a_col_coefs=[0, 0, s, 0, 0, 1], a_rows=h, a_cols=w,
                       b_base=w_addr, out_base=y_addr, out_strides=[L, wo * c_out, c_out],
                       param_base=param_addr, zero_out=node.y.zero)
    if node.depthwise:
        d.mode = isa.ELEMENTWISE
        d.a_strides = [L, 0, 0, 0, 0, 0]
        d.b_strides = [L, 0, 0, 0, k * c_out, c_out]
    else:
        d.mode = isa.BROADCAST
        d.a_strides = [0, 0, 0, 1, 0, 0]
        d.b_strides = [L, 0, 0, k * k * c_out, k * c_out, c_out]
    if mask_addr is not None:
        d.flags |= isa.FLAG_WRITE_MASK
        d.mask_base = mask_addr
    return d


def gather_descriptor(config: EngineConfig, x_addr: int, shape, list_addr: int, count: int, out_addr: int,
                      identity_params: int) -> isa.Descriptor:
    """out[p][j] = x[p][list[j]]: the listed channels of an HWC tensor, compactly, one byte per
    step through a one-lane identity requantization (`IDENTITY`)."""
    c, h, w = shape
    _check_counts("gather", count, h * w)
    return isa.Descriptor(opcode=isa.MAC, mode=isa.BROADCAST, epilogue=isa.REQUANT,
                          flags=isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL | ((0 + 1) << isa.LIST_SHIFT)
                          | isa.FLAG_LIST_A,
                          chunk_loop=1, lanes_total=1, counts=[count, 1, h * w, 1, 1, 1], a_base=x_addr,
                          a_strides=[1, 0, c, 0, 0, 0], out_base=out_addr, out_strides=[1, 0, count],
                          param_base=identity_params, list_addr=list_addr, list_limit=c)


IDENTITY = ([0], [2 ** 30], [30])     # requantization that passes an int8 value through: bias 0, M = 2^30, n = 30


def identity_params(channels: int) -> np.ndarray:
    """The parameter table of `IDENTITY` for `channels` channels, as the copies read it."""
    return layout.param_bytes(*(np.repeat(v, channels) for v in IDENTITY))


def staging_buffer(alloc: Allocator, name: str, nbytes: int, streamed_bytes: int) -> int | None:
    """The scratchpad buffer `STAGED + name` for `nbytes` of frozen weights that descriptors
    would otherwise read `streamed_bytes` of from external memory, or None: when staging saves
    nothing, or the plan left the buffer out (`Allocator.alloc_optional`)."""
    if streamed_bytes <= nbytes:
        return None
    return alloc.alloc_optional(STAGED + name, nbytes, streamed_bytes - nbytes)


def copy_descriptors(config: EngineConfig, src: int, dst: int, nbytes: int, ones_addr: int,
                     identity_params, src_external: bool) -> list[isa.Descriptor]:
    """dst[i] = src[i] for i < nbytes (src in external memory or the scratchpad, dst in the
    scratchpad, not overlapping). Bytes travel as operand B, the one operand external memory
    can feed: broadcast MACs of B times the byte 1 at `ones_addr` (a scratchpad constant the
    host writes once) through an identity requantization (`identity_params(C)`: the external
    address of `IDENTITY` for C channels), L bytes per step. A tail shorter than L is copied
    as the last L bytes (again, unchanged), so only the L-channel table is needed unless
    nbytes < L. Bit patterns pass unchanged, so int32 data copies byte by byte too."""
    L = config.lanes
    width = min(L, nbytes)
    pieces = [(0, nbytes // width)] + ([(nbytes - width, 1)] if nbytes % width else [])
    out = []
    for at, vectors in pieces:
        _check_counts("copy", vectors)
        out.append(isa.Descriptor(opcode=isa.MAC, mode=isa.BROADCAST, epilogue=isa.REQUANT,
                                  flags=isa.FLAG_PARAMS_EXTERNAL | (isa.FLAG_B_EXTERNAL if src_external else 0),
                                  chunk_loop=0, lanes_total=width, counts=[1, vectors, 1, 1, 1, 1],
                                  a_base=ones_addr, b_base=src + at, b_strides=[0, L, 0, 0, 0, 0],
                                  out_base=dst + at, out_strides=[0, L, 0], param_base=identity_params(width)))
    return out


def avgpool_descriptor(node: AvgPool, config: EngineConfig, in_shape, x_addr, y_addr,
                       param_addr, mask_addr) -> isa.Descriptor:
    L = config.lanes
    c, h, w = in_shape
    d = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.REQUANT,
                       flags=isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL, chunk_loop=0, lanes_total=c,
                       counts=[_ceil_div(c, L), 1, 1, 1, h, w], a_base=x_addr,
                       a_strides=[L, 0, 0, 0, 0, 0], a_row_stride=w * c, a_col_stride=c,
                       a_zero=node.x.zero, a_row_coefs=[0, 0, 0, 0, 1, 0],
                       a_col_coefs=[0, 0, 0, 0, 0, 1], a_rows=h, a_cols=w,
                       out_base=y_addr, out_strides=[L, 0, 0], param_base=param_addr,
                       zero_out=node.y.zero)
    if mask_addr is not None:
        d.flags |= isa.FLAG_WRITE_MASK
        d.mask_base = mask_addr
    return d


def add_descriptor(node: Add, config: EngineConfig, shape, x1_addr, x2_addr, y_addr,
                   mask_addr) -> isa.Descriptor:
    L = config.lanes
    c, h, w = shape
    _check_counts(node.name, h * w, _ceil_div(c, L))
    m1, m2, n = node.multipliers
    d = isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE, chunk_loop=0, lanes_total=c,
                       counts=[_ceil_div(c, L), h * w, 1, 1, 1, 1],
                       a_base=x1_addr, a_strides=[L, c, 0, 0, 0, 0], a_zero=node.x1.zero,
                       a_rows=1, a_cols=1,
                       b_base=x2_addr, b_strides=[L, c, 0, 0, 0, 0], b_zero=node.x2.zero,
                       out_base=y_addr, out_strides=[L, c, 0], zero_out=node.y.zero,
                       add_m1=m1, add_m2=m2, add_shift=n)
    if mask_addr is not None:
        d.flags |= isa.FLAG_WRITE_MASK
        d.mask_base = mask_addr
    return d


def stripe_blocks(model: Model) -> list[tuple[Conv, Conv, Conv]]:
    """Chains first -> dw -> pw2 that can be computed in stripes: `first` any non-depthwise conv
    feeding only the depthwise conv `dw`, which feeds only the pointwise conv `pw2`. These are
    the inverted residual blocks (golden/memory.py: find_blocks) and the stem of MobileNet-like
    models (first conv k x k / 2 -> b0.dw -> b0.pw2), whose block 0 has no expansion conv."""
    return chain_blocks(model, lambda first: isinstance(first, Conv) and not first.depthwise
                        and not first.is_classifier)


def overwrite_lead(first: Conv, dw: Conv, pw2: Conv, shapes, rows: int) -> int:
    """Bytes the block output must start before its input so that the striped block can write
    its output over its input: after each stripe but the last, the output rows written so far
    must end at or before the first input byte a later stripe still reads."""
    c_in, _, w_in = shapes[first.input]
    c_out, _, wo = shapes[pw2.output]
    lead = 0
    for r0, _, _, _, x0, _ in stripe_rows(first, dw, shapes, rows)[1:]:   # r0: the next stripe's first dw row
        lead = max(lead, r0 * wo * c_out - x0 * w_in * c_in)
    return -(-lead // ALIGN) * ALIGN


def stripe_rows(first: Conv, dw: Conv, shapes, rows: int) -> list[tuple[int, int, int, int, int, int]]:
    """Per stripe of `rows` dw-output rows: (r0, r1) its dw output rows, (a0, a1) the rows of
    first's output (dw's input) it reads, halo included, and (x0, x1) the rows of first's input
    those read (padding excluded). Used by the compiler and the memory planner's engine rules."""
    _, h_in, _ = shapes[first.input]
    _, h, _ = shapes[first.output]
    _, ho, _ = shapes[dw.output]
    k, s, pad = dw.kernel, dw.stride, dw.kernel // 2
    stripes = []
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        a0 = max(0, r0 * s - pad)
        a1 = min(h, (r1 - 1) * s - pad + k)
        stripes.append((r0, r1, a0, a1) + _first_rows(first, a0, a1, h_in))
    return stripes


def _first_rows(first: Conv, a0: int, a1: int, h_in: int) -> tuple[int, int]:
    """Rows [x0, x1) of `first`'s input that its output rows [a0, a1) read (padding excluded)."""
    x0 = max(0, a0 * first.stride - first.kernel // 2)
    x1 = min(h_in, (a1 - 1) * first.stride - first.kernel // 2 + first.kernel)
    return x0, x1


def _striped_block(first: Conv, dw: Conv, pw2: Conv, shapes, config: EngineConfig, tensors, alloc: Allocator,
                   ext: ExternalImage, rows: int, streamed: "tuple[int, object] | None" = None,
                   stage=None, keep_halo=None) -> list[tuple[isa.Descriptor, str]]:
    """Descriptors of one chain first -> dw -> pw2 (`stripe_blocks`) computed in stripes of `rows`
    dw-output rows. Per stripe, `first` computes the rows of its output the stripe's dw rows read
    (halo included) into a stripe buffer, whose row 0 is the stripe's first such row.

    With `keep_halo(src, dst, nbytes)` (a copy within the scratchpad -> descriptors), the rows a
    stripe shares with the previous one are not computed again: they are copied from the bottom
    of the stripe buffer to its top, and `first` computes only the rows below them (a 3 x 3
    stride-1 dw shares 2 rows, stride 2 one; a copy costs 1 cycle per L bytes, recomputing a row
    costs its MACs).

    With `streamed` = (external address, copy), the block input is not in the scratchpad but
    in external memory (the image): each stripe first copies the input rows it reads into a
    third stripe buffer (`copy(src, dst, nbytes)` -> descriptors), so the input never exists
    whole in the scratchpad.

    With `stage(conv, address, nbytes, streamed_bytes)` (compile_forward's `staged_weights`), each
    conv's weights may be copied on chip once for all stripes; the copy is emitted by `stage`,
    before the descriptors returned here, and the caller frees the staged buffers after them."""
    c_in, h_in, w_in = shapes[first.input]
    c_exp, h, w = shapes[first.output]
    _, ho, wo = shapes[dw.output]
    k, s, pad = dw.kernel, dw.stride, dw.kernel // 2
    stripes = stripe_rows(first, dw, shapes, rows)
    halo_rows = min(h, (rows - 1) * s + k)
    expanded = alloc.alloc(f"stripe:{first.output}", c_exp * halo_rows * w)
    depthwise = alloc.alloc(f"stripe:{dw.output}", c_exp * rows * wo)
    if streamed is not None:
        source, copy = streamed
        row_bytes = w_in * c_in
        x_addr = alloc.alloc(f"stripe:{first.input}", row_bytes * max(x1 - x0 for *_, x0, x1 in stripes))
    else:
        x_addr = tensors[first.input][0]
    weights = {}
    for conv in (first, dw, pw2):
        weights[conv.name] = (ext.add(layout.weight_bytes(conv.weight, conv.depthwise)),
                              ext.add(layout.param_bytes(conv.bias, conv.requant.M, conv.requant.n)))
    y_addr = tensors[pw2.output][0]
    pointwise = first.kernel == 1 and first.stride == 1
    out = []
    per_conv: dict[str, list[isa.Descriptor]] = {}
    row_out = w * c_exp                                # bytes of one row of first's output
    previous = None                                    # the previous stripe's (a0, a1)
    for r0, r1, a0, a1, x0, x1 in stripes:
        kept = 0                                       # rows a0..a0 + kept come from the previous stripe
        if keep_halo is not None and previous is not None:
            kept, shift = max(0, min(previous[1], a1) - a0), a0 - previous[0]
            # buffer rows shift.. move up to 0..: in pieces of at most `shift` rows, top first,
            # so no piece overlaps itself or overwrites a row a later piece reads (shift 0:
            # the rows are in place already)
            for i in range(0, kept if shift else 0, max(shift, 1)):
                n = min(shift, kept - i)
                out += [(d, f"{first.output} rows {a0 + i}-{a0 + i + n - 1} kept from the previous stripe")
                        for d in keep_halo(expanded + (i + shift) * row_out, expanded + i * row_out, n * row_out)]
        previous = (a0, a1)
        n0 = a0 + kept                                 # first's rows n0..a1 are computed here
        if n0 < a1:
            top, rows_in = 0, h_in                     # input row at x_addr, input rows there
            if streamed is not None:                   # the input rows n0..a1 read, into the stripe buffer
                x0, x1 = _first_rows(first, n0, a1, h_in)
                out += [(d, f"{first.input} rows {x0}-{x1 - 1} from external memory")
                        for d in copy(source + x0 * row_bytes, x_addr, (x1 - x0) * row_bytes)]
                top, rows_in = x0, x1 - x0
            at = expanded + kept * row_out
            if pointwise:                              # rows n0..a1 of first's input, no halo of its own
                d1 = conv_descriptor(first, config, (c_in, a1 - n0, w_in), x_addr + (n0 - top) * w_in * c_in,
                                     at, *weights[first.name], None)
            else:                                      # output rows n0..a1 over the input rows (and padding)
                d1 = conv_descriptor(first, config, (c_in, rows_in, w_in), x_addr, at, *weights[first.name], None)
                d1.counts[1] = a1 - n0
                d1.a_row0 = n0 * first.stride - first.kernel // 2 - top
            out.append((d1, f"{first.name} forward rows {n0}-{a1 - 1}"))
            per_conv.setdefault(first.name, []).append(d1)
        d2 = conv_descriptor(dw, config, (c_exp, a1 - a0, w), expanded, depthwise, *weights[dw.name], None)
        # rows of the stripe buffer: buffer row 0 is image row a0; dw's rows r0..r1
        d2.counts[1] = r1 - r0
        d2.a_row0 = r0 * s - pad - a0
        d3 = conv_descriptor(pw2, config, (c_exp, r1 - r0, wo), depthwise, y_addr + r0 * wo * pw2.out_channels,
                             *weights[pw2.name], None)
        out += [(d2, f"{dw.name} forward rows {r0}-{r1 - 1}"), (d3, f"{pw2.name} forward rows {r0}-{r1 - 1}")]
        for conv, d in zip((dw, pw2), (d2, d3)):
            per_conv.setdefault(conv.name, []).append(d)
    for conv in (first, dw, pw2) if stage is not None else ():
        own = per_conv[conv.name]
        staged = stage(conv, weights[conv.name][0], layout.weight_bytes(conv.weight, conv.depthwise).size,
                       sum(int(np.prod(d.counts)) for d in own) * config.lanes)
        for d in own if staged is not None else ():
            d.b_base = staged
            d.flags &= ~isa.FLAG_B_EXTERNAL
    alloc.free(f"stripe:{first.output}")
    alloc.free(f"stripe:{dw.output}")
    if streamed is not None:
        alloc.free(f"stripe:{first.input}")
    return out


def compile_forward(model: Model, config: EngineConfig, resolution: int | None = None,
                    keep_masks: "bool | set[str]" = False, keep_tensors: bool = False,
                    resident: tuple[str, ...] = (), keep_alive: tuple[str, ...] = (),
                    alloc: "Allocator | None" = None, stripe_rows: "int | dict[str, int] | None" = None,
                    resident_params: tuple[str, ...] = (),
                    gathers: dict[str, tuple[int, int]] | None = None, image_external: bool = False,
                    stage_frozen: bool = False, reuse_halo: bool = True) -> Compiled:
    """The forward pass of `model` as one program (whole tensors, no striping).

    The input image is expected HWC at `tensors[INPUT]`; the logits end at
    `tensors[model.output]`. With keep_masks True every node's clamp mask is written and kept
    (a collection of tensor names: those tensors' masks); with
    keep_tensors no tensor is freed, so each descriptor's output can be inspected afterwards.
    Convs named in `resident` keep weights and biases in the scratchpad (they are updated
    in training; `preload` says what the host writes there), those in `resident_params` only
    their biases (bias-only updates); each of their forward steps first copies its bias and its
    constant multipliers and shifts into a temporary parameter table (`copy_descriptors`); `gathers` (conv name -> (channel list address, count))
    makes the conv's step also copy the listed channels of its input, compactly, into a buffer
    that outlives the forward pass (`saved`: what a sparse weight update reads); tensors in `keep_alive` are never
    freed (the backward pass reads them).

    With `stripe_rows`, every chain first -> dw -> pw2 (`stripe_blocks`: the inverted residual
    blocks and the stem) whose tensors the backward pass does not need is computed in stripes of
    `stripe_rows` rows of dw's output, as the memory planner assumes: per stripe, the first conv
    over the input rows the stripe needs (halo included) into a stripe buffer, dw into a second
    one, pw2 into the stripe's rows of the block output. The expanded tensors never exist whole.
    `stripe_rows` may also map a block's first conv to its own rows (a block not named stays
    whole). A striped block that is its input's last reader writes its output over the input.
    With `reuse_halo` (the default) a stripe copies the rows of the first conv's output it
    shares with the previous stripe instead of computing them again (`_striped_block`).

    With `image_external`, the host writes the image into external memory at `input_external`,
    not into the scratchpad. A striped block whose first conv is the image's only reader (the
    stem) copies each stripe's input rows from there into a stripe buffer, so the image never
    exists whole in the scratchpad; any other reader gets a whole copy first.

    With `stage_frozen`, a frozen conv's weights are copied from external memory into a
    scratchpad buffer just before its descriptor (a striped block's, before its first stripe)
    and read from there, when the allocator has the buffer (`Allocator.alloc_optional`: a
    training compile's plan keeps it only where the packing with it spans no more,
    `plan_with_optional`). A weight byte is then read from external memory once, not once per
    output position.
    """
    shapes = model.tensor_shapes(resolution)
    last_reader: dict[str, int] = {}
    for i, node in enumerate(model.nodes):
        for name in node_inputs(node):
            last_reader[name] = i
    alloc = alloc or Allocator(config.scratchpad_bytes, slack=config.lanes)
    ext = ExternalImage(config)
    resident_at: dict[str, tuple[int | None, int]] = {}
    preload: list[tuple[int, np.ndarray]] = []
    for node in model.nodes:
        if isinstance(node, Conv) and (node.name in resident or node.name in resident_params):
            w_at = None
            if node.name in resident:
                w = layout.weight_bytes(node.weight, node.depthwise)
                w_at = alloc.alloc("weight:" + node.name, w.size)
                preload.append((w_at, w))
            # Training changes only the bias of the parameter table: the bias stays resident, the
            # conv's forward step reads a table assembled beside it (`parameter_table`).
            bias = layout.param_bytes(node.bias, node.requant.M, node.requant.n)[:4 * node.out_channels]
            resident_at[node.name] = (w_at, alloc.alloc("params:" + node.name, bias.size))
            preload.append((resident_at[node.name][1], bias))
    constants: dict[str, int] = {}
    image_at = ext.add(np.zeros(int(np.prod(shapes[INPUT])), np.uint8)) if image_external else None
    if resident_at or image_external or stage_frozen or (reuse_halo and stripe_rows is not None):
        # for `copy_descriptors`: the byte 1, which the host writes once with the other preloads
        # (placed before anything else, so no buffer ever lies over it)
        constants["ones"] = alloc.alloc("ones", ALIGN)
        preload.append((constants["ones"], np.ones(ALIGN, np.uint8)))
    identities: dict[int, int] = {}

    def identity_table(channels: int) -> int:
        """External address of an identity parameter table of `channels` channels."""
        if channels not in identities:
            identities[channels] = ext.add(identity_params(channels))
        return identities[channels]

    def copy_constants():
        return constants["ones"], identity_table

    def emit_copy(src: int, dst: int, nbytes: int, src_external: bool, label: str) -> None:
        for d in copy_descriptors(config, src, dst, nbytes, *copy_constants(), src_external):
            code = isa.check(d, config)
            if code != isa.OK:
                raise CompileError(f"{label}: descriptor fails the engine's check ({isa.ERROR_NAMES[code]})")
            descriptors.append(d)
            ops.append(label)

    def staged_weights(node: Conv, w_addr: int, nbytes: int, streamed_bytes: int) -> int | None:
        """Where `node`'s frozen weights (external, at `w_addr`) are copied on chip, with the
        copy emitted, or None when they stay in external memory; `streamed_bytes` is what the
        conv's descriptors would read of them from there. The caller frees `STAGED + name`."""
        at = staging_buffer(alloc, node.name, nbytes, streamed_bytes) if stage_frozen else None
        if at is not None:
            emit_copy(w_addr, at, nbytes, True, f"{node.name} weights staged from external memory")
        return at

    def parameter_table(node: Conv) -> int:
        """A whole parameter table of a conv whose bias is resident, for its forward step: the
        bias copied from its resident place, the multipliers and shifts from external memory.
        Freed after the step (`table:` + name)."""
        c = node.out_channels
        table = alloc.alloc("table:" + node.name, isa.PARAM_BYTES_PER_CHANNEL * c)
        emit_copy(resident_at[node.name][1], table, 4 * c, False, f"{node.name} parameter table: bias")
        fixed = ext.add(layout.param_bytes(node.bias, node.requant.M, node.requant.n)[4 * c:])
        emit_copy(fixed, table + 4 * c, 5 * c, True, f"{node.name} parameter table: multipliers, shifts")
        return table

    tensors: dict[str, tuple[int, tuple[int, int, int]]] = {}
    masks: dict[str, int] = {}
    saved: dict[str, int] = {}
    descriptors, ops = [], []
    alloc.clock = lambda: len(descriptors)

    def place(name):
        c, h, w = shapes[name]
        lead = overwrite.get(name, (0, None))[0]
        tensors[name] = (alloc.alloc(name, lead + c * h * w) + lead, shapes[name])

    def mask_for(name):
        if not (keep_masks is True or (keep_masks and name in keep_masks)):
            return None
        c, h, w = shapes[name]
        masks[name] = alloc.alloc("mask:" + name, _ceil_div(c * h * w, 8))
        return masks[name]

    def mask_for_wanted(name):
        return keep_masks is True or bool(keep_masks and name in keep_masks)

    position = {id(node): i for i, node in enumerate(model.nodes)}
    striped = {}
    overwrite: dict[str, tuple[int, str]] = {}   # block input -> (lead bytes, the block output written over it)
    if stripe_rows is not None:
        rows_of = stripe_rows if isinstance(stripe_rows, dict) else {b[0].name: stripe_rows for b in stripe_blocks(model)}
        if any(r < 1 for r in rows_of.values()):
            raise CompileError(f"stripe rows must be positive, not {min(rows_of.values())}")
        for pw1, dw, pw2 in stripe_blocks(model):
            rows = rows_of.get(pw1.name, shapes[dw.output][1])
            inner = (pw1.output, dw.output)
            needed = any(mask_for_wanted(t) for t in inner + (pw2.output,)) or \
                any(t in keep_alive or t in resident for t in inner) or \
                any(n.name in resident_at for n in (pw1, dw, pw2))
            if not needed and shapes[dw.output][1] > rows:
                striped[id(pw1)] = (pw1, dw, pw2, rows)
                # the output goes over the input when this block is the input's last reader
                x = pw1.input
                if not keep_tensors and x not in keep_alive and last_reader[x] == position[id(pw1)]:
                    lead = overwrite_lead(pw1, dw, pw2, shapes, rows)
                    if np.prod(shapes[pw2.output]) <= lead + np.prod(shapes[x]):
                        overwrite[x] = (lead, pw2.output)

    # the image stays in external memory when only striped blocks read it, their rows copied per stripe
    streamed = image_external and INPUT not in keep_alive and not keep_tensors and \
        all(id(n) in striped for n in model.nodes if INPUT in node_inputs(n))
    if streamed:
        overwrite.pop(INPUT, None)

    def release_inputs(node, i):
        """Free the inputs node i reads last (the input image too: the host writes the next one
        before the next forward pass). A striped block's inner tensors were never placed."""
        for name in node_inputs(node):
            if last_reader[name] == i and not keep_tensors and name not in keep_alive and name in alloc.blocks:
                alloc.free(name)

    if not streamed:
        place(INPUT)
        if image_external:
            emit_copy(image_at, tensors[INPUT][0], int(np.prod(shapes[INPUT])), True, "input from external memory")
    skip = 0
    for i, node in enumerate(model.nodes):
        if skip:
            skip -= 1
            release_inputs(node, i)
            continue
        if id(node) in striped:
            pw1, dw, pw2, rows = striped[id(node)]
            if pw1.input in overwrite:
                at = alloc.alloc(pw2.output, int(np.prod(shapes[pw2.output])), inside=pw1.input)
                tensors[pw2.output] = (at, shapes[pw2.output])
            else:
                place(pw2.output)
            source = None
            if streamed and pw1.input == INPUT:
                source = (image_at, lambda src, dst, n: copy_descriptors(config, src, dst, n, *copy_constants(), True))
            within = None
            if reuse_halo:
                def within(src, dst, n):
                    return copy_descriptors(config, src, dst, n, *copy_constants(), False)
            emitted = _striped_block(pw1, dw, pw2, shapes, config, tensors, alloc, ext, rows, source,
                                     staged_weights, within)
            for d, label in emitted:
                code = isa.check(d, config)
                if code != isa.OK:
                    raise CompileError(f"{label}: descriptor fails the engine's check ({isa.ERROR_NAMES[code]})")
                descriptors.append(d)
                ops.append(label)
            for conv in (pw1, dw, pw2):
                if STAGED + conv.name in alloc.blocks:
                    alloc.free(STAGED + conv.name)
            release_inputs(node, i)
            skip = 2
            continue
        place(node.output)
        out = tensors[node.output][0]
        if isinstance(node, Conv):
            if node.out_channels % 8 and mask_for_wanted(node.output) and shapes[node.output][1:] != (1, 1):
                raise CompileError(f"{node.name}: masks need output channels in multiples of 8")
            w_addr, p_addr = resident_at.get(node.name, (None, None))
            w_resident, p_resident = w_addr is not None, p_addr is not None
            if not w_resident:
                weights = layout.weight_bytes(node.weight, node.depthwise)
                w_addr = ext.add(weights)
            if p_resident:
                p_addr = parameter_table(node)
            else:
                p_addr = ext.add(layout.param_bytes(node.bias, node.requant.M, node.requant.n))
            d = conv_descriptor(node, config, shapes[node.input], tensors[node.input][0], out,
                                w_addr, p_addr, mask_for(node.output))
            if not w_resident:
                staged = staged_weights(node, w_addr, weights.size, int(np.prod(d.counts)) * config.lanes)
                if staged is not None:
                    d.b_base, w_resident = staged, True
            if w_resident:
                d.flags &= ~isa.FLAG_B_EXTERNAL
            if p_resident:
                d.flags &= ~isa.FLAG_PARAMS_EXTERNAL
            if gathers and node.name in gathers:
                list_addr, count = gathers[node.name]
                c_in, h, w = shapes[node.input]
                saved[node.name] = alloc.alloc(f"saved:{node.name}", count * h * w)
                gather = gather_descriptor(config, tensors[node.input][0], (c_in, h, w), list_addr, count,
                                           saved[node.name], identity_table(1))
                if isa.check(gather, config) != isa.OK:
                    raise CompileError(f"{node.name}: the gather of its selected input channels fails the "
                                       f"engine's check ({isa.ERROR_NAMES[isa.check(gather, config)]})")
                descriptors.append(gather)
                ops.append(f"{node.name} save selected input channels")
        elif isinstance(node, AvgPool):
            c, h, w = shapes[node.input]
            mult = avgpool_mult(node, h * w)
            p_addr = ext.add(layout.param_bytes(np.zeros(c), np.full(c, mult.M), np.full(c, mult.n)))
            d = avgpool_descriptor(node, config, shapes[node.input], tensors[node.input][0], out,
                                   p_addr, mask_for(node.output))
        else:
            d = add_descriptor(node, config, shapes[node.output], tensors[node.inputs[0]][0],
                               tensors[node.inputs[1]][0], out, mask_for(node.output))
        code = isa.check(d, config)
        if code != isa.OK:
            raise CompileError(f"{node.name}: descriptor fails the engine's check "
                               f"({isa.ERROR_NAMES[code]})")
        descriptors.append(d)
        ops.append(f"{node.name} forward")
        for temporary in ("table:", STAGED):
            if temporary + node.name in alloc.blocks:
                alloc.free(temporary + node.name)
        release_inputs(node, i)
    # The program sits at external address 0; shift every external address past it.
    program_bytes = (len(descriptors) + 1) * isa.DESCRIPTOR_WORDS * 4
    shift = -(-program_bytes // config.lanes) * config.lanes
    for d in descriptors:
        if d.flags & isa.FLAG_B_EXTERNAL:
            d.b_base += shift
        if d.flags & isa.FLAG_PARAMS_EXTERNAL:
            d.param_base += shift
    words = isa.encode(descriptors + [isa.Descriptor()])
    body = np.concatenate(ext.chunks) if ext.chunks else np.zeros(0, np.uint8)
    image = np.zeros(shift + body.size, np.uint8)
    image[:words.size * 4] = words.astype("<u4").view(np.uint8)
    image[shift:] = body
    if image.size > config.external_bytes:
        raise CompileError(f"program and weights need {image.size:,} bytes of external memory, "
                           f"the configuration has {config.external_bytes:,}")
    return Compiled(config, descriptors, image, tensors, masks, ops, alloc.peak, resident_at, preload, saved,
                    None if image_at is None else image_at + shift, constants.get("ones"))
