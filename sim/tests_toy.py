"""cocotb tests of the harness on `sim.toy_dut.ToySummer`; run by tests/test_sim_harness.py.

Each test reports what it measured through `sim.host.report`, so the pytest side can assert the
values too. `deliberately_fails` runs only with TOY_FAIL=1 and `hangs` only with TOY_HANG=1 in the
environment, to check that failing and hanging tests come back as failures.
"""
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import Timer

from sim.host import EngineError, HostDriver, RunTimeout, report
from sim.toy_dut import ERROR_COUNT_RANGE


def layout(dut) -> tuple[int, int]:
    depth = 1 << len(dut.host_addr)
    return depth - 1, depth - 2           # result word, largest count


@cocotb.test()
async def sums_random_words_in_exact_cycles(dut):
    driver = HostDriver(dut)
    await driver.reset()
    result_word, max_count = layout(dut)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    sums, cycles = [], []
    for count in (0, 1, 7, max_count):
        words = rng.integers(0, 2**32, size=count, dtype=np.uint32)
        await driver.write_words(0, np.concatenate([[count], words]).astype(np.uint32))
        assert np.array_equal(await driver.read_words(1, count), words)
        cycles.append(await driver.run(max_cycles=count + 10))
        expected = int(words.sum(dtype=np.uint64)) % 2**32
        sums.append(int((await driver.read_words(result_word, 1))[0]))
        assert sums[-1] == expected, f"count {count}: sum {sums[-1]:#x}, expected {expected:#x}"
        assert cycles[-1] == count + 3, f"count {count}: {cycles[-1]} cycles, expected {count + 3}"
    report(sums=sums, cycles=cycles)


@cocotb.test()
async def count_out_of_range_raises_error(dut):
    driver = HostDriver(dut)
    await driver.reset()
    result_word, max_count = layout(dut)
    await driver.write_words(result_word, [0xDEADBEEF])
    await driver.write_words(0, [max_count + 1])
    try:
        await driver.run(max_cycles=20)
    except EngineError as error:
        assert (error.code, error.index, error.cycles) == (ERROR_COUNT_RANGE, 0, 2), error
        report(error={"code": error.code, "index": error.index, "cycles": error.cycles})
    else:
        raise AssertionError("a count above the range did not raise EngineError")
    assert (await driver.read_words(result_word, 1))[0] == 0xDEADBEEF, "result written on error"
    # The error clears on the next start.
    await driver.write_words(0, [1, 5])
    assert await driver.run(max_cycles=10) == 4
    assert dut.error.value == 0


@cocotb.test()
async def run_times_out_when_done_is_late(dut):
    driver = HostDriver(dut)
    await driver.reset()
    await driver.write_words(0, [100])
    try:
        await driver.run(max_cycles=102)       # needs 103
    except RunTimeout:
        pass
    else:
        raise AssertionError("run() returned although done came after max_cycles")
    await driver.reset()                       # the toy is still summing
    assert await driver.run(max_cycles=103) == 103


@cocotb.test()
async def bytes_round_trip_at_unaligned_addresses(dut):
    driver = HostDriver(dut)
    await driver.reset()
    await driver.write_words(16, np.full(8, 0xA5A5A5A5, dtype=np.uint32))
    for address, length in ((64 + 1, 2), (64 + 3, 9), (64 + 4, 8), (64 + 2, 1), (70, 0)):
        payload = bytes(range(1 + address, 1 + address + length))
        await driver.write_bytes(address, payload)
        assert await driver.read_bytes(address, length) == payload
    expected = bytearray(b"\xa5" * 32)
    for address, length in ((1, 2), (3, 9), (4, 8), (2, 1)):
        expected[address:address + length] = bytes(range(65 + address, 65 + address + length))
    assert await driver.read_bytes(64, 32) == bytes(expected)


@cocotb.test()
async def measure_speed(dut):
    driver = HostDriver(dut)
    await driver.reset()
    _, max_count = layout(dut)
    words = np.arange(1, max_count + 1, dtype=np.uint32)
    began = time.perf_counter()
    await driver.write_words(1, words)
    write_seconds = time.perf_counter() - began
    began = time.perf_counter()
    assert np.array_equal(await driver.read_words(1, max_count), words)
    read_seconds = time.perf_counter() - began
    await driver.write_words(0, [max_count])
    runs, total_cycles = 50, 0
    began = time.perf_counter()
    for _ in range(runs):
        total_cycles += await driver.run(max_cycles=max_count + 3)
    run_seconds = time.perf_counter() - began
    assert total_cycles == runs * (max_count + 3)
    report(write_words_per_second=max_count / write_seconds,
           read_words_per_second=max_count / read_seconds,
           free_running_cycles_per_second=total_cycles / run_seconds)


@cocotb.test(skip=os.environ.get("TOY_FAIL") != "1")
async def deliberately_fails(dut):
    report(reached_failing_test=True)
    assert dut.busy.value == 1, "expected: the toy is idle after power-up"


@cocotb.test(skip=os.environ.get("TOY_HANG") != "1")
async def hangs(dut):
    driver = HostDriver(dut)
    await driver.reset()
    await driver.write_words(0, [1])
    await driver.run(max_cycles=10**12)     # done comes after 4 cycles, but ...
    await Timer(1, unit="sec")   # ... this takes minutes of wall time
