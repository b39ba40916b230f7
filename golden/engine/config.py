"""The engine configuration: one frozen object for the RTL, the compiler, the cycle model and
the firmware header (STYLE convention 1). Presets are `dataclasses.replace(DEFAULT, ...)`.

The engine is a row of `lanes` int8 multiply-accumulate lanes (docs/engine.md explains why a
lane row and not a 2-D array), a scratchpad of `scratchpad_bytes` read as rows of `lanes` bytes,
and a read-only external memory (the board's flash) reached through a port that returns one
row per cycle after `external_latency_cycles`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class EngineConfig:
    # The default is the engine the ECP5-85F carries (docs/fpga.md): 8 lanes is what its LUTs
    # allow (72% placed), and the 256 KiB scratchpad fits its 208 DP16KD as one pumped copy
    # (128). `WIDE16` below is the 16-lane engine of a larger device.
    lanes: int = 8                        # MAC lanes = bytes per scratchpad row
    scratchpad_bytes: int = 256 * 1024
    external_bytes: int = 4 * 1024 * 1024  # external (flash) window the engine may read
    external_latency_cycles: int = 4
    clock_hz: float = 100e6
    param_channels: int = 2048            # channels whose requantization parameters fit on chip
    # RTL only: the scratchpad's banks run at twice the clock, two block-RAM ports each, so one
    # copy serves its 3 read ports and write port (hw/banked_memory.py). Needs a `fast` clock
    # domain; the program format, the compiler and the cycle model do not change.
    scratchpad_pumped: bool = True
    # RTL and cycle model: the scratchpad's banks have two block-RAM ports on the engine's own
    # clock (no `fast` domain), port 1 shared by A and the old-value reads, port 2 by B and the
    # write (hw/banked_memory.py, docs/fpga.md proposal 11). The step generator pauses one cycle
    # more after each output vector that needs a port for them (golden/engine/cycles.py:
    # `vector_pause`), and writes wait in a queue for a cycle without a B read. Exclusive with
    # `scratchpad_pumped`.
    scratchpad_two_port: bool = False
    # Cycles one weight-update vector spends in the weight updaters: L / this many updaters
    # serve the L lanes in turn, a group of lanes per cycle (hw/engine.py). Vectors whose
    # reduction is shorter than this wait for the updaters (golden/engine/cycles.py:
    # `vector_pause`); every other cycle count is the same as with one updater per lane.
    # 4 on the ECP5 boards: the updaters were 18% of the engine's logic (docs/fpga.md).
    weight_update_cycles: int = 4

    def __post_init__(self):
        if not _is_pow2(self.lanes) or not 8 <= self.lanes <= 64:
            raise ValueError(f"lanes must be a power of two between 8 and 64, not {self.lanes}")
        if not _is_pow2(self.scratchpad_bytes) or self.scratchpad_bytes < 16 * self.lanes:
            raise ValueError(f"scratchpad_bytes must be a power of two of at least 16 rows, "
                             f"not {self.scratchpad_bytes}")
        if self.scratchpad_bytes > 2 ** 24 or self.external_bytes > 2 ** 30:
            raise ValueError("addresses are 24 bits (scratchpad) and 30 bits (external) at most")
        if not _is_pow2(self.external_bytes) or self.external_bytes < self.lanes:
            raise ValueError(f"external_bytes must be a power of two, not {self.external_bytes}")
        # at least 3: the engine holds a read's address in a register for a cycle, the memory
        # takes one, and the multiplier's operands are formed from the data a cycle before use;
        # at least 4 when the scratchpad is pumped, whose A and B reads take two cycles
        if self.scratchpad_pumped and self.scratchpad_two_port:
            raise ValueError("the scratchpad is either pumped or two-port, not both")
        least = 4 if self.scratchpad_pumped else 3
        if not least <= self.external_latency_cycles <= 64:
            raise ValueError(f"external latency must be {least}..64 cycles"
                             f"{' with a pumped scratchpad' if self.scratchpad_pumped else ''}, "
                             f"not {self.external_latency_cycles}")
        if not _is_pow2(self.param_channels) or self.param_channels < self.lanes:
            raise ValueError(f"param_channels must be a power of two >= lanes, not {self.param_channels}")
        if self.weight_update_cycles not in (1, 2, 4):
            raise ValueError(f"weight_update_cycles must be 1, 2 or 4, not {self.weight_update_cycles}")
        if not self.clock_hz > 0:
            raise ValueError(f"clock must be positive, not {self.clock_hz}")

    @property
    def scratchpad_rows(self) -> int:
        return self.scratchpad_bytes // self.lanes

    @property
    def external_rows(self) -> int:
        return self.external_bytes // self.lanes

    @property
    def macs_per_cycle(self) -> int:
        return self.lanes


DEFAULT = EngineConfig()
# A small configuration for fast simulation tests of the control logic (and the SoC's
# simulation), with the plain one-clock scratchpad.
SMALL = dataclasses.replace(DEFAULT, lanes=8, scratchpad_bytes=64 * 1024, external_bytes=256 * 1024,
                            scratchpad_pumped=False)
# 16 lanes: twice the default's MACs; more logic than the ECP5-85F has.
WIDE16 = dataclasses.replace(DEFAULT, lanes=16)
# The default engine with the two-port scratchpad: one copy on the engine's clock (no `fast`).
TWO_PORT = dataclasses.replace(DEFAULT, scratchpad_pumped=False, scratchpad_two_port=True)
PRESETS = {"default": DEFAULT, "small": SMALL, "wide16": WIDE16, "two-port": TWO_PORT}
