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

from dataclasses import dataclass

import numpy as np

from .. import int_ops
from ..graph import Model
from ..scheme import UpdateScheme
from ..train import UpdateRule, update_multipliers
from . import layout
from . import program as isa
from .compiler import Allocator, CompileError, Compiled, _ceil_div, compile_forward
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

    def initial_scratchpad(self, image_chw: np.ndarray, sr_state: int) -> np.ndarray:
        spad = np.zeros(self.config.scratchpad_bytes, np.uint8)
        for address, data in self.forward.preload:
            spad[address:address + data.size] = data
        x_at = self.forward.tensors["input"][0]
        x = layout.activation_bytes(image_chw)
        spad[x_at:x_at + x.size] = x
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


def compile_training(model: Model, scheme: UpdateScheme, config: EngineConfig,
                     rule: UpdateRule = UpdateRule()) -> TrainingProgram:
    if scheme.weight_convs() or scheme.bias_convs(model) or not scheme.classifier:
        raise CompileError(f"scheme {scheme.name}: the engine trains only the classifier so far "
                           f"(last-layer schemes); deeper updates need the backward descriptors")
    head = model.classifier
    if head.depthwise or head.kernel != 1:
        raise CompileError("the classifier must be a 1x1 conv")
    L = config.lanes
    classes, c_in = head.out_channels, head.in_channels
    alloc = Allocator(config.scratchpad_bytes, slack=L)
    g_addr = alloc.alloc("gradient", classes)
    e_addr = alloc.alloc("exponent", 4)
    prng_addr = alloc.alloc("prng", 4)
    forward = compile_forward(model, config, keep_masks=True, resident=(head.name,),
                              keep_alive=(head.input,), alloc=alloc)
    w_addr, p_addr = forward.resident[head.name]
    x_addr = forward.tensors[head.input][0]
    U, V = update_multipliers(head, rule)
    rounding = isa.ROUNDING_CODES[rule.rounding] << isa.ROUNDING_SHIFT

    # External image: the forward image, then the update multipliers, then the backward program.
    row = L
    tail = [np.zeros((-forward.external.size) % row, np.uint8)]
    v_at = forward.external.size + tail[0].size
    v_table = layout.param_bytes(np.zeros(classes), V.M, V.n)
    u_at = v_at + v_table.size + ((-v_table.size) % row)
    u_table = layout.param_bytes(np.zeros(classes), U.M, U.n)
    backward_base = u_at + u_table.size + ((-u_table.size) % row)
    bias_update = isa.Descriptor(
        opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.BIAS_UPDATE,
        flags=isa.FLAG_B_ONES | isa.FLAG_PARAMS_EXTERNAL, chunk_loop=0, lanes_total=classes,
        counts=[_ceil_div(classes, L), 1, 1, 1, 1, 1], a_base=g_addr, a_strides=[L, 0, 0, 0, 0, 0],
        out_base=p_addr, out_strides=[4 * L, 0, 0], param_base=v_at, exp_addr=e_addr, prng_addr=prng_addr)
    weight_update = isa.Descriptor(
        opcode=isa.MAC, mode=isa.BROADCAST, epilogue=isa.UPDATE,
        flags=isa.FLAG_PARAMS_EXTERNAL | rounding, chunk_loop=1, lanes_total=classes,
        counts=[c_in, _ceil_div(classes, L), 1, 1, 1, 1], a_base=x_addr, a_strides=[1, 0, 0, 0, 0, 0],
        a_zero=head.x.zero, b_base=g_addr, b_strides=[0, L, 0, 0, 0, 0],
        out_base=w_addr, out_strides=[classes, L, 0], param_base=u_at, exp_addr=e_addr,
        prng_addr=prng_addr)
    backward = [bias_update, weight_update]
    for d in backward:
        code = isa.check(d, config)
        if code != isa.OK:
            raise CompileError(f"{head.name} backward: descriptor fails the engine's check ({isa.ERROR_NAMES[code]})")
    words = isa.encode(backward + [isa.Descriptor()]).astype("<u4").view(np.uint8)
    external = np.zeros(backward_base + words.size, np.uint8)
    external[:forward.external.size] = forward.external
    external[v_at:v_at + v_table.size] = v_table
    external[u_at:u_at + u_table.size] = u_table
    external[backward_base:] = words
    if external.size > config.external_bytes:
        raise CompileError("the training programs do not fit the external memory")
    return TrainingProgram(config, forward, backward, external, backward_base, g_addr, e_addr,
                           prng_addr, int_ops.softmax_table(head.y.scale))
