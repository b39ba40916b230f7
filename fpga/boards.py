"""Board presets: the amaranth-boards platform, the engine configuration and the clock target
of each supported board, and the device totals a fit check compares against.

Presets are `dataclasses.replace` of golden/engine/config.py's DEFAULT (STYLE convention 1).
For an engine-alone build the engine's external memory (the board's flash in the real design)
is a small on-chip window holding a tiny program (`external_bytes` below), not the 4 MiB of
the default configuration.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from golden.engine.config import DEFAULT, EngineConfig
from hw.soc.config import CPU_VARIANTS


@dataclass(frozen=True)
class Device:
    """Totals of one FPGA, in the units nextpnr reports (cells of each kind)."""
    name: str
    family: str                 # "ice40" or "ecp5"
    luts: int
    flip_flops: int
    block_rams: int             # EBR (iCE40, 4 Kbit) or DP16KD (ECP5, 18 Kbit)
    block_ram_bytes: int        # data bytes of one block at the widest byte-enabled shape
    sprams: int                 # SB_SPRAM256KA (iCE40 UltraPlus only)
    dsps: int                   # SB_MAC16 or MULT18X18D


UP5K = Device("iCE40UP5K", "ice40", luts=5280, flip_flops=5280, block_rams=30, block_ram_bytes=512,
              sprams=4, dsps=8)
LFE5U_85F = Device("LFE5U-85F", "ecp5", luts=83640, flip_flops=83640, block_rams=208,
                   block_ram_bytes=2048, sprams=0, dsps=156)


@dataclass(frozen=True)
class Board:
    name: str
    platform_module: str
    platform_class: str
    device: Device
    oscillator_hz: float
    config: EngineConfig        # the engine this board carries, at its clock
    # False: the board's SoC carries no engine; its CPU runs the programs (the iCE40, where no
    # engine lane fits: fpga/board_soc.py, docs/fpga.md "iCE40 UP5K").
    soc_engine_in_hardware: bool = True
    # The SoC's clock where it differs from the engine's (`soc_target_hz`).
    soc_clock_hz: float | None = None
    # The SoC's CPU, a `SocConfig.cpu_variant` (`with_cpu`).
    soc_cpu: str = "Lite"

    @property
    def target_hz(self) -> float:
        """The clock the build constrains the engine to: the board's engine configuration's."""
        return self.config.clock_hz

    @property
    def soc_target_hz(self) -> float:
        """The clock a `--design soc` build constrains the SoC to."""
        return self.soc_clock_hz or self.target_hz

    def with_clock(self, clock_hz: float) -> "Board":
        """This board with its engine at another clock (`sparsebp build --clock-mhz`)."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, clock_hz=clock_hz))

    def with_cpu(self, cpu_variant: str) -> "Board":
        """This board's SoC with another CPU (`--cpu`), at that CPU's clock where one was
        measured on the board (`CPU_SOC_PRESETS`), else at the board's SoC clock."""
        if cpu_variant not in CPU_VARIANTS:
            raise BoardError(f"unknown CPU {cpu_variant!r}; choose one of {', '.join(CPU_VARIANTS)}")
        clock_hz, _ = CPU_SOC_PRESETS.get((self.name, cpu_variant), (self.soc_clock_hz, None))
        return dataclasses.replace(self, soc_cpu=cpu_variant, soc_clock_hz=clock_hz)

    def platform(self):
        import importlib
        module = importlib.import_module(self.platform_module)
        return getattr(module, self.platform_class)()


# The engine-alone build's external window: 4 KiB, room for a tiny program (a descriptor is
# 192 bytes) and its parameters.
ENGINE_ALONE_EXTERNAL_BYTES = 4096

# ECP5-85F: 8 lanes is what its LUTs allow (the engine alone 49,007 TRELLIS_COMB, 59%; 16 lanes
# packed to 86,078 of 83,640 and did not place, session 16, fpga/fit.py), with 74 of the 156
# MULT18X18D. The full 256 KB scratchpad fits because its banks are pumped (one copy, 128
# DP16KD, at twice the engine clock); three plain copies would need 384 of the 208. The parameter memories keep the default's
# 2048 channels (18 DP16KD), enough for every conv of MIT's models.
#
# Clock: the SoC routed on the ULX3S (session 14, static placer) with the engine clock bounded at
# 27.7 MHz by the scratchpad's `sync` -> `fast` half-cycle crossing (18.05 ns); its own paths
# allow 36.4 MHz and the `fast` paths 34.9 (docs/fpga.md, "Measured results"). The ULX3S runs
# 25 MHz (`fast` 50 MHz), timing met with a 10% margin on that bound: its PLL makes 20, 22.5 and
# 25 MHz exactly from 25 MHz and nothing between 25 and 27.7. The OrangeCrab (another package
# and speed grade 8, so its own placement) routed at 24 and at 30 MHz with the engine clock
# bounded at 34.0 MHz by the same crossing (14.71 ns). Main's netlist (session 18) routed there
# with a 35.02 MHz bound and met 33 MHz with the same placement (docs/builds/
# orangecrab-85f-soc-s18-seed1-33mhz.json): 33 MHz (`fast` 66, which the PLL makes exactly
# from 48 MHz) keeps a 6% margin; the PLL's next step, 34 MHz, would keep 3%.
#
# The ULX3S (session 24) carries the two-port scratchpad instead (one copy, its two block-RAM
# ports on the engine's clock, no `fast` domain; docs/fpga.md proposal 11): the SoC routed at
# seed 1 and met 35 MHz with a 35.99 MHz bound (docs/builds/ulx3s-85f-soc-s24-two-port-seed1.json;
# 36.48 MHz with the partial write's merge registered, session 25, ulx3s-85f-soc-s25-merge-seed1.json),
# where the pumped SoC met 25 MHz (bound 27.29). With the shared product's requester chosen by
# the descriptor (session 25) it met 40 MHz at seed 1, bound 41.05 MHz (docs/builds/
# ulx3s-85f-soc-s25-select-seed1-40mhz.json). Iterations take 4-10% more cycles than the
# pumped engine's (a pause cycle more after the vectors that need a port), so 1.5 times less
# time for MobileNetV2's mbv2-49kb iteration at 40 MHz than at 25. The PLL makes 40 MHz
# exactly (25 x 8 / 5).
ULX3S_85F_CLOCK_HZ = 40e6
ORANGECRAB_85F_CLOCK_HZ = 33e6
ECP5_85F_CONFIG = dataclasses.replace(DEFAULT, lanes=8, scratchpad_bytes=256 * 1024,
                                      scratchpad_pumped=True, external_bytes=ENGINE_ALONE_EXTERNAL_BYTES)
ULX3S_85F_CONFIG = dataclasses.replace(ECP5_85F_CONFIG, scratchpad_pumped=False, scratchpad_two_port=True,
                                       clock_hz=ULX3S_85F_CLOCK_HZ)
# The iCEBreaker's SoC (no engine: the CPU runs the programs) runs at 20.25 MHz, not the issue's
# 24: VexRiscv itself bounds it. Every routed build at a 24 MHz target missed it, 18.9-21.98 MHz
# over seeds, both placers, yosys's `-device u -dff` and nextpnr's `--opt-timing` and
# `--promote-logic`, and VexRiscv Min (22.01) did no better; each critical path ran from the
# execute stage's address adder through the data bus handshake and the pipeline's stall into the
# fetch stage's registers, all inside the CPU (docs/fpga.md, "iCE40 UP5K"). At 21 MHz one seed
# in five met it, by 0.2%; at 20.25 MHz (the PLL makes it exactly from 12: DIVF 53, DIVQ 5)
# three of four did, seed 4 with a 6.9% margin (ROUTED_SEEDS). With PicoRV32 instead
# (`--cpu picorv32`, CPU_SOC_PRESETS below) the SoC meets 24 MHz but trains more slowly.
ICEBREAKER_SOC_CLOCK_HZ = 20.25e6
ICE40_CONFIG = dataclasses.replace(DEFAULT, lanes=8, scratchpad_bytes=1024, scratchpad_pumped=False,
                                   external_bytes=256, param_channels=8, clock_hz=24e6)

# nextpnr's placement seed for a build without --seed: the seed with which the design's
# current netlist last routed and met its board's preset clock (docs/fpga.md, "Measured
# results"); 1 for the rest. nextpnr is deterministic for one netlist and seed, and seeds of one
# netlist differ widely here: of the pumped ULX3S SoC at 8ccbc9e (sessions 18-19), seeds 1, 2,
# 4 and 5 did not route, seed 3 met 25 MHz with its engine clock bounded at 26.80 MHz and seed
# 6 at 27.29 MHz. A changed netlist may need another seed: `sparsebp build --seed 6,3,7,8`
# tries them in turn. The two-port ULX3S SoC met 35 MHz at seed 1 (session 24, 35.99 MHz) and
# 40 MHz at seed 1 (session 25, 41.05 MHz).
# The iCEBreaker SoC at 20.25 MHz (session 22): seeds 1-4 routed at 19.99, 21.55, 20.43 and
# 21.65 MHz.
ROUTED_SEEDS = {("ulx3s-85f", "soc"): 1, ("icebreaker", "soc"): 4}

# A board's SoC with a CPU other than its own (`sparsebp build --cpu`): (clock, routed seed).
# The iCEBreaker's SoC with PicoRV32 (session 25) meets 24 MHz, which VexRiscv Lite does not:
# at a 24 MHz target seed 1 routed at 23.25 MHz and seed 2 at 24.88 (docs/fpga.md, "iCE40
# UP5K"). It is not the board's own CPU because it takes more cycles: a last-layer iteration
# 16.39 M against Lite's 8.76 M, 0.68 s at 24 MHz against 0.43 s at 20.25.
CPU_SOC_PRESETS = {("icebreaker", "PicoRV32"): (24e6, 2)}


def default_seed(board_name: str, design: str, cpu_variant: str = "Lite") -> int:
    if design == "soc" and (board_name, cpu_variant) in CPU_SOC_PRESETS:
        return CPU_SOC_PRESETS[(board_name, cpu_variant)][1]
    return ROUTED_SEEDS.get((board_name, design), 1)


BOARDS = {
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", UP5K,
                        12e6, ICE40_CONFIG, soc_engine_in_hardware=False, soc_clock_hz=ICEBREAKER_SOC_CLOCK_HZ),
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", LFE5U_85F, 25e6,
                       ULX3S_85F_CONFIG),
    "orangecrab-85f": Board("orangecrab-85f", "amaranth_boards.orangecrab_r0_2",
                            "OrangeCrabR0_2_85FPlatform", LFE5U_85F, 48e6,
                            dataclasses.replace(ECP5_85F_CONFIG, clock_hz=ORANGECRAB_85F_CLOCK_HZ)),
}


class BoardError(ValueError):
    """A board name or configuration the build cannot use; the message is one line."""


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise BoardError(f"unknown board {name!r}; choose one of {', '.join(sorted(BOARDS))}")
    return BOARDS[name]
