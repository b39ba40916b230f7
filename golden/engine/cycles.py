"""The cycle model: how many clock cycles the engine spends on each descriptor.

It restates the sequencer's schedule (hw/engine.py) in closed form, so a program's cost is
known before it runs and the RTL can be held to it (docs/engine.md, "Timing"):

    fetch     the descriptor's words, L/4 per read, then the read latency
              D drains:                                                  ceil(53 / (L/4)) + D + 1
    decode    field checks:                                              1
    range     17 stride x count terms, one per cycle, then the verdict: 18
    list      (channel list) one entry read per cycle, then D + 3:     n + D + 3
    params    (requant, updates, scaled gradient) vector reads: L/4
              biases, L/4 multipliers or L shifts per read, then D + 2:  2 ceil(4C/L) + ceil(C/L) + 1 + D + 2
    state     (updates, gradient) exponent and PRNG / second exponent:  D + 2
    pass 1    (gradient) the loop nest without writes, finding max|v|,
              then the pipeline empties and k, e are formed:             steps + D + GRADIENT_TURN
    run       one step per reduction index, plus `vector_pause` idle
              cycles after every output vector but the last, plus
              (channel list) one idle cycle before each list index:      prod(counts[:list loop + 1])
    drain     the pipeline empties:                                      D + 20

`write_cycles` is 1 for int8 outputs, 2 with clamp masks, 4 for raw int32 vectors, 1 for a dot
product's int32; the pause after a vector is `write_cycles - 1`, so the single write port keeps
up. A weight update's vectors instead pause until the shared weight updaters are free: S =
`config.weight_update_cycles` cycles from one vector's end to the next, i.e. max(0, S - R) idle
cycles after a reduction of R steps (only the classifier's, R = 1, and tiny feature maps pause).
With the two-port scratchpad (`config.scratchpad_two_port`) the pause is one cycle longer
where a vector needs a port of the scratchpad after its last step (`vector_pause`).
MAC utilization is useful products over lanes x cycles.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

from . import program as isa
from .config import EngineConfig

FETCH_EXTRA = 1
DECODE = 1
RANGE = 18
DRAIN_AFTER_LATENCY = 20
GRADIENT_TURN = 12        # after pass 1: the last |v| reaches the max register, k and e are formed


@dataclass(frozen=True)
class OpCycles:
    total: int
    steps: int
    useful_macs: int
    lanes: int

    @property
    def mac_utilization(self) -> float:
        return self.useful_macs / (self.lanes * self.total) if self.total else 0.0


def write_cycles(d: isa.Descriptor) -> int:
    if d.epilogue == isa.GRADIENT:
        return 1
    if d.opcode == isa.ADD or d.epilogue == isa.REQUANT:
        return 2 if d.flags & isa.FLAG_WRITE_MASK else 1
    if d.epilogue == isa.UPDATE:
        return 1
    return 1 if d.mode == isa.DOT else 4


def reads_old_values(d: isa.Descriptor) -> bool:
    """Whether each output vector reads old values on the scratchpad's host port: the old
    weights (weight update), the old biases (bias update), the clamp mask (gradient with a mask
    in)."""
    if d.opcode == isa.MAC and d.epilogue in isa.UPDATES:
        return True
    return d.epilogue == isa.GRADIENT and bool(d.flags & isa.FLAG_MASK_IN)


def b_reads_scratchpad(d: isa.Descriptor) -> bool:
    return not d.flags & (isa.FLAG_B_EXTERNAL | isa.FLAG_B_ONES)


def vector_pause(d: isa.Descriptor, config: EngineConfig, writing: bool = True) -> int:
    """Idle cycles the step generator inserts after each output vector but the last.
    `writing` False: gradient pass 1, which writes nothing.

    With the two-port scratchpad (`config.scratchpad_two_port`) a vector that reads old values
    (port 1, A's) or whose writes meet B's reads (port 2, a descriptor that writes and reads B
    from the scratchpad) pauses one cycle more: the old-value reads take those cycles' port 1,
    and the write queue drains into their port 2 (hw/engine.py, "write queue")."""
    two_port_extra = config.scratchpad_two_port and (reads_old_values(d) or (writing and b_reads_scratchpad(d)))
    if d.opcode == isa.MAC and d.epilogue == isa.UPDATE:
        reduction = prod(d.counts[isa.OUTPUT_LOOPS:])
        return max(int(two_port_extra), config.weight_update_cycles - reduction)
    if not writing:
        return int(two_port_extra)
    return write_cycles(d) - 1 + two_port_extra


def useful_macs(d: isa.Descriptor, config: EngineConfig) -> int:
    """Products that contribute to an output (active lanes x steps; padding counts as work)."""
    if d.opcode != isa.MAC or d.mode == isa.SUMS:     # SUMS loads its accumulators: no products
        return 0
    per_chunk_steps = prod(d.counts) // d.counts[d.chunk_loop]
    return per_chunk_steps * d.lanes_total


def descriptor_cycles(d: isa.Descriptor, config: EngineConfig) -> OpCycles:
    D = config.external_latency_cycles
    steps = prod(d.counts)
    outputs = prod(d.counts[:isa.OUTPUT_LOOPS])
    total = fetch_cycles(config) + DECODE + RANGE
    looped = isa.list_loop(d)
    if looped is not None:
        total += d.counts[looped] + D + 3 + prod(d.counts[:looped + 1])
    if d.opcode == isa.MAC and isa.needs_params(d):
        total += param_reads(isa.param_count(d), config) + 1 + D + 2
    if d.epilogue in isa.UPDATES + (isa.GRADIENT,):
        total += D + 2            # read the exponent and the PRNG state (or the second exponent)
    if d.epilogue == isa.GRADIENT:
        total += steps + (outputs - 1) * vector_pause(d, config, writing=False) + D + GRADIENT_TURN
    total += steps + (outputs - 1) * vector_pause(d, config)
    total += D + DRAIN_AFTER_LATENCY
    return OpCycles(total, steps, useful_macs(d, config), config.lanes)


def fetch_cycles(config: EngineConfig) -> int:
    words_per_read = config.lanes // 4
    return -(-isa.DESCRIPTOR_WORDS // words_per_read) + config.external_latency_cycles + FETCH_EXTRA


def param_reads(channels: int, config: EngineConfig) -> int:
    """Vector reads of a parameter table: biases and multipliers L/4 per read, shifts L."""
    L = config.lanes
    return 2 * -(-channels // (L // 4)) + -(-channels // L)


def external_reads(d: isa.Descriptor, config: EngineConfig) -> int:
    """L-byte reads of external memory (the engine's monitor counts them): the descriptor's
    fetch, its parameter table if that is external, and one B read per step if B is external
    (both passes of a gradient)."""
    reads = -(-isa.DESCRIPTOR_WORDS // (config.lanes // 4))
    if d.opcode == isa.MAC and isa.needs_params(d) and d.flags & isa.FLAG_PARAMS_EXTERNAL:
        reads += param_reads(isa.param_count(d), config)
    if d.flags & isa.FLAG_B_EXTERNAL and not d.flags & isa.FLAG_B_ONES:
        reads += prod(d.counts) * (2 if d.epilogue == isa.GRADIENT else 1)
    return reads


def program_external_reads(descriptors: list[isa.Descriptor], config: EngineConfig) -> int:
    """Every descriptor's `external_reads`, and the END descriptor's fetch."""
    return sum(external_reads(d, config) for d in descriptors) + -(-isa.DESCRIPTOR_WORDS // (config.lanes // 4))


def end_cycles(config: EngineConfig) -> int:
    """Fetching and decoding the END descriptor, up to the done pulse."""
    return fetch_cycles(config) + DECODE


def program_cycles(descriptors: list[isa.Descriptor], config: EngineConfig) -> int:
    return sum(descriptor_cycles(d, config).total for d in descriptors) + end_cycles(config)
