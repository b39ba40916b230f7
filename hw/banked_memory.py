"""Banked row memory with unaligned vector access: the scratchpad and the external memory model.

Rows of `row_bytes` bytes alternate between two banks (even rows, odd rows), so any run of
`row_bytes` consecutive bytes lies in one row of each bank and is read or written in one cycle
whatever its alignment.

Ports (all byte addresses; `rows * row_bytes` bytes in all, addresses wrap):
- `read_ports` vector read ports `read[i]`: present `addr` with `en` high in cycle t; `data`
  holds bytes addr .. addr+row_bytes-1 (byte 0 = lowest address in bits 7:0) from cycle
  t + `read_latency(i)` until the next enabled read's data replaces it.
- one vector write port: `write_addr`, `write_data` (row_bytes bytes, byte 0 goes to
  write_addr), `write_enable` (one bit per byte of write_data; 0 writes nothing).
`init` (bytes, at most `rows * row_bytes`; the rest is zero) is the memory's contents at
configuration: a bitstream's flash model carries its training job that way (fpga/board_soc.py).
A read on the last port (the host port) in the cycle of a write to the same bytes returns the
old bytes, unless the memory is built with `no_rw_check` (its user promises never to use a
read of a row written in the same cycle; block-RAM tools then build no collision logic). On the
other ports such a read is undefined.

`registered_host_and_write=True` registers the last read port's inputs and the write port's
inside the memory, the write after its split into the two banks' rows, data and enables: the
host port's latency is one cycle more (2), and a write lands a cycle after it is presented, so
an A or B read of its bytes in the cycle after the write's is undefined too (the plain memory
returns the old bytes, the pumped one the new). In return every address, byte of data and enable that
reaches a bank comes from a flip-flop, with at most the multiplexer that picks the pumped
memory's edge between. A user that registered those inputs itself presents their next values
instead and sees the same timing as before. The pumped memory requires it (below).

Three implementations of that one contract:
- `pumped=False`: every read port is a read port of each bank, latency 1 on every port.
  Block-RAM tools give each read port its own copy of the bank (a block RAM has two ports),
  so 3 read ports cost 3 copies.
- `pumped=True` (exactly 3 read ports): each bank is one block RAM with two ports, clocked by a
  `fast` domain at twice the `sync` frequency with its rising edges on `sync`'s. A `sync` cycle
  then has two block-RAM edges, four accesses in all:
    * at the middle edge, port 1 reads for `read2` (the host port) while port 2 writes,
      reading the old word first (read-before-write);
    * at the closing edge (the next `sync` edge), port 1 reads for `read0` and port 2 for
      `read1`, after the middle edge's write.
  With the host port and the write registered (required), the middle edge serves the host
  read and the write presented in the cycle before; `read0` and `read1`'s bank rows and enables
  are copied into `fast` registers at the middle edge, half a cycle before the closing edge
  reads them.
  `read2` asking for the bank row being written at the same edge takes port 2's old word
  instead of port 1's (a block RAM gives no defined data on such a collision), so the host
  port's "old bytes" hold. Every port's words end in a `sync` register, and the rotation to
  the read's alignment runs from there, so no logic sits between a block RAM and a `sync`
  register and the half-cycle paths a timing analyser sees between the clocks are short:
    * `read2`: the middle edge's words are loaded into `sync` registers at the closing edge
      (latency 2 with the input register, as the registered plain memory's);
    * `read0`, `read1`: the closing edge's words are held in `fast` registers at the next
      middle edge (the ports are used again there) and copied into `sync` registers at the
      next `sync` edge (latency 2).
  Into the `fast` domain (half a cycle, as a timing analyser sees every `sync` -> `fast` path):
  `read0`'s and `read1`'s bank rows (the `+ 1` of the even bank's row included) into their
  `fast` copies, with nothing else on the way; the host port's and the write's registered bank
  rows, data and enables, each through at most the multiplexer that picks the edge's access,
  to the block RAMs. So the half cycle holds no carry chain, shifter or host-port multiplexer:
  the routed SoCs of sessions 14-17 were bounded by exactly those, in front of a wire that
  crosses the die (a bank's 64 block RAMs span it).
- `two_port=True` (exactly 3 read ports, host port and write registered): each bank is one
  block RAM with two ports on the `sync` clock, no `fast` domain (docs/fpga.md, proposal 11):
    * port 1 reads for the host port in a cycle where its registered read is enabled (the
      cycle after the host port presented it), else for `read0` (A);
    * port 2 writes in a cycle where the registered write has an enable set (the cycle after it
      was presented), reading the old word first, else reads for `read1` (B).
  So an A read in the cycle after a host read was presented, or a B read in the cycle after a
  write was presented, returns undefined data: its user must leave that cycle free. A port's
  data holds only until the next read on its block-RAM port (A's until the next host read too,
  B's until the next write). Latencies are the plain registered memory's (1, 1, 2). A host read
  of the row being written at the same edge takes port 2's old word, so "old bytes" hold on
  the host port. Every block-RAM address comes from a flip-flop or, for A and B, from the
  user's address through the bank row's `+ 1` and the port's multiplexer, which the
  registered host and write enables select.
  tests/test_banked_memory.py runs the three implementations on the same random traffic and
  compares every read, each port at its own latency (the two-port memory's where its contract
  defines it).
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
    def __init__(self, row_bytes: int, rows: int, read_ports: int, *, pumped: bool = False,
                 registered_host_and_write: bool = False, no_rw_check: bool = False, init: bytes = b"",
                 two_port: bool = False):
        if row_bytes & (row_bytes - 1) or rows & (rows - 1) or rows < 2:
            raise ValueError(f"row bytes and rows must be powers of two, not {row_bytes}, {rows}")
        if len(init) > rows * row_bytes:
            raise ValueError(f"initial contents of {len(init)} bytes do not fit {rows * row_bytes} bytes")
        self.init = bytes(init)
        if pumped and read_ports != 3:
            raise ValueError(f"a pumped memory has exactly 3 read ports, not {read_ports}")
        if pumped and not registered_host_and_write:
            raise ValueError("a pumped memory needs registered_host_and_write: its middle edge "
                             "has half a cycle for the host port's and the write's paths")
        if two_port and (pumped or read_ports != 3 or not registered_host_and_write):
            raise ValueError("a two-port memory has exactly 3 read ports, registered_host_and_write "
                             "(its ports' multiplexers are selected by those registers) and is not pumped")
        self.two_port = two_port
        self.row_bytes, self.rows, self.pumped, self.no_rw_check = row_bytes, rows, pumped, no_rw_check
        self.registered = registered_host_and_write
        self.offset_bits = row_bytes.bit_length() - 1
        self.addr_bits = self.offset_bits + rows.bit_length() - 1
        ports = {f"read{i}": In(_read_signature(self.addr_bits, row_bytes).flip())
                 for i in range(read_ports)}
        ports.update(write_addr=In(self.addr_bits), write_data=In(8 * row_bytes),
                     write_enable=In(row_bytes))
        self.read_port_count = read_ports
        super().__init__(ports)

    def read_port(self, i: int):
        return getattr(self, f"read{i}")

    def read_latency(self, i: int) -> int:
        """Cycles from a read's address to its data on port i (module docstring)."""
        host = i == self.read_port_count - 1
        if host:
            return 2 if self.registered else 1
        return 2 if self.pumped else 1

    def elaborate(self, platform):
        m = Module()
        depth = self.rows // 2
        attrs = {"no_rw_check": 1} if self.no_rw_check else None
        banks = [memory.Memory(shape=8 * self.row_bytes, depth=depth, init=self._bank_init(k), attrs=attrs)
                 for k in range(2)]
        m.submodules.bank_even, m.submodules.bank_odd = banks
        writes = self._write_banks(m)
        host = self.read_port(self.read_port_count - 1)
        host_rows, host_en = _bank_rows(host.addr[self.offset_bits:]), host.en
        if self.registered:
            writes = [self._registered(m, signals, f"write{k}") for k, signals in enumerate(writes)]
            *host_rows, host_en = self._registered(m, (*host_rows, host_en), "host")
        host_access = (tuple(host_rows), host_en)
        if self.two_port:
            bank_data = self._two_port_ports(m, banks, writes, host_access)
        elif self.pumped:
            bank_data = self._pumped_ports(m, banks, writes, host_access)
        else:
            bank_data = self._plain_ports(m, banks, writes, host_access)
        for i in range(self.read_port_count):
            alignment = self._alignment_registers(m, i)
            m.d.comb += self.read_port(i).data.eq(self._rotate(alignment, bank_data[i]))
        return m

    def _bank_init(self, bank: int) -> list[int]:
        """Bank `bank`'s words from `init`: memory rows bank, bank + 2, ... (byte 0 in bits 7:0)."""
        L = self.row_bytes
        rows = [self.init[r * L:(r + 1) * L] for r in range(bank, -(-len(self.init) // L), 2)]
        return [int.from_bytes(row, "little") for row in rows]

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

    @staticmethod
    def _registered(m, signals, name):
        """`signals` through one `sync` register each (named name_q0, name_q1, ...)."""
        result = []
        for j, value in enumerate(signals):
            reg = Signal(len(value), name=f"{name}_q{j}")
            m.d.sync += reg.eq(value)
            result.append(reg)
        return tuple(result)

    def _plain_ports(self, m, banks, writes, host_access):
        """One bank read port per read port (sync domain); returns [port][bank] data.
        `host_access`: the last port's (bank rows, enable), registered or not."""
        for bank, (addr, data, en) in zip(banks, writes):
            wport = bank.write_port(granularity=8)
            m.d.comb += [wport.addr.eq(addr), wport.data.eq(data), wport.en.eq(en)]
        result = []
        for i in range(self.read_port_count):
            port = self.read_port(i)
            if i == self.read_port_count - 1:
                rows, en = host_access
            else:
                rows, en = _bank_rows(port.addr[self.offset_bits:]), port.en
            bank_ports = [bank.read_port() for bank in banks]
            for bank_port, row in zip(bank_ports, rows):
                m.d.comb += [bank_port.addr.eq(row), bank_port.en.eq(en)]
            result.append([bank_port.data for bank_port in bank_ports])
        return result

    def _pumped_ports(self, m, banks, writes, host_access):
        """Two block-RAM ports per bank in the `fast` domain (module docstring); returns
        [port][bank] data, all of it from `sync` registers. `writes` and `host_access` (the
        host port's bank rows and enable) are registered: the middle edge uses what the cycle
        before presented."""
        a, b, h = (self.read_port(i) for i in range(3))
        h_rows, h_en = host_access
        # `toggle` flips at every sync edge; `seen` is its value at the last fast edge. They
        # differ in the first half of a sync cycle: the next fast edge is the middle one.
        # `middle_next` says the same from a `fast` register (halves alternate, so it is the
        # inverse of that compare before each edge): the multiplexers of every block-RAM port
        # are selected from it, not from a path that starts in `sync`.
        toggle, seen, middle_next = Signal(), Signal(), Signal()
        m.d.sync += toggle.eq(~toggle)
        m.d.fast += [seen.eq(toggle), middle_next.eq(~(toggle ^ seen))]
        # A's and B's enables and bank rows copied at every `fast` edge: the copy made at the
        # middle edge holds the cycle's read for the closing edge, so their whole path from
        # `sync` is the half cycle into these registers, and the block RAMs are a `fast` cycle
        # away from them. The copy made at the closing edge says, at the next middle edge,
        # which reads the closing edge made (for the registers that hold their words).
        a_en, b_en = Signal(name="a_en_fast"), Signal(name="b_en_fast")
        m.d.fast += [a_en.eq(a.en), b_en.eq(b.en)]
        fast_rows = {}
        for name, port in (("a", a), ("b", b)):
            for k, row in enumerate(_bank_rows(port.addr[self.offset_bits:])):
                copy = Signal(len(row), name=f"{name}_row{k}_fast")
                m.d.fast += copy.eq(row)
                fast_rows[name, k] = copy

        result = [[], [], []]
        for k, (bank, (w_row, w_data, w_en)) in enumerate(zip(banks, writes)):
            a_row, b_row, h_row = fast_rows["a", k], fast_rows["b", k], h_rows[k]
            port2_write = bank.write_port(domain="fast", granularity=8)
            port2_read = bank.read_port(domain="fast", transparent_for=())    # read before write
            # Port 1's word on a collision with port 2's write is never used (see docstring);
            # declaring it transparent rather than read-before-write keeps yosys from
            # emulating read-first by delaying the write, which would split port 2 in two.
            port1 = bank.read_port(domain="fast", transparent_for=(port2_write,))
            port2_addr = Signal.like(w_row, name=f"bank{k}_port2_addr")
            m.d.comb += [port1.addr.eq(Mux(middle_next, h_row, a_row)),
                         port1.en.eq(Mux(middle_next, h_en, a_en)),
                         port2_addr.eq(Mux(middle_next, w_row, b_row)),
                         port2_read.addr.eq(port2_addr), port2_write.addr.eq(port2_addr),
                         port2_read.en.eq(Mux(middle_next, 1, b_en)),
                         port2_write.data.eq(w_data),
                         port2_write.en.eq(Mux(middle_next, w_en, 0))]
            # read2 and the write of one cycle meet at its middle edge: port 1 then holds read2's
            # word, port 2 the old word the write replaced. The compare has the whole cycle.
            collided = Signal(name=f"bank{k}_collided")
            m.d.comb += collided.eq((h_row == w_row) & w_en.any())
            h_data = Signal.like(port1.data, name=f"bank{k}_h_data")
            with m.If(h_en):
                m.d.sync += h_data.eq(Mux(collided, port2_read.data, port1.data))
            held = []
            for name, issued, port_data in (("a", a_en, port1.data), ("b", b_en, port2_read.data)):
                word = Signal.like(port1.data, name=f"bank{k}_{name}_held")
                with m.If(middle_next & issued):
                    m.d.fast += word.eq(port_data)
                copy = Signal.like(word, name=f"bank{k}_{name}_data")
                m.d.sync += copy.eq(word)
                held.append(copy)
            for port_data, data in zip(result, held + [h_data]):
                port_data.append(data)
        return result

    def _two_port_ports(self, m, banks, writes, host_access):
        """Two block-RAM ports per bank on `sync` (module docstring): port 1 for the host port
        or A, port 2 for the write or B. Returns [port][bank] data. `writes` and `host_access`
        are registered, so their enables select the ports' multiplexers from flip-flops."""
        a, b = self.read_port(0), self.read_port(1)
        h_rows, h_en = host_access
        a_rows = _bank_rows(a.addr[self.offset_bits:])
        b_rows = _bank_rows(b.addr[self.offset_bits:])
        result = [[], [], []]
        for k, (bank, (w_row, w_data, w_en)) in enumerate(zip(banks, writes)):
            port2_write = bank.write_port(granularity=8)
            port2_read = bank.read_port(transparent_for=())           # read before write
            # Port 1's word on a collision with port 2's write is never used (as pumped).
            port1 = bank.read_port(transparent_for=(port2_write,))
            port2_addr = Signal.like(w_row, name=f"bank{k}_port2_addr")
            writing = w_en.any()
            m.d.comb += [port1.addr.eq(Mux(h_en, h_rows[k], a_rows[k])), port1.en.eq(h_en | a.en),
                         port2_addr.eq(Mux(writing, w_row, b_rows[k])),
                         port2_read.addr.eq(port2_addr), port2_write.addr.eq(port2_addr),
                         port2_read.en.eq(writing | b.en),
                         port2_write.data.eq(w_data), port2_write.en.eq(w_en)]
            # The host read and the write of one edge on one row: the host port takes the old
            # word port 2 read before writing. The compare is registered beside the data.
            collided = Signal(name=f"bank{k}_collided")
            m.d.sync += collided.eq(h_en & writing & (h_rows[k] == w_row))
            h_data = Signal.like(port1.data, name=f"bank{k}_h_data")
            m.d.comb += h_data.eq(Mux(collided, port2_read.data, port1.data))
            for port_data, data in zip(result, (port1.data, port2_read.data, h_data)):
                port_data.append(data)
        return result

    def _alignment_registers(self, m, i):
        """Read port i's byte offset and which bank holds its first row, loaded with each read
        and passed on to stay beside its data (`read_latency(i)` stages)."""
        port = self.read_port(i)
        row = port.addr[self.offset_bits:]
        alignment = (port.addr[:self.offset_bits], row[0])
        loaded = port.en
        for stage in range(self.read_latency(i)):
            offset = Signal(self.offset_bits, name=f"read{i}_offset{stage}")
            odd_first = Signal(name=f"read{i}_odd_first{stage}")
            with m.If(loaded):
                m.d.sync += [offset.eq(alignment[0]), odd_first.eq(alignment[1])]
            alignment = (offset, odd_first)
            if stage + 1 < self.read_latency(i):
                next_loaded = Signal(name=f"read{i}_loaded{stage}")
                m.d.sync += next_loaded.eq(loaded)
                loaded = next_loaded
        return alignment

    def _rotate(self, alignment, bank_data):
        """The two banks' words as a read port's L bytes: rotated to its read's offset."""
        L = self.row_bytes
        offset, odd_first = alignment
        pair = Mux(odd_first, Cat(bank_data[1], bank_data[0]), Cat(bank_data[0], bank_data[1]))
        return (pair >> (offset * 8))[:8 * L]
