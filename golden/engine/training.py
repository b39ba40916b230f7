"""A whole training iteration as engine programs, and the host (CPU) step between them.

An iteration is: the forward program; the host's loss step (numerics 6.1: softmax
cross-entropy gradient of the logits, times the classifier's clamp mask, written into the
scratchpad with its exponent); the backward program. `compile_training` supports the schemes
whose only updated layer is the classifier (MIT's "last layer" baseline): the backward program
is the classifier's bias update and its fused weight-gradient + update (QAS, stochastic
rounding with the engine's `sr` stream). Deeper schemes need the backward descriptors listed
in docs/engine.md, "Next", and are refused with a sentence.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import int_ops
from ..graph import Model
from ..scheme import UpdateScheme, selected_count
from ..train import UpdateRule
from . import layout
from . import program as isa
from .backward import BackwardLowering, Gradient, allocate_lists, backward_start, path_nodes, place_tables
from .compiler import Allocator, CompileError, Compiled, compile_forward, plan_offsets, plan_with_optional, stripe_blocks
from .config import EngineConfig


@dataclass
class TrainingProgram:
    config: EngineConfig
    forward: Compiled
    backward: list[isa.Descriptor]
    external: np.ndarray             # forward program at 0, backward program at backward_base
    backward_base: int
    gradient_addr: int               # the masked logits gradient G (int8, classes)
    exponent_addr: int               # its exponent (int32)
    prng_addr: int                   # the `sr` stream's state (uint32)
    table: np.ndarray                # the softmax table the host uses
    backward_ops: list[str] = None   # one label per backward descriptor
    lists: dict = None               # weight-updated conv index -> its channel list's address
    occupancy: list = None           # (descriptor position, bytes allocated, highest block end):
                                     # after each alloc/free; forward descriptors first, then backward
    stripe_rows: "int | dict | None" = None   # rows per stripe (per block: first conv name -> rows)

    def write_selection(self, scratchpad: np.ndarray, selection: dict) -> None:
        """The host's part before the forward program: this iteration's selected channels
        (golden/scheme.py: ChannelSelector.select) as uint16 lists; the forward pass saves
        those channels of each sparse conv's input, the backward pass updates them."""
        for index, at in (self.lists or {}).items():
            entries = np.asarray(selection[index], dtype="<u2")
            scratchpad[at:at + 2 * entries.size] = entries.view(np.uint8)

    def write_image(self, scratchpad: np.ndarray, image_chw: np.ndarray) -> None:
        """The host's part before each forward program: the sample, HWC int8, into the scratchpad
        at `forward.tensors["input"]`, or (compiled with `image_external`) into `external` at
        `forward.input_external`, the image that the engine's external memory is loaded from."""
        x = layout.activation_bytes(image_chw)
        if self.forward.input_external is not None:
            self.external[self.forward.input_external:self.forward.input_external + x.size] = x
        else:
            x_at = self.forward.tensors["input"][0]
            scratchpad[x_at:x_at + x.size] = x

    def initial_scratchpad(self, image_chw: np.ndarray, sr_state: int) -> np.ndarray:
        """The scratchpad before the first iteration: the preloads, the PRNG state, the first
        image (`write_image`, which may write `external` instead)."""
        spad = np.zeros(self.config.scratchpad_bytes, np.uint8)
        for address, data in self.forward.preload:
            spad[address:address + data.size] = data
        self.write_image(spad, image_chw)
        spad[self.prng_addr:self.prng_addr + 4] = np.array([sr_state], "<u4").view(np.uint8)
        return spad

    def loss_step(self, scratchpad: np.ndarray, model: Model, label: int) -> float:
        """The CPU's part: read logits and mask, write G and its exponent. Returns the loss."""
        at, shape = self.forward.tensors[model.output]
        logits = layout.activation_from_bytes(scratchpad[at:at + shape[0]], shape)[:, 0, 0]
        mask_at = self.forward.masks[model.output]
        mask = layout.mask_from_bytes(scratchpad[mask_at:mask_at + (shape[0] + 7) // 8], shape)[:, 0, 0]
        g, e, loss = int_ops.softmax_cross_entropy_grad(logits, label, self.table,
                                                         model.classifier.y.scale)
        G = (g.astype(np.int64) * mask).astype(np.int8)
        scratchpad[self.gradient_addr:self.gradient_addr + G.size] = G.view(np.uint8)
        scratchpad[self.exponent_addr:self.exponent_addr + 4] = np.array([e], "<i4").view(np.uint8)
        return loss


STRIPE_CHOICES = (64, 32, 16, 8, 4, 2)   # rows per stripe tried per block, most first (most rows, least halo work)


def compile_training(model: Model, scheme: UpdateScheme, config: EngineConfig,
                     rule: UpdateRule = UpdateRule(),
                     stripe_rows: "int | dict[str, int] | None" = None,
                     image_external: bool = False, peak_budget: int | None = None,
                     stage_weights: bool = True) -> TrainingProgram:
    """`compile_one` with the smallest planned peak, then the fewest halo rows (or the rows given).
    With `image_external` the host writes each sample into external memory (`write_image`) and
    the striped stem reads it from there a stripe at a time (compiler.compile_forward).

    Every striped block (compiler.stripe_blocks) first runs one row per stripe, which gives the
    smallest peak striping can reach (small maps may do better whole); then each block in turn
    takes the most rows of `STRIPE_CHOICES` that keep the peak at or below the best so far (a
    block whose rows cover its whole output stays whole). The peak is set by one or two blocks; the others run wide stripes and spend little
    on recomputed halo rows. With `peak_budget` (bytes), a block takes the most rows that keep the
    peak at or below the budget instead (or the smallest peak, if that is above the budget):
    fewer cycles for a peak that is not the smallest."""
    if stripe_rows is not None:
        return compile_one(model, scheme, config, rule, stripe_rows, image_external, stage_weights)
    rows = {block[0].name: 1 for block in stripe_blocks(model)}

    def peak(rows):      # staged weights never move the peak: the trials leave them out
        return _plan(_lowering(model, scheme, rule, rows, image_external, stage_weights), config, False)[1]

    best = peak(rows)
    if best <= config.scratchpad_bytes:
        for name in list(rows):
            for choice in STRIPE_CHOICES:
                trial = dict(rows, **{name: choice})
                trial_peak = peak(trial)
                if trial_peak <= max(best, min(peak_budget or 0, config.scratchpad_bytes)):
                    rows, best = trial, min(best, trial_peak)
                    break
    return compile_one(model, scheme, config, rule, rows, image_external, stage_weights)


class ScratchpadTooSmall(CompileError):
    """The iteration's buffers do not fit the scratchpad."""


def _lowering(model: Model, scheme: UpdateScheme, rule: UpdateRule, stripe_rows, image_external: bool = False,
              stage_weights: bool = False):
    """lower(alloc, config) -> the iteration's buffers in `alloc` and its descriptors."""
    head = model.classifier
    if head.depthwise or head.kernel != 1:
        raise CompileError("the classifier must be a 1x1 conv")
    start = backward_start(model, scheme)
    on_path = path_nodes(model, start)
    # weight-updated convs keep weights and biases in the scratchpad, bias-only ones the biases
    updated = {model.convs[i].name for i in scheme.weight_convs()}
    if scheme.classifier:
        updated.add(head.name)
    bias_only = {model.convs[i].name for i in scheme.bias_convs(model)} - updated
    # inputs of ratio-1 weight updates stay whole; sparse ones keep a copy of the selected channels
    keep_alive = tuple(model.convs[i].input for i, ratio in scheme.weight_convs().items() if ratio == 1.0)
    keep_alive += (head.input,) if scheme.classifier else ()
    masks = {model.nodes[p].output for p in on_path}
    classes = head.out_channels

    def lower(alloc: Allocator, config: EngineConfig):
        g_addr = alloc.alloc("gradient", classes)
        e_addr = alloc.alloc("exponent", 4)
        prng_addr = alloc.alloc("prng", 4)
        lists = allocate_lists(model, scheme, alloc)
        gathers = {model.convs[i].name: (lists[i], selected_count(model.convs[i], ratio))
                   for i, ratio in scheme.weight_convs().items() if ratio < 1.0}
        forward = compile_forward(model, config, keep_masks=masks, resident=tuple(sorted(updated)),
                                  resident_params=tuple(sorted(bias_only)), keep_alive=keep_alive,
                                  alloc=alloc, stripe_rows=stripe_rows, gathers=gathers,
                                  image_external=image_external, stage_frozen=stage_weights)
        lowering = BackwardLowering(model, scheme, config, rule, forward, alloc,
                                    Gradient(g_addr, e_addr), prng_addr, lists, stage_weights)
        return g_addr, e_addr, prng_addr, forward, lowering, lowering.lower()

    return lower


def _plan(lower, config: EngineConfig, optional: bool = True) -> tuple[dict[str, int], int]:
    """One compile in a roomy scratchpad to learn every buffer's size and lifetime, then their
    packing: (offsets, planned peak in bytes). Staged weights (optional blocks) are kept where
    the packing with them spans no more (`plan_with_optional`); the others, and all of them
    without `optional`, stay in external memory."""
    roomy = dataclasses.replace(config, scratchpad_bytes=2 ** 24)
    recording = Allocator(roomy.scratchpad_bytes, slack=config.lanes)
    lower(recording, roomy)
    if optional:
        offsets, spanned = plan_with_optional(recording.events, recording.anchors, recording.benefits)
    else:
        offsets, spanned = plan_offsets([e for e in recording.events if e[1] not in recording.benefits],
                                        recording.anchors)
    return offsets, spanned + config.lanes


def compile_one(model: Model, scheme: UpdateScheme, config: EngineConfig, rule: UpdateRule,
                stripe_rows: "int | dict[str, int] | None", image_external: bool = False,
                stage_weights: bool = False) -> TrainingProgram:
    """Forward program, host loss step and backward program of one iteration (batch 1).

    Buffers are placed in two passes (the first learns sizes and lifetimes, `plan_offsets`
    packs them); `ScratchpadTooSmall` if the packing exceeds the scratchpad.

    The weight-updated convs keep their weights and biases resident in the scratchpad, the
    bias-only ones their biases; the inputs of weight-updated convs and the clamp masks of every node on the
    backward path stay alive after the forward pass. Inverted residual blocks before the
    backward path (and the stem) are computed in stripes of `stripe_rows` rows (None: whole tensors; a dict:
    rows per block, named by its first conv). The backward program's descriptors and
    their tables (update multipliers, input-gradient scales, frozen weights read on the
    gradient path) follow the forward image in external memory.
    """
    L = config.lanes
    head = model.classifier
    lower = _lowering(model, scheme, rule, stripe_rows, image_external, stage_weights)
    # Twice: first to learn every buffer's size and lifetime, then with them packed (plan_offsets).
    offsets, peak = _plan(lower, config)
    if peak > config.scratchpad_bytes:
        rows = stripe_rows if not isinstance(stripe_rows, dict) else \
            f"{min(stripe_rows.values(), default=0)}-{max(stripe_rows.values(), default=0)}"
        raise ScratchpadTooSmall(f"{model.name} with scheme {scheme.name} needs {peak:,} bytes of "
                                 f"scratchpad at its peak (stripes of {rows} rows), the configuration "
                                 f"has {config.scratchpad_bytes:,}")
    alloc = Allocator(config.scratchpad_bytes, slack=L, offsets=offsets)
    g_addr, e_addr, prng_addr, forward, lowering, backward = lower(alloc, config)
    tables, tables_at = place_tables(backward, forward.external.size, L)
    backward_base = -(-(tables_at + tables.size) // L) * L
    for i, d in enumerate(backward.descriptors):
        code = isa.check(d, config)
        if code != isa.OK:
            raise CompileError(f"{backward.ops[i]}: descriptor fails the engine's check ({isa.ERROR_NAMES[code]})")
    words = isa.encode(backward.descriptors + [isa.Descriptor()]).astype("<u4").view(np.uint8)
    external = np.zeros(backward_base + words.size, np.uint8)
    external[:forward.external.size] = forward.external
    external[tables_at:tables_at + tables.size] = tables
    external[backward_base:] = words
    if external.size > config.external_bytes:
        raise CompileError(f"the training programs need {external.size:,} bytes of external memory, "
                           f"the configuration has {config.external_bytes:,}")
    forward.peak_bytes = alloc.peak
    return TrainingProgram(config, forward, backward.descriptors, external, backward_base, g_addr, e_addr,
                           prng_addr, int_ops.softmax_table(head.y.scale), backward.ops, lowering.lists,
                           alloc.timeline, stripe_rows)
