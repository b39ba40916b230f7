"""A small test wrapper that puts the engine alone on a board.

A board has a handful of pins, the engine a 70-bit host port. The wrapper feeds the host port
from a shift register clocked by one input pin (the board's button 0, synchronised), so every
host-port input is driven by logic the tools cannot prove constant, and folds every engine output
(status, cycle count, host read data) into one LED with an XOR tree registered per cycle, so no
output logic is optimised away. It is a synthesis harness, not a usable host interface: loading a
program on a real board needs the SoC issue's CPU or a UART bridge in its place.

Timing: one bit shifts in per cycle; every 128th cycle the 128-bit shift register is latched
onto the host port (host_space, host_addr, host_wdata, host_we, start, program_base) for one
cycle. The engine's clock is the `sync` domain the build gives it (a PLL output or the board
oscillator, see fpga/clocks.py).
"""
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib.cdc import FFSynchronizer

from golden.engine.config import EngineConfig
from hw.engine import Engine

SHIFT_BITS = 128


class EngineTestWrapper(Elaboratable):
    def __init__(self, config: EngineConfig, clocks=None):
        self.config = config
        self.clocks = clocks      # an Elaboratable that defines the `sync` domain, or None

    def elaborate(self, platform):
        m = Module()
        if self.clocks is not None:
            m.submodules.clocks = self.clocks
        engine = m.submodules.engine = Engine(self.config)

        serial_in = Signal()
        led = Signal()
        if platform is not None:
            button = platform.request("button", 0)
            m.submodules.button_sync = FFSynchronizer(button.i, serial_in)
            if "rgb_led" in {name for name, _ in platform.resources}:
                m.d.comb += platform.request("rgb_led", 0).r.o.eq(led)
            else:
                m.d.comb += platform.request("led", 0).o.eq(led)

        shift = Signal(SHIFT_BITS)
        count = Signal(7)
        m.d.sync += [shift.eq(Cat(serial_in, shift[:-1])), count.eq(count + 1)]
        latch = count == 0
        fields = [engine.host_space, engine.host_addr, engine.host_wdata, engine.program_base]
        offset = 0
        for port in fields:
            m.d.sync += port.eq(shift[offset:offset + len(port)])
            offset += len(port)
        m.d.sync += [engine.host_we.eq(latch & shift[offset]), engine.start.eq(latch & shift[offset + 1])]

        outputs = Cat(engine.busy, engine.done, engine.error, engine.error_code, engine.error_index,
                      engine.cycles, engine.host_rdata)
        m.d.sync += led.eq(outputs.xor())
        return m
