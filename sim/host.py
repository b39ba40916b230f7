"""cocotb-side driver for a design with the engine's host port, and the results channel.

Host port convention (all synchronous to the rising edge of `clk`):
- `clk` in; `rst` in, active high, synchronous.
- Memory, 32-bit words, word addressed: `host_addr` in, `host_wdata` in, `host_we` in (the word
  is written at a rising edge where host_we is high), `host_rdata` out (the word at the
  host_addr sampled at a rising edge is on host_rdata `read_latency` edges later: 1 for the toy
  designs, `Engine.HOST_READ_LATENCY` = 2 for the engine).
  The host port is only guaranteed while the design is not busy.
- Control: `start` in, sampled high at one rising edge (S) to begin a run; `busy` out; `done`
  out, a pulse or a level that goes high at a rising edge D > S when the run ends, whether it
  succeeded or stopped on an error (a level must be low after edge S); `error` out, a level
  valid from D until the next start; `error_code` and `error_index` out, valid while error is
  high (what went wrong and where, in the design's own terms).

Timing of this driver: memory accesses change their inputs and read outputs a quarter cycle
after a rising edge, control (`rst`, `start`) at falling edges, so both sides see settled
values whatever the simulator's write semantics. Not at falling edges for memory: a pumped
scratchpad (hw/banked_memory.py) reads `host_addr` at its middle edge, clk's falling one, so
an address must hold from one rising edge to the next, as a register's would. `run()` counts
cycles from simulation time, not by awakening Python each cycle: the value returned is exactly
D - S (a design that raises done one cycle after sampling start measures 1).

Results channel: `report(key=value, ...)` merges JSON-compatible values (numpy scalars and
arrays allowed) into the file named by `sim.build.RESULTS_ENV`; the caller of
`sim.build.run_test` gets them as `TestRun.results`.
"""
import json
import os

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.simtime import get_sim_time
from cocotb.utils import get_sim_steps

from sim.build import RESULTS_ENV

CLOCK_PERIOD_NS = 10


class EngineError(Exception):
    """The design finished a run with `error` high."""

    def __init__(self, code: int, index: int, cycles: int):
        super().__init__(
            f"run stopped after {cycles} cycles with error code {code} at index {index}")
        self.code, self.index, self.cycles = code, index, cycles


class RunTimeout(Exception):
    """`done` did not rise within the allowed number of cycles."""


class HostDriver:
    """Owns the clock and reset of `dut` and drives its host port (see the module docstring).

    Construct inside a cocotb test, then `await driver.reset()` before anything else.
    """

    def __init__(self, dut, clock_period_ns: int = CLOCK_PERIOD_NS, read_latency: int = 1):
        self.dut = dut
        self.read_latency = read_latency
        self.clock = Clock(dut.clk, clock_period_ns, unit="ns")
        # An engine with a pumped scratchpad (hw/banked_memory.py) has a `fast` domain at twice
        # the clock, rising edges on clk's; both clocks start high at the same instant.
        self.fast_clock = None
        if hasattr(dut, "fast_clk"):
            self.fast_clock = Clock(dut.fast_clk, clock_period_ns // 2, unit="ns")
            self.fast_clock.start()
        self.clock.start()
        self.period_steps = get_sim_steps(clock_period_ns, "ns")
        self.address_words = 1 << len(dut.host_addr)
        self._falling = FallingEdge(dut.clk)
        self._rising = RisingEdge(dut.clk)
        for port in (dut.start, dut.host_we, dut.host_addr, dut.host_wdata):
            port.value = 0

    async def reset(self, cycles: int = 2) -> None:
        resets = [self.dut.rst] + ([self.dut.fast_rst] if self.fast_clock else [])
        for rst in resets:
            rst.value = 1
        for _ in range(cycles):
            await self._falling
        for rst in resets:
            rst.value = 0
        await self._falling

    def _check_range(self, base_word: int, count: int) -> None:
        if base_word < 0 or count < 0 or base_word + count > self.address_words:
            raise ValueError(f"Words {base_word}..{base_word + count - 1} are outside the host "
                             f"address space of {self.address_words} words")

    async def write_words(self, base_word: int, words) -> None:
        """Write `words` (anything numpy turns into uint32) from word address `base_word`."""
        words = np.asarray(words, dtype=np.uint32).ravel()
        self._check_range(base_word, len(words))
        address, data, write_enable = self.dut.host_addr, self.dut.host_wdata, self.dut.host_we
        await self._quarter_point()
        write_enable.value = 1
        for offset, word in enumerate(words.tolist()):
            address.value = base_word + offset
            data.value = word
            await Timer(self.period_steps, unit="step")
        write_enable.value = 0

    async def read_words(self, base_word: int, count: int) -> np.ndarray:
        """Read `count` words from word address `base_word`, one per cycle (pipelined)."""
        self._check_range(base_word, count)
        values = [0] * count
        address, read_data = self.dut.host_addr, self.dut.host_rdata
        await self._quarter_point()
        for offset in range(count + self.read_latency):
            if offset >= self.read_latency:
                values[offset - self.read_latency] = read_data.value.to_unsigned()
            if offset < count:
                address.value = base_word + offset
            if offset < count + self.read_latency - 1:
                await Timer(self.period_steps, unit="step")
        return np.array(values, dtype=np.uint32)

    async def _quarter_point(self) -> None:
        """Wait for the next point a quarter cycle after a rising edge (no clock edge there:
        `fast` edges fall on the half cycles)."""
        await self._rising
        await Timer(self.period_steps // 4, unit="step")

    async def write_bytes(self, byte_address: int, data: bytes) -> None:
        """Write bytes little-endian; partial words at either end are read, merged, written."""
        data = bytes(data)
        if not data:
            return
        first_word, head = divmod(byte_address, 4)
        last_word = (byte_address + len(data) - 1) // 4
        buffer = bytearray(4 * (last_word - first_word + 1))
        if head:
            buffer[:4] = (await self.read_words(first_word, 1)).tobytes()
        tail = (byte_address + len(data)) % 4
        if tail and (last_word != first_word or not head):
            buffer[-4:] = (await self.read_words(last_word, 1)).tobytes()
        buffer[head:head + len(data)] = data
        await self.write_words(first_word, np.frombuffer(bytes(buffer), dtype="<u4"))

    async def read_bytes(self, byte_address: int, count: int) -> bytes:
        if count <= 0:
            return b""
        first_word, head = divmod(byte_address, 4)
        last_word = (byte_address + count - 1) // 4
        words = await self.read_words(first_word, last_word - first_word + 1)
        return words.astype("<u4").tobytes()[head:head + count]

    async def run(self, max_cycles: int) -> int:
        """Pulse start, wait for done without per-cycle Python, return the cycles D - S.

        Raises RunTimeout if done has not risen `max_cycles` cycles after start (the design is
        then still running: `reset()` it), and EngineError (with code, index, cycles) if the
        run ended with error high.
        """
        dut = self.dut
        await self._falling
        dut.start.value = 1
        await RisingEdge(dut.clk)
        started = get_sim_time("step")
        await self._falling                # done changes only at rising edges: none missed
        dut.start.value = 0
        if dut.done.value == 1:
            raise RunTimeout("done was high right after start was sampled; a level done must "
                             "drop when start is sampled")
        # From S + 1/2 this ends at S + max_cycles + 3/4, away from any clock edge (a timer
        # ending on an edge would leave the next FallingEdge ambiguous); done at S + max wins.
        budget_steps = max_cycles * self.period_steps + self.period_steps // 4
        fired = await First(RisingEdge(dut.done), Timer(budget_steps, unit="step"))
        if not isinstance(fired, RisingEdge):
            raise RunTimeout(f"done did not rise within {max_cycles} cycles of start")
        elapsed = get_sim_time("step") - started
        cycles, remainder = divmod(elapsed, self.period_steps)
        assert remainder == 0, f"done rose {elapsed} steps after start, not at a clock edge"
        await self._falling
        if dut.error.value == 1:
            raise EngineError(dut.error_code.value.to_unsigned(),
                              dut.error_index.value.to_unsigned(), cycles)
        return cycles


def report(**values) -> None:
    """Merge `values` into the JSON results file of this run (no-op outside `run_test`)."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    merged = {}
    if os.path.exists(path):
        with open(path) as handle:
            merged = json.load(handle)
    merged.update(values)
    with open(path, "w") as handle:
        json.dump(merged, handle, default=_plain)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Cannot report a {type(value).__name__} as JSON")
