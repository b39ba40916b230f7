# amaranth: UnusedElaboratable=no
"""hw/banked_memory.py: the pumped scratchpad (two block-RAM ports at twice the clock) and the
two-port one (two block-RAM ports shared by A and the host port, B and the write) against the
plain one (one bank port per read port), on the same random traffic, in Amaranth's simulator.

The plain memory is what the engine's Verilator tests run first; the pumped one is what the
ECP5 builds carry. The engine's scratchpad registers its host port and write inside the memory
(`registered_host_and_write`), which the pumped memory requires. Both implement one contract
(the module docstring), so every read port must give the same bytes, each at its own latency
(the pumped A and B ports take a cycle longer), except where the contract leaves it open: an A
or B read of bytes that the same cycle's write or the previous cycle's changes. A small memory
makes same-row reads and writes (the pumped memory's collision path) frequent.
"""
import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.banked_memory import BankedMemory

ROW_BYTES, ROWS = 8, 16


def _pair(init=b""):
    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.domains.fast = ClockDomain("fast")
    plain = m.submodules.plain = BankedMemory(ROW_BYTES, ROWS, read_ports=3, init=init,
                                              registered_host_and_write=True)
    pumped = m.submodules.pumped = BankedMemory(ROW_BYTES, ROWS, read_ports=3, pumped=True, init=init,
                                                registered_host_and_write=True)
    two_port = m.submodules.two_port = BankedMemory(ROW_BYTES, ROWS, read_ports=3, two_port=True, init=init,
                                                    registered_host_and_write=True)
    return m, plain, pumped, two_port


def _run(traffic, init=b""):
    """Drive the three memories with `traffic` (one dict per cycle); returns per cycle the plain,
    pumped and two-port read data of the three ports, sampled at the sync edge that ends the
    cycle."""
    m, plain, pumped, two_port = _pair(init)
    seen = []

    async def testbench(ctx):
        await ctx.tick("sync")       # from here on every cycle has its middle `fast` edge
        for cycle in traffic:
            for memory in (plain, pumped, two_port):
                for i in range(3):
                    ctx.set(memory.read_port(i).addr, cycle["addr"][i])
                    ctx.set(memory.read_port(i).en, cycle["en"][i])
                ctx.set(memory.write_addr, cycle["write_addr"])
                ctx.set(memory.write_data, cycle["write_data"])
                ctx.set(memory.write_enable, cycle["write_enable"])
            ports = [memory.read_port(i).data for memory in (plain, pumped, two_port) for i in range(3)]
            _, _, *values = await ctx.tick("sync").sample(*ports)
            seen.append((values[:3], values[3:6], values[6:]))

    sim = Simulator(m)
    period = 2e-8
    sim.add_clock(period, phase=period / 2, domain="sync")           # rising edges coincide
    sim.add_clock(period / 2, phase=period / 2, domain="fast")
    sim.add_testbench(testbench)
    sim.run()
    return seen


def _reads_a_recent_write(traffic, k, i):
    """Whether port i's read in cycle k asks for a byte the write of cycle k or k - 1 changes
    (the write lands a cycle after it is presented)."""
    size = ROW_BYTES * ROWS
    cycle = traffic[k]
    read = {(cycle["addr"][i] + j) % size for j in range(ROW_BYTES)}
    for writer in traffic[max(0, k - 1):k + 1]:
        written = {(writer["write_addr"] + j) % size for j in range(ROW_BYTES)
                   if writer["write_enable"] >> j & 1}
        if cycle["en"][i] and read & written:
            return True
    return False


def _compare(traffic, seen):
    """Each port's data in every cycle, plain against pumped: the data of the last enabled read
    (a read's data stays until the next enabled read's replaces it), which shows on the pumped
    A and B ports a cycle later (the host port has the same latency in both). Returns how many
    cycles were compared."""
    _, plain, pumped, _ = _pair()
    compared = 0
    for i in range(3):
        lag = pumped.read_latency(i) - plain.read_latency(i)
        last_read = None
        for k in range(len(seen) - lag):
            first = k - plain.read_latency(i)
            if first >= 0 and traffic[first]["en"][i]:
                last_read = first        # the plain memory shows this read from cycle k on
            if last_read is None or (i < 2 and _reads_a_recent_write(traffic, last_read, i)):
                continue                 # nothing read yet, or undefined on A and B (the contract)
            p, q = seen[k][0][i], seen[k + lag][1][i]
            assert p == q, f"port {i}, cycle {k} (read of cycle {last_read}): plain {p:#x} pumped {q:#x}"
            compared += 1
    return compared


def _compare_two_port(traffic, seen):
    """Each read's data on the two-port memory against the plain one's, in the cycle it arrives
    (same latencies), where the two-port contract defines it: not an A read in the cycle after
    a host read was presented, nor a B read in the cycle after a write was, nor (as on the
    plain memory) an A or B read of bytes the write of that cycle or the one before changes.
    Returns how many reads were compared on each port."""
    _, plain, _, two_port = _pair()
    compared = [0, 0, 0]
    for i in range(3):
        latency = plain.read_latency(i)
        assert two_port.read_latency(i) == latency
        for first in range(1, len(seen) - latency):
            cycle, before = traffic[first], traffic[first - 1]
            if not cycle["en"][i]:
                continue
            if i == 0 and before["en"][2] or i == 1 and before["write_enable"]:
                continue                 # the port's block-RAM port serves the host or the write
            if i < 2 and _reads_a_recent_write(traffic, first, i):
                continue
            p, q = seen[first + latency][0][i], seen[first + latency][2][i]
            assert p == q, f"port {i}, read of cycle {first}: plain {p:#x} two-port {q:#x}"
            compared[i] += 1
    return compared


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
    traffic = _random_traffic(seed, 600)
    seen = _run(traffic)
    assert _compare(traffic, seen) > 3 * 600 * 0.8
    # the traffic really wrote and really read back non-zero bytes on every port
    assert all(any(plain[i] for plain, _, _ in seen) for i in range(3))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_port_memory_reads_what_the_plain_memory_reads(seed):
    traffic = _random_traffic(seed + 10, 600)
    seen = _run(traffic)
    a, b, host = _compare_two_port(traffic, seen)
    # the host port is defined on every read; A only where the host port left port 1 (a fifth
    # of the cycles in this traffic), B where no write took port 2
    assert host > 600 * 0.7 and a > 40 and b > 80
    assert all(any(two[i] for _, _, two in seen) for i in range(3))


def test_read_latency_is_one_cycle_but_two_on_the_pumped_a_and_b_ports_and_a_registered_host_port():
    _, plain, pumped, two_port = _pair()
    assert [plain.read_latency(i) for i in range(3)] == [1, 1, 2]
    assert [two_port.read_latency(i) for i in range(3)] == [1, 1, 2]
    assert [pumped.read_latency(i) for i in range(3)] == [2, 2, 2]
    unregistered = BankedMemory(ROW_BYTES, ROWS, read_ports=2)     # the external memory's kind
    assert [unregistered.read_latency(i) for i in range(2)] == [1, 1]


def test_reads_around_a_write():
    """The host port (port 2) returns the old bytes in the cycle of the write and the new ones
    in the next, on both; A and B the old bytes in the write's cycle, and in the next cycle the
    old bytes on the plain memory and the new ones on the pumped (its write lands at the middle
    edge of that cycle); from the cycle after, every port the new bytes."""
    size = ROW_BYTES * ROWS
    first = {"addr": [0, 0, 0], "en": [0, 0, 0], "write_addr": 3, "write_data": 0x1122334455667788,
             "write_enable": 0xFF}
    idle = {"addr": [size - 1] * 3, "en": [0, 0, 0], "write_addr": 0, "write_data": 0, "write_enable": 0}
    both = {"addr": [3, 3, 3], "en": [1, 1, 1], "write_addr": 3, "write_data": 0x99AABBCCDDEEFF00,
            "write_enable": 0xFF}
    after = {"addr": [3, 3, 3], "en": [1, 1, 1], "write_addr": 0, "write_data": 0, "write_enable": 0}
    seen = _run([first, idle, both, after, after, idle, idle, idle])
    old, new = 0x1122334455667788, 0x99AABBCCDDEEFF00
    # read in cycle 2 (with the write): plain A/B in cycle 3, pumped A/B and both hosts in cycle 4
    assert seen[3][0][:2] == [old, old]
    assert seen[4][0][2] == old and seen[4][1] == [old, old, old]
    # read in cycle 3 (the write lands): plain A/B old in cycle 4, pumped A/B new in cycle 5;
    # the host port new on both in cycle 5
    assert seen[4][0][:2] == [old, old]
    assert seen[5][1] == [new, new, new] and seen[5][0][2] == new
    # read in cycle 4: every port the new bytes
    assert seen[5][0][:2] == [new, new]
    assert seen[6][0][2] == new and seen[6][1] == [new, new, new]


def test_pumped_memory_needs_three_read_ports_and_a_registered_host_port_and_write():
    with pytest.raises(ValueError, match="exactly 3 read ports"):
        BankedMemory(ROW_BYTES, ROWS, read_ports=2, pumped=True, registered_host_and_write=True)
    with pytest.raises(ValueError, match="registered_host_and_write"):
        BankedMemory(ROW_BYTES, ROWS, read_ports=3, pumped=True)


@pytest.mark.parametrize("options", [dict(read_ports=2, registered_host_and_write=True),
                                     dict(read_ports=3),
                                     dict(read_ports=3, registered_host_and_write=True, pumped=True)])
def test_two_port_memory_needs_three_read_ports_a_registered_host_port_and_write_and_no_pump(options):
    with pytest.raises(ValueError, match="two-port memory has exactly 3 read ports"):
        BankedMemory(ROW_BYTES, ROWS, two_port=True, **options)


def test_initial_contents_read_back_at_every_alignment():
    """`init` fills the memory from byte 0 (a bitstream's flash image): every port of both
    implementations reads those bytes, rows spanning both banks and wrapping included; the
    bytes past `init` read as zero."""
    rng = random.Random(7)
    size = ROW_BYTES * ROWS
    init = bytes(rng.randrange(1, 256) for _ in range(size - 5))     # the last 5 bytes left zero
    expected_memory = init + bytes(5)
    starts = list(range(size))
    rng.shuffle(starts)
    idle = {"addr": [0, 0, 0], "en": [0, 0, 0], "write_addr": 0, "write_data": 0, "write_enable": 0}
    traffic = [dict(idle, addr=[a, (a + 1) % size, (a + 2) % size], en=[1, 1, 1]) for a in starts]
    seen = _run(traffic + [idle, idle], init=init)
    for k, start in enumerate(starts):
        for i in range(3):
            first = (start + i) % size
            want = int.from_bytes(bytes(expected_memory[(first + j) % size] for j in range(ROW_BYTES)), "little")
            assert seen[k + (1 if i < 2 else 2)][0][i] == want, f"plain port {i}, address {first}"
            assert seen[k + 2][1][i] == want, f"pumped port {i}, address {first}"


def test_initial_contents_larger_than_the_memory_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        BankedMemory(ROW_BYTES, ROWS, read_ports=3, init=bytes(ROW_BYTES * ROWS + 1))
