"""Banked row memory with unaligned vector access: the scratchpad and the external memory model.

Rows of `row_bytes` bytes alternate between two banks (even rows, odd rows), so any run of
`row_bytes` consecutive bytes lies in one row of each bank and is read or written in one cycle
whatever its alignment.

Ports (all byte addresses; `rows * row_bytes` bytes in all, addresses wrap):
- `read_ports` vector read ports `read[i]`: present `addr` with `en` high in cycle t; `data`
  holds bytes addr .. addr+row_bytes-1 (byte 0 = lowest address in bits 7:0) from cycle t+1
  until the next enabled read (the memory's output register holds it).
- one vector write port: `write_addr`, `write_data` (row_bytes bytes, byte 0 goes to
  write_addr), `write_enable` (one bit per byte of write_data; 0 writes nothing).
A read in the cycle of a write to the same bytes returns the old bytes.
"""
from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


def _read_signature(addr_bits: int, row_bytes: int):
    return wiring.Signature({"addr": Out(addr_bits), "en": Out(1), "data": In(8 * row_bytes)})


class BankedMemory(wiring.Component):
    def __init__(self, row_bytes: int, rows: int, read_ports: int):
        if row_bytes & (row_bytes - 1) or rows & (rows - 1) or rows < 2:
            raise ValueError(f"row bytes and rows must be powers of two, not {row_bytes}, {rows}")
        self.row_bytes, self.rows = row_bytes, rows
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

    def elaborate(self, platform):
        m = Module()
        L, depth = self.row_bytes, self.rows // 2
        banks = [memory.Memory(shape=8 * L, depth=depth, init=[]) for _ in range(2)]
        m.submodules.bank_even, m.submodules.bank_odd = banks

        for i in range(self.read_port_count):
            port = self.read_port(i)
            row = port.addr[self.offset_bits:]
            ports = [bank.read_port() for bank in banks]
            # even bank holds row (row+1)/2 rounded down in row's pair; odd bank holds row>>1.
            m.d.comb += [ports[0].addr.eq((row + 1)[1:]), ports[1].addr.eq(row[1:]),
                         ports[0].en.eq(port.en), ports[1].en.eq(port.en)]
            offset = Signal(self.offset_bits, name=f"read{i}_offset")
            odd_first = Signal(name=f"read{i}_odd_first")
            with m.If(port.en):
                m.d.sync += [offset.eq(port.addr[:self.offset_bits]), odd_first.eq(row[0])]
            pair = Signal(16 * L, name=f"read{i}_pair")
            with m.If(odd_first):
                m.d.comb += pair.eq(Cat(ports[1].data, ports[0].data))
            with m.Else():
                m.d.comb += pair.eq(Cat(ports[0].data, ports[1].data))
            m.d.comb += port.data.eq((pair >> (offset * 8))[:8 * L])

        # Write: the row_bytes bytes shifted into a two-row window at the address's offset.
        row = self.write_addr[self.offset_bits:]
        offset = self.write_addr[:self.offset_bits]
        data2 = Signal(16 * L)
        enable2 = Signal(2 * L)
        m.d.comb += [data2.eq(self.write_data << (offset * 8)), enable2.eq(self.write_enable << offset)]
        low_data, high_data = data2[:8 * L], data2[8 * L:]
        low_en, high_en = enable2[:L], enable2[L:]
        wports = [bank.write_port(granularity=8) for bank in banks]
        with m.If(row[0]):       # low row is odd: it goes to the odd bank, the high row to the even one
            m.d.comb += [wports[1].addr.eq(row[1:]), wports[1].data.eq(low_data), wports[1].en.eq(low_en),
                         wports[0].addr.eq((row + 1)[1:]), wports[0].data.eq(high_data),
                         wports[0].en.eq(high_en)]
        with m.Else():
            m.d.comb += [wports[0].addr.eq(row[1:]), wports[0].data.eq(low_data), wports[0].en.eq(low_en),
                         wports[1].addr.eq(row[1:]), wports[1].data.eq(high_data),
                         wports[1].en.eq(high_en)]
        return m
