"""System control: the cycle counter, the halt register and the pause handshake.

Registers (hw/soc/registers.py, SYSCTL): `cycles` counts clock cycles from reset; a write to
`halt` raises the `halted` output for good and puts the written byte on `exit_code`; `pause`
bit 0 is the `paused` output (the firmware sets it after an iteration when asked to, and waits
until a testbench on the debug bus has read what it wants and cleared it).
Bus timing as WishboneRAM: `ack` one cycle after `stb`.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .registers import SYSCTL
from .wishbone import Signature


class SystemControl(wiring.Component):
    bus: In(Signature(addr_width=6))
    halted: Out(1)
    exit_code: Out(8)
    paused: Out(1)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        cycles = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        active = bus.cyc & bus.stb & ~bus.ack
        m.d.sync += bus.ack.eq(active)
        with m.If(active):
            with m.Switch(bus.adr):
                with m.Case(SYSCTL.word("cycles")):
                    m.d.sync += bus.dat_r.eq(cycles)
                with m.Case(SYSCTL.word("pause")):
                    m.d.sync += bus.dat_r.eq(self.paused)
                    with m.If(bus.we):
                        m.d.sync += self.paused.eq(bus.dat_w[0])
                with m.Case(SYSCTL.word("halt")):
                    with m.If(bus.we):
                        m.d.sync += [self.halted.eq(1), self.exit_code.eq(bus.dat_w[:8])]
                with m.Default():
                    m.d.sync += bus.dat_r.eq(0)
        return m
