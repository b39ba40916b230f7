"""Banked row memory with unaligned vector access: the scratchpad and the external memory model.

Rows of `row_bytes` bytes alternate between two banks (even rows, odd rows), so any run of
`row_bytes` consecutive bytes lies in one row of each bank and is read or written in one cycle
whatever its alignment.

Ports (all byte addresses; `rows * row_bytes` bytes in all, addresses wrap):
- `read_ports` vector read ports `read[i]`: present `addr` with `en` high in cycle t; `data`
  holds bytes addr .. addr+row_bytes-1 (byte 0 = lowest address in bits 7:0) from cycle t+1
  until the next enabled read.
- one vector write port: `write_addr`, `write_data` (row_bytes bytes, byte 0 goes to
  write_addr), `write_enable` (one bit per byte of write_data; 0 writes nothing).
- `late_data`: the last read port's bytes as its `data` has them, for logic that samples at
  the `sync` edge ending cycle t+1: the same value there, from a flip-flop in the pumped
  memory (below), the port's `data` itself in the plain one.
A read in the cycle of a write to the same bytes returns the old bytes.

Two implementations of that one contract:
- `pumped=False`: every read port is a read port of each bank. Block-RAM tools give each
  read port its own copy of the bank (a block RAM has two ports), so 3 read ports cost 3 copies.
- `pumped=True` (exactly 3 read ports): each bank is one block RAM with two ports, clocked by a
  `fast` domain at twice the `sync` frequency with its rising edges on `sync`'s. A `sync` cycle
  then has two block-RAM edges, four accesses in all:
    * at the middle edge, port 1 reads for `read0` and port 2 for `read1`;
    * at the closing edge (the next `sync` edge), port 1 reads for `read2` while port 2 writes,
      reading the old word first (read-before-write).
  `read2` asking for the bank row that is being written in the same cycle takes port 2's old
  word instead of port 1's (a block RAM gives no defined data on such a collision), so the
  contract's "old bytes" hold. Data read at an edge is captured in a register at the following
  edge, because the port it came from is used again before `sync` samples it. Timing: `read0`
  and `read1` data are registers loaded at the `sync` edge; `read2` data is loaded half a cycle
  before the `sync` edge that samples it, so logic reading `read2` has half a cycle (in the
  first half of the cycle `read2` shows the same word straight from the ports, so a testbench
  sampling at the falling `sync` edge, the middle edge, sees one value on both sides of it).
  That bypass makes a path from the block RAMs through the rotation into whatever reads
  `read2`, in the half cycle a timing analyser allows from `fast` to `sync`; `late_data` is
  `read2`'s word rotated before the middle-edge register instead, so the engine's logic that
  reads old values starts at that register (the host port keeps `read2.data`).
  The contract, the program format and the cycle model are the same for both implementations;
  tests/test_banked_memory.py runs both on the same random traffic and compares every read.
"""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


def _read_signature(addr_bits: int, row_bytes: int):
    return wiring.Signature({"addr": Out(addr_bits), "en": Out(1), "data": In(8 * row_bytes)})


def _bank_rows(row):
    """(even bank row, odd bank row) holding memory row `row` and the row after it (which wraps
    to row 0 after the last: the sum is cut to the bank's address width)."""
    return (row + 1)[1:len(row)], row[1:]


class BankedMemory(wiring.Component):
    def __init__(self, row_bytes: int, rows: int, read_ports: int, *, pumped: bool = False):
        if row_bytes & (row_bytes - 1) or rows & (rows - 1) or rows < 2:
            raise ValueError(f"row bytes and rows must be powers of two, not {row_bytes}, {rows}")
        if pumped and read_ports != 3:
            raise ValueError(f"a pumped memory has exactly 3 read ports, not {read_ports}")
        self.row_bytes, self.rows, self.pumped = row_bytes, rows, pumped
        self.offset_bits = row_bytes.bit_length() - 1
        self.addr_bits = self.offset_bits + rows.bit_length() - 1
        ports = {f"read{i}": In(_read_signature(self.addr_bits, row_bytes).flip())
                 for i in range(read_ports)}
        ports.update(write_addr=In(self.addr_bits), write_data=In(8 * row_bytes),
                     write_enable=In(row_bytes), late_data=Out(8 * row_bytes))
        self.read_port_count = read_ports
        super().__init__(ports)

    def read_port(self, i: int):
        return getattr(self, f"read{i}")

    def elaborate(self, platform):
        m = Module()
        depth = self.rows // 2
        banks = [memory.Memory(shape=8 * self.row_bytes, depth=depth, init=[]) for _ in range(2)]
        m.submodules.bank_even, m.submodules.bank_odd = banks
        writes = self._write_banks(m)
        alignment = [self._alignment_registers(m, i) for i in range(self.read_port_count)]
        if self.pumped:
            bank_data = self._pumped_ports(m, banks, writes, alignment[2])
        else:
            bank_data = self._plain_ports(m, banks, writes)
        for i in range(self.read_port_count):
            m.d.comb += self.read_port(i).data.eq(self._rotate(alignment[i], bank_data[i]))
        if not self.pumped:
            m.d.comb += self.late_data.eq(self.read_port(self.read_port_count - 1).data)
        return m

    def _write_banks(self, m):
        """Per bank (addr, data, byte enables) of the write port: the row_bytes bytes shifted
        into a two-row window at the address's offset."""
        L = self.row_bytes
        row = self.write_addr[self.offset_bits:]
        offset = self.write_addr[:self.offset_bits]
        data2, enable2 = Signal(16 * L), Signal(2 * L)
        m.d.comb += [data2.eq(self.write_data << (offset * 8)), enable2.eq(self.write_enable << offset)]
        low = (data2[:8 * L], enable2[:L])
        high = (data2[8 * L:], enable2[L:])
        writes = [(Signal(self.addr_bits - self.offset_bits - 1, name=f"write{k}_row"),
                   Signal(8 * L, name=f"write{k}_data"), Signal(L, name=f"write{k}_en"))
                  for k in range(2)]
        even_row, odd_row = _bank_rows(row)
        m.d.comb += [writes[0][0].eq(even_row), writes[1][0].eq(odd_row)]
        with m.If(row[0]):       # low row is odd: it goes to the odd bank, the high row to the even one
            m.d.comb += [writes[1][1].eq(low[0]), writes[1][2].eq(low[1]),
                         writes[0][1].eq(high[0]), writes[0][2].eq(high[1])]
        with m.Else():
            m.d.comb += [writes[0][1].eq(low[0]), writes[0][2].eq(low[1]),
                         writes[1][1].eq(high[0]), writes[1][2].eq(high[1])]
        return writes

    def _plain_ports(self, m, banks, writes):
        """One bank read port per read port (sync domain); returns [port][bank] data."""
        for bank, (addr, data, en) in zip(banks, writes):
            wport = bank.write_port(granularity=8)
            m.d.comb += [wport.addr.eq(addr), wport.data.eq(data), wport.en.eq(en)]
        result = []
        for i in range(self.read_port_count):
            port = self.read_port(i)
            rows = _bank_rows(port.addr[self.offset_bits:])
            bank_ports = [bank.read_port() for bank in banks]
            for bank_port, row in zip(bank_ports, rows):
                m.d.comb += [bank_port.addr.eq(row), bank_port.en.eq(port.en)]
            result.append([bank_port.data for bank_port in bank_ports])
        return result

    def _pumped_ports(self, m, banks, writes, h_alignment):
        """Two block-RAM ports per bank in the `fast` domain (module docstring); returns
        [port][bank] data, all of it from capture registers, and drives `late_data` (read2's
        word rotated by `h_alignment`)."""
        a, b, h = (self.read_port(i) for i in range(3))
        # `toggle` flips at every sync edge; `seen` is its value at the last fast edge. They
        # differ in the first half of a sync cycle: the next fast edge is the middle one.
        toggle, seen, middle_next = Signal(), Signal(), Signal()
        m.d.sync += toggle.eq(~toggle)
        m.d.fast += seen.eq(toggle)
        m.d.comb += middle_next.eq(toggle ^ seen)
        a_issued, b_issued, h_issued = Signal(), Signal(), Signal()
        with m.If(middle_next):
            m.d.fast += [a_issued.eq(a.en), b_issued.eq(b.en)]
        with m.Else():
            m.d.fast += h_issued.eq(h.en)

        result = [[], [], []]
        h_live = []           # per bank, read2's word straight from the ports
        for k, (bank, (w_row, w_data, w_en)) in enumerate(zip(banks, writes)):
            a_row, b_row, h_row = (_bank_rows(p.addr[self.offset_bits:])[k] for p in (a, b, h))
            port2_write = bank.write_port(domain="fast", granularity=8)
            port2_read = bank.read_port(domain="fast", transparent_for=())    # read before write
            # Port 1's word on a collision with port 2's write is never used (see docstring);
            # declaring it transparent rather than read-before-write keeps yosys from
            # emulating read-first by delaying the write, which would split port 2 in two.
            port1 = bank.read_port(domain="fast", transparent_for=(port2_write,))
            port2_addr = Signal.like(w_row, name=f"bank{k}_port2_addr")
            m.d.comb += [port1.addr.eq(Mux(middle_next, a_row, h_row)),
                         port1.en.eq(Mux(middle_next, a.en, h.en)),
                         port2_addr.eq(Mux(middle_next, b_row, w_row)),
                         port2_read.addr.eq(port2_addr), port2_write.addr.eq(port2_addr),
                         port2_read.en.eq(Mux(middle_next, b.en, 1)),
                         port2_write.data.eq(w_data),
                         port2_write.en.eq(Mux(middle_next, 0, w_en))]
            # read2 and the write of one cycle meet at its closing edge: a `sync` register taken
            # at that edge (a full cycle for the compare; the middle edge reads it half a
            # cycle later)
            collided = Signal(name=f"bank{k}_collided")
            m.d.sync += collided.eq((h_row == w_row) & w_en.any())
            a_data, b_data, h_data = (Signal.like(port1.data, name=f"bank{k}_{n}_data") for n in "abh")
            # port 1 holds the closing edge's read2 word, port 2 the old word it overwrote
            h_live.append(Mux(collided, port2_read.data, port1.data))
            with m.If(middle_next):
                with m.If(h_issued):
                    m.d.fast += h_data.eq(h_live[k])
            with m.Else():
                with m.If(a_issued):
                    m.d.fast += a_data.eq(port1.data)
                with m.If(b_issued):
                    m.d.fast += b_data.eq(port2_read.data)
            # read2's word straight from the ports until the middle edge captures it: the host
            # (a testbench reads at the falling sync edge, which is the middle edge) then sees
            # the same value on both sides of that edge.
            h_word = Signal.like(h_data, name=f"bank{k}_h_word")
            m.d.comb += h_word.eq(Mux(middle_next & h_issued, h_live[k], h_data))
            for port_data, data in zip(result, (a_data, b_data, h_word)):
                port_data.append(data)
        # `late_data`: read2's word aligned in the fast domain and captured at the middle edge,
        # so logic reading it starts at a flip-flop (the offset registers load at the edge of
        # the read, half a cycle before).
        with m.If(middle_next & h_issued):
            m.d.fast += self.late_data.eq(self._rotate(h_alignment, h_live))
        return result

    def _alignment_registers(self, m, i):
        """Read port i's byte offset and which bank holds its first row, loaded with each read."""
        port = self.read_port(i)
        row = port.addr[self.offset_bits:]
        offset = Signal(self.offset_bits, name=f"read{i}_offset")
        odd_first = Signal(name=f"read{i}_odd_first")
        with m.If(port.en):
            m.d.sync += [offset.eq(port.addr[:self.offset_bits]), odd_first.eq(row[0])]
        return offset, odd_first

    def _rotate(self, alignment, bank_data):
        """The two banks' words as a read port's L bytes: rotated to its read's offset."""
        L = self.row_bytes
        offset, odd_first = alignment
        pair = Mux(odd_first, Cat(bank_data[1], bank_data[0]), Cat(bank_data[0], bank_data[1]))
        return (pair >> (offset * 8))[:8 * L]
