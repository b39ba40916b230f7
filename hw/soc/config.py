"""The SoC configuration: one frozen object for the RTL, the address map, the firmware header
and the simulation harness (STYLE convention 1). Presets are `dataclasses.replace(DEFAULT, ...)`.

The address map is computed here once: the Wishbone decoder, the header the firmware is built
against (`hw.soc.header`) and the testbench all read `SocConfig.regions`; nothing restates an
address by hand. Every region is a power of two in size and aligned to its size, so the decoder
compares only the high address bits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from golden.engine.config import SMALL, EngineConfig

# The SoC's CPUs, the command line's name (`--cpu`) -> `SocConfig.cpu_variant`: VexRiscv Lite,
# or PicoRV32 (hw/soc/cpu.py explains them)
CPU_CHOICES = {"vexriscv-lite": "Lite", "picorv32": "PicoRV32"}
CPU_VARIANTS = tuple(CPU_CHOICES.values())


def cpu_name(variant: str) -> str:
    """What reports and the firmware's banner call the CPU of a `SocConfig.cpu_variant`."""
    return "PicoRV32" if variant == "PicoRV32" else f"VexRiscv {variant}"


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class Region:
    name: str
    base: int          # byte address
    size: int          # bytes, a power of two, base aligned to it

    @property
    def end(self) -> int:
        return self.base + self.size


# Bases of the regions (byte addresses). Sizes come from the configuration.
RAM_BASE = 0x0000_0000
SCRATCHPAD_BASE = 0x1000_0000
EXTERNAL_BASE = 0x2000_0000
SYSCTL_BASE = 0xF000_0000
UART_BASE = 0xF000_1000
ENGINE_BASE = 0xF000_2000
PERIPHERAL_BYTES = 0x100
# With `boot_from_flash`: the boot ROM (hw/soc/boot.py) and the board's SPI flash, read-only.
BOOT_BASE = 0x3000_0000
BOOT_ROM_BYTES = 256
SPI_FLASH_BASE = 0x4000_0000
SPI_FLASH_BYTES = 16 * 1024 * 1024     # the iCEBreaker's W25Q128


@dataclass(frozen=True)
class SocConfig:
    engine: EngineConfig = SMALL
    ram_bytes: int = 32 * 1024            # on-chip RAM: firmware code, data and stack
    uart_baud: float = 115200.0
    uart_fifo_depth: int = 64             # transmit FIFO entries
    cpu_variant: str = "Lite"
    # Where in external memory (flash) the training job block sits (hw/soc/job.py); the
    # training program image starts at 0 below it.
    job_offset: int = 0x1_0000
    # False: no engine on the bus. The firmware runs the programs on the CPU (built with
    # `soft_engine`, fpga/firmware/engine_soft.c), and the scratchpad and the external memory are
    # windows of one RAM right after the firmware's (`memory_bytes`, one memory the iCE40's four
    # SPRAM blocks hold; the engine's sizes in `engine` give the windows' sizes).
    engine_in_hardware: bool = True
    # A boot ROM copies the firmware and the job from the board's SPI flash into RAM at reset
    # (hw/soc/boot.py): for memories a bitstream cannot initialise, the iCE40's SPRAM.
    boot_from_flash: bool = False
    # Where in the SPI flash the boot image starts (above the bitstream).
    boot_image_offset: int = 0x10_0000

    def __post_init__(self):
        if not _is_pow2(self.ram_bytes) or not 4096 <= self.ram_bytes <= 1 << 20:
            raise ValueError(f"ram_bytes must be a power of two from 4 KiB to 1 MiB, not {self.ram_bytes}")
        if self.cpu_variant not in CPU_VARIANTS:
            raise ValueError(f"cpu_variant must be one of {', '.join(CPU_VARIANTS)}, not {self.cpu_variant!r}")
        if not 2 <= self.uart_cycles_per_bit <= 65535:
            raise ValueError(f"the UART needs 2..65535 clock cycles per bit; {self.uart_baud} baud at "
                             f"{self.engine.clock_hz} Hz gives {self.uart_cycles_per_bit}")
        if not _is_pow2(self.uart_fifo_depth) or not 2 <= self.uart_fifo_depth <= 4096:
            raise ValueError(f"uart_fifo_depth must be a power of two from 2 to 4096, not {self.uart_fifo_depth}")
        if self.job_offset % 4 or not 0 < self.job_offset < self.engine.external_bytes:
            raise ValueError(f"job_offset must be a word-aligned offset inside the {self.engine.external_bytes}-byte "
                             f"external memory, not {self.job_offset}")
        if not self.engine_in_hardware and not _is_pow2(self.memory_bytes):
            raise ValueError(f"without the engine, the RAM, scratchpad and external memory share one memory: "
                             f"{self.ram_bytes} + {self.engine.scratchpad_bytes} + {self.engine.external_bytes} "
                             f"bytes is not a power of two")
        if self.boot_from_flash and not 0 <= self.boot_image_offset < SPI_FLASH_BYTES - self.memory_bytes:
            raise ValueError(f"boot_image_offset {self.boot_image_offset:#x} leaves no room for the image "
                             f"in the {SPI_FLASH_BYTES}-byte flash")
        for region in self.regions:
            if not _is_pow2(region.size) or region.base % region.size:
                raise ValueError(f"region {region.name} of {region.size} bytes at {region.base:#x} is not a "
                                 f"power of two aligned to its size")
        ordered = sorted(self.regions, key=lambda r: r.base)
        for low, high in zip(ordered, ordered[1:]):
            if low.end > high.base:
                raise ValueError(f"regions {low.name} and {high.name} overlap")

    @property
    def clock_hz(self) -> float:
        return self.engine.clock_hz

    @property
    def uart_cycles_per_bit(self) -> int:
        return round(self.engine.clock_hz / self.uart_baud)

    @property
    def memory_bytes(self) -> int:
        """Without the engine: the one memory holding the RAM, the scratchpad and the external memory."""
        return self.ram_bytes + self.engine.scratchpad_bytes + self.engine.external_bytes

    @property
    def regions(self) -> tuple[Region, ...]:
        """The address map the firmware and the testbench see."""
        scratchpad, external = self.engine.scratchpad_bytes, self.engine.external_bytes
        if self.engine_in_hardware:
            memories = (Region("ram", RAM_BASE, self.ram_bytes),
                        Region("scratchpad", SCRATCHPAD_BASE, scratchpad),
                        Region("external", EXTERNAL_BASE, external))
        else:               # consecutive windows of one memory (bus_regions)
            memories = (Region("ram", RAM_BASE, self.ram_bytes),
                        Region("scratchpad", RAM_BASE + self.ram_bytes, scratchpad),
                        Region("external", RAM_BASE + self.ram_bytes + scratchpad, external))
        return memories + self._peripherals()

    @property
    def bus_regions(self) -> tuple[Region, ...]:
        """The windows the bus decodes: `regions`, with the three memories as one `memory` when
        there is no engine."""
        if self.engine_in_hardware:
            return self.regions
        return (Region("memory", RAM_BASE, self.memory_bytes),) + self._peripherals()

    def _peripherals(self) -> tuple[Region, ...]:
        regions = (Region("sysctl", SYSCTL_BASE, PERIPHERAL_BYTES), Region("uart", UART_BASE, PERIPHERAL_BYTES))
        if self.engine_in_hardware:
            regions += (Region("engine", ENGINE_BASE, PERIPHERAL_BYTES),)
        if self.boot_from_flash:
            regions += (Region("boot", BOOT_BASE, BOOT_ROM_BYTES), Region("spi_flash", SPI_FLASH_BASE, SPI_FLASH_BYTES))
        return regions

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(f"no region {name!r}; the regions are {', '.join(r.name for r in self.regions)}")

    @property
    def reset_address(self) -> int:
        return BOOT_BASE if self.boot_from_flash else RAM_BASE


DEFAULT = SocConfig()
# Simulation: the UART sends a bit every 8 cycles, so a line drains during one forward pass and
# the transcript costs little simulated time (the cycle figures do not depend on it: the
# firmware never waits for the UART while the engine is idle, see docs/soc.md).
# Its engine is SMALL with 16 KiB of scratchpad and 128 KiB of external memory (the digits CNN's
# training program peaks at about 4 KB, the flash image is about 70 KB): the memories' initial
# contents make up most of the Verilog, and smaller ones build faster.
SIM_ENGINE = dataclasses.replace(SMALL, scratchpad_bytes=16 * 1024, external_bytes=128 * 1024)
# 64 KiB of RAM, not the boards' 32: the firmware that runs the programs on the CPU
# (`build_firmware(soft_engine=True)`, about 23 KB of code) leaves no room for the stack in 32.
SIM = dataclasses.replace(DEFAULT, engine=SIM_ENGINE, ram_bytes=64 * 1024, uart_baud=DEFAULT.engine.clock_hz / 8)
PRESETS = {"default": DEFAULT, "sim": SIM}
