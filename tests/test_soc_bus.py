# amaranth: UnusedElaboratable=no
"""The SoC's bus blocks in Amaranth's simulator: Wishbone decoder and arbiter, RAM, system
control, UART; the configuration's checks and the generated firmware header.

The oracle for the interconnect is a plain dict of words (what was written is read back, through
either initiator, with byte selects); for the UART, the serial line decoded bit by bit.
"""
import dataclasses

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.soc import registers
from hw.soc.config import DEFAULT, SIM, SocConfig
from hw.soc.header import soc_header
from hw.soc.ram import WishboneRAM
from hw.soc.sysctl import SystemControl
from hw.soc.uart import UartTx
from hw.soc.wishbone import Arbiter, Decoder, Signature
from wishbone_access import access

RAM_WORDS = 64
UART_BASE_WORD, SYSCTL_BASE_WORD = 0x100, 0x140


class Bench(wiring.Component):
    """Two initiators -> arbiter -> decoder -> RAM, UART, system control."""

    def __init__(self, registered_answers=False):
        self.registered_answers = registered_answers
        super().__init__({"a": In(Signature(addr_width=12)), "b": In(Signature(addr_width=12)),
                          "tx": Out(1), "console_valid": Out(1), "console_data": Out(8),
                          "halted": Out(1), "exit_code": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = Arbiter(addr_width=12, count=2)
        m.submodules.decoder = decoder = Decoder(addr_width=12, windows=[
            ("ram", 0, RAM_WORDS), ("uart", UART_BASE_WORD, 64), ("sysctl", SYSCTL_BASE_WORD, 64)],
            registered_answers=self.registered_answers)
        m.submodules.ram = ram = WishboneRAM(size_bytes=4 * RAM_WORDS)
        m.submodules.uart = uart = UartTx(cycles_per_bit=4, fifo_depth=4)
        m.submodules.sysctl = sysctl = SystemControl()
        wiring.connect(m, wiring.flipped(self.a), arbiter.initiator0)
        wiring.connect(m, wiring.flipped(self.b), arbiter.initiator1)
        wiring.connect(m, arbiter.bus, decoder.bus)
        wiring.connect(m, decoder.ram, ram.bus)
        wiring.connect(m, decoder.uart, uart.bus)
        wiring.connect(m, decoder.sysctl, sysctl.bus)
        m.d.comb += [self.tx.eq(uart.tx), self.console_valid.eq(uart.console_valid),
                     self.console_data.eq(uart.console_data), self.halted.eq(sysctl.halted),
                     self.exit_code.eq(sysctl.exit_code)]
        return m


def simulate(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run()


# the decoder as the SoCs use it: answers selected combinationally (with the engine) and by the
# registered hit (without it, the iCE40's)
@pytest.mark.parametrize("registered_answers", [False, True])
def test_ram_through_decoder_reads_back_words_and_bytes(registered_answers):
    dut = Bench(registered_answers)
    seen = {}

    async def bench(ctx):
        for word in range(8):
            await access(ctx, dut.a, word, 0x1000_0001 * (word + 1))
        _, ack, _, waited = await access(ctx, dut.a, 3, 0xAABB_CCDD, sel=0b0101)
        assert ack and waited == 1
        for word in range(8):
            seen[word] = (await access(ctx, dut.a, word))[0]

    simulate(dut, bench)
    expected = {w: 0x1000_0001 * (w + 1) for w in range(8)}
    expected[3] = (expected[3] & 0xFF00_FF00) | 0x00BB_00DD
    assert seen == expected


@pytest.mark.parametrize("registered_answers", [False, True])
def test_unmapped_address_gets_an_error_and_the_bus_goes_on(registered_answers):
    dut = Bench(registered_answers)
    results = []

    async def bench(ctx):
        results.append(await access(ctx, dut.a, 0x800))
        await access(ctx, dut.a, 5, 1234)
        results.append(await access(ctx, dut.a, 5))

    simulate(dut, bench)
    (_, ack, err, _), (value, ack2, err2, _) = results
    assert (ack, err) == (0, 1)
    assert (value, ack2, err2) == (1234, 1, 0)


@pytest.mark.parametrize("registered_answers", [False, True])
def test_arbiter_serves_two_initiators_without_mixing_their_data(registered_answers):
    dut = Bench(registered_answers)
    reads = {"a": [], "b": []}

    def initiator(bus, name, base):
        async def bench(ctx):
            for i in range(12):
                await access(ctx, bus, base + i % 8, (base << 8) + i)
                reads[name].append((await access(ctx, bus, base + i % 8))[0])
        return bench

    simulate(dut, initiator(dut.a, "a", 8), initiator(dut.b, "b", 32))
    assert reads["a"] == [(8 << 8) + i for i in range(12)]
    assert reads["b"] == [(32 << 8) + i for i in range(12)]


def test_uart_sends_8n1_frames_and_taps_the_console():
    dut = Bench()
    message = b"Hi\n\x00\xff"
    console, line = [], []

    async def writer(ctx):
        for byte in message:         # the FIFO holds 4: later writes wait for room
            await access(ctx, dut.a, UART_BASE_WORD + registers.UART.word("tx_data"), byte)
        for _ in range(400):
            status, *_ = await access(ctx, dut.a, UART_BASE_WORD + registers.UART.word("status"))
            if status & registers.UART_STATUS_IDLE:
                break
        assert status & registers.UART_STATUS_IDLE

    async def watcher(ctx):
        for _ in range(len(message) * 60):     # values at each edge, before it takes effect
            *_, valid, data, tx = await ctx.tick().sample(dut.console_valid, dut.console_data, dut.tx)
            if valid:
                console.append(data)
            line.append(tx)

    simulate(dut, writer, watcher)
    assert bytes(console) == message
    decoded, i = [], 0
    while i < len(line) and len(decoded) < len(message):
        if line[i] == 0:                         # start bit: sample mid-bit, 4 cycles per bit
            bits = [line[i + 2 + 4 * k] for k in range(1, 10)]
            assert bits[8] == 1, "stop bit"
            decoded.append(sum(b << k for k, b in enumerate(bits[:8])))
            i += 40
        else:
            i += 1
    assert bytes(decoded) == message


def test_sysctl_counts_cycles_and_halts_with_a_code():
    dut = Bench()
    values = []

    async def bench(ctx):
        first = (await access(ctx, dut.a, SYSCTL_BASE_WORD + registers.SYSCTL.word("cycles")))[0]
        for _ in range(10):
            await ctx.tick()
        second = (await access(ctx, dut.a, SYSCTL_BASE_WORD + registers.SYSCTL.word("cycles")))[0]
        values.append(second - first)
        assert not ctx.get(dut.halted)
        await access(ctx, dut.a, SYSCTL_BASE_WORD + registers.SYSCTL.word("halt"), 7)
        values.append((ctx.get(dut.halted), ctx.get(dut.exit_code)))

    simulate(dut, bench)
    assert values == [12, (1, 7)]    # 10 idle cycles + the 2 of the first access


def test_configuration_refuses_bad_values_with_a_sentence():
    with pytest.raises(ValueError, match="ram_bytes must be a power of two from 4 KiB to 1 MiB, not 3000"):
        dataclasses.replace(DEFAULT, ram_bytes=3000)
    with pytest.raises(ValueError, match="cpu_variant must be one of Lite, PicoRV32, not 'Full'"):
        dataclasses.replace(DEFAULT, cpu_variant="Full")
    with pytest.raises(ValueError, match="Address width must be a non-negative integer, not -1"):
        Signature(addr_width=-1)
    with pytest.raises(ValueError, match="window x: 3 words at 0x0 is not a power of two"):
        Decoder(addr_width=8, windows=[("x", 0, 3)])
    with pytest.raises(ValueError, match="UART needs 2..65535 clock cycles per bit"):
        dataclasses.replace(DEFAULT, uart_baud=DEFAULT.clock_hz)


def test_header_names_every_region_and_register_at_its_configured_address():
    header = soc_header(SIM)
    for region in SIM.regions:
        assert f"#define SOC_{region.name.upper()}_BASE 0x{region.base:08x}u" in header
        assert f"#define SOC_{region.name.upper()}_SIZE 0x{region.size:x}u" in header
    for peripheral, register_map in registers.PERIPHERALS.items():
        for register in register_map:
            assert (f"#define SOC_{peripheral.upper()}_{register.name.upper()} "
                    f"(SOC_{peripheral.upper()}_BASE + 0x{register.offset:02x}u)") in header
    assert f"#define ENGINE_LANES {SIM.engine.lanes}" in header
    assert SIM.uart_cycles_per_bit == 8 and DEFAULT.uart_cycles_per_bit == 868


def test_firmware_builds_with_ziglang_and_fits_the_ram():
    from hw.soc.firmware import build_firmware, compiler_available
    ok, reason = compiler_available()
    if not ok:
        pytest.skip(reason)
    firmware = build_firmware(SIM)
    assert 1024 < len(firmware.binary) <= SIM.ram_bytes
    # the reset vector's first instruction: auipc sp, ... (la sp, __stack_top)
    first = int.from_bytes(firmware.binary[:4], "little")
    assert first & 0x7F == 0b0010111 and (first >> 7) & 0x1F == 2


def test_a_firmware_that_leaves_the_stack_less_than_its_floor_is_refused(monkeypatch):
    """The soft-engine firmware in the SIM preset's former 32 KiB of RAM left the stack 1,004
    bytes, and it ran into .bss (session 21); link.ld stops a build that leaves less than
    STACK_FLOOR (4 KiB for the soft engine, whose measured high-water mark is 1,836-2,220 bytes), and
    64 KiB holds it. A floor as large as the whole RAM is refused."""
    from hw.soc import firmware as firmware_module
    ok, reason = firmware_module.compiler_available()
    if not ok:
        pytest.skip(reason)
    firmware = firmware_module.build_firmware(SIM, soft_engine=True)
    monkeypatch.setattr(firmware_module, "SOFT_ENGINE_STACK_FLOOR", SIM.ram_bytes)
    with pytest.raises(firmware_module.FirmwareError, match="less RAM for the stack than STACK_FLOOR"):
        firmware_module.build_firmware(SIM, soft_engine=True)
    assert len(firmware.binary) <= SIM.ram_bytes - 16 * 1024


@pytest.mark.parametrize("two_port", [False, True])
def test_engine_windows_merge_partial_writes_and_report_an_idle_engine(two_port):
    """EngineOnBus with a tiny engine: full and partial (read-merge-write) word writes to the
    scratchpad and external windows read back, each access taking the cycles the bus's docstring
    gives (a partial write one more with the two-port scratchpad, whose merged word is
    registered); the status says idle; idle_cycles counts."""
    from golden.engine.config import EngineConfig
    from hw.soc.engine_bus import EngineOnBus
    config = EngineConfig(lanes=8, scratchpad_bytes=256, external_bytes=256, param_channels=8,
                          scratchpad_pumped=False,     # one clock in this simulation
                          scratchpad_two_port=two_port)
    dut = EngineOnBus(config)
    seen = {}

    async def bench(ctx):
        await access(ctx, dut.scratchpad, 5, 0x1122_3344)
        _, ack, _, waited = await access(ctx, dut.scratchpad, 5, 0xAABB_CCDD, sel=0b0110)
        seen["partial_wait"] = waited
        seen["scratchpad"], _, _, seen["read_wait"] = await access(ctx, dut.scratchpad, 5)
        await access(ctx, dut.external, 7, 0x0102_0304)
        await access(ctx, dut.external, 7, 0xFFFF_FFFF, sel=0b1000)
        seen["external"] = (await access(ctx, dut.external, 7))[0]
        seen["scratchpad_again"] = (await access(ctx, dut.scratchpad, 5))[0]
        seen["status"] = (await access(ctx, dut.csr, registers.ENGINE.word("status")))[0]
        first = (await access(ctx, dut.csr, registers.ENGINE.word("idle_cycles")))[0]
        second = (await access(ctx, dut.csr, registers.ENGINE.word("idle_cycles")))[0]
        seen["idle_step"] = second - first

    simulate(dut, bench)
    # a read: register, present, the host port's two cycles (4 cycles); a partial write: one
    # more, to write the merged word, and one more again to register it first (two-port;
    # hw/soc/engine_bus.py)
    assert seen == {"partial_wait": 5 if two_port else 4, "read_wait": 3, "scratchpad": 0x11BB_CC44, "external": 0xFF02_0304,
                    "scratchpad_again": 0x11BB_CC44, "status": 0, "idle_step": 2}


def test_job_carries_the_channel_selection_of_the_compiled_program():
    """The selection table in flash comes from the TrainingProgram's lists and the Trainer's
    ChannelSelector: addresses, k, c and ratio-1 flags in the order of the draws, and the seed."""
    from sim.soc_run import prepare
    from hw.soc.job import NO_LIST, SELECT_ENTRY_WORDS, SELECT_RATIO_ONE
    exp = prepare(2, SIM)
    selector = exp.selector()
    job = exp.flash.job
    assert job["select_seed"] == exp.trainer.selector.rng.state == selector.rng.state
    assert job["select_count"] == len(selector.counts) == 3
    at = job["select_offset"]
    words = exp.flash.data[at:at + 4 * SELECT_ENTRY_WORDS * job["select_count"]].view("<u4")
    expected = []
    for index, k in selector.counts.items():
        flags = SELECT_RATIO_ONE if selector.ratios[index] == 1.0 else 0
        expected += [exp.program.lists.get(index, NO_LIST), k, selector.channels[index], flags]
    assert words.tolist() == expected
    assert words.tolist()[1::4] == [12, 12, 24] and words.tolist()[2::4] == [24, 48, 48]
    header = soc_header(SIM)
    assert "struct select_entry { uint32_t list_addr, selected, channels, flags; };" in header
    assert "#define PRNG_ZERO_SEED_REPLACEMENT 0x9e3779b9u" in header
    # the last-layer scheme has no selection
    assert prepare(1, SIM, scheme_name="last-layer").flash.job["select_count"] == 0

