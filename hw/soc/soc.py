"""The system-on-chip: VexRiscv, the engine, RAM, UART and system control on one Wishbone bus.

```
 CPU ibus --+
 CPU dbus --+-- Arbiter -- Decoder --+-- ram          (code, data, stack)
 debug    --+  (round-robin)         +-- scratchpad   (engine host port, while idle)
                                     +-- external     (engine host port: the flash model)
                                     +-- sysctl       (cycles, halt, pause)
                                     +-- uart         (transmit FIFO, console tap)
                                     +-- engine       (control and status registers)
```
Without the engine (`SocConfig.engine_in_hardware` False, the iCE40's SoC) the firmware runs the
programs on the CPU, and one memory `memory` (4 SPRAM blocks on the iCE40) holds the RAM, the
scratchpad and the external memory as consecutive windows; with `boot_from_flash` a boot ROM
and the SPI flash reader join the bus (hw/soc/boot.py, hw/soc/spi_flash.py) and the CPU starts in
the ROM, which copies the image from flash into that memory.

The address map is `SocConfig.regions` (hw/soc/config.py), the decoder's `bus_regions`. Ports:
- `debug` (Wishbone, in): a third initiator for a testbench or a board's loader: it loads the
  firmware and the flash image while `cpu_reset` is high, and reads the scratchpad when the
  firmware pauses. A board ties it off (cyc low).
- `cpu_reset` in: holds the CPU in reset (the rest of the SoC runs).
- `uart_tx` out; `console_valid`/`console_data` out (hw/soc/uart.py).
- `halted`, `exit_code`, `paused` out (hw/soc/sysctl.py).
- `spi_flash` (with `boot_from_flash`): the flash's pins (hw/soc/spi_flash.py).
`firmware` and `flash` (bytes, optional) initialise the RAM and the engine's external memory (a
bitstream carries both, fpga/board_soc.py); the simulation leaves them empty and loads both over
`debug`. Without the engine they initialise the shared memory's windows instead.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import SocConfig
from .cpu import PicoRV32, VexRiscv
from .engine_bus import EngineOnBus
from .ram import WishboneRAM
from .sysctl import SystemControl
from .uart import UartTx
from .wishbone import Arbiter, Decoder, Signature


class Soc(wiring.Component):
    def __init__(self, config: SocConfig, firmware: bytes | None = None, flash: bytes | None = None):
        self.config = config
        self.flash = bytes(flash or b"")
        firmware = bytes(firmware or b"")
        if len(self.flash) > config.engine.external_bytes:
            raise ValueError(f"a flash image of {len(self.flash)} bytes does not fit the "
                             f"{config.engine.external_bytes}-byte external memory")
        if len(firmware) > config.ram_bytes:
            raise ValueError(f"firmware of {len(firmware)} bytes does not fit the {config.ram_bytes}-byte RAM")
        if not config.engine_in_hardware and (firmware or self.flash):
            image = np.zeros(config.memory_bytes, np.uint8)
            image[:len(firmware)] = np.frombuffer(firmware, np.uint8)
            at = config.region("external").base - config.region("ram").base
            image[at:at + len(self.flash)] = np.frombuffer(self.flash, np.uint8)
            firmware = image[:at + len(self.flash)].tobytes()
        padded = firmware + bytes(-len(firmware) % 4)
        self.firmware_words = np.frombuffer(padded, "<u4").tolist()
        members = {
            "debug": In(Signature(addr_width=30)),
            "cpu_reset": In(1),
            "uart_tx": Out(1), "console_valid": Out(1), "console_data": Out(8),
            "halted": Out(1), "exit_code": Out(8), "paused": Out(1),
        }
        if config.boot_from_flash:
            from .spi_flash import PinsSignature
            members["spi_flash"] = Out(PinsSignature())
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        if cfg.cpu_variant == "PicoRV32":
            m.submodules.cpu = cpu = PicoRV32(reset_address=cfg.reset_address)
        else:
            m.submodules.cpu = cpu = VexRiscv(variant=cfg.cpu_variant, reset_address=cfg.reset_address)
        m.submodules.arbiter = arbiter = Arbiter(addr_width=30, count=3)
        windows = [(r.name, r.base // 4, r.size // 4) for r in cfg.bus_regions]
        # Registered answers only without the engine: they shorten the iCE40 SoC's paths, but they
        # change the ECP5 SoCs' netlist, whose routed seeds would have to be searched again (at
        # seed 6 the ULX3S SoC met 22.22 MHz with them instead of 27.29; docs/soc.md).
        m.submodules.decoder = decoder = Decoder(addr_width=30, windows=windows,
                                                 registered_answers=not cfg.engine_in_hardware)
        # (The order of the statements below is the RTLIL's: the ECP5 SoC's netlist, whose
        # placement seed routed (fpga/boards.py: ROUTED_SEEDS), is kept as it was.)
        if cfg.engine_in_hardware:
            m.submodules.ram = ram = WishboneRAM(size_bytes=cfg.ram_bytes, init=self.firmware_words)
            m.submodules.engine = engine = EngineOnBus(cfg.engine, self.flash)
        else:
            m.submodules.memory = memory = WishboneRAM(size_bytes=cfg.memory_bytes, init=self.firmware_words,
                                                       single_port=True)
        if cfg.boot_from_flash:
            from .boot import BootRom
            from .spi_flash import SpiFlashReader
            m.submodules.boot = boot = BootRom(cfg)
            m.submodules.spi_flash = reader = SpiFlashReader(size_bytes=cfg.region("spi_flash").size,
                                                             clock_hz=cfg.clock_hz)
        m.submodules.sysctl = sysctl = SystemControl()
        m.submodules.uart = uart = UartTx(cycles_per_bit=cfg.uart_cycles_per_bit,
                                          fifo_depth=cfg.uart_fifo_depth)

        m.d.comb += cpu.cpu_reset.eq(self.cpu_reset)
        if cfg.cpu_variant == "PicoRV32":
            # one port for instructions and data; initiator1 stays idle (its cyc low)
            wiring.connect(m, cpu.bus, arbiter.initiator0)
        else:
            wiring.connect(m, cpu.dbus, arbiter.initiator0)
            wiring.connect(m, cpu.ibus, arbiter.initiator1)
        wiring.connect(m, wiring.flipped(self.debug), arbiter.initiator2)
        wiring.connect(m, arbiter.bus, decoder.bus)
        if cfg.engine_in_hardware:
            wiring.connect(m, decoder.ram, ram.bus)
            wiring.connect(m, decoder.scratchpad, engine.scratchpad)
            wiring.connect(m, decoder.external, engine.external)
            wiring.connect(m, decoder.engine, engine.csr)
        else:
            wiring.connect(m, decoder.memory, memory.bus)
        if cfg.boot_from_flash:
            wiring.connect(m, decoder.boot, boot.bus)
            wiring.connect(m, decoder.spi_flash, reader.bus)
            wiring.connect(m, reader.pins, wiring.flipped(self.spi_flash))
        wiring.connect(m, decoder.sysctl, sysctl.bus)
        wiring.connect(m, decoder.uart, uart.bus)
        m.d.comb += [self.uart_tx.eq(uart.tx), self.console_valid.eq(uart.console_valid),
                     self.console_data.eq(uart.console_data), self.halted.eq(sysctl.halted),
                     self.exit_code.eq(sysctl.exit_code), self.paused.eq(sysctl.paused)]
        return m
