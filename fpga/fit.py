"""A fit estimate made before any tool runs, so a configuration that cannot fit the device is
a one-line error instead of a nextpnr failure twenty minutes later.

Memories are counted as yosys maps them (measured, docs/fpga.md): a memory with one write
port and R read ports becomes R copies, each with the write port and one read port, on
blocks of the device's shapes; a memory that fits neither is left to LUTs (flagged). The
engine's memories are the scratchpad (2 banks, 3 read ports: 3 copies, or 1 copy when
pumped or two-port, `EngineConfig.scratchpad_pumped` / `scratchpad_two_port`), the external window (2 banks,
2 read ports), the trace (1024 x 32 bits), the channel list (`param_channels` rows of an entry
and its three stored offsets) and the three parameter memories (LUT RAM when shallow). SPRAM
(one port in all) cannot hold a memory that reads and writes in one cycle, so the estimate
never places the scratchpad there. Multipliers and logic are counted per lane
from the measured figures in `PER_LANE` (docs/fpga.md explains how they were measured).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hw.engine import LIST_ROW

from .boards import Board, BoardError

SCRATCHPAD_READ_PORTS = 3
EXTERNAL_READ_PORTS = 2
TRACE_BITS, TRACE_DEPTH = 32, 1024
LIST_BITS = LIST_ROW.size        # a list entry and its A, B and output offsets

# Block shapes (depth, data width) yosys uses with byte (9-bit column) write enables.
BLOCK_SHAPES = {"ice40": [(256, 16), (512, 8)],
                "ecp5": [(512, 32), (1024, 16), (2048, 8)]}
# Memories shallower than this go to LUT RAM (TRELLIS_DPR16X4 / logic) instead of block RAM.
LUTRAM_DEPTH = {"ice40": 0, "ecp5": 64}

# Measured per-lane and fixed costs (LUT4, DSP blocks), by family: see docs/fpga.md.
# LUTs are nextpnr's TRELLIS_COMB (LUT4s, carry halves, LUT RAM logic): 62,566 measured after
# packing for the 8-lane preset with the pumped 256 KB scratchpad (flat synthesis, commit
# e4f456a; 68,145 at 7e245a7, before the engine was pipelined for the clock). The per-lane
# share is what `python -m fpga.engine_cost` puts in the lanes' units and inline logic, scaled
# to a flat build (79,559 measured at commit 7f9f5d5, with one bias updater per lane, 4,600
# per lane then; L/4 bias updaters take 1,398 LUT-equivalents each); the fixed part is the
# rest. ECP5 DSPs: per lane the shared epilogue product (hw/shared_product.py) and the
# residual add take 4 MULT18X18D each (the lane's 9x8 product is built from LUTs,
# fpga/build.py); outside the lanes the list-address, range-span and address-generator
# products take 8 (72 in all for 8 lanes, e4f456a). The iCE40 has no estimate of its own:
# the ECP5 figures, a lower bound for 4-input LUTs without DSP help, already rule it out.
# The weight updaters are counted apart from the lanes: there are L / weight_update_cycles of
# them (hw/engine.py). Measured: the SoC's TRELLIS_COMB fell by 11,469 (63,313 -> 51,844) when
# its 8 weight updaters became 2 (the stochastic-rounding jump-ahead shrinks with them), i.e.
# 1,911 per updater.
# The per-lane and fixed LUTs are fitted to two engine-alone ECP5 builds of one netlist
# (static placer, the same tools): 8 lanes 49,007 TRELLIS_COMB (commit 1f27f55, routed) and
# 16 lanes 86,078 (session 16, which nextpnr could not place: 102% of the device). "Per lane"
# is per unit of L: the scratchpad's row width, its rotators and write shifters, the operand
# registers and the dot adder tree grow with L too, which the earlier split (1,709 a lane,
# 33,606 fixed, from the lanes' units alone) missed; it put 16 lanes at 68,594.
PER_LANE = {"ice40": {"luts": 4156, "dsps": 0}, "ecp5": {"luts": 4156, "dsps": 8}}
WEIGHT_UPDATER_LUTS = 1911
FIXED = {"ice40": {"luts": 11937, "dsps": 0}, "ecp5": {"luts": 11937, "dsps": 8}}
# The SoC around the engine (fpga/board_soc.py): VexRiscv Lite's 2 KiB instruction cache (data
# and tags, 2 blocks) and the UART's 64-entry FIFO (1 block) beside the RAM, which is counted
# from its size. LUTs: VexRiscv Lite, the Wishbone arbiter and decoder, UART, system control and
# the engine's bus windows, an estimate until the first SoC build measures it (docs/fpga.md).
SOC_FIXED_BLOCKS = {"ice40": 5, "ecp5": 3}
SOC_LUTS = 3500
# nextpnr could not place the engine at 95% of an ECP5-85F's LUTs ("Unable to find legal
# placement", commit 7f9f5d5) and placed it at 89% (docs/fpga.md): the estimate must stay below this.
PLACEABLE_LUT_FRACTION = 0.90


def memory_blocks(family: str, width_bits: int, depth: int) -> int:
    if depth < LUTRAM_DEPTH[family]:
        return 0
    return min(math.ceil(width_bits / w) * math.ceil(depth / d) for d, w in BLOCK_SHAPES[family])


@dataclass(frozen=True)
class Estimate:
    block_rams: int
    dsps: int
    luts: int
    scratchpad_blocks: int
    external_blocks: int
    list_blocks: int
    soc_blocks: int = 0         # the SoC's RAM, instruction cache and UART FIFO (0: engine alone)

    def problems(self, board: Board) -> list[str]:
        device = board.device
        found = []
        if self.block_rams > device.block_rams:
            soc = f", SoC {self.soc_blocks}" if self.soc_blocks else ""
            found.append(f"{self.block_rams} block RAMs (scratchpad {self.scratchpad_blocks}, "
                         f"external window {self.external_blocks}{soc}) of {device.block_rams}")
        if self.dsps > device.dsps:
            found.append(f"{self.dsps} DSP blocks of {device.dsps}")
        placeable = int(device.luts * PLACEABLE_LUT_FRACTION)
        if self.luts > placeable:
            found.append(f"about {self.luts} LUT4s of the {placeable} nextpnr can place "
                         f"({PLACEABLE_LUT_FRACTION:.0%} of {device.luts})")
        return found


def estimate(board: Board, config, soc_ram_bytes: int | None = None) -> Estimate:
    """The engine `config` alone, or with `soc_ram_bytes` the SoC around it (fpga/board_soc.py)."""
    family = board.device.family
    L = config.lanes
    bank_depth = config.scratchpad_rows // 2
    # one copy when its banks' two block-RAM ports serve every port (pumped, two-port)
    copies = 1 if config.scratchpad_pumped or config.scratchpad_two_port else SCRATCHPAD_READ_PORTS
    scratchpad = 2 * copies * memory_blocks(family, 8 * L, bank_depth)
    external = 2 * EXTERNAL_READ_PORTS * memory_blocks(family, 8 * L, config.external_rows // 2)
    trace = memory_blocks(family, TRACE_BITS, TRACE_DEPTH)
    channel_list = memory_blocks(family, LIST_BITS, config.param_channels)
    param_rows = config.param_channels // L
    params = sum(memory_blocks(family, w, param_rows) for w in (32 * L, 32 * L, 8 * L))
    soc = 0 if soc_ram_bytes is None else \
        memory_blocks(family, 32, soc_ram_bytes // 4) + SOC_FIXED_BLOCKS[family]
    cost = PER_LANE[family]
    return Estimate(block_rams=scratchpad + external + trace + channel_list + params + soc,
                    dsps=FIXED[family]["dsps"] + cost["dsps"] * L,
                    luts=(FIXED[family]["luts"] + cost["luts"] * L
                          + WEIGHT_UPDATER_LUTS * (L // config.weight_update_cycles)
                          + (0 if soc_ram_bytes is None else SOC_LUTS)),
                    scratchpad_blocks=scratchpad, external_blocks=external, list_blocks=channel_list,
                    soc_blocks=soc)


def check_fit(board: Board, config, soc_ram_bytes: int | None = None) -> Estimate:
    found = estimate(board, config, soc_ram_bytes)
    problems = found.problems(board)
    if problems:
        what = "the SoC with " if soc_ram_bytes is not None else ""
        raise BoardError(f"{what}{config.lanes} lanes with a {config.scratchpad_bytes // 1024} KB scratchpad "
                         f"do not fit {board.name} ({board.device.name}): needs "
                         + "; ".join(problems))
    return found
