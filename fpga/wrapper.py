"""A small test wrapper that puts one component (the engine, or a single per-lane unit) alone
on a board.

A board has a handful of pins, the engine a 70-bit host port. The wrapper feeds every input
port of the component from a shift register clocked by one input pin (the board's button 0,
synchronised), so no input is a constant the tools could propagate, and folds every output
port into one LED through registers and an XOR tree, so no logic is optimised away.
It is a synthesis harness, not a usable host interface: loading a program on a real board
needs the SoC issue's CPU (or a UART bridge) in its place.

Timing: one bit shifts in per cycle; the inputs are registered slices of the shift register.
The clock is the `sync` domain the build gives it (the board oscillator through a PLL,
fpga/clocks.py), with a `fast` domain beside it for an engine with a pumped scratchpad.
"""
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer

from .clocks import add_clock_domains


def _ports(component, direction):
    for path, member, value in component.signature.flatten(component):
        if member.flow == direction:
            yield value


class TestWrapper(Elaboratable):
    def __init__(self, component: wiring.Component, clocks=None):
        self.component = component
        self.clocks = clocks      # an Elaboratable that drives `sync` (and `fast` if its .fast), or None

    def elaborate(self, platform):
        m = Module()
        add_clock_domains(m, self.clocks)
        m.submodules.dut = dut = self.component

        serial_in = Signal()
        led = Signal()
        if platform is not None:
            m.submodules.button = button = io.Buffer("i", platform.request("button", 0, dir="-"))
            m.submodules.button_sync = FFSynchronizer(button.i, serial_in)
            if "rgb_led" in {name for name, _ in platform.resources}:   # the OrangeCrab
                led_pin = platform.request("rgb_led", 0, dir="-").r
            else:
                led_pin = platform.request("led", 0, dir="-")
            m.submodules.led = led_buffer = io.Buffer("o", led_pin)
            m.d.comb += led_buffer.o.eq(led)

        inputs = list(_ports(dut, wiring.In))
        shift = Signal(max(2, sum(len(port) for port in inputs)))
        m.d.sync += shift.eq(Cat(serial_in, shift[:-1]))
        offset = 0
        for port in inputs:
            m.d.sync += port.eq(shift[offset:offset + len(port)])
            offset += len(port)
        # the outputs are registered before their parity, so the parity tree (wrapper logic, not
        # the design's) lengthens no path out of the design
        outputs = Cat(*_ports(dut, wiring.Out))
        outputs_seen = Signal(len(outputs))
        m.d.sync += [outputs_seen.eq(outputs), led.eq(outputs_seen.xor())]
        return m
