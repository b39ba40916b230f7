# amaranth: UnusedElaboratable=no
"""The SPI flash reader (hw/soc/spi_flash.py) against a model of a W25Q-style flash in Amaranth's
simulator, and the boot image and ROM that use it (hw/soc/boot.py).

The model (FlashModel) is written from the flash's protocol, not from the reader: it samples
`copi` on rising `clk` edges while `cs` is asserted, answers READ (0x03) with the bytes from the
24-bit address on, most significant bit first, one bit after each falling edge, and records every
command with the cycle in which it began and ended.
"""
import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.soc.boot import BOOT_MAGIC, boot_image
from hw.soc.spi_flash import READ, RELEASE_POWER_DOWN, WAKE_SECONDS, SpiFlashReader
from wishbone_access import access

CLOCK_PERIOD = 1e-8
CLOCK_HZ = 1 / CLOCK_PERIOD


class FlashModel:
    def __init__(self, data: bytes):
        self.data = data
        self.commands = []           # dicts: command, address, began, ended (cycles)

    async def run(self, ctx, pins):
        cycle, previous_clk, command = 0, 0, None
        while True:
            await ctx.tick()
            cycle += 1
            cs, clk, copi = ctx.get(pins.cs), ctx.get(pins.clk), ctx.get(pins.copi)
            if not cs:
                if command is not None:
                    command["ended"] = cycle
                    self.commands.append(command)
                command, previous_clk = None, clk
                continue
            if command is None:
                command = {"bits": [], "began": cycle, "address": None, "out": None}
            if clk and not previous_clk:                       # rising: the flash samples copi
                if command["out"] is None:
                    command["bits"].append(copi)
                    value = int("".join(map(str, command["bits"])), 2)
                    if len(command["bits"]) == 8:
                        command["command"] = value
                    if len(command["bits"]) == 32 and command["command"] == READ:
                        command["address"] = value & 0xFF_FFFF
                        command["out"] = self._bits_from(command["address"])
            if not clk and previous_clk and command["out"] is not None:    # falling: next bit out
                ctx.set(pins.cipo, next(command["out"]))
            previous_clk = clk

    def _bits_from(self, address):
        while True:
            byte = self.data[address % len(self.data)]
            for bit in range(7, -1, -1):
                yield (byte >> bit) & 1
            address += 1


def run(reader, model, bench):
    sim = Simulator(reader)
    sim.add_clock(CLOCK_PERIOD)

    async def flash(ctx):
        await model.run(ctx, reader.pins)

    sim.add_testbench(flash, background=True)
    sim.add_testbench(bench)
    sim.run()


# The protocol's cost of a word (the reader's contract): `clk` is half the system clock, so a bit
# takes 2 cycles. A new address: a cycle to end the previous read, one to select, the 32 bits of
# command and address, one cycle between, the 32 data bits, one to answer.
NEW_READ_CYCLES = 1 + 1 + 2 * 32 + 1 + 2 * 32 + 1
CONTINUED_READ_CYCLES = 1 + 2 * 32 + 1


def test_reads_little_endian_words_and_streams_consecutive_ones():
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, 1 << 12, dtype=np.uint8).tobytes()
    model = FlashModel(data)
    reader = SpiFlashReader(size_bytes=1 << 12, clock_hz=CLOCK_HZ)
    addresses = [0x40, 0x41, 0x42, 0x10, 0x11, 0x3FF, 0x200, 0x201, 0x202, 0x203, 0x7]
    got = []

    async def bench(ctx):
        for word in addresses:
            got.append(await access(ctx, reader.bus, word, limit=1000))   # the first waits for the wake-up

    run(reader, model, bench)
    words = np.frombuffer(data, "<u4")
    assert [value for value, *_ in got] == [int(words[w]) for w in addresses]
    assert all(ack and not err for _, ack, err, _ in got)
    continued = [a == b + 1 for b, a in zip([None] + addresses, addresses) if b is not None]
    continued = [False] + continued
    cycles = [cycles for *_, cycles in got]
    # (the first read also waits for the wake-up at reset)
    assert cycles[0] > NEW_READ_CYCLES
    assert cycles[1:] == [CONTINUED_READ_CYCLES if c else NEW_READ_CYCLES for c in continued[1:]]
    # one wake-up, then one READ per address that does not continue the previous one
    assert model.commands[0]["command"] == RELEASE_POWER_DOWN
    assert len(model.commands[0]["bits"]) == 8
    # (the last READ is still open: `cs` stays asserted, so the model has not recorded it)
    reads = model.commands[1:]
    starts = [4 * w for w, c in zip(addresses, continued) if not c]
    assert [c["command"] for c in reads] == [READ] * (len(starts) - 1)
    assert [c["address"] for c in reads] == starts[:-1]
    # the first READ waits tRES1 after the wake-up command
    assert (reads[0]["began"] - model.commands[0]["ended"]) * CLOCK_PERIOD >= WAKE_SECONDS


def test_a_write_is_an_error_and_sends_nothing_to_the_flash():
    data = bytes(range(256)) * 4
    model = FlashModel(data)
    reader = SpiFlashReader(size_bytes=1024, clock_hz=CLOCK_HZ)
    got = []

    async def bench(ctx):
        got.append(await access(ctx, reader.bus, 3, limit=1000))    # after the wake-up
        got.append(await access(ctx, reader.bus, 4, data=0x1234_5678))
        got.append(await access(ctx, reader.bus, 4))     # still continues the first read

    run(reader, model, bench)
    (first, ack0, _, _), (_, ack1, err1, waited1), (second, ack2, _, cycles2) = got
    assert ack0 and not ack1 and err1 and waited1 == 1
    assert first == int(np.frombuffer(data, "<u4")[3]) and second == int(np.frombuffer(data, "<u4")[4])
    assert ack2 and cycles2 == CONTINUED_READ_CYCLES
    assert [c["command"] for c in model.commands] == [RELEASE_POWER_DOWN]    # the READ is still open


def test_the_reader_refuses_a_window_beyond_24_bit_addresses():
    with pytest.raises(ValueError, match="16 MiB"):
        SpiFlashReader(size_bytes=1 << 25)


def test_boot_image_holds_the_firmware_and_the_job_at_their_windows():
    from sim.soc_cli import soc_config
    config = soc_config("icebreaker")
    firmware, job = bytes(range(1, 11)), b"\x07" * 12
    image = np.frombuffer(boot_image(config, firmware, job), "<u4")
    assert image[0] == BOOT_MAGIC and image[1] == 2
    assert image[2] == int(image[3:].sum(dtype=np.uint64)) % 2 ** 32          # the sum of what follows
    assert image[3] == config.region("ram").base and image[4] == 12          # padded to a word
    assert image[5:8].view(np.uint8)[:10].tobytes() == firmware and not image[5:8].view(np.uint8)[10:].any()
    assert image[8] == config.region("external").base and image[9] == 12
    assert image[10:13].view(np.uint8).tobytes() == job and image.size == 13
    with pytest.raises(ValueError, match="do not fit the 65536-byte ram window"):
        boot_image(config, bytes(65540), job)
    with pytest.raises(ValueError, match="leaves no room for the image"):
        dataclasses.replace(config, boot_image_offset=config.region("spi_flash").size - 1024)
