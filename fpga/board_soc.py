"""The SoC on a board: VexRiscv, the engine and the firmware in one bitstream that trains the
built-in digits CNN at power-up and reports over the board's UART.

`board_soc_image(engine, clock_hz)` makes what the bitstream carries, before any tool runs:
- the SoC configuration (`board_soc_config`): the board's engine configuration with a 32 KiB
  external memory and the PLL's clock (the UART's divider is computed from it), 16 KiB of RAM;
- the firmware (fpga/firmware/, built with ziglang against that configuration's header), which
  initialises the RAM;
- the flash image (hw/soc/job.py): the built-in CNN's training program for `builtin-sparse`
  (compiled for the board's engine), its job block and `BOARD_SAMPLES` digits training samples,
  which initialises the engine's external memory. On a board that memory is block RAM loaded
  with the bitstream, not the board's SPI flash: the engine's external port has the on-chip
  window's latency (docs/engine.md), which a serial flash could not give.
`BoardSoc` is the top: the PLL (`sync`, and `fast` for the pumped scratchpad), the SoC, the
UART's transmit pin, and LEDs: running, finished (exit code 0), failed (any other code).
The CPU leaves reset when the PLL locks and runs the job once (`BOARD_SAMPLES` iterations,
one UART line each, sim/soc_run.py's `LINE`), then halts.

This is the same SoC and firmware the Verilator tests run (tests/test_soc.py); the ULX3S's
configuration with both memories initialised runs there too, bit-exact
(`test_board_soc_runs_its_job_from_initialised_memories`, `sparsebp sim soc --board`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io

from golden.engine.config import DEFAULT
from hw.soc.config import SocConfig

from .clocks import add_clock_domains

# Block RAM decides the sizes: the ECP5-85F preset's engine takes 170 of the 208 DP16KD with a
# 4 KiB external window (fpga/fit.py); the window has two read ports, so yosys maps it twice, and
# at 32 KiB it takes 32 blocks instead of 8. The RAM then gets 16 KiB (8 blocks): the firmware
# needs 14,588 bytes of code, data and bss, the rest is its stack.
BOARD_RAM_BYTES = 16 * 1024        # firmware code, data and stack
BOARD_EXTERNAL_BYTES = 32 * 1024   # the training program, its job block and the samples
BOARD_JOB_OFFSET = 0x5000          # above the built-in CNN's program image (17,440 bytes, 8 lanes)
BOARD_SAMPLES = 64                 # training iterations at power-up: digits samples 0..63
BOARD_BAUD = 115200.0


# The iCE40's SoC has no engine (docs/fpga.md, "iCE40 UP5K"): the CPU runs the programs, and the
# four SPRAM blocks (128 KiB, one memory) hold the firmware's RAM (the soft firmware's 24 KB of
# code, its data and stack: 32 KiB leaves less than the 1 KiB of stack link.ld asks for), the
# scratchpad and the external memory. The bitstream cannot initialise SPRAM, so the boot ROM
# loads both from the board's flash (hw/soc/boot.py).
SOFT_RAM_BYTES = 64 * 1024
SOFT_SCRATCHPAD_BYTES = 32 * 1024      # the built-in CNN's training peaks at 7,408 bytes
SOFT_EXTERNAL_BYTES = 32 * 1024        # as BOARD_EXTERNAL_BYTES


def board_soc_config(engine, clock_hz: float, engine_in_hardware: bool = True,
                     cpu_variant: str = "Lite") -> SocConfig:
    """`engine`: the board's EngineConfig (fpga/boards.py), `clock_hz` the PLL's `sync` clock;
    `engine_in_hardware` False: the SoC without the engine (the iCE40's), whose `engine` is
    then only the program format's parameters (lanes, sizes) the CPU runs; `cpu_variant` the
    board's `soc_cpu`."""
    if not engine_in_hardware:
        engine = dataclasses.replace(engine, scratchpad_bytes=SOFT_SCRATCHPAD_BYTES,
                                     external_bytes=SOFT_EXTERNAL_BYTES, param_channels=DEFAULT.param_channels,
                                     scratchpad_pumped=False, clock_hz=clock_hz)
        return SocConfig(engine=engine, ram_bytes=SOFT_RAM_BYTES, uart_baud=BOARD_BAUD,
                         job_offset=BOARD_JOB_OFFSET, engine_in_hardware=False, boot_from_flash=True,
                         cpu_variant=cpu_variant)
    engine = dataclasses.replace(engine, external_bytes=BOARD_EXTERNAL_BYTES, clock_hz=clock_hz)
    return SocConfig(engine=engine, ram_bytes=BOARD_RAM_BYTES, uart_baud=BOARD_BAUD,
                     job_offset=BOARD_JOB_OFFSET, cpu_variant=cpu_variant)


@dataclass(frozen=True)
class BoardSocImage:
    config: SocConfig
    firmware: bytes            # the RAM's initial contents
    flash: bytes               # the engine's external memory's initial contents
    samples: int
    boot: bytes = b""          # with `config.boot_from_flash`: the image for the board's SPI flash

    @property
    def in_bitstream(self) -> bool:
        """Whether the bitstream carries the firmware and the job (else the SPI flash does)."""
        return not self.config.boot_from_flash


def board_soc_image(engine, clock_hz: float, samples: int = BOARD_SAMPLES,
                    engine_in_hardware: bool = True, cpu_variant: str = "Lite") -> BoardSocImage:
    """The configuration, firmware and flash image of a board's SoC around `engine`; a JobError
    or FirmwareError (one sentence) when the job or the firmware does not fit."""
    from hw.soc.boot import boot_image
    from hw.soc.firmware import build_firmware
    from sim.soc_run import prepare
    config = board_soc_config(engine, clock_hz, engine_in_hardware, cpu_variant)
    job = prepare(samples, config, pause=False)
    firmware = build_firmware(config)
    flash = job.flash.data.tobytes()
    boot = boot_image(config, firmware.binary, flash) if config.boot_from_flash else b""
    return BoardSocImage(config, firmware.binary, flash, samples, boot)


class BoardSoc(Elaboratable):
    """Top of a board's SoC bitstream. `clocks` drives `sync` (and `fast`), as for the engine
    alone (fpga/clocks.py); the SoC's reset is the domain's, held until the PLL locks."""

    def __init__(self, image: BoardSocImage, clocks=None):
        from hw.soc.soc import Soc
        self.image, self.clocks = image, clocks
        if image.in_bitstream:
            self.soc = Soc(image.config, firmware=image.firmware, flash=image.flash)
        else:                       # the boot ROM loads them from the SPI flash
            self.soc = Soc(image.config)

    def elaborate(self, platform):
        m = Module()
        add_clock_domains(m, self.clocks)
        m.submodules.soc = soc = self.soc
        running, finished, failed = Signal(), Signal(), Signal()
        m.d.comb += [running.eq(~soc.halted), finished.eq(soc.halted & (soc.exit_code == 0)),
                     failed.eq(soc.halted & (soc.exit_code != 0))]
        if platform is None:
            return m
        names = {name for name, _ in platform.resources}
        if self.image.config.boot_from_flash:
            self._connect_flash(m, platform, soc)
        if "uart" in names:         # the OrangeCrab has none: its console is not wired
            uart = platform.request("uart", 0, dir="-")
            m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
            m.d.comb += tx.o.eq(soc.uart_tx)
        leds = {number for name, number in platform.resources if name == "led"}
        if "rgb_led" in names:      # the OrangeCrab: red failed, green finished, blue running
            rgb = platform.request("rgb_led", 0, dir="-")
            pins = [(rgb.r, failed), (rgb.g, finished), (rgb.b, running)]
        elif len(leds) < 3:         # the iCEBreaker: LED 0 (red) failed, LED 1 (green) finished
            pins = [(platform.request("led", 0, dir="-"), failed), (platform.request("led", 1, dir="-"), finished)]
        else:                       # LEDs 0, 1, 2: running, finished, failed
            pins = [(platform.request("led", k, dir="-"), value)
                    for k, value in enumerate((running, finished, failed))]
        for k, (pin, value) in enumerate(pins):
            buffer = io.Buffer("o", pin)
            m.submodules[f"led{k}"] = buffer
            m.d.comb += buffer.o.eq(value)
        return m

    @staticmethod
    def _connect_flash(m, platform, soc):
        """The flash reader on the board's configuration flash (one data line; the resource's
        `cs`, `wp` and `hold` are active high, the pins low)."""
        flash = platform.request("spi_flash_1x", 0, dir="-")
        for name, direction, signal in (("cs", "o", soc.spi_flash.cs), ("clk", "o", soc.spi_flash.clk),
                                        ("copi", "o", soc.spi_flash.copi), ("cipo", "i", soc.spi_flash.cipo)):
            m.submodules[f"flash_{name}"] = buffer = io.Buffer(direction, getattr(flash, name))
            m.d.comb += (buffer.o.eq(signal) if direction == "o" else signal.eq(buffer.i))
        for name in ("wp", "hold"):              # not protected, not held
            if hasattr(flash, name):
                m.submodules[f"flash_{name}"] = buffer = io.Buffer("o", getattr(flash, name))
                m.d.comb += buffer.o.eq(0)
