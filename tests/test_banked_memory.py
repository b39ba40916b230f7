# amaranth: UnusedElaboratable=no
"""hw/banked_memory.py: the pumped scratchpad (two block-RAM ports at twice the clock) against
the plain one (one bank port per read port), on the same random traffic, in Amaranth's simulator.

The plain memory is what the engine's Verilator tests run; the pumped one is what the ECP5
builds carry. Both implement one contract (the module docstring), so every read port must
give the same bytes in every cycle (and `late_data` the last port's); a small memory makes same-row reads and writes (the
pumped memory's collision path) frequent.
"""
import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.banked_memory import BankedMemory

ROW_BYTES, ROWS = 8, 16


def _pair():
    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.domains.fast = ClockDomain("fast")
    plain = m.submodules.plain = BankedMemory(ROW_BYTES, ROWS, read_ports=3)
    pumped = m.submodules.pumped = BankedMemory(ROW_BYTES, ROWS, read_ports=3, pumped=True)
    return m, plain, pumped


def _run(traffic):
    """Drive both memories with `traffic` (one dict per cycle); returns per cycle the plain and
    pumped read data of the three ports, sampled at the sync edge that ends the cycle."""
    m, plain, pumped = _pair()
    seen = []

    async def testbench(ctx):
        for cycle in traffic:
            for memory in (plain, pumped):
                for i in range(3):
                    ctx.set(memory.read_port(i).addr, cycle["addr"][i])
                    ctx.set(memory.read_port(i).en, cycle["en"][i])
                ctx.set(memory.write_addr, cycle["write_addr"])
                ctx.set(memory.write_data, cycle["write_data"])
                ctx.set(memory.write_enable, cycle["write_enable"])
            ports = [p for memory in (plain, pumped) for p in [memory.read_port(i).data for i in range(3)]
                     + [memory.late_data]]
            _, _, *values = await ctx.tick("sync").sample(*ports)
            seen.append((values[:4], values[4:]))

    sim = Simulator(m)
    period = 2e-8
    sim.add_clock(period, phase=period / 2, domain="sync")           # rising edges coincide
    sim.add_clock(period / 2, phase=period / 2, domain="fast")
    sim.add_testbench(testbench)
    sim.run()
    return seen


def _random_traffic(seed: int, cycles: int):
    rng = random.Random(seed)
    size = ROW_BYTES * ROWS
    traffic = []
    for _ in range(cycles):
        write_addr = rng.randrange(size)
        addr = [rng.randrange(size) for _ in range(3)]
        if rng.random() < 0.4:          # read2 near the write: the collision path
            addr[2] = (write_addr + rng.randrange(-ROW_BYTES, ROW_BYTES + 1)) % size
        if rng.random() < 0.2:          # read0/read1 of the bytes being written: old bytes
            addr[rng.randrange(2)] = write_addr
        traffic.append({
            "addr": addr,
            "en": [int(rng.random() < 0.8) for _ in range(3)],
            "write_addr": write_addr,
            "write_data": rng.getrandbits(8 * ROW_BYTES),
            "write_enable": rng.getrandbits(ROW_BYTES) if rng.random() < 0.7 else 0,
        })
    return traffic


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pumped_memory_reads_what_the_plain_memory_reads(seed):
    seen = _run(_random_traffic(seed, 600))
    for cycle, (plain, pumped) in enumerate(seen):
        assert pumped == plain, f"cycle {cycle}: plain {plain} pumped {pumped}"
    # the traffic really wrote and really read back non-zero bytes on every port
    assert all(any(plain[i] for plain, _ in seen) for i in range(4))


def test_read_in_the_cycle_of_a_write_returns_the_old_bytes_on_every_port():
    size = ROW_BYTES * ROWS
    first = {"addr": [0, 0, 0], "en": [0, 0, 0], "write_addr": 3, "write_data": 0x1122334455667788,
             "write_enable": 0xFF}
    both = {"addr": [3, 3, 3], "en": [1, 1, 1], "write_addr": 3, "write_data": 0x99AABBCCDDEEFF00,
            "write_enable": 0xFF}
    after = {"addr": [3, 3, 3], "en": [1, 1, 1], "write_addr": 0, "write_data": 0, "write_enable": 0}
    idle = {"addr": [size - 1] * 3, "en": [0, 0, 0], "write_addr": 0, "write_data": 0, "write_enable": 0}
    seen = _run([first, both, after, idle])
    old, new = 0x1122334455667788, 0x99AABBCCDDEEFF00
    # ports 0-2 and late_data: read in cycle 1 (with the write), data in cycle 2
    assert seen[2] == ([old] * 4, [old] * 4)
    assert seen[3] == ([new] * 4, [new] * 4)


def test_pumped_memory_needs_three_read_ports():
    with pytest.raises(ValueError, match="exactly 3 read ports"):
        BankedMemory(ROW_BYTES, ROWS, read_ports=2, pumped=True)
