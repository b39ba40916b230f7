"""A read-only window onto a serial (SPI) NOR flash: the iCEBreaker's W25Q128, from which the
iCE40 SoC's boot ROM copies the firmware and the job into SPRAM (hw/soc/boot.py).

Protocol: SPI mode 0 (the flash samples `copi` on the rising edge of `clk` and shifts `cipo`
out after the falling edge), `clk` half the system clock, one data line. At reset the reader
wakes the flash from deep power-down (command 0xAB: the iCE40 may leave it asleep after
configuration) and waits `wake_cycles` (tRES1, 3 us on the W25Q128). A word read sends READ
(0x03) and the 24-bit byte address, then shifts in four bytes, the lowest address first (a
little-endian word). `cs` stays asserted afterwards: a read of the next word continues the same
command with only its 32 data bits.

Timing of a bus read (cycles from `stb` to `ack`): 132 for a new address (end the last read,
select, 64 of command, 1, 64 of data, answer), 66 when it continues the previous read (1 + 64 +
answer). Writes get `err` one cycle after `stb`; nothing changes.

`pins`: `cs` (active high: the board's resource inverts it), `clk`, `copi` out, `cipo` in.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .wishbone import Signature

READ, RELEASE_POWER_DOWN = 0x03, 0xAB
WAKE_SECONDS = 3e-6                      # W25Q128 tRES1


class PinsSignature(wiring.Signature):
    def __init__(self):
        super().__init__({"cs": Out(1), "clk": Out(1), "copi": Out(1), "cipo": In(1)})


def wake_cycles(clock_hz: float) -> int:
    """Cycles to wait after the wake-up command at `clock_hz` (with one cycle to spare)."""
    return int(WAKE_SECONDS * clock_hz) + 2


class SpiFlashReader(wiring.Component):
    def __init__(self, *, size_bytes: int = 16 * 1024 * 1024, clock_hz: float = 24e6):
        if size_bytes & (size_bytes - 1) or not 4 <= size_bytes <= 1 << 24:
            raise ValueError(f"the flash window must be a power of two up to 16 MiB (24-bit addresses), "
                             f"not {size_bytes}")
        self.wake = wake_cycles(clock_hz)
        super().__init__({"bus": In(Signature(addr_width=(size_bytes // 4 - 1).bit_length())),
                          "pins": Out(PinsSignature())})

    def elaborate(self, platform):
        m = Module()
        bus, pins = self.bus, self.pins
        out_shift = Signal(32)        # command and address, most significant bit first on copi
        in_shift = Signal(32)         # bits from cipo, in the order they arrive
        bits = Signal(range(33))      # bits left in the current shift
        wait = Signal(range(self.wake + 1))
        next_adr = Signal.like(bus.adr)
        streaming = Signal()          # `cs` is held after a read: the next word may continue it
        m.d.comb += pins.copi.eq(out_shift[31])
        active = bus.cyc & bus.stb & ~bus.ack & ~bus.err
        m.d.sync += [bus.ack.eq(0), bus.err.eq(0)]

        def shift(then):
            """One bit per two cycles: rising edge (sample cipo), then falling edge (next copi)."""
            with m.If(~pins.clk):
                m.d.sync += [pins.clk.eq(1), in_shift.eq(Cat(pins.cipo, in_shift[:-1]))]
            with m.Else():
                m.d.sync += [pins.clk.eq(0), out_shift.eq(out_shift << 1), bits.eq(bits - 1)]
                with m.If(bits == 1):
                    m.next = then

        with m.FSM():
            with m.State("WAKE"):
                m.d.sync += [pins.cs.eq(1), out_shift.eq(RELEASE_POWER_DOWN << 24), bits.eq(8)]
                m.next = "WAKE-COMMAND"
            with m.State("WAKE-COMMAND"):
                shift("WAKE-WAIT")
                m.d.sync += wait.eq(self.wake)
            with m.State("WAKE-WAIT"):
                m.d.sync += [pins.cs.eq(0), wait.eq(wait - 1)]
                with m.If(wait == 0):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(active & bus.we):
                    m.d.sync += bus.err.eq(1)
                with m.Elif(active & streaming & (bus.adr == next_adr)):
                    m.d.sync += bits.eq(32)
                    m.next = "DATA"
                with m.Elif(active):
                    m.d.sync += [pins.cs.eq(0), streaming.eq(0)]     # end the previous read
                    m.next = "SELECT"
            with m.State("SELECT"):
                byte_address = Cat(Const(0, 2), bus.adr)          # 24 bits at most (the window)
                m.d.sync += [pins.cs.eq(1), out_shift.eq(Cat(byte_address, Const(0, 24 - len(byte_address)),
                                                             Const(READ, 8))), bits.eq(32)]
                m.next = "COMMAND"
            with m.State("COMMAND"):
                shift("DATA-START")
            with m.State("DATA-START"):
                m.d.sync += bits.eq(32)
                m.next = "DATA"
            with m.State("DATA"):
                shift("ANSWER")
            with m.State("ANSWER"):
                # the first byte arrived first: it is the word's lowest
                m.d.sync += [bus.dat_r.eq(Cat(in_shift[24:32], in_shift[16:24], in_shift[8:16], in_shift[0:8])),
                             bus.ack.eq(1), next_adr.eq(bus.adr + 1), streaming.eq(1)]
                m.next = "IDLE"
        return m
