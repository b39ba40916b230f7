"""Wishbone B4 classic bus: the signature, a decoder and a round-robin arbiter.

Signature (from the initiator's side): `cyc`, `stb`, `we`, `adr` (word address), `dat_w`, `sel`
(one bit per byte) out; `dat_r`, `ack`, `err` in. Classic cycles only: the initiator holds its
outputs until `ack` or `err` is high at a clock edge; every subordinate here answers one or more
cycles after `stb`, never in the same cycle, so nothing combinational runs from an initiator's
`stb` back to its `ack` through the whole interconnect. Burst tags (CTI/BTE) are not carried:
VexRiscv's instruction cache issues its line fills as classic cycles too.

`Decoder`: one initiator, subordinates in address windows (powers of two, aligned). The window's
own address bits go to the subordinate; an access outside every window gets `err` one cycle
later. Combinational: the decoder adds no cycle. With `registered_answers` the answers (`ack`,
`err`, `dat_r`) are selected by the window hit of the cycle before, a register, instead of the
current one: the same window, since no subordinate answers in the cycle of `stb` and the
initiator holds its address until the answer, but the address compare leaves the path from a
subordinate's answer into the initiator (the iCE40 SoC's longest at first; docs/fpga.md).

`Arbiter`: several initiators, one bus. The bus stays with its owner while the owner's `cyc` is
high; when it drops, the next requesting initiator in round-robin order gets the bus at the
next clock edge (one cycle of arbitration when the owner changes, none otherwise).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class Signature(wiring.Signature):
    def __init__(self, *, addr_width: int, data_width: int = 32):
        if not isinstance(addr_width, int) or addr_width < 0:
            raise ValueError(f"Address width must be a non-negative integer, not {addr_width!r}")
        if data_width not in (8, 16, 32, 64):
            raise ValueError(f"Data width must be 8, 16, 32 or 64, not {data_width!r}")
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_width),
            "dat_w": Out(data_width), "sel": Out(data_width // 8),
            "dat_r": In(data_width), "ack": In(1), "err": In(1),
        })

    def __eq__(self, other):
        return (isinstance(other, Signature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __hash__(self):
        return hash((self.addr_width, self.data_width))

    def __repr__(self):
        return f"wishbone.Signature(addr_width={self.addr_width}, data_width={self.data_width})"


class Decoder(wiring.Component):
    """`windows`: (name, base word address, size in words); each becomes a port `name`."""

    def __init__(self, *, addr_width: int, windows, registered_answers: bool = False):
        self.windows = []
        for name, base, size in windows:
            if size <= 0 or size & (size - 1) or base % size:
                raise ValueError(f"window {name}: {size} words at {base:#x} is not a power of two "
                                 f"aligned to its size")
            if base + size > 1 << addr_width:
                raise ValueError(f"window {name} ends past the {addr_width}-bit address space")
            self.windows.append((name, base, size))
        self.addr_width, self.registered_answers = addr_width, registered_answers
        members = {"bus": In(Signature(addr_width=addr_width))}
        for name, base, size in self.windows:
            members[name] = Out(Signature(addr_width=(size - 1).bit_length()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        hits = []
        for name, base, size in self.windows:
            sub = getattr(self, name)
            low = (size - 1).bit_length()
            hit = Signal(name=f"{name}_hit")
            m.d.comb += hit.eq(bus.adr[low:] == base >> low)
            hits.append(hit)
            m.d.comb += [sub.cyc.eq(bus.cyc & hit), sub.stb.eq(bus.stb & hit), sub.we.eq(bus.we),
                         sub.adr.eq(bus.adr[:low]), sub.dat_w.eq(bus.dat_w), sub.sel.eq(bus.sel)]
            answering = hit
            if self.registered_answers:
                answering = Signal(name=f"{name}_hit_before")
                m.d.sync += answering.eq(hit)
            with m.If(answering):
                m.d.comb += [bus.dat_r.eq(sub.dat_r), bus.ack.eq(sub.ack), bus.err.eq(sub.err)]
        unmapped_err = Signal()
        miss = ~Cat(*hits).any()
        m.d.sync += unmapped_err.eq(bus.cyc & bus.stb & miss & ~unmapped_err)
        if self.registered_answers:       # the error is a register already
            with m.If(unmapped_err):
                m.d.comb += bus.err.eq(1)
        else:
            with m.If(miss):
                m.d.comb += bus.err.eq(unmapped_err)
        return m


class Arbiter(wiring.Component):
    """`count` initiator ports `initiator0..`, one `bus` port; round-robin among requesters."""

    def __init__(self, *, addr_width: int, count: int):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"Initiator count must be a positive integer, not {count!r}")
        self.count = count
        members = {f"initiator{i}": In(Signature(addr_width=addr_width)) for i in range(count)}
        members["bus"] = Out(Signature(addr_width=addr_width))
        super().__init__(members)

    def initiator(self, i: int):
        return getattr(self, f"initiator{i}")

    def elaborate(self, platform):
        m = Module()
        grant = Signal(range(self.count))
        initiators = [self.initiator(i) for i in range(self.count)]
        owner_cyc = Signal()
        for i, port in enumerate(initiators):
            with m.If(grant == i):
                m.d.comb += [self.bus.cyc.eq(port.cyc), self.bus.stb.eq(port.stb), self.bus.we.eq(port.we),
                             self.bus.adr.eq(port.adr), self.bus.dat_w.eq(port.dat_w),
                             self.bus.sel.eq(port.sel), owner_cyc.eq(port.cyc)]
            m.d.comb += [port.dat_r.eq(self.bus.dat_r), port.ack.eq(self.bus.ack & (grant == i)),
                         port.err.eq(self.bus.err & (grant == i))]
        with m.If(~owner_cyc):
            # the next requester after the current owner, round-robin
            for offset in reversed(range(1, self.count + 1)):
                for i in range(self.count):
                    candidate = (i + offset) % self.count
                    with m.If((grant == i) & initiators[candidate].cyc):
                        m.d.sync += grant.eq(candidate)
        return m
