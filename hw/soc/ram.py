"""On-chip RAM on a Wishbone port: code, data and stack of the firmware.

Timing: an access is acknowledged one cycle after `stb` (reads return the word addressed in the
`stb` cycle; writes take effect at the edge that raises `ack`, bytes as `sel` says), and then
`ack` drops for a cycle, so a new access can begin every second cycle.
`init` (a list of 32-bit words, optional) gives the RAM's contents at configuration: a board's
bitstream carries the firmware that way; the simulation loads it over the debug bus instead, so
the built simulator does not depend on the firmware.
`single_port`: the read port is enabled only when not writing, which yosys needs to map the
memory to the iCE40's SPRAM (a single port that holds its output during a write; BRIEF section
5); the memory is then named `spram` for the build's script that drops its (empty) init.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from .wishbone import Signature


class WishboneRAM(wiring.Component):
    def __init__(self, *, size_bytes: int, init=(), single_port: bool = False):
        if size_bytes < 4 or size_bytes & (size_bytes - 1):
            raise ValueError(f"RAM size must be a power of two of at least 4 bytes, not {size_bytes!r}")
        self.depth = size_bytes // 4
        init = list(init)
        if len(init) > self.depth:
            raise ValueError(f"RAM initial contents of {4 * len(init)} bytes do not fit {size_bytes} bytes")
        self.init, self.single_port = init, single_port
        super().__init__({"bus": In(Signature(addr_width=(self.depth - 1).bit_length()))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        mem = memory.Memory(shape=32, depth=self.depth, init=self.init)
        m.submodules["spram" if self.single_port else "memory"] = mem
        read = mem.read_port()
        write = mem.write_port(granularity=8)
        active = bus.cyc & bus.stb & ~bus.ack
        m.d.comb += [read.addr.eq(bus.adr), read.en.eq(active & ~bus.we if self.single_port else active), bus.dat_r.eq(read.data),
                     write.addr.eq(bus.adr), write.data.eq(bus.dat_w)]
        with m.If(active & bus.we):
            m.d.comb += write.en.eq(bus.sel)
        m.d.sync += bus.ack.eq(active)
        return m
