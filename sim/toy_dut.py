"""A toy engine that exists to test the simulation harness: it sums words of its memory.

It implements the host port convention of `sim.host` over a `depth`-word memory (default 4096):
- word 0 holds the count N; words 1..N are summed (mod 2**32) and the sum is written to word
  `depth - 1` (`result_word`). N may be 0..depth-2 (`max_count`).
- Timing: if start is sampled at rising edge S, done pulses high for one cycle after edge S+N+3
  (one cycle per word plus three: fetch the count, check it, store the sum), so
  `HostDriver.run()` measures N + 3 cycles. busy is high from after edge S until done rises.
- A count above `max_count` stops the run after edge S+2 (2 cycles): done pulses, error stays
  high until the next start, error_code is ERROR_COUNT_RANGE and error_index is 0 (the word that
  held the bad count). Nothing is written.
- While busy the memory belongs to the summer: host writes are ignored and host reads return
  whatever the summer is reading.
"""
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

ERROR_COUNT_RANGE = 1


class ToySummer(wiring.Component):
    def __new__(cls, depth: int = 4096, **kwargs):
        # Checked before Elaboratable.__new__ registers the object, so that a refused toy is
        # not reported later as "created but never used".
        if not isinstance(depth, int) or depth < 4 or depth & (depth - 1):
            raise ValueError(f"Memory depth must be a power of two of at least 4, not {depth!r}")
        return super().__new__(cls, **kwargs)

    def __init__(self, depth: int = 4096):
        self._depth = depth
        super().__init__({
            "host_addr": In(unsigned((depth - 1).bit_length())),
            "host_wdata": In(32),
            "host_we": In(1),
            "host_rdata": Out(32),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(8),
            "error_index": Out(32),
        })

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def result_word(self) -> int:
        return self._depth - 1

    @property
    def max_count(self) -> int:
        return self._depth - 2

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.memory = memory = Memory(shape=32, depth=self._depth, init=[])
        read = memory.read_port()
        write = memory.write_port()

        address_bits = len(self.host_addr)
        count = unsigned(address_bits + 1)
        words = Signal(count)
        index = Signal(count)          # next word address to read
        total = Signal(32)
        pending = Signal()             # a word read last cycle is on read.data

        m.d.comb += self.host_rdata.eq(read.data)
        m.d.sync += self.done.eq(0)
        with m.If(pending):
            m.d.sync += total.eq(total + read.data)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [
                    read.addr.eq(self.host_addr),
                    write.addr.eq(self.host_addr),
                    write.data.eq(self.host_wdata),
                    write.en.eq(self.host_we),
                ]
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.error.eq(0), self.error_code.eq(0),
                                 self.error_index.eq(0)]
                    m.next = "FETCH_COUNT"
            with m.State("FETCH_COUNT"):
                m.d.comb += read.addr.eq(0)
                m.next = "CHECK_COUNT"
            with m.State("CHECK_COUNT"):
                m.d.sync += [total.eq(0), pending.eq(0), index.eq(1), words.eq(read.data)]
                with m.If(read.data > self.max_count):
                    m.d.sync += [self.error.eq(1), self.error_code.eq(ERROR_COUNT_RANGE),
                                 self.error_index.eq(0), self.done.eq(1), self.busy.eq(0)]
                    m.next = "IDLE"
                with m.Elif(read.data == 0):
                    m.next = "STORE"
                with m.Else():
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += read.addr.eq(index)
                m.d.sync += [index.eq(index + 1), pending.eq(1)]
                with m.If(index == words):
                    m.next = "STORE"
            with m.State("STORE"):
                m.d.comb += [
                    write.addr.eq(self.result_word),
                    write.data.eq(total + Mux(pending, read.data, 0)),
                    write.en.eq(1),
                ]
                m.d.sync += [pending.eq(0), self.done.eq(1), self.busy.eq(0)]
                m.next = "IDLE"
        return m
