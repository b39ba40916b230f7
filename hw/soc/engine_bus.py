"""The engine on the SoC bus: its control/status registers, and the scratchpad and external
memory as two memory windows, all through the engine's host port (hw/engine.py).

Windows: `csr` (hw/soc/registers.py, ENGINE), `scratchpad` and `external` (word addressed,
any byte select). Timing of a memory access: the access (address, data, byte select) is
registered in its first cycle and presented to the host port in the second; a full-word write is
acknowledged in the third cycle, a read when the host port answers (`Engine.HOST_READ_LATENCY`
cycles later: the fourth); a write of fewer than four bytes reads the word, merges the selected
bytes and writes it back (five cycles; six with the two-port scratchpad, which registers the
merged word before writing it). The register keeps the bus's multiplexers out of the
engine's paths to its host port. The engine's
host port may only be used while the engine is idle: a memory access that arrives while the
engine runs waits (no `ack`) until the run ends, so firmware cannot read half-written data.
Registers answer in the second cycle at any time.

Start: a write of bit 0 to `control` pulses the engine's `start` with `program_base`; `finished`
is a level set when the run ends (by END or an error) and cleared by the next start, so
firmware polls it without racing the one-cycle `done` pulse. `idle_cycles` counts every cycle
in which the engine is not busy, from reset: the CPU overhead of an iteration is the difference
of two readings.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from golden.engine.config import EngineConfig
from hw.engine import Engine

from .registers import ENGINE
from .wishbone import Signature

SCRATCHPAD_SPACE, EXTERNAL_SPACE = 0, 1


class EngineOnBus(wiring.Component):
    def __init__(self, config: EngineConfig, external_init: bytes = b""):
        self.config, self.external_init = config, external_init
        super().__init__({
            "csr": In(Signature(addr_width=6)),
            "scratchpad": In(Signature(addr_width=(config.scratchpad_bytes // 4 - 1).bit_length())),
            "external": In(Signature(addr_width=(config.external_bytes // 4 - 1).bit_length())),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = Engine(self.config, self.external_init)

        # ---------------------------------------------------------------- registers
        csr = self.csr
        program_base = Signal(32)
        finished = Signal()
        idle_cycles = Signal(32)
        with m.If(~engine.busy):
            m.d.sync += idle_cycles.eq(idle_cycles + 1)
        with m.If(engine.done):
            m.d.sync += finished.eq(1)
        m.d.comb += engine.program_base.eq(program_base)
        active = csr.cyc & csr.stb & ~csr.ack
        m.d.sync += csr.ack.eq(active)
        with m.If(active):
            with m.Switch(csr.adr):
                with m.Case(ENGINE.word("control")):
                    with m.If(csr.we & csr.dat_w[0] & ~engine.busy):
                        m.d.comb += engine.start.eq(1)
                        m.d.sync += finished.eq(0)
                    m.d.sync += csr.dat_r.eq(0)
                with m.Case(ENGINE.word("program_base")):
                    m.d.sync += csr.dat_r.eq(program_base)
                    with m.If(csr.we):
                        m.d.sync += program_base.eq(csr.dat_w)
                with m.Case(ENGINE.word("status")):
                    m.d.sync += csr.dat_r.eq(Cat(engine.busy, finished, engine.error))
                with m.Case(ENGINE.word("error")):
                    m.d.sync += csr.dat_r.eq(Cat(engine.error_code, Signal(8), engine.error_index))
                with m.Case(ENGINE.word("cycles")):
                    m.d.sync += csr.dat_r.eq(engine.cycles)
                with m.Case(ENGINE.word("idle_cycles")):
                    m.d.sync += csr.dat_r.eq(idle_cycles)
                with m.Default():
                    m.d.sync += csr.dat_r.eq(0)

        # ---------------------------------------------------------------- memory windows
        windows = ((self.scratchpad, SCRATCHPAD_SPACE), (self.external, EXTERNAL_SPACE))
        space = Signal(2)
        address = Signal(30)
        write_data = Signal(32)
        select = Signal(4)
        writing = Signal()
        requested = Signal()
        for bus, code in reversed(windows):       # at most one window is addressed at a time
            with m.If(bus.cyc & bus.stb):
                m.d.comb += [requested.eq(1), space.eq(code), address.eq(bus.adr),
                             write_data.eq(bus.dat_w), select.eq(bus.sel), writing.eq(bus.we)]
        # The access is registered before it reaches the engine's host port: with a pumped
        # scratchpad the port's address has half a cycle to the block RAMs (the middle edge,
        # hw/banked_memory.py), too little for the arbiter's and decoder's multiplexers in front.
        space_q, address_q = Signal(2), Signal(30)
        write_data_q, select_q, writing_q = Signal(32), Signal(4), Signal()
        ack = Signal()
        m.d.comb += [engine.host_space.eq(space_q), engine.host_addr.eq(address_q)]
        for bus, code in windows:
            m.d.comb += [bus.ack.eq(ack & (space_q == code)), bus.dat_r.eq(engine.host_rdata)]
        merged = Signal(32)          # a partial write: the selected new bytes over the old word
        for b in range(4):
            m.d.comb += merged.word_select(b, 8).eq(
                Mux(select_q[b], write_data_q.word_select(b, 8), engine.host_rdata.word_select(b, 8)))
        with m.FSM():
            with m.State("idle"):
                with m.If(requested & ~engine.busy & ~engine.start):
                    m.d.sync += [space_q.eq(space), address_q.eq(address), write_data_q.eq(write_data),
                                 select_q.eq(select), writing_q.eq(writing)]
                    m.next = "issue"
            with m.State("issue"):         # the host port has the registered address
                with m.If(writing_q & (select_q == 0b1111)):
                    m.d.comb += [engine.host_we.eq(1), engine.host_wdata.eq(write_data_q)]
                    m.next = "acknowledge"
                with m.Else():
                    m.next = "wait1" if Engine.HOST_READ_LATENCY > 1 else "read"
            for waited in range(1, Engine.HOST_READ_LATENCY):     # the host port's answer is on its way
                with m.State(f"wait{waited}"):
                    m.next = f"wait{waited + 1}" if waited + 1 < Engine.HOST_READ_LATENCY else "read"
            with m.State("read"):          # host_rdata holds the addressed word now
                with m.If(writing_q):
                    if self.config.scratchpad_two_port:
                        # The two-port SoC's longest path (session 24, 27.79 ns) ran from a
                        # scratchpad block RAM's output through the host port's answer and the
                        # merge into the scratchpad's write register: the merged word is
                        # registered first. Only there: the pumped boards keep the netlist whose
                        # placement routed (fpga/boards.py).
                        m.d.sync += write_data_q.eq(merged)
                        m.next = "write_merged"
                    else:
                        m.d.comb += [engine.host_we.eq(1), engine.host_wdata.eq(merged)]
                        m.next = "acknowledge"
                with m.Else():
                    m.d.comb += ack.eq(1)
                    m.next = "idle"
            if self.config.scratchpad_two_port:
                with m.State("write_merged"):
                    m.d.comb += [engine.host_we.eq(1), engine.host_wdata.eq(write_data_q)]
                    m.next = "acknowledge"
            with m.State("acknowledge"):
                m.d.comb += ack.eq(1)
                m.next = "idle"
        return m
