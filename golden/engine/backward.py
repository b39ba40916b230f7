"""Lowering of the backward pass (numerics 6-7) to engine descriptors.

`BackwardLowering` walks the nodes from the logits back to the earliest updated one, as
`golden/train.py: Trainer.step` does, and emits per node:

- conv: the input gradient first (it uses the weights before their update): the prescale
  `g' = quantize(G * F[c])` (MAC elementwise, FLAG_SCALE, GRADIENT) and `dX` straight to int8
  (pointwise: MAC dot over output channels; depthwise stride 1: MAC elementwise over the
  flipped kernel), then the bias update and the fused weight-gradient + update;
- average pool: `quantize(G * F)` broadcast over the input's positions (one descriptor);
- add: nothing of its own, both inputs receive its gradient `G`.

A tensor's gradient is finished when its last contribution arrives: a single contribution is
quantized with the producer's clamp mask applied (FLAG_MASK_IN, `G = g * mask` of numerics
6.2); several are summed pairwise in arrival order (ADD with the GRADIENT epilogue, numerics
5), the mask going with the last sum. Every gradient tensor has its own int32 exponent word.

Weight updates of a selected subset of channels read the selection from a channel list in the
scratchpad (`lists`: conv index -> address of its uint16 entries, written by the host each
iteration): a pointwise conv's update runs over the listed input channels (list loop 0), a
depthwise conv's over the listed channels one lane at a time (list-chunk mode), so the cycles
scale with the selected count. The input of a weight-updated conv stays whole in the scratchpad.

Input gradients of every conv kind are engine operations: strided ones correlate a gradient
spread onto a zeroed finer grid (no stride in the descriptor's reads). A regular k x k conv's
weight update takes one descriptor per input channel (loops u, v, chunk of c), so the draws keep
numerics 7.4's order. Limit (refused with a sentence): regular k x k weight updates at a ratio
below 1 (the per-channel descriptors would need the channel from a list entry).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..fixedpoint import ChannelScale
from ..graph import Add, AvgPool, Conv, INPUT, Model, node_inputs
from ..scheme import UpdateScheme, selected_count
from ..train import UpdateRule, update_multipliers
from . import layout
from . import program as isa
from .compiler import (STAGED, SUMS, Allocator, CompileError, Compiled, _ceil_div, copy_descriptors,
                       identity_params, staging_buffer)
from .config import EngineConfig
from .cycles import descriptor_cycles


@dataclass
class Gradient:
    """A finished or partial gradient tensor in the scratchpad: int8 HWC values, int32 exponent."""
    address: int
    exponent_address: int
    buffer: str | None = None      # allocator name, freed after its last reader (None: never)


@dataclass
class BackwardProgram:
    descriptors: list[isa.Descriptor] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    tables: list[tuple[str, np.ndarray]] = field(default_factory=list)   # external blobs, placed later


class BackwardLowering:
    def __init__(self, model: Model, scheme: UpdateScheme, config: EngineConfig, rule: UpdateRule,
                 forward: Compiled, alloc: Allocator, logits_gradient: Gradient, prng_addr: int,
                 lists: dict[int, int], stage_weights: bool = False):
        self.model, self.scheme, self.config, self.rule = model, scheme, config, rule
        # frozen weights of input gradients copied on chip where the plan has room (`_staged`);
        # the copies need the forward program's constant byte 1
        self.stage_weights = stage_weights and forward.ones is not None
        self.forward, self.alloc, self.prng_addr = forward, alloc, prng_addr
        self.L = config.lanes
        self.shapes = model.tensor_shapes()
        self.out = BackwardProgram()
        self.rounding = isa.ROUNDING_CODES[rule.rounding] << isa.ROUNDING_SHIFT
        self.producer = {INPUT: -1} | {n.output: p for p, n in enumerate(model.nodes)}
        self.start = backward_start(model, scheme)
        self.on_path = path_nodes(model, self.start)
        self.expected: dict[str, int] = {}
        for p in self.on_path:
            for name in node_inputs(model.nodes[p]):
                if self.producer[name] >= self.start:
                    self.expected[name] = self.expected.get(name, 0) + 1
        self.pending: dict[str, tuple[Gradient, int]] = {}     # partial sum, contributions so far
        self.readers: dict[str, int] = {}                      # buffer -> readers still to come
        self.finished = {model.output: logits_gradient}
        self.counter = 0
        self.lists = lists                                     # conv index -> list address
        # forward activations the backward pass reads (inputs of ratio-1 weight updates) -> how
        # many updates still read them: the last one frees the tensor
        self.activation_readers: dict[str, int] = {}
        for p in self.on_path:
            node = model.nodes[p]
            if isinstance(node, Conv) and self._weight_ratio(node) == 1.0:
                self.activation_readers[node.input] = self.activation_readers.get(node.input, 0) + 1
        alloc.clock = lambda: len(forward.descriptors) + len(self.out.descriptors)   # occupancy timeline

    # ---------------------------------------------------------------- helpers
    def _table(self, label: str, data: np.ndarray) -> str:
        self.out.tables.append((label, data))
        return label

    def _emit(self, d: isa.Descriptor, label: str, tables: dict[str, str] | None = None) -> None:
        d._tables = tables or {}           # external fields filled in by `place_tables`
        self.out.descriptors.append(d)
        self.out.ops.append(label)

    def _staged(self, node: Conv, label: str, nbytes: int, streamed_bytes: int) -> int | None:
        """Where `node`'s frozen weights (the external table `label`) are copied on chip for one
        descriptor reading `streamed_bytes` of them, with the copy emitted; None when they stay
        in external memory. The caller frees `STAGED + label` after the descriptor."""
        at = staging_buffer(self.alloc, label, nbytes, streamed_bytes) if self.stage_weights else None
        if at is None:
            return None
        # the source and the identity tables are external tables, placed after the program: the
        # copy is made from address 0 and 0, and `place_tables` adds their places
        for d in copy_descriptors(self.config, 0, at, nbytes, self.forward.ones, lambda channels: 0, True):
            identity = f"identity parameters, {d.lanes_total} channels"
            if all(name != identity for name, _ in self.out.tables):
                self._table(identity, identity_params(d.lanes_total))
            self._emit(d, f"{node.name} weights staged from external memory",
                       {"b_base": (label, d.b_base), "param_base": identity})
        return at

    def _new_gradient(self, tensor: str) -> Gradient:
        c, h, w = self.shapes[tensor]
        return self._new_buffer(tensor, c * h * w)

    def _new_buffer(self, label: str, nbytes: int) -> Gradient:
        self.counter += 1
        name = f"grad{self.counter}:{label}"
        return Gradient(self.alloc.alloc(name, nbytes), self.alloc.alloc(name + ":e", 4), name)

    def _zero_fill(self, target: Gradient, c: int, positions: int, label: str) -> None:
        """int8 zeros over (positions, c): a gradient pass whose A is all padding."""
        L = self.L
        d = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT, flags=isa.FLAG_B_ONES,
                           lanes_total=c, counts=[_ceil_div(c, L), positions, 1, 1, 1, 1],
                           a_base=target.address, a_row0=-1, out_base=target.address, out_strides=[L, c, 0],
                           exp_addr=target.exponent_address, exp_out_addr=target.exponent_address)
        self._emit(d, label)

    def _prescale(self, G: Gradient, target: Gradient, node: Conv, scale: ChannelScale, shape, stride: int,
                  grid_cols: int, tables_label: str) -> None:
        """g' = quantize(G * F[c]) (numerics 6.2), written at every `stride`-th row and column of a
        grid `grid_cols` wide."""
        L = self.L
        c, ho, wo = shape
        F = np.asarray(scale.F, np.int64)
        d = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT,
                           flags=isa.FLAG_B_ONES | isa.FLAG_SCALE | isa.FLAG_PARAMS_EXTERNAL, lanes_total=c,
                           counts=[_ceil_div(c, L), ho, wo, 1, 1, 1], a_base=G.address,
                           a_strides=[L, wo * c, c, 0, 0, 0], out_base=target.address,
                           out_strides=[L, stride * grid_cols * c, stride * c],
                           exp_addr=G.exponent_address, exp_offset=-scale.N, exp_out_addr=target.exponent_address)
        label = self._table(f"{tables_label} input-gradient scale", layout.param_bytes(np.zeros(c), F, np.zeros(c)))
        self._emit(d, f"{node.name} input-gradient prescale", {"param_base": label})

    def _release(self, g: Gradient) -> None:
        if g.buffer is not None and g.buffer in self.alloc.blocks:
            self.alloc.free(g.buffer)
            self.alloc.free(g.buffer + ":e")

    def _free_if_live(self, name: str) -> None:
        """Free a forward buffer (a mask, a saved activation) after its last backward reader."""
        if name in self.alloc.blocks:
            self.alloc.free(name)

    def _activation_read(self, tensor: str) -> None:
        """A weight update has read the forward activation `tensor`; free it after the last one."""
        self.activation_readers[tensor] -= 1
        if not self.activation_readers[tensor]:
            self._free_if_live(tensor)

    def _weight_ratio(self, node: Conv) -> float:
        """Share of `node`'s input channels whose weights the scheme updates (0: none)."""
        if node.is_classifier:
            return 1.0 if self.scheme.classifier else 0.0
        return self.scheme.weight_convs().get(self.model.convs.index(node), 0.0)

    def _mask_of(self, tensor: str) -> int:
        return self.forward.masks[tensor]

    def contribute(self, tensor: str, produce) -> None:
        """Add one contribution to `tensor`'s gradient; `produce(target, mask_addr or None)`
        emits the descriptor that writes it (quantized) into `target`."""
        seen = self.pending.get(tensor, (None, 0))
        previous, count = seen
        last = count + 1 == self.expected[tensor]
        target = self._new_gradient(tensor)
        if previous is None:
            produce(target, self._mask_of(tensor) if last else None)
            result = target
        else:
            produce(target, None)
            result = self._new_gradient(tensor)
            self._emit_sum(tensor, previous, target, result, self._mask_of(tensor) if last else None)
            self._release(previous)
            self._release(target)
        if last:
            self.pending.pop(tensor, None)
            self.finished[tensor] = result
            self._free_if_live("mask:" + tensor)       # the finished gradient has it applied: no other reader
        else:
            self.pending[tensor] = (result, count + 1)

    def _emit_sum(self, tensor, g1: Gradient, g2: Gradient, out: Gradient, mask_addr) -> None:
        L = self.L
        c, h, w = self.shapes[tensor]
        d = isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT, chunk_loop=0,
                           lanes_total=c, counts=[_ceil_div(c, L), h * w, 1, 1, 1, 1],
                           a_base=g1.address, a_strides=[L, c, 0, 0, 0, 0],
                           b_base=g2.address, b_strides=[L, c, 0, 0, 0, 0],
                           out_base=out.address, out_strides=[L, c, 0],
                           exp_addr=g1.exponent_address, exp2_addr=g2.exponent_address,
                           exp_out_addr=out.exponent_address)
        self._with_mask(d, mask_addr)
        self._emit(d, f"{tensor} gradient sum")

    def _sums_buffer(self, name: str, gradient: isa.Descriptor, positions: int, channels: int) -> int | None:
        """The optional block `SUMS + name` for the int32 sums of a pointwise input gradient
        (`gradient`, a dot descriptor over `positions` x `channels` outputs), or None: when the
        channels are not whole rows of lanes, when one pass and `_quantize_sums` would not take
        fewer cycles than the two passes, or when the plan left the buffer out. With it, one
        pass of the reduction writes the sums (dot, RAW32) and a SUMS descriptor quantizes them:
        its two passes take 8 steps per L outputs where the reduction's second pass took one
        step per L input channels of every output."""
        if channels % self.L:
            return None
        one_pass = dataclasses.replace(gradient, epilogue=isa.RAW32)
        quantize = self._sums_descriptor(0, positions, channels, 0, 0, 0)
        saved = descriptor_cycles(gradient, self.config).total - descriptor_cycles(one_pass, self.config).total \
            - descriptor_cycles(quantize, self.config).total
        if saved <= 0:
            return None
        return self.alloc.alloc_optional(SUMS + name, 4 * positions * channels, (1, saved))

    def _sums_descriptor(self, sums_at: int, positions: int, channels: int, out_at: int, exp_addr: int,
                         exp_out_addr: int) -> isa.Descriptor:
        """numerics 5's quantizer over int32 sums (HWC, `channels` a multiple of L) into an int8
        gradient: each output vector loads L sums, 4 rows of L bytes, one a step (mode SUMS)."""
        L = self.L
        return isa.Descriptor(opcode=isa.MAC, mode=isa.SUMS, epilogue=isa.GRADIENT, flags=isa.FLAG_B_ONES,
                              chunk_loop=1, lanes_total=channels,
                              counts=[positions, channels // L, 1, 1, 1, isa.SUMS_STEPS],
                              a_base=sums_at, a_strides=[4 * channels, 4 * L, 0, 0, 0, L],
                              out_base=out_at, out_strides=[channels, L, 0],
                              exp_addr=exp_addr, exp_out_addr=exp_out_addr)

    def _quantize_sums(self, name: str, positions: int, channels: int, source: Gradient, target: Gradient,
                       mask) -> None:
        """The gradient of the sums at `SUMS + name`, as the dot descriptor's own epilogue would
        have formed it (the same v, so the same bytes), masked like it; then the sums are freed."""
        d = self._sums_descriptor(self.alloc.address(SUMS + name), positions, channels, target.address,
                                  source.exponent_address, target.exponent_address)
        self._with_mask(d, mask)
        self._emit(d, f"{name} input gradient")
        self.alloc.free(SUMS + name)

    @staticmethod
    def _with_mask(d: isa.Descriptor, mask_addr) -> None:
        if mask_addr is not None:
            d.flags |= isa.FLAG_MASK_IN
            d.mask_base = mask_addr

    def _scaled_copy(self, source: Gradient, shape_in, shape_out, factors: ChannelScale | None,
                     target: Gradient, mask_addr, label: str, broadcast: bool = False) -> None:
        """quantize(source * F[c]) (or the source as it is) over `shape_out`, HWC int8.

        With `broadcast`, the source is one vector (C, 1, 1) read at every output position.
        """
        L = self.L
        c, h, w = shape_out
        d = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT,
                           flags=isa.FLAG_B_ONES, chunk_loop=0, lanes_total=c,
                           counts=[_ceil_div(c, L), h * w, 1, 1, 1, 1], a_base=source.address,
                           a_strides=[L, 0 if broadcast else c, 0, 0, 0, 0],
                           out_base=target.address, out_strides=[L, c, 0],
                           exp_addr=source.exponent_address, exp_out_addr=target.exponent_address)
        tables = {}
        if factors is not None:
            d.flags |= isa.FLAG_SCALE | isa.FLAG_PARAMS_EXTERNAL
            d.exp_offset = -factors.N
            F = np.broadcast_to(np.asarray(factors.F, np.int64), (c,))
            tables["param_base"] = self._table(label, layout.param_bytes(np.zeros(c), F, np.zeros(c)))
        self._with_mask(d, mask_addr)
        self._emit(d, label, tables)

    # ---------------------------------------------------------------- the walk
    def lower(self) -> BackwardProgram:
        model = self.model
        for p in range(len(model.nodes) - 1, self.start - 1, -1):
            if p not in self.on_path:
                continue
            node = model.nodes[p]
            G = self.finished.pop(node.output)
            if isinstance(node, Conv):
                self._conv(node, G)
            elif isinstance(node, AvgPool):
                self._avgpool(node, G)
            else:
                self._add(node, G)
            self._release(G)
        return self.out

    def _wants(self, tensor: str) -> bool:
        return self.producer[tensor] >= self.start

    def _avgpool(self, node: AvgPool, G: Gradient) -> None:
        if not self._wants(node.input):
            return
        c, h, w = self.shapes[node.input]
        scale = ChannelScale.from_real([1.0 / (h * w)])
        self.contribute(node.input, lambda target, mask: self._scaled_copy(
            G, (c, 1, 1), (c, h, w), scale, target, mask, f"{node.name} backward", broadcast=True))

    def _add(self, node: Add, G: Gradient) -> None:
        # both inputs receive the add's G unchanged: a copy (masked when it finishes the input's gradient)
        for name in node.inputs:
            if self._wants(name):
                self.contribute(name, lambda target, mask, name=name: self._scaled_copy(
                    G, self.shapes[name], self.shapes[name], None, target, mask, f"{node.name} backward"))

    def _conv(self, node: Conv, G: Gradient) -> None:
        L = self.L
        model = self.model
        index = model.convs.index(node) if not node.is_classifier else None
        weight_ratio = self._weight_ratio(node)
        bias_updated = (node.is_classifier and self.scheme.classifier) or \
            (index is not None and index in self.scheme.bias_convs(model))
        c_in, h, w = self.shapes[node.input]
        c, ho, wo = self.shapes[node.output]
        k, s, pad = node.kernel, node.stride, node.kernel // 2
        w_addr, p_addr = self.forward.resident.get(node.name, (None, None))
        # Only what is updated gets multipliers: a frozen conv's factor may not fit one (MCUNet).
        U, V = update_multipliers(node, self.rule, weights=weight_ratio > 0, biases=bias_updated)

        if self._wants(node.input):
            scale = node.input_grad_scale
            weights_external = w_addr is None
            weight_bytes = layout.weight_bytes(node.weight, node.depthwise)
            tables = {"b_base": self._table(f"{node.name} weights", weight_bytes)} if weights_external else {}
            # The input gradient is a correlation of g' with the flipped kernel. With stride s > 1,
            # g' is first spread onto a zeroed grid s times finer (g'[i] at s*i), which makes it a
            # stride-1 correlation: one descriptor, so one quantizer sees the whole tensor.
            rows, cols = s * ho, s * wo
            prescaled = self._new_buffer(f"{node.name}:g'", c * rows * cols)
            if s > 1:
                self._zero_fill(prescaled, c, rows * cols, f"{node.name} input-gradient zero grid")
            if bias_updated and not weight_ratio:
                # The bias update reads only G and the bias, which the input gradient does not
                # read: done first, G is dead once prescaled and its buffer is free for dX.
                self._bias_update(node, G, p_addr, V)
                bias_updated = False
            self._prescale(G, prescaled, node, scale, (c, ho, wo), s, cols, tables_label=node.name)
            if not weight_ratio:
                self._release(G)

            def produce(target, mask, prescaled=prescaled):
                if node.depthwise:
                    d = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT,
                                       chunk_loop=2, lanes_total=c, counts=[h, w, _ceil_div(c, L), k, k, 1],
                                       a_base=prescaled.address, a_strides=[0, 0, L, 0, 0, 0],
                                       a_row_stride=cols * c, a_col_stride=c, a_row0=pad, a_col0=pad,
                                       a_row_coefs=[1, 0, 0, -1, 0, 0], a_col_coefs=[0, 1, 0, 0, -1, 0],
                                       a_rows=rows, a_cols=cols, b_base=w_addr or 0,
                                       b_strides=[0, 0, L, k * c, c, 0],
                                       out_base=target.address, out_strides=[w * c, c, L])
                elif k == 1 and s == 1:
                    d = isa.Descriptor(opcode=isa.MAC, mode=isa.DOT, epilogue=isa.GRADIENT, chunk_loop=3,
                                       lanes_total=c, counts=[h * w, c_in, 1, _ceil_div(c, L), 1, 1],
                                       a_base=prescaled.address, a_strides=[c, 0, 0, L, 0, 0],
                                       b_base=w_addr or 0, b_strides=[0, c, 0, L, 0, 0],
                                       out_base=target.address, out_strides=[c_in, 1, 0])
                    sums_at = self._sums_buffer(node.name, d, h * w, c_in)
                    if sums_at is not None:
                        # one pass writes the int32 sums; `_quantize_sums` forms the gradient
                        d.epilogue, d.out_base, d.out_strides = isa.RAW32, sums_at, [4 * c_in, 4, 0]
                else:
                    # outputs (h, w, ci), reduced over (chunk of c, u, v): W[ci][u][v][c] . g'[h+p-u][w+p-v][c]
                    d = isa.Descriptor(opcode=isa.MAC, mode=isa.DOT, epilogue=isa.GRADIENT, chunk_loop=3,
                                       lanes_total=c, counts=[h, w, c_in, _ceil_div(c, L), k, k],
                                       a_base=prescaled.address, a_strides=[0, 0, 0, L, 0, 0],
                                       a_row_stride=cols * c, a_col_stride=c, a_row0=pad, a_col0=pad,
                                       a_row_coefs=[1, 0, 0, 0, -1, 0], a_col_coefs=[0, 1, 0, 0, 0, -1],
                                       a_rows=rows, a_cols=cols, b_base=w_addr or 0,
                                       b_strides=[0, 0, k * k * c, L, k * c, c],
                                       out_base=target.address, out_strides=[w * c_in, c_in, 1])
                own_tables = dict(tables)
                staged = None
                passes = 2 if d.epilogue == isa.GRADIENT else 1
                if weights_external:
                    # both passes of the gradient epilogue read B
                    staged = self._staged(node, tables["b_base"], weight_bytes.size,
                                          passes * int(np.prod(d.counts)) * L)
                    if staged is None:
                        d.flags |= isa.FLAG_B_EXTERNAL
                    else:
                        d.b_base = staged
                        del own_tables["b_base"]
                if d.epilogue == isa.GRADIENT:
                    d.exp_addr, d.exp_out_addr = prescaled.exponent_address, target.exponent_address
                    self._with_mask(d, mask)
                    self._emit(d, f"{node.name} input gradient", own_tables)
                else:
                    self._emit(d, f"{node.name} input-gradient sums", own_tables)
                if staged is not None:
                    self.alloc.free(STAGED + tables["b_base"])
                if d.epilogue != isa.GRADIENT:
                    self._quantize_sums(node.name, h * w, c_in, prescaled, target, mask)

            self.contribute(node.input, produce)
            self._release(prescaled)

        if bias_updated:
            self._bias_update(node, G, p_addr, V)

        if weight_ratio > 0 and not node.depthwise and k != 1:
            if weight_ratio < 1.0:
                raise CompileError(
                    f"{node.name}: weight updates of regular {k}x{k} convs run over all input channels "
                    f"(ratio 1), not {weight_ratio:g}: they take one descriptor per input channel, "
                    f"and a descriptor cannot take that channel from a channel list entry")
            self._regular_weight_update(node, G, U)
            self._activation_read(node.input)
        elif weight_ratio > 0:
            x_addr = self.forward.tensors[node.input][0]
            u_table = self._table(f"{node.name} weight multipliers", layout.param_bytes(np.zeros(c), U.M, U.n))
            d = isa.Descriptor(opcode=isa.MAC, epilogue=isa.UPDATE,
                               flags=isa.FLAG_PARAMS_EXTERNAL | self.rounding, lanes_total=c,
                               a_zero=node.x.zero, a_row_stride=w * c_in, a_col_stride=c_in,
                               a_row0=-pad, a_col0=-pad, a_rows=h, a_cols=w, b_base=G.address,
                               out_base=w_addr, exp_addr=G.exponent_address, prng_addr=self.prng_addr)
            if node.depthwise:
                # outputs (u, v, chunk of c), reduced over the output positions (i, j)
                d.mode, d.chunk_loop, d.counts = isa.ELEMENTWISE, 2, [k, k, _ceil_div(c, L), 1, ho, wo]
                d.a_base, d.a_strides = x_addr, [0, 0, L, 0, 0, 0]
                d.a_row_coefs, d.a_col_coefs = [1, 0, 0, 0, s, 0], [0, 1, 0, 0, 0, s]
                d.b_strides = [0, 0, L, 0, wo * c, c]
                d.out_strides = [k * c, c, L]
            else:
                # pointwise: outputs (ci, chunk of c), reduced over the output positions (i, j)
                d.mode, d.chunk_loop, d.counts = isa.BROADCAST, 1, [c_in, _ceil_div(c, L), 1, 1, ho, wo]
                d.a_base, d.a_strides = x_addr, [1, 0, 0, 0, 0, 0]
                d.a_row_coefs, d.a_col_coefs = [0, 0, 0, 0, s, 0], [0, 0, 0, 0, 0, s]
                d.b_strides = [0, L, 0, 0, wo * c, c]
                d.out_strides = [c, L, 0]
            if weight_ratio < 1.0:
                self._through_list(node, index, d, c_in, k)
            self._emit(d, f"{node.name} weight update", {"param_base": u_table})
            if node.name in self.forward.saved:
                self.alloc.free(f"saved:{node.name}")
            else:
                self._activation_read(node.input)

    def _bias_update(self, node: Conv, G: Gradient, p_addr: int, V) -> None:
        """b -= V * db (numerics 7.3), db the sum of G over the output positions; the resident
        bias at `p_addr` is read and written in place."""
        L = self.L
        c, ho, wo = self.shapes[node.output]
        v_table = self._table(f"{node.name} bias multipliers", layout.param_bytes(np.zeros(c), V.M, V.n))
        d = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.BIAS_UPDATE,
                           flags=isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL, chunk_loop=0, lanes_total=c,
                           counts=[_ceil_div(c, L), 1, 1, 1, ho, wo], a_base=G.address,
                           a_strides=[L, 0, 0, 0, 0, 0], a_row_stride=wo * c, a_col_stride=c,
                           a_row_coefs=[0, 0, 0, 0, 1, 0], a_col_coefs=[0, 0, 0, 0, 0, 1],
                           a_rows=ho, a_cols=wo, out_base=p_addr, out_strides=[4 * L, 0, 0],
                           exp_addr=G.exponent_address, prng_addr=self.prng_addr)
        self._emit(d, f"{node.name} bias update", {"param_base": v_table})

    def _regular_weight_update(self, node: Conv, G: Gradient, U) -> None:
        """Fused weight gradient + update of a regular k x k conv, all input channels: one
        descriptor per input channel ci, ascending, each over the outputs (u, v, chunk of c) of
        W[ci][u][v][c] and reduced over the output positions (i, j). A is the byte
        x[ci][i*s+u-pad][j*s+v-pad] broadcast to the lanes (padding reads as the zero point,
        contributing 0), B the gradient vector G[i][j][c..]. The draws of the `sr` stream thus
        follow numerics 7.4's order: ci, then u, then v, then c; each descriptor continues the
        stream where the previous one left it."""
        L = self.L
        c_in, h, w = self.shapes[node.input]
        c, ho, wo = self.shapes[node.output]
        k, s, pad = node.kernel, node.stride, node.kernel // 2
        w_addr = self.forward.resident[node.name][0]
        x_addr = self.forward.tensors[node.input][0]
        u_table = self._table(f"{node.name} weight multipliers", layout.param_bytes(np.zeros(c), U.M, U.n))
        for ci in range(c_in):
            d = isa.Descriptor(opcode=isa.MAC, mode=isa.BROADCAST, epilogue=isa.UPDATE,
                               flags=isa.FLAG_PARAMS_EXTERNAL | self.rounding, chunk_loop=2, lanes_total=c,
                               counts=[k, k, _ceil_div(c, L), 1, ho, wo],
                               a_base=x_addr + ci, a_zero=node.x.zero, a_row_stride=w * c_in, a_col_stride=c_in,
                               a_row0=-pad, a_col0=-pad, a_row_coefs=[1, 0, 0, 0, s, 0],
                               a_col_coefs=[0, 1, 0, 0, 0, s], a_rows=h, a_cols=w,
                               b_base=G.address, b_strides=[0, 0, L, 0, wo * c, c],
                               out_base=w_addr + ci * k * k * c, out_strides=[k * c, c, L],
                               exp_addr=G.exponent_address, prng_addr=self.prng_addr)
            self._emit(d, f"{node.name} weight update", {"param_base": u_table})

    def _through_list(self, node: Conv, index: int, d: isa.Descriptor, c_in: int, k: int) -> None:
        """Restrict a weight update to the channels listed at `lists[index]` (selected count)."""
        count = selected_count(node, self.scheme.weight_convs()[index])
        d.list_addr, d.list_limit = self.lists[index], node.in_channels
        # A is the forward pass's compact copy of the selected input channels (index j itself);
        # the gradient and the weights are addressed through the list
        _, h, w = self.shapes[node.input]
        d.a_base, d.a_row_stride, d.a_col_stride = self.forward.saved[node.name], w * count, count
        if node.depthwise:
            # list-chunk mode: one lane, outputs (u, v, listed channel), the draws in [u][v][c] order
            d.lanes_total = 1
            d.counts = [k, k, count, 1] + d.counts[4:]
            d.a_strides = [0, 0, 1, 0, 0, 0]
            d.b_strides = [0, 0, 1, 0] + d.b_strides[4:]
            d.out_strides = [k * node.out_channels, node.out_channels, 1]
            d.flags |= ((2 + 1) << isa.LIST_SHIFT) | isa.FLAG_LIST_B | isa.FLAG_LIST_OUT
        else:
            d.counts = [count] + d.counts[1:]
            d.flags |= ((0 + 1) << isa.LIST_SHIFT) | isa.FLAG_LIST_OUT


def allocate_lists(model: Model, scheme: UpdateScheme, alloc: Allocator) -> dict[int, int]:
    """Scratchpad room for the channel list of every conv updated at a ratio below 1. Allocated
    before anything else: the host writes them while earlier descriptors' buffers are live."""
    return {index: alloc.alloc(f"list:{model.convs[index].name}", 2 * selected_count(model.convs[index], ratio))
            for index, ratio in scheme.weight_convs().items() if ratio < 1.0}


def backward_start(model: Model, scheme: UpdateScheme) -> int:
    """Position of the earliest node the backward pass reaches (Trainer.start)."""
    earliest = scheme.earliest_updated(model)
    if earliest is None:
        return len(model.nodes) - 1
    target = model.convs[earliest]
    return next(p for p, n in enumerate(model.nodes) if n is target)


def path_nodes(model: Model, start: int) -> set[int]:
    """Nodes at or after `start` whose output reaches the logits."""
    on = {len(model.nodes) - 1}
    needed = set(node_inputs(model.nodes[-1]))
    for p in range(len(model.nodes) - 2, start - 1, -1):
        if model.nodes[p].output in needed:
            on.add(p)
            needed |= set(node_inputs(model.nodes[p]))
    return on


def place_tables(program: BackwardProgram, external_size: int, row: int) -> tuple[np.ndarray, int]:
    """Append the backward's tables after `external_size` bytes of external image; fill in the
    descriptors' external addresses. Returns (the appended bytes, their start)."""
    start = -(-external_size // row) * row
    offsets, chunks, at = {}, [], start
    for label, data in program.tables:
        offsets[label] = at
        chunks.append(data)
        pad = (-data.size) % row
        if pad:
            chunks.append(np.zeros(pad, np.uint8))
        at += data.size + pad
    for d in program.descriptors:
        for name, label in d._tables.items():       # a label, or (label, byte offset into it)
            label, offset = label if isinstance(label, tuple) else (label, 0)
            setattr(d, name, offsets[label] + offset)
        del d._tables
    body = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return body, start
