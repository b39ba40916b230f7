"""UART transmitter with a FIFO, 8N1, on a Wishbone port.

Registers (hw/soc/registers.py, UART): a write to `tx_data` pushes a byte into the FIFO and is
acknowledged when the FIFO has room (the bus waits while it is full); `status` tells whether the
FIFO is full and whether everything has been sent; `cycles_per_bit` sets the bit time.
`tx` idles high; a byte goes out as a start bit (0), eight data bits LSB first and a stop bit
(1), each `cycles_per_bit` cycles long.
`console_valid` pulses for the cycle in which a byte enters the FIFO, with the byte on
`console_data`: a simulation testbench records the transcript from it without decoding the
serial line (a CPU store takes at least two cycles, so pulses never merge).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .registers import UART, UART_STATUS_FULL, UART_STATUS_IDLE
from .wishbone import Signature


class UartTx(wiring.Component):
    bus: In(Signature(addr_width=6))
    tx: Out(1, init=1)
    console_valid: Out(1)
    console_data: Out(8)

    def __init__(self, *, cycles_per_bit: int, fifo_depth: int = 16):
        if not isinstance(cycles_per_bit, int) or not 2 <= cycles_per_bit <= 65535:
            raise ValueError(f"Cycles per bit must be an integer from 2 to 65535, not {cycles_per_bit!r}")
        self.cycles_per_bit, self.fifo_depth = cycles_per_bit, fifo_depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        divisor = Signal(16, init=self.cycles_per_bit)
        shifting = Signal()
        idle = Signal()
        m.d.comb += idle.eq(~shifting & ~fifo.r_rdy)

        active = bus.cyc & bus.stb & ~bus.ack
        push = active & bus.we & (bus.adr == UART.word("tx_data"))
        m.d.comb += [fifo.w_data.eq(bus.dat_w[:8]), fifo.w_en.eq(push & fifo.w_rdy),
                     self.console_valid.eq(push & fifo.w_rdy), self.console_data.eq(bus.dat_w[:8])]
        with m.If(active & ~(push & ~fifo.w_rdy)):
            m.d.sync += bus.ack.eq(1)
            with m.Switch(bus.adr):
                with m.Case(UART.word("status")):
                    m.d.sync += bus.dat_r.eq(Cat(~fifo.w_rdy, idle))
                with m.Case(UART.word("cycles_per_bit")):
                    m.d.sync += bus.dat_r.eq(divisor)
                    with m.If(bus.we):
                        m.d.sync += divisor.eq(bus.dat_w[:16])
                with m.Default():
                    m.d.sync += bus.dat_r.eq(0)
        with m.Else():
            m.d.sync += bus.ack.eq(0)

        frame = Signal(10)          # stop, data[7:0], start; shifted out LSB first
        bits_left = Signal(range(11))
        timer = Signal(16)
        with m.If(~shifting):
            m.d.comb += fifo.r_en.eq(1)
            with m.If(fifo.r_rdy):
                m.d.sync += [frame.eq(Cat(Const(0, 1), fifo.r_data, Const(1, 1))), bits_left.eq(10),
                             timer.eq(0), shifting.eq(1)]
        with m.Else():
            m.d.comb += self.tx.eq(frame[0])
            with m.If(timer == divisor - 1):
                m.d.sync += [timer.eq(0), frame.eq(frame >> 1), bits_left.eq(bits_left - 1)]
                with m.If(bits_left == 1):
                    m.d.sync += shifting.eq(0)
            with m.Else():
                m.d.sync += timer.eq(timer + 1)
        with m.If(~shifting):
            m.d.comb += self.tx.eq(1)
        return m
