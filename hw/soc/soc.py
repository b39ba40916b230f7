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
The address map is `SocConfig.regions` (hw/soc/config.py). Ports:
- `debug` (Wishbone, in): a third initiator for a testbench or a board's loader: it loads the
  firmware and the flash image while `cpu_reset` is high, and reads the scratchpad when the
  firmware pauses. A board ties it off (cyc low).
- `cpu_reset` in: holds the CPU in reset (the rest of the SoC runs).
- `uart_tx` out; `console_valid`/`console_data` out (hw/soc/uart.py).
- `halted`, `exit_code`, `paused` out (hw/soc/sysctl.py).
`firmware` and `flash` (bytes, optional) initialise the RAM and the engine's external memory (a
bitstream carries both, fpga/board_soc.py); the simulation leaves them empty and loads both over
`debug`.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import SocConfig
from .cpu import VexRiscv
from .engine_bus import EngineOnBus
from .ram import WishboneRAM
from .sysctl import SystemControl
from .uart import UartTx
from .wishbone import Arbiter, Decoder, Signature


class Soc(wiring.Component):
    def __init__(self, config: SocConfig, firmware: bytes | None = None, flash: bytes | None = None):
        self.config = config
        self.flash = bytes(flash or b"")
        if len(self.flash) > config.engine.external_bytes:
            raise ValueError(f"a flash image of {len(self.flash)} bytes does not fit the "
                             f"{config.engine.external_bytes}-byte external memory")
        words = []
        if firmware:
            if len(firmware) > config.ram_bytes:
                raise ValueError(f"firmware of {len(firmware)} bytes does not fit the {config.ram_bytes}-byte RAM")
            padded = bytes(firmware) + bytes(-len(firmware) % 4)
            words = np.frombuffer(padded, "<u4").tolist()
        self.firmware_words = words
        super().__init__({
            "debug": In(Signature(addr_width=30)),
            "cpu_reset": In(1),
            "uart_tx": Out(1), "console_valid": Out(1), "console_data": Out(8),
            "halted": Out(1), "exit_code": Out(8), "paused": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.cpu = cpu = VexRiscv(variant=cfg.cpu_variant, reset_address=cfg.reset_address)
        m.submodules.arbiter = arbiter = Arbiter(addr_width=30, count=3)
        windows = [(r.name, r.base // 4, r.size // 4) for r in cfg.regions]
        m.submodules.decoder = decoder = Decoder(addr_width=30, windows=windows)
        m.submodules.ram = ram = WishboneRAM(size_bytes=cfg.ram_bytes, init=self.firmware_words)
        m.submodules.engine = engine = EngineOnBus(cfg.engine, self.flash)
        m.submodules.sysctl = sysctl = SystemControl()
        m.submodules.uart = uart = UartTx(cycles_per_bit=cfg.uart_cycles_per_bit,
                                          fifo_depth=cfg.uart_fifo_depth)

        m.d.comb += cpu.cpu_reset.eq(self.cpu_reset)
        wiring.connect(m, cpu.dbus, arbiter.initiator0)
        wiring.connect(m, cpu.ibus, arbiter.initiator1)
        wiring.connect(m, wiring.flipped(self.debug), arbiter.initiator2)
        wiring.connect(m, arbiter.bus, decoder.bus)
        wiring.connect(m, decoder.ram, ram.bus)
        wiring.connect(m, decoder.scratchpad, engine.scratchpad)
        wiring.connect(m, decoder.external, engine.external)
        wiring.connect(m, decoder.engine, engine.csr)
        wiring.connect(m, decoder.sysctl, sysctl.bus)
        wiring.connect(m, decoder.uart, uart.bus)
        m.d.comb += [self.uart_tx.eq(uart.tx), self.console_valid.eq(uart.console_valid),
                     self.console_data.eq(uart.console_data), self.halted.eq(sysctl.halted),
                     self.exit_code.eq(sysctl.exit_code), self.paused.eq(sysctl.paused)]
        return m
