"""Booting from the board's SPI flash: the boot ROM the CPU starts in, and the image it loads.

A SoC with `SocConfig.boot_from_flash` (the iCE40's: SPRAM has no initial contents in a
bitstream) starts at `BOOT_BASE` in `BootRom`, a few words of RV32I (fpga/firmware/boot.S,
built with ziglang against the configuration: `build_boot_rom`). The ROM zeroes the SoC's
memory, copies the boot image's segments from the flash window (hw/soc/spi_flash.py) and jumps
to the firmware at the RAM's base. A bad image halts the SoC before any of it runs, with
`EXIT_BAD_IMAGE` (no magic word: an erased flash), `EXIT_BAD_SEGMENT` (a segment outside the
memory) or `EXIT_BAD_SUM` (the words do not add up to the image's sum: a corrupted flash).

`boot_image(config, firmware, flash)` is what goes into the flash at `config.boot_image_offset`
(`iceprog -o`): the magic, the segment count, the sum (32 bits) of every word after it, then
per segment its destination, its length and its bytes: the firmware at the RAM's base and the
job's flash image (hw/soc/job.py) at the external window's base. The memory then holds what a
simulation loads over the debug bus.

`BootRom` timing: as WishboneRAM (`ack` one cycle after `stb`); writes get `err`.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from .config import SocConfig
from .registers import SYSCTL
from .wishbone import Signature

BOOT_MAGIC = 0x49425053            # "SPBI" little-endian
# The SoC's exit codes for a bad boot image (the firmware's own are below 0x10).
EXIT_BAD_IMAGE = 0xB1              # no magic word: the flash holds no boot image
EXIT_BAD_SEGMENT = 0xB2            # a segment outside the memory
EXIT_BAD_SUM = 0xB3                # the image's words do not add up to its sum
SOURCE = "boot.S"


def boot_image(config: SocConfig, firmware: bytes, flash: bytes) -> bytes:
    """The flash's boot image for `config`: `firmware` to the RAM, `flash` (the job's image) to
    the external window. ValueError if either does not fit its window or the image the flash."""
    segments = [(config.region("ram"), bytes(firmware)), (config.region("external"), bytes(flash))]
    body = b""
    for region, data in segments:
        if len(data) > region.size:
            raise ValueError(f"{len(data)} bytes do not fit the {region.size}-byte {region.name} window")
        padded = data + bytes(-len(data) % 4)
        body += np.array([region.base, len(padded)], "<u4").tobytes() + padded
    total = int(np.frombuffer(body, "<u4").sum(dtype=np.uint64)) & 0xFFFF_FFFF
    image = np.array([BOOT_MAGIC, len(segments), total], "<u4").tobytes() + body
    room = config.region("spi_flash").size - config.boot_image_offset
    if len(image) > room:
        raise ValueError(f"the boot image ({len(image)} bytes) does not fit the flash's {room} bytes "
                         f"above offset {config.boot_image_offset:#x}")
    return image


def build_boot_rom(config: SocConfig) -> bytes:
    """The ROM's contents for `config` (cached as the firmware is, hw/soc/firmware.py)."""
    from .firmware import FLAGS, SOURCE_DIR, FirmwareError, _zig, cached_build, compiler_available
    ok, reason = compiler_available()
    if not ok:
        raise FirmwareError(reason)
    rom = config.region("boot")
    memory_end = config.region("ram").base + config.memory_bytes
    defines = {"MEMORY_BASE": config.region("ram").base, "MEMORY_END": memory_end,
               "BOOT_IMAGE": config.region("spi_flash").base + config.boot_image_offset,
               "BOOT_MAGIC": BOOT_MAGIC, "SYSCTL_HALT": config.region("sysctl").base + SYSCTL.offset("halt"),
               "BOOT_EXIT_BAD_IMAGE": EXIT_BAD_IMAGE, "BOOT_EXIT_BAD_SEGMENT": EXIT_BAD_SEGMENT,
               "BOOT_EXIT_BAD_SUM": EXIT_BAD_SUM, "FIRMWARE_ENTRY": config.region("ram").base}
    flags = FLAGS + tuple(f"-D{name}=0x{value:x}" for name, value in defines.items())
    script = (f"MEMORY {{ ROM (rx) : ORIGIN = 0x{rom.base:x}, LENGTH = 0x{rom.size:x} }}\n"
              "ENTRY(_start)\nSECTIONS { .text : { *(.text.start) *(.text .text.*) } > ROM\n"
              "  /DISCARD/ : { *(.comment) *(.riscv.attributes) *(.note*) } }\n")

    def build(work):
        result = _zig("cc", *flags, "-T", "boot.ld", "-o", "boot.elf", SOURCE, cwd=work)
        if result.returncode:
            raise FirmwareError(f"assembling the boot ROM in {work} failed:\n{result.stdout}{result.stderr}")
        result = _zig("objcopy", "-O", "binary", "boot.elf", "boot.bin", cwd=work)
        if result.returncode:
            raise FirmwareError(f"objcopy failed in {work}:\n{result.stdout}{result.stderr}")

    files = {SOURCE: (SOURCE_DIR / SOURCE).read_text(), "boot.ld": script}
    directory, _ = cached_build("boot", files, flags, "boot.bin", build)
    return (directory / "boot.bin").read_bytes()


class BootRom(wiring.Component):
    def __init__(self, config: SocConfig):
        code = build_boot_rom(config)
        size = config.region("boot").size
        if len(code) > size:
            raise ValueError(f"the boot ROM's code ({len(code)} bytes) does not fit its {size} bytes")
        padded = code + bytes(size - len(code))
        self.words = np.frombuffer(padded, "<u4").tolist()
        super().__init__({"bus": In(Signature(addr_width=(size // 4 - 1).bit_length()))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.rom = rom = memory.Memory(shape=32, depth=len(self.words), init=self.words)
        read = rom.read_port()
        active = bus.cyc & bus.stb & ~bus.ack & ~bus.err
        m.d.comb += [read.addr.eq(bus.adr), read.en.eq(active), bus.dat_r.eq(read.data)]
        m.d.sync += [bus.ack.eq(active & ~bus.we), bus.err.eq(active & bus.we)]
        return m
