"""cocotb side of sim.soc_run: load the SoC over its debug bus (unless its simulator was built
with the memories initialised: `preloaded`, or its boot ROM loads them from a model of the SPI
flash: `boot_image`), let the firmware run, record the
UART transcript, and read memory where the firmware pauses and when it halts.

Python touches the clock only while it drives the debug bus (loading, reading); while the
firmware runs, the testbench waits on the `paused`/`halted` outputs and on `console_valid`
edges (one wake-up per UART byte), so the simulator runs free.
"""
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_steps

from sim.host import report

SPEC_ENV = "SPARSEBP_SOC_SPEC"
CLOCK_PERIOD_NS = 10


class BusError(Exception):
    pass


class DebugBus:
    """Wishbone initiator on the SoC's `debug` port; outputs change and inputs are read at
    falling edges, or, when the engine has a pumped scratchpad (a `fast` clock whose rising
    edges fall there and read the host port's address, hw/banked_memory.py), a quarter cycle
    after the rising edges, as sim/host.py does. One word every two cycles (the subordinates'
    ack/idle rhythm)."""

    def __init__(self, dut):
        self.dut = dut
        self.pumped = hasattr(dut, "fast_clk")
        self._falling, self._rising = FallingEdge(dut.clk), RisingEdge(dut.clk)
        self._quarter = get_sim_steps(CLOCK_PERIOD_NS, "ns") // 4
        for name in ("cyc", "stb", "we", "adr", "dat_w", "sel"):
            getattr(dut, f"debug__{name}").value = 0

    async def step(self) -> None:
        """To the next point where the bus's outputs change and its inputs are read."""
        if self.pumped:
            await self._rising
            await Timer(self._quarter, unit="step")
        else:
            await self._falling

    async def _access(self, byte_address: int, data: int | None) -> int:
        dut = self.dut
        dut.debug__adr.value = byte_address >> 2
        dut.debug__we.value = int(data is not None)
        dut.debug__dat_w.value = data or 0
        dut.debug__sel.value = 0xF
        dut.debug__cyc.value = 1
        dut.debug__stb.value = 1
        for _ in range(10_000):
            await self.step()
            if dut.debug__ack.value == 1:
                return dut.debug__dat_r.value.to_unsigned()
            if dut.debug__err.value == 1:
                raise BusError(f"bus error at {byte_address:#010x}")
        raise BusError(f"no answer from {byte_address:#010x} in 10,000 cycles")

    async def _release(self):
        self.dut.debug__stb.value = 0
        self.dut.debug__cyc.value = 0
        await self.step()

    async def write_words(self, byte_address: int, words) -> None:
        await self.step()
        for i, word in enumerate(np.asarray(words, dtype=np.uint32).tolist()):
            await self._access(byte_address + 4 * i, int(word))
        await self._release()

    async def read_words(self, byte_address: int, count: int) -> np.ndarray:
        await self.step()
        values = [await self._access(byte_address + 4 * i, None) for i in range(count)]
        await self._release()
        return np.array(values, dtype=np.uint32)

    async def write_bytes(self, byte_address: int, data: np.ndarray) -> None:
        data = np.asarray(data, np.uint8)
        padded = np.concatenate([data, np.zeros(-data.size % 4, np.uint8)])
        await self.write_words(byte_address, padded.view("<u4"))

    async def read_bytes(self, byte_address: int, count: int) -> np.ndarray:
        first = byte_address & ~3
        words = await self.read_words(first, (byte_address - first + count + 3) // 4)
        return words.astype("<u4").view(np.uint8)[byte_address - first:byte_address - first + count].copy()


async def spi_flash_model(dut, image: np.ndarray, offset: int) -> None:
    """A serial flash on the SoC's `spi_flash` pins holding `image` at byte `offset` (0xFF, erased,
    elsewhere): commands are sampled on rising `clk` edges while `cs` is asserted; READ (0x03)
    answers with the bytes from its 24-bit address on, most significant bit first. Every bit is
    set just after the rising edge that sampled the one before, which a mode-0 reader (sampling on
    rising edges) cannot tell from the falling-edge timing of a real flash; so the model wakes
    once per bit."""
    cs, clk, copi, cipo = dut.spi_flash__cs, dut.spi_flash__clk, dut.spi_flash__copi, dut.spi_flash__cipo
    selected = {"new": False}

    async def selections():
        while True:
            await RisingEdge(cs)
            selected["new"] = True

    cocotb.start_soon(selections())
    cipo.value = 0
    rising = RisingEdge(clk)
    bits, count, address, bit = 0, 0, None, 0
    while True:
        await rising
        if selected["new"]:
            selected["new"] = False
            bits, count, address = 0, 0, None
        if address is None:                       # command and address bits
            bits = (bits << 1) | int(copi.value)
            count += 1
            if count == 32 and bits >> 24 == 0x03:
                address, bit = bits & 0xFF_FFFF, 7
            else:
                continue
        else:
            bit -= 1
            if bit < 0:
                address, bit = address + 1, 7
        at = address - offset
        byte = int(image[at]) if 0 <= at < image.size else 0xFF
        cipo.value = (byte >> bit) & 1


@cocotb.test()
async def run_firmware(dut):
    spec = np.load(os.environ[SPEC_ENV])
    ram_base, scratchpad_base, external_base, sysctl_pause = (int(v) for v in spec["addresses"])
    scratchpad_bytes = int(spec["scratchpad_bytes"])
    max_cycles = int(spec["max_cycles"])
    windows = spec["windows"].reshape(-1, 2)          # (scratchpad address, bytes) read at each pause
    transcript_path = os.environ[SPEC_ENV + "_TRANSCRIPT"]

    resets = [dut.rst]
    if hasattr(dut, "fast_clk"):    # the pumped scratchpad's clock: twice clk, rising edges on clk's
        Clock(dut.fast_clk, CLOCK_PERIOD_NS // 2, unit="ns").start()
        resets.append(dut.fast_rst)
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    for rst in resets:
        rst.value = 1
    dut.cpu_reset.value = 1
    bus = DebugBus(dut)
    for _ in range(3):
        await bus.step()
    for rst in resets:
        rst.value = 0
    wall = time.perf_counter()
    flash = spec["flash"]
    ranges = spec["flash_ranges"].reshape(-1, 2).tolist()     # the non-zero parts (memory starts zeroed)
    boot = spec["boot_image"]
    if boot.size:                        # the boot ROM loads both from the SPI flash
        cocotb.start_soon(spi_flash_model(dut, boot, int(spec["boot_offset"])))
    elif not int(spec["preloaded"]):     # else the simulator was built with both in memory
        await bus.write_bytes(ram_base, spec["firmware"])
        for begin, end in ranges:
            await bus.write_bytes(external_base + begin, flash[begin:end])
    load_seconds = time.perf_counter() - wall
    wall = time.perf_counter()

    transcript = bytearray()
    console = open(transcript_path, "wb", buffering=0)

    async def monitor():
        while True:
            await RisingEdge(dut.console_valid)
            byte = dut.console_data.value.to_unsigned()
            transcript.append(byte)
            console.write(bytes([byte]))

    cocotb.start_soon(monitor())
    period = get_sim_steps(CLOCK_PERIOD_NS, "ns")
    await bus.step()
    dut.cpu_reset.value = 0
    started = get_sim_time("step")
    paused_cycles = 0
    snapshots = []
    status = "timeout"
    while True:
        elapsed = (get_sim_time("step") - started) // period - paused_cycles
        if elapsed >= max_cycles:
            break
        paused, halted = RisingEdge(dut.paused), RisingEdge(dut.halted)
        fired = await First(paused, halted,
                            Timer((max_cycles - elapsed) * period + period // 4, unit="step"))
        if fired is halted or dut.halted.value == 1:
            status = "halted"
            break
        if fired is not paused:
            break
        pause_began = get_sim_time("step")
        for address, count in windows.tolist():
            snapshots.append(await bus.read_bytes(scratchpad_base + int(address), int(count)))
        await bus.write_words(sysctl_pause, [0])
        paused_cycles += (get_sim_time("step") - pause_began) // period
    total_cycles = (get_sim_time("step") - started) // period - paused_cycles
    run_seconds = time.perf_counter() - wall
    wall = time.perf_counter()
    for _ in range(4):
        await bus.step()
    out = {"status": np.array(status), "exit_code": np.array(dut.exit_code.value.to_unsigned()),
           "cycles": np.array(total_cycles), "transcript": np.frombuffer(bytes(transcript), np.uint8),
           "console_valid_edges": np.array(len(transcript))}
    if status == "halted":
        out["scratchpad"] = await bus.read_bytes(scratchpad_base, scratchpad_bytes)
        readback = flash.copy()
        for begin, end in ranges:
            readback[begin:end] = await bus.read_bytes(external_base + begin, end - begin)
        out["flash"] = readback
    for i, snapshot in enumerate(snapshots):
        out[f"snapshot{i}"] = snapshot
    out["snapshots"] = np.array(len(snapshots))
    console.close()
    np.savez(os.environ[SPEC_ENV + "_OUT"], **out)
    report(status=status, cycles=int(total_cycles), load_seconds=load_seconds, run_seconds=run_seconds,
           readback_seconds=time.perf_counter() - wall)
