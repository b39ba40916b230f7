"""FPGA builds (fpga/, `sparsebp build`): the checks that need no tool, the nextpnr report
parser on captured real reports, and real builds of the engine-alone design for one iCE40 and
one ECP5 board (skipped with a reason when the YoWASP tools are absent).

The build tier builds the CI configurations below (about a minute each on 2 cores). The board
presets' engine builds take over an hour and are not tests: `sparsebp build --board ulx3s-85f`
reruns one, and docs/fpga.md keeps its latest figures.
"""
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fpga import report
from fpga.boards import BOARDS, BoardError, get_board
from fpga.clocks import (ClockError, ecp5_pll_params, ecp5_pumped_pll_params, ice40_pll_params,
                         pll_parameters)
from fpga.fit import check_fit, estimate
from sparsebp.cli import main

DATA = Path(__file__).parent / "data" / "fpga"


def tools_missing():
    from fpga.build import ToolsMissing, tool_environment
    try:
        tool_environment()
    except ToolsMissing as e:
        return str(e)
    return None


# ---------------------------------------------------------------- no tools needed

def test_unknown_board_is_a_one_line_error(capsys, tmp_path):
    assert main(["build", "--board", "arty-a7", "--json", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: unknown board 'arty-a7'; choose one of icebreaker, orangecrab-85f, "
                   "ulx3s-85f")
    assert not (tmp_path / "r.json").exists()


def test_a_seed_below_one_is_a_usage_error_before_any_tool(capsys, tmp_path):
    build_dir = tmp_path / "b"
    for seed in ("-1", "0", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["build", "--board", "ulx3s-85f", "--seed", seed, "--build-dir", str(build_dir)])
        assert exit_.value.code == 2
        assert "argument --seed: expected" in capsys.readouterr().err
    assert not build_dir.exists()


def test_configuration_that_cannot_fit_is_an_error_before_any_tool(capsys, tmp_path):
    # 512 KB is one pumped copy of 128 DP16KD per bank: past the device's 208 before any tool runs.
    build_dir = tmp_path / "b"
    assert main(["build", "--board", "ulx3s-85f", "--scratchpad-kb", "512", "--build-dir", str(build_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: 8 lanes with a 512 KB scratchpad do not fit ulx3s-85f (LFE5U-85F): "
                   "needs 298 block RAMs (scratchpad 256, external window 8) of 208")
    assert not build_dir.exists()


def test_scratchpad_kinds_are_one_copy_each():
    """`--scratchpad pumped|two-port`: the board's engine with either one-copy scratchpad; the
    fit is the same (128 DP16KD), where the plain scratchpad would take three copies."""
    from fpga.fit import estimate
    from sparsebp.build_cli import board_config
    board = get_board("ulx3s-85f")
    two_port = board_config(board, scratchpad="two-port")
    pumped = board_config(board, scratchpad="pumped")
    assert two_port == board.config                                   # the ULX3S preset (session 24)
    assert pumped.scratchpad_pumped and not pumped.scratchpad_two_port
    assert (pumped.lanes, pumped.scratchpad_bytes, pumped.clock_hz) == (8, 256 * 1024, board.config.clock_hz)
    assert estimate(board, two_port) == estimate(board, pumped)
    plain = dataclasses.replace(two_port, scratchpad_two_port=False)
    assert estimate(board, plain).scratchpad_blocks == 3 * estimate(board, two_port).scratchpad_blocks == 384


def test_cpu_choice_sets_the_socs_clock_and_is_refused_where_there_is_no_cpu(capsys, tmp_path):
    """`--cpu picorv32`: the iCEBreaker's SoC at the 24 MHz its build met (fpga/boards.py
    CPU_SOC_PRESETS); a board without a PicoRV32 preset keeps its SoC clock. `--cpu` with a
    design that has no CPU is one line before any tool runs, as is an unknown CPU."""
    icebreaker = get_board("icebreaker")
    assert (icebreaker.soc_cpu, icebreaker.soc_target_hz) == ("Lite", 20.25e6)
    assert (icebreaker.with_cpu("PicoRV32").soc_cpu, icebreaker.with_cpu("PicoRV32").soc_target_hz) == ("PicoRV32", 24e6)
    ulx3s = get_board("ulx3s-85f")
    assert ulx3s.with_cpu("PicoRV32").soc_target_hz == ulx3s.soc_target_hz == 40e6
    with pytest.raises(BoardError, match="unknown CPU 'Full'; choose one of Lite, PicoRV32"):
        ulx3s.with_cpu("Full")
    build_dir = tmp_path / "build"
    assert main(["build", "--board", "icebreaker", "--cpu", "picorv32", "--build-dir", str(build_dir)]) == 1
    assert capsys.readouterr().err.strip() == "sparsebp: error: --cpu chooses the SoC's CPU; the engine design has none"
    assert not build_dir.exists()
    with pytest.raises(SystemExit):
        main(["build", "--board", "icebreaker", "--design", "soc", "--cpu", "vexriscv-full"])
    assert "invalid choice: 'vexriscv-full'" in capsys.readouterr().err


def test_more_lanes_than_the_logic_allows_is_an_error(capsys):
    # 32 lanes need 8 DSP blocks a lane and more logic than nextpnr places
    assert main(["build", "--board", "orangecrab-85f", "--lanes", "32", "--scratchpad-kb", "32"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: 32 lanes with a 32 KB scratchpad do not fit orangecrab-85f (LFE5U-85F): "
                   "needs 264 DSP blocks of 156; about 160217 LUT4s of the 75276 nextpnr can place (90% of 83640)")
    # 16 lanes packed to 86,078 TRELLIS_COMB of the 83,640 and nextpnr could not place them
    # (session 16, the engine alone at 25 MHz): refused before any tool runs
    assert main(["build", "--board", "ulx3s-85f", "--lanes", "16"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: 16 lanes with a 256 KB scratchpad do not fit ulx3s-85f (LFE5U-85F): "
                   "needs about 86077 LUT4s of the 75276 nextpnr can place (90% of 83640)")


def test_icebreaker_preset_is_refused_with_its_reasons(capsys):
    # The smallest engine EngineConfig allows (8 lanes) is about ten times the UP5K's logic.
    assert main(["build", "--board", "icebreaker"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsebp: error: 8 lanes with a 1 KB scratchpad do not fit icebreaker (iCE40UP5K): ")
    assert "(90% of 5280)" in err and "\n" not in err


def test_a_clock_the_pll_cannot_make_is_an_error_before_any_tool(capsys, tmp_path):
    build_dir = tmp_path / "b"
    # the requantizer alone needs the engine clock only (directly or through a 2x VCO feedback,
    # neither of which reaches 47 MHz from 48); the engine also needs twice it
    assert main(["build", "--board", "orangecrab-85f", "--design", "requantizer", "--clock-mhz", "47",
                 "--build-dir", str(build_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "sparsebp: error: the ECP5 PLL cannot make exactly 47 MHz from 48 MHz"
    assert main(["build", "--board", "orangecrab-85f", "--clock-mhz", "47", "--build-dir", str(build_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: the ECP5 PLL cannot make exactly 94 MHz (twice the 47 MHz engine clock, "
                   "for the pumped scratchpad) from 48 MHz")
    assert not build_dir.exists()


def test_ecp5_presets_fit_their_boards():
    for name in ("ulx3s-85f", "orangecrab-85f"):
        board = get_board(name)
        found = check_fit(board, board.config)
        # one copy of the 256 KB scratchpad (128) + external window (8) + trace (2)
        # + channel list, 2048 x 112 bits (14) + parameter memories for 2048 channels (18);
        # 72 MULT18X18D as yosys mapped e4f456a's
        assert (found.block_rams, found.scratchpad_blocks, found.dsps) == (170, 128, 72)
        assert found.list_blocks == 14
        assert board.config.scratchpad_bytes == 256 * 1024 and board.config.lanes == 8
    # the ULX3S's scratchpad is two-port (session 24), the OrangeCrab's still pumped
    assert get_board("ulx3s-85f").config.scratchpad_two_port and not get_board("ulx3s-85f").config.scratchpad_pumped
    assert get_board("orangecrab-85f").config.scratchpad_pumped


def test_icebreaker_soc_plan_has_no_engine_and_boots_from_the_spi_flash(tmp_path):
    """The iCE40's SoC (fpga/board_soc.py): no engine, one memory of 128 KiB for SPRAM (its empty
    init dropped, `-spram`), the boot ROM and the flash reader on the flash's pins, and a boot
    image (firmware and job) instead of initialised memories."""
    reason = _soc_tools_missing()
    if reason:
        pytest.skip(reason)
    from fpga.build import prepare, soc_image
    board = get_board("icebreaker")
    board = board.with_clock(board.soc_target_hz)
    image = soc_image(board, board.config)
    config = image.config
    assert not config.engine_in_hardware and config.boot_from_flash and not image.in_bitstream
    assert config.memory_bytes == 4 * 32 * 1024          # the four SB_SPRAM256KA
    assert config.clock_hz == 20.25e6 and config.uart_cycles_per_bit == round(20.25e6 / 115200)
    assert "engine" not in {region.name for region in config.regions}
    assert len(image.boot) > len(image.firmware) + len(image.flash)
    prepare(board, board.config, tmp_path, design="soc", image=image)
    script = (tmp_path / "top.ys").read_text()
    assert "-spram" in script and "delete t:$meminit_v2 r:MEMID=*spram* %i" in script
    constraints = (tmp_path / "top.pcf").read_text()
    for pin in ("cs", "clk", "copi", "cipo", "wp", "hold"):
        assert f"set_io spi_flash_1x_0__{pin}__io" in constraints
    assert "set_io led_0__io" in constraints and "set_io uart_0__tx__io" in constraints
    rtlil = (tmp_path / "top.il").read_text()
    assert "VexRiscv" in rtlil and "soc.engine" not in rtlil


def test_soc_estimate_adds_the_cpu_ram_and_the_larger_external_window():
    from fpga.board_soc import BOARD_RAM_BYTES, board_soc_config
    for name in ("ulx3s-85f", "orangecrab-85f"):
        board = get_board(name)
        engine = board_soc_config(board.config, board.target_hz).engine
        assert engine.external_bytes == 32 * 1024 and engine.clock_hz == board.target_hz
        found = check_fit(board, engine, BOARD_RAM_BYTES)
        # the engine alone is 170 with an 8-block window; the 32 KiB window is 2 banks x 2 read
        # ports x 8 blocks; the SoC adds 8 blocks of RAM (4096 x 32 bits), 2 of instruction
        # cache and 1 of UART FIFO
        assert (found.external_blocks, found.soc_blocks, found.block_rams) == (32, 11, 170 - 8 + 32 + 11)
        assert found.block_rams <= board.device.block_rams


def _soc_tools_missing():
    from hw.soc.firmware import compiler_available
    ok, reason = compiler_available()
    return None if ok else reason


def test_soc_image_holds_the_firmware_and_the_training_job():
    reason = _soc_tools_missing()
    if reason:
        pytest.skip(reason)
    from fpga.board_soc import BOARD_SAMPLES, board_soc_image
    from hw.soc.job import JOB_FIELDS, JOB_MAGIC
    board = get_board("ulx3s-85f")
    image = board_soc_image(board.config, 20e6)
    assert image.config.uart_cycles_per_bit == round(20e6 / 115200)
    assert 4096 < len(image.firmware) <= image.config.ram_bytes
    assert len(image.flash) <= image.config.engine.external_bytes
    job = np.frombuffer(image.flash, "<u4", count=len(JOB_FIELDS), offset=image.config.job_offset)
    fields = dict(zip(JOB_FIELDS, job.tolist()))
    assert fields["magic"] == JOB_MAGIC and fields["iterations"] == BOARD_SAMPLES
    assert fields["flags"] == 0          # no pause: nothing on a board would release it


@pytest.mark.parametrize("name", ["ulx3s-85f", "orangecrab-85f"])
def test_soc_build_plan_wires_the_uart_and_leds_and_carries_the_cpu(name, tmp_path):
    reason = _soc_tools_missing()
    if reason:
        pytest.skip(reason)
    from fpga.build import prepare
    board = get_board(name)
    prepare(board, board.config, tmp_path, design="soc")
    constraints = (tmp_path / "top.lpf").read_text()
    if name == "ulx3s-85f":
        assert 'LOCATE COMP "uart_0__tx__io"' in constraints
        assert all(f'LOCATE COMP "led_{k}__io"' in constraints for k in range(3))
    else:                        # no UART on the OrangeCrab; its RGB LED
        assert "uart" not in constraints and 'LOCATE COMP "rgb_led_0__r__io"' in constraints
    assert (tmp_path / "VexRiscv_Lite.v").is_file()
    assert "VexRiscv" in (tmp_path / "top.il").read_text()


def test_memory_estimate_matches_what_yosys_inferred():
    board = get_board("ulx3s-85f")
    config = dataclasses.replace(board.config, lanes=16, scratchpad_bytes=256 * 1024, param_channels=512,
                                 scratchpad_pumped=False, scratchpad_two_port=False)
    found = estimate(board, config)
    # measured: yosys maps the default engine (16 lanes, 256 KB) to 402 DP16KD: 3 copies of
    # 64 blocks per bank, 4 PDPW16KD per external bank and read port, 2 for the trace. That
    # count did not include today's channel list (512 x 112 bits, 4 more), counted apart here.
    assert found.list_blocks == 4
    assert (found.block_rams - found.list_blocks, found.scratchpad_blocks, found.external_blocks) == (402, 384, 16)


def test_pll_parameters_match_the_vendor_tools():
    # icepll -i 12 -o 24 and ecppll -i 25 -o 50 / -i 48 -o 60 (YoWASP), run once by hand
    assert ice40_pll_params(12e6, 24e6) == dict(DIVR=0, DIVF=63, DIVQ=5, FILTER_RANGE=1)
    assert ecp5_pll_params(25e6, 50e6) == dict(CLKI_DIV=1, CLKFB_DIV=2, CLKOP_DIV=12, CLKOP_CPHASE=5)
    assert ecp5_pll_params(48e6, 60e6) == dict(CLKI_DIV=4, CLKFB_DIV=5, CLKOP_DIV=10, CLKOP_CPHASE=4)
    # pumped: fast = 100 MHz on CLKOP (the feedback), sync = 50 MHz on CLKOS from the same VCO
    assert ecp5_pumped_pll_params(25e6, 50e6) == dict(CLKI_DIV=1, CLKFB_DIV=4, CLKOP_DIV=6, CLKOP_CPHASE=2,
                                                      CLKOS_DIV=12, CLKOS_CPHASE=5)
    with pytest.raises(ClockError, match="cannot make exactly 50 MHz from 48 MHz"):
        ecp5_pll_params(48e6, 50e6)
    # 33 MHz from 48 (the OrangeCrab's preset): CLKOP alone would need a 3 MHz PFD (ecppll -i 48
    # -o 33 settles for 33.23 MHz), so a design without a `fast` domain takes it from CLKOS with
    # CLKOP at 66 MHz as the feedback, as ecppll -i 48 -o 66 --clkout1 33 does (8, 11, 9, 18)
    with pytest.raises(ClockError, match="cannot make exactly 33 MHz from 48 MHz"):
        ecp5_pll_params(48e6, 33e6)
    via_clkos = dict(CLKI_DIV=8, CLKFB_DIV=11, CLKOP_DIV=9, CLKOP_CPHASE=3, CLKOS_DIV=18, CLKOS_CPHASE=8)
    assert pll_parameters("ecp5", 48e6, 33e6) == pll_parameters("ecp5", 48e6, 33e6, fast=True) == via_clkos
    assert pll_parameters("ecp5", 48e6, 60e6) == ecp5_pll_params(48e6, 60e6)     # CLKOP when it can
    with pytest.raises(ClockError, match="cannot make exactly 47 MHz from 48 MHz"):
        pll_parameters("ecp5", 48e6, 47e6)


# ---------------------------------------------------------------- captured nextpnr reports

def test_parse_captured_ecp5_report():
    # tests/data/fpga/*.report.json: nextpnr's --report of `sparsebp build --design requantizer`
    text = (DATA / "orangecrab-85f-requantizer.report.json").read_text()
    figures = report.summarize("ecp5", report.parse_nextpnr_report(text))
    assert figures["resources"] == {"LUT": [1002, 83640], "FF": [464, 83640], "LUTRAM": [0, 10455],
                                    "BRAM": [0, 208], "DSP": [4, 156], "SPRAM": [0, 0]}
    assert (figures["fmax_mhz"], figures["target_mhz"], figures["timing_met"]) == (103.39, 60.0, True)


def test_parse_captured_unrouted_engine_log():
    # the ULX3S engine preset's nextpnr log, stopped during routing (docs/fpga.md)
    text = (DATA / "ulx3s-85f-engine-unrouted.log").read_text()
    figures = report.summarize("ecp5", report.parse_nextpnr_progress_log(text))
    assert figures["resources"]["BRAM"] == [203, 208]
    assert figures["resources"]["DSP"] == [152, 156]
    assert figures["resources"]["LUT"] == [74953, 83640]
    assert figures["resources"]["FF"] == [22445, 83640]
    assert (figures["fmax_mhz"], figures["target_mhz"], figures["timing_met"]) == (18.73, 50.0, False)


def test_a_placed_only_build_reads_its_clock_from_the_log_and_claims_no_timing(tmp_path):
    # tests/data/fpga/*-placed.*: `sparsebp build --board orangecrab-85f --design requantizer
    # --place-only`; nextpnr's --report has the utilization but no Fmax after --no-route
    for suffix in ("report.json", "tim"):
        (tmp_path / f"top.{suffix}").write_bytes((DATA / f"orangecrab-85f-requantizer-placed.{suffix}").read_bytes())
    assert json.loads((tmp_path / "top.report.json").read_text())["fmax"] == {}
    figures = report.read_build_dir("ecp5", tmp_path, placed_only=True)
    assert (figures["fmax_mhz"], figures["target_mhz"]) == (94.33, 60.0)
    assert figures["timing_met"] is None and figures["stage"] == "placed"
    assert figures["resources"]["DSP"] == [4, 156] and figures["resources"]["LUT"] == [1010, 83640]
    table = report.format_table({"board": "orangecrab-85f", "device": "LFE5U-85F", "design": "requantizer",
                                 **figures, "build_seconds": 20, "bitstream": None}).splitlines()
    assert table[-2] == ("Fmax after placement 94.33 MHz against 60.00 MHz "
                         "(nextpnr's estimate; not routed, so timing is not known)")
    assert table[-1] == "build 20 s; bitstream none (placed only)"
    # read as a routed build the same files have no clock at all
    with pytest.raises(report.ReportError, match="no clock"):
        report.read_build_dir("ecp5", tmp_path)


def test_progress_line_follows_the_logs_through_every_stage(tmp_path):
    """A running build's stage, read from its logs (fpga/progress.py): yosys's pass, the two
    placers' iterations and the router's progress, on captured real logs."""
    from fpga.progress import ProgressReporter, build_stage, nextpnr_stage, yosys_stage
    assert build_stage(tmp_path) == ("starting", "")
    (tmp_path / "top.rpt").write_text("2.45. Executing ABC pass.\n2.46. Executing OPT_CLEAN pass (remove unused cells).\n")
    assert build_stage(tmp_path) == ("synthesis (yosys)", "OPT_CLEAN pass (remove unused cells)")
    assert yosys_stage("") == ("synthesis (yosys)", "started")
    placed = (DATA / "ulx3s-85f-engine-placed.log").read_text()
    analytic = placed[:placed.index("Running simulated annealing")]
    assert nextpnr_stage(analytic)[0] == "placing (analytic)"
    annealed = placed[:placed.index("Info: Routing globals")]
    assert nextpnr_stage(annealed) == ("placing (annealing)", "iteration 25, wirelength 530,982")
    assert nextpnr_stage(placed) == ("routing", "started")      # captured as router2 began
    static = (DATA / "ulx3s-85f-soc-static-placed.log").read_text()     # `--placer static`, the SoC
    assert nextpnr_stage(static[:static.index("Running simulated annealing")]) == \
        ("placing (static)", "iteration 558, 9.9% of the logic overlapping")
    assert nextpnr_stage(static) == ("placing (annealing)", "iteration 18, wirelength 403,386")
    unrouted = (DATA / "ulx3s-85f-engine-unrouted.log").read_text()
    assert nextpnr_stage(unrouted) == ("routing", "router1: 72,000 arcs routed, 257,641 remaining")
    # router2's main loop runs before nextpnr logs "Routing.." (session 15's SoC route, its start)
    router2 = static + (DATA / "ulx3s-85f-soc-router2-start.log").read_text()
    assert nextpnr_stage(router2) == ("routing", "router2 iteration 10: 4,189 overused wires")
    assert nextpnr_stage(router2[:router2.index("Info: Running main router loop")]) == ("routing", "started")
    finished = (DATA / "orangecrab-85f-requantizer-placed.tim").read_text()
    assert nextpnr_stage(finished) == ("packing the bitstream", "nextpnr finished")
    # a line when the stage changes, and within a stage once per interval
    (tmp_path / "top.tim").write_text(analytic)
    lines, now = [], [0.0]
    reporter = ProgressReporter(tmp_path, lines.append, interval=600, clock=lambda: now[0])
    reporter.poll()
    now[0] = 300
    reporter.poll()
    assert lines == ["  [0 min] placing (analytic): iteration 22"]      # the last HeAP line
    now[0] = 660
    reporter.poll()
    (tmp_path / "top.tim").write_text(annealed)
    now[0] = 700
    reporter.poll()
    assert lines[1:] == ["  [11 min] placing (analytic): iteration 22",
                         "  [12 min] placing (annealing): iteration 25, wirelength 530,982"]


def test_pumped_engine_clock_is_bounded_by_the_fast_clock_and_the_crossings():
    # the ULX3S preset of e4f456a after placement: `sync` paths 32.01 MHz, `fast` 51.27 MHz (at
    # twice the engine clock), crossings 16.93 ns and 21.43 ns, each in half an engine cycle
    text = (DATA / "ulx3s-85f-engine-placed.log").read_text()
    figures = report.summarize("ecp5", report.parse_nextpnr_progress_log(text), text)
    assert figures["clock_net"] == "$glbnet$button_sync.clk"
    assert figures["fmax_bounds_mhz"] == {
        "$glbnet$button_sync.clk paths": 32.01, "$glbnet$clocks.fast_clk paths / 2": 25.64,
        "$glbnet$button_sync.clk -> $glbnet$clocks.fast_clk in half a cycle": round(1000 / (2 * 16.93), 2),
        "$glbnet$clocks.fast_clk -> $glbnet$button_sync.clk in half a cycle": round(1000 / (2 * 21.43), 2)}
    assert (figures["fmax_mhz"], figures["target_mhz"], figures["timing_met"]) == (23.33, 50.0, False)
    assert figures["fmax_limited_by"].startswith("$glbnet$clocks.fast_clk -> ")
    assert figures["resources"]["LUT"] == [62566, 83640]
    # without the log's crossing lines only the two clocks bound it
    assert report.summarize("ecp5", report.parse_nextpnr_progress_log(text))["fmax_mhz"] == 25.64


def test_parse_captured_ice40_report_and_log():
    text = (DATA / "icebreaker-requantizer.report.json").read_text()
    log_text = (DATA / "icebreaker-requantizer.log").read_text()
    figures = report.summarize("ice40", report.parse_nextpnr_report(text), log_text)
    resources = figures["resources"]
    assert set(resources) == {"LUT", "FF", "LC", "BRAM", "SPRAM", "DSP"}
    assert resources == {"LUT": [662, 5280], "FF": [416, 5280], "LC": [1015, 5280], "BRAM": [0, 30],
                         "SPRAM": [0, 4], "DSP": [4, 8]}
    # the requantizer's 64-bit rounding shift (s3 -> s4) misses 24 MHz on the UP5K
    assert (figures["fmax_mhz"], figures["target_mhz"], figures["timing_met"]) == (19.92, 24.0, False)


def test_report_parser_rejects_other_json():
    with pytest.raises(report.ReportError, match="not a nextpnr --report file"):
        report.parse_nextpnr_report(json.dumps({"hello": 1}))


def test_table_lists_every_resource_and_the_verdict():
    result = {"board": "ulx3s-85f", "device": "LFE5U-85F", "lanes": 8, "macs_per_cycle": 8,
              "scratchpad_bytes": 131072, "resources": {"BRAM": [203, 208], "SPRAM": [0, 0]},
              "fmax_mhz": 51.234, "target_mhz": 50.0, "timing_met": True}
    table = report.format_table(result).splitlines()
    assert table[2] == "BRAM            203      208  97.6%"
    assert table[3] == "SPRAM             0        0      -"
    assert table[-1] == "Fmax 51.23 MHz against 50.00 MHz: timing met"


def test_routed_soc_report_bounds_the_engine_clock_by_its_half_cycle_crossings(tmp_path):
    """The first routed SoC (ULX3S-85F, static placer, session 14), captured: the engine clock
    is the least of its own paths, half the `fast` clock and 1 / (2 x each crossing)."""
    for suffix in ("report.json", "tim"):
        (tmp_path / f"top.{suffix}").write_bytes((DATA / f"ulx3s-85f-soc-routed.{suffix}").read_bytes())
    figures = report.read_build_dir("ecp5", tmp_path)
    assert figures["stage"] == "routed" and figures["timing_met"] is True
    assert (figures["fmax_mhz"], figures["target_mhz"]) == (27.7, 20.0)     # 1 / (2 x 18.05 ns)
    assert figures["fmax_limited_by"] == "$glbnet$clocks.clk -> $glbnet$clocks.fast_clk in half a cycle"
    assert figures["fmax_bounds_mhz"]["$glbnet$clocks.fast_clk paths / 2"] == 34.93
    assert figures["resources"]["BRAM"] == [201, 208] and figures["resources"]["LUT"] == [51844, 83640]
    table = report.format_table({"board": "ulx3s-85f", "device": "LFE5U-85F", "design": "soc", "lanes": 8,
                                 "macs_per_cycle": 8, "scratchpad_bytes": 262144, **figures}).splitlines()
    assert table[0] == ("board ulx3s-85f (LFE5U-85F), SoC: CPU and engine 8 lanes, 8 MACs/cycle, "
                        "scratchpad 262144 bytes")
    assert "Fmax 27.70 MHz against 20.00 MHz: timing met" in table


def test_hierarchical_synthesis_maps_modules_apart_then_flattens_for_nextpnr():
    from fpga.build import build, toolchain_options
    for name in ("ulx3s-85f", "icebreaker"):
        flat = toolchain_options(get_board(name), seed=1)
        hierarchical = toolchain_options(get_board(name), seed=1, synthesis="hierarchical")
        assert "-noflatten" not in flat.get("synth_opts", "") and "script_after_synth" not in flat
        assert "-noflatten" in hierarchical["synth_opts"]
        assert hierarchical["script_after_synth"].splitlines()[0] == "flatten"
    assert "-dsp" in toolchain_options(get_board("icebreaker"), seed=1, synthesis="hierarchical")["synth_opts"]
    with pytest.raises(BoardError, match="unknown synthesis 'fast'"):
        build("ulx3s-85f", synthesis="fast")


def test_a_build_without_seed_takes_the_seed_its_design_last_routed_with(monkeypatch, tmp_path):
    """`sparsebp build` without --seed passes nextpnr the board's routed seed for the design
    (fpga/boards.py ROUTED_SEEDS: the iCEBreaker SoC's is 4), 1 for other designs; --seed wins."""
    from fpga import build as build_module
    from fpga.boards import ROUTED_SEEDS, default_seed

    class Stop(Exception):
        pass

    seen = []

    def prepare(board, config, build_dir, seed, *rest):
        seen.append(seed)
        raise Stop

    monkeypatch.setattr(build_module, "prepare", prepare)
    monkeypatch.setattr(build_module, "soc_image", lambda config, clock_hz: None)
    for board, design, seed, cpu in (("icebreaker", "soc", None, None), ("ulx3s-85f", "engine", None, None),
                                     ("icebreaker", "soc", 7, None), ("ulx3s-85f", "soc", None, None),
                                     ("icebreaker", "soc", None, "PicoRV32"), ("ulx3s-85f", "soc", None, "PicoRV32")):
        with pytest.raises(Stop):
            build_module.build(board, build_dir=tmp_path, design=design, seed=seed, cpu=cpu, log=lambda *_: None)
    assert seen == [4, 1, 7, 1, 2, 1]
    assert ROUTED_SEEDS[("ulx3s-85f", "soc")] == default_seed("ulx3s-85f", "soc") == 1
    assert default_seed("icebreaker", "soc") == 4
    assert default_seed("orangecrab-85f", "soc") == 1


def _router2_runs() -> dict:
    return json.loads((DATA / "router2_overuse.json").read_text())["runs"]


def test_router_divergence_stops_the_seeds_that_were_stopped_by_hand_and_no_routed_one():
    """fpga/router_watch.py on the overused-wire counts of session 18's real routes: the
    three that climbed until stopped by hand are named at the iteration where their count had
    doubled from its lowest (and risen by 100); the four that routed never are."""
    from fpga.router_watch import divergence, overuse_history
    expected = {"ulx3s-soc-8ccbc9e-seed1 (stopped by hand)": (2228, 52, 1106, 34),
                "ulx3s-soc-8ccbc9e-seed2 (stopped by hand)": (527, 68, 262, 47),
                "ulx3s-soc-8ccbc9e-seed4 (stopped by hand)": (103, 270, 1, 204)}
    runs = _router2_runs()
    assert len(runs) == 7
    for name, counts in runs.items():
        history = list(enumerate(counts, 1))
        found = divergence(history)
        if name in expected:
            now, at, low, low_at = expected[name]
            assert found == (f"router2 is not converging: {now:,} overused wires at iteration {at}, "
                             f"up from {low:,} at iteration {low_at}")
            assert divergence(history[:at - 1]) is None      # not one iteration earlier
        else:
            assert name.endswith("(routed)") and found is None and counts[-1] == 0
    log = "Info: Running router2...\nInfo:     iter=1 wires=70047 overused=70047 overuse=70100 archfail=NA\n" \
          "Info:     iter=2 wires=44836 overused=44836 overuse=44900 archfail=NA\n"
    assert overuse_history(log) == [(1, 70047), (2, 44836)]


def _router2_log_lines(counts) -> str:
    """Shell lines appending router2's iteration lines with these overused-wire counts to top.tim."""
    return "".join(f"echo 'Info:     iter={i} wires=900000 overused={n} overuse={n} archfail=NA' >> top.tim\n"
                   for i, n in enumerate(counts, 1))


def _fake_toolchain(monkeypatch, counts, marker_dir):
    """build()'s script replaced by one that logs router2 iterations with these counts into
    top.tim, then waits in a child process (its pid in marker_dir/child) for a minute."""
    from fpga import build as build_module
    lines = _router2_log_lines(counts)

    def prepare(board, config, build_dir, seed, *rest):
        (Path(build_dir) / "build_top.sh").write_text(
            "echo 'Info: Running router2...' > top.tim\n" + lines +
            f"sleep 60 & echo $! > {marker_dir}/child\nwait\n")

    monkeypatch.setattr(build_module, "prepare", prepare)
    monkeypatch.setattr(build_module, "tool_environment", lambda: dict(os.environ))
    monkeypatch.setattr(build_module, "PROGRESS_POLL_SECONDS", 0.05)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state      # killed, not yet reaped by its new parent


def test_a_diverging_router_stops_the_build_and_every_tool_it_started(monkeypatch, tmp_path):
    from fpga import build as build_module
    _fake_toolchain(monkeypatch, _router2_runs()["ulx3s-soc-8ccbc9e-seed2 (stopped by hand)"], tmp_path)
    began = time.monotonic()
    with pytest.raises(build_module.RouterDiverged) as stopped:
        build_module.build("orangecrab-85f", build_dir=tmp_path / "b", design="requantizer", seed=2,
                           log=lambda *_: None)
    assert time.monotonic() - began < 30                   # not the script's minute
    assert str(stopped.value).startswith("router2 is not converging: 527 overused wires at iteration 68, "
                                         "up from 262 at iteration 47 (seed 2; stopped after ")
    assert str(stopped.value).endswith("min): try another --seed")
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_a_second_build_of_the_same_design_reuses_the_netlist_and_a_changed_one_does_not(monkeypatch, tmp_path):
    """fpga/netlist_reuse.py through build(): fake yosys and nextpnr (the real build plan), the
    router diverging every time. The second seed's build skips yosys; a different clock (other
    RTLIL) runs it again; a netlist yosys left half written is not reused."""
    from fpga import build as build_module
    tools = tmp_path / "tools"
    tools.mkdir()
    calls = tmp_path / "yosys_calls"
    # yosys takes a moment, in which the build polls the logs (a stale nextpnr log must not count)
    (tools / "yosys").write_text(f"#!/bin/sh\necho run >> {calls}\nsleep 0.5\n"
                                 f"echo '{{\"modules\": {{}}}}' > top.json\n")
    counts = _router2_runs()["ulx3s-soc-8ccbc9e-seed1 (stopped by hand)"]
    nextpnr_calls = tmp_path / "nextpnr_calls"
    (tools / "nextpnr").write_text(f"#!/bin/sh\necho \"$*\" >> {nextpnr_calls}\n" +
                                   _router2_log_lines(counts) + "sleep 60\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, YOSYS=str(tools / "yosys"), NEXTPNR_ECP5=str(tools / "nextpnr"))
    monkeypatch.setattr(build_module, "tool_environment", lambda: env)
    monkeypatch.setattr(build_module, "PROGRESS_POLL_SECONDS", 0.05)
    build_dir = tmp_path / "b"
    lines = []

    def yosys_runs():
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    with pytest.raises(build_module.RouterDiverged, match="no seed routed"):
        build_module.build_trying_seeds("orangecrab-85f", [1, 2], build_dir=build_dir, design="requantizer",
                                        log=lines.append)
    assert yosys_runs() == 1
    assert sum("synthesis skipped" in line for line in lines) == 1
    assert "--seed 2" in (build_dir / "build_top.sh").read_text()
    # each seed's nextpnr ran and was judged on its own log, not on the seed before's
    seeds = [line.split("--seed ")[1].split()[0] for line in nextpnr_calls.read_text().splitlines()]
    assert seeds == ["1", "2"]
    # another clock: other PLL parameters in the RTLIL, so yosys runs again
    with pytest.raises(build_module.RouterDiverged):
        build_module.build("orangecrab-85f", build_dir=build_dir, design="requantizer", seed=1,
                           clock_hz=30e6, log=lines.append)
    assert yosys_runs() == 2
    # a netlist that is not the one recorded (a yosys stopped while writing it) is not reused
    (build_dir / "top.json").write_text('{"modules": {')
    with pytest.raises(build_module.RouterDiverged):
        build_module.build("orangecrab-85f", build_dir=build_dir, design="requantizer", seed=1,
                           clock_hz=30e6, log=lines.append)
    assert yosys_runs() == 3
    assert len(nextpnr_calls.read_text().splitlines()) == 4     # every build reached nextpnr


def test_seeds_are_tried_in_order_until_one_routes_and_meets_timing(monkeypatch, tmp_path, capsys):
    """`--seed 4,1,3,2`: seed 4 diverges, seed 1 misses timing, seed 3 meets it; seed 2 is not
    built. The report is seed 3's, with what the others did."""
    from fpga import build as build_module
    calls = []

    def fake_build(board_name, seed=None, log=print, **options):
        calls.append(seed)
        if seed == 4:
            raise build_module.RouterDiverged("router2 is not converging: (seed 4)")
        return {"board": board_name, "seed": seed, "fmax_mhz": 23.4 if seed == 1 else 26.8,
                "target_mhz": 25.0, "timing_met": seed != 1}

    monkeypatch.setattr(build_module, "build", fake_build)
    result = build_module.build_trying_seeds("ulx3s-85f", [4, 1, 3, 2], log=lambda *_: None)
    assert calls == [4, 1, 3] and result["seed"] == 3 and result["timing_met"]
    assert result["attempts"] == [
        {"seed": 4, "outcome": "router2 is not converging: (seed 4)"},
        {"seed": 1, "outcome": "routed, timing not met: 23.4 MHz against 25.0 MHz"}]
    # the last seed's build is the answer even when it misses timing
    calls.clear()
    assert build_module.build_trying_seeds("ulx3s-85f", [4, 1], log=lambda *_: None)["seed"] == 1
    # every seed diverging, or the last one after a seed that missed timing: one error naming each
    with pytest.raises(build_module.RouterDiverged) as none_routed:
        build_module.build_trying_seeds("ulx3s-85f", [1, 4], log=lambda *_: None)
    assert str(none_routed.value) == ("no seed routed and met timing: seed 1: routed, timing not met: "
                                      "23.4 MHz against 25.0 MHz; seed 4: router2 is not converging: (seed 4)")
    # the command line: a list of seeds reaches build_trying_seeds, a failure is one line
    calls.clear()
    assert main(["build", "--board", "ulx3s-85f", "--seed", "4,4", "--build-dir", str(tmp_path)]) == 1
    assert calls == [4, 4]
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("sparsebp: error: no seed routed")


def test_placer_choice_reaches_nextpnr_and_a_bad_one_is_refused_before_any_tool():
    from fpga.build import build, toolchain_options
    board = get_board("ulx3s-85f")
    assert "--placer static" in toolchain_options(board, seed=1)["nextpnr_opts"]     # the ECP5 default
    assert "--placer heap" in toolchain_options(board, seed=1, placer="heap")["nextpnr_opts"]
    assert "--placer heap" in toolchain_options(get_board("icebreaker"), seed=1)["nextpnr_opts"]
    with pytest.raises(BoardError, match="unknown placer 'sa'; choose one of heap, static"):
        toolchain_options(board, seed=1, placer="sa")
    with pytest.raises(BoardError, match="unknown placer 'sa'"):
        build("ulx3s-85f", build_dir=Path("/nonexistent/never-made"), placer="sa")


def test_engine_breakdown_accounts_for_every_cell_of_the_captured_synthesis():
    """fpga.engine_cost on a captured `synth_ecp5 -noflatten` stat of the 8-lane ULX3S engine
    (commit 7f9f5d5): per-module counts must add up to yosys's own whole-design totals."""
    import re
    from fpga.engine_cost import grouped, module_cells
    text = (DATA / "ulx3s-85f-engine-hierarchy.stat.txt").read_text()
    totals_section = text[text.index("=== design hierarchy ==="):]
    totals = {cell: int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(LUT4|CCU2C|MULT18X18D|DP16KD)$",
                                                      totals_section, re.M)}
    assert totals == {"LUT4": 66489, "CCU2C": 9279, "MULT18X18D": 78, "DP16KD": 158}
    rows = grouped(module_cells(text))
    for cell in totals:
        assert sum(r[cell] for r in rows) == totals[cell], cell
    by_module = {r["module"]: r for r in rows}
    assert by_module["top.dut.requantizer"]["instances"] == 8
    assert by_module["top.dut.scratchpad"]["DP16KD"] == 128
    assert rows[0]["module"] == "top.dut"          # the sequencer and inline lane logic lead


def test_engine_breakdown_refuses_an_ice40_board(capsys):
    from fpga.engine_cost import main as engine_cost_main
    with pytest.raises(SystemExit):
        engine_cost_main(["--board", "icebreaker"])
    assert "not an ECP5 board" in capsys.readouterr().err


# ---------------------------------------------------------------- real builds

def test_pumped_scratchpad_is_one_block_ram_copy_on_ecp5():
    """yosys maps the plain scratchpad to one copy per read port and the pumped one to a single
    copy (hw/banked_memory.py; a 16 KB memory is 8 DP16KD per copy)."""
    reason = tools_missing()
    if reason:
        pytest.skip(reason)
    from fpga.unit_cost import unit_cost
    assert unit_cost("ecp5", "scratchpad_16k")["DP16KD"] == 24
    assert unit_cost("ecp5", "scratchpad_16k_pumped")["DP16KD"] == 8


def _logic_from_sync_registers(netlist: dict) -> dict:
    """For each block-RAM input bit that some `clk` flip-flop reaches through logic alone: the
    cell types on the longest such path, from the flip-flop's side (empty: wired straight)."""
    from fpga.paths import load_top
    top = load_top(netlist)
    cells, names = top["cells"], {}
    for name, net in top["netnames"].items():
        for bit in net["bits"]:
            names.setdefault(bit, name)
    driver = {}
    for cell in cells.values():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                driver.update({bit: cell for bit in bits if isinstance(bit, int)})
    memo = {}

    def longest(bit):
        if bit not in memo:
            cell, memo[bit] = driver.get(bit), None
            if cell is None or cell["type"] in ("DP16KD", "MULT18X18D"):
                pass
            elif cell["type"] == "TRELLIS_FF":
                if names.get(cell["connections"]["CLK"][0]) == "clk":
                    memo[bit] = ()
            else:
                inputs = [b for port, bits in cell["connections"].items()
                          if cell["port_directions"].get(port) != "output" for b in bits if isinstance(b, int)]
                found = [found for found in map(longest, inputs) if found is not None]
                if found:
                    memo[bit] = max(found, key=len) + (cell["type"],)
        return memo[bit]

    result = {}
    for cname, cell in cells.items():
        if cell["type"] != "DP16KD":
            continue
        for port, bits in cell["connections"].items():
            if port.startswith(("CLK", "DO")):
                continue
            for i, bit in enumerate(bits):
                if isinstance(bit, int) and longest(bit) is not None:
                    result[f"{cname}.{port}[{i}]"] = longest(bit)
    return result


def test_pumped_scratchpads_half_cycle_paths_pass_one_lut_at_most():
    """A timing analyser times every `sync` -> `fast` path as half an engine cycle. In the
    pumped scratchpad, with its inputs driven from registers as the engine drives them, every
    path from a `sync` flip-flop to a block RAM's address, data or enable passes at most the
    one LUT that picks the edge's access (two to the write enable: yosys ORs the byte enables
    into the block RAM's one WE): no carry chain (the even bank's `row + 1`), no shifter (the
    write's bank split), no host-port multiplexer. Before session 18 those sat in
    front of a wire across the die and bounded the routed SoC (docs/fpga.md)."""
    reason = tools_missing()
    if reason:
        pytest.skip(reason)
    from fpga.unit_cost import synthesize
    _, netlist = synthesize("ecp5", "scratchpad_16k_pumped_registered")
    reached = _logic_from_sync_registers(netlist)
    addresses = [pin for pin in reached if ".AD" in pin]
    data = [pin for pin in reached if ".DI" in pin]
    assert len(addresses) >= 8 * 2 * 10 and len(data) >= 64     # 8 block RAMs, both ports' rows; the write
    for pin, path in reached.items():
        assert "CCU2C" not in path and len(path) <= (2 if ".WE" in pin else 1), (pin, path)


def _build(board, design, tmp_path, clock_mhz=None, router=None, extra_args=(), **changes):
    reason = tools_missing()
    if reason:
        pytest.skip(reason)
    from fpga import build
    b = get_board(board)
    config = dataclasses.replace(b.config, **changes)
    out = tmp_path / "report.json"
    args = ["build", "--board", board, "--design", design, "--build-dir", str(tmp_path / "build"),
            "--json", str(out)]
    if clock_mhz is not None:
        args += ["--clock-mhz", str(clock_mhz)]
    if router is not None:
        args += ["--router", router]
    if changes:
        args += ["--lanes", str(config.lanes), "--scratchpad-kb", str(config.scratchpad_bytes // 1024)]
    args += list(extra_args)
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert {"board", "fmax_mhz", "target_mhz", "timing_met", "scratchpad_bytes", "macs_per_cycle",
            "resources"} <= set(result)
    assert set(result["resources"]) >= {"LUT", "FF", "BRAM", "SPRAM", "DSP"}
    assert result["stage"] == "routed" and Path(result["bitstream"]).stat().st_size > 0
    for name, (used, total) in result["resources"].items():
        assert used <= total or total == 0, name
    return result


@pytest.mark.slow
def test_icebreaker_requantizer_build_meets_timing(tmp_path):
    """CI's iCE40 build: one lane's requantizer at 18 MHz (the whole engine does not fit the UP5K)."""
    result = _build("icebreaker", "requantizer", tmp_path, clock_mhz=18)
    assert result["board"] == "icebreaker" and result["design"] == "requantizer"
    assert result["target_mhz"] == 18.0       # 24 MHz is not met: 19.92 MHz measured
    assert result["timing_met"] and result["fmax_mhz"] >= 18.0
    assert result["resources"]["DSP"][0] == 4        # the 33 x 32 product in four SB_MAC16


@pytest.mark.slow
def test_icebreaker_soc_build_meets_timing_with_its_memory_in_spram(tmp_path):
    """CI's iCE40 SoC build (1-2 minutes): VexRiscv, the boot ROM and the flash reader at the
    preset's 20.25 MHz, its 128 KiB memory in the four SB_SPRAM256KA (not in EBR or LUTs), and the
    boot image for the flash written beside the bitstream."""
    reason = _soc_tools_missing()
    if reason:
        pytest.skip(reason)
    from hw.soc.boot import BOOT_MAGIC
    result = _build("icebreaker", "soc", tmp_path)
    assert result["design"] == "soc" and result["target_mhz"] == 20.25
    assert result["timing_met"] and result["fmax_mhz"] >= 20.25
    assert result["resources"]["SPRAM"] == [4, 4]
    # EBR: the instruction cache, the register file, the UART FIFO and the boot ROM, not the memory
    assert result["resources"]["BRAM"][0] <= 12
    assert result["macs_per_cycle"] == 0 and result["scratchpad_bytes"] == 32 * 1024
    soc = result["soc"]
    assert soc["engine"] == "none: the CPU runs the programs" and soc["boot_image_flash_offset"] == 0x10_0000
    boot = Path(soc["boot_image"]).read_bytes()
    assert len(boot) == soc["boot_image_bytes"] and int.from_bytes(boot[:4], "little") == BOOT_MAGIC


@pytest.mark.slow
def test_icebreaker_soc_with_picorv32_meets_24_mhz(tmp_path):
    """CI's build of issue 6's iCE40 target: the iCEBreaker's SoC with `--cpu picorv32` closes
    timing at 24 MHz (its preset clock and seed 2, fpga/boards.py CPU_SOC_PRESETS), which VexRiscv
    Lite's does not; the same memory in SPRAM, the multiplier in 4 SB_MAC16."""
    reason = _soc_tools_missing()
    if reason:
        pytest.skip(reason)
    result = _build("icebreaker", "soc", tmp_path, extra_args=["--cpu", "picorv32"])
    assert result["soc"]["cpu"] == "PicoRV32" and result["seed"] == 2
    assert result["target_mhz"] == 24.0 and result["timing_met"] and result["fmax_mhz"] >= 24.0
    assert result["resources"]["SPRAM"] == [4, 4] and result["resources"]["DSP"][0] == 4
    assert (tmp_path / "build" / "picorv32.v").is_file()


@pytest.mark.slow
def test_ecp5_requantizer_build_meets_timing(tmp_path):
    """CI's ECP5 build: one lane's requantizer, at 60 MHz rather than the board's 33 MHz preset
    (the whole engine: `sparsebp build --board ulx3s-85f`)."""
    result = _build("orangecrab-85f", "requantizer", tmp_path, clock_mhz=60)
    assert result["target_mhz"] == 60.0
    assert result["timing_met"]
    assert result["resources"]["DSP"][0] == 4


@pytest.mark.slow
def test_place_only_build_writes_no_bitstream(tmp_path, monkeypatch, capsys):
    """`--place-only` (nextpnr --no-route): a report with nextpnr's placed estimate, no verdict
    on timing and no bitstream, since the packer's output of an unrouted design is unusable.
    The logs are read for progress lines while the tools run (every half second here)."""
    reason = tools_missing()
    if reason:
        pytest.skip(reason)         # the YoWASP tools that are missing; CI installs them
    from fpga import build
    monkeypatch.setattr(build, "PROGRESS_POLL_SECONDS", 0.5)
    out = tmp_path / "report.json"
    assert main(["build", "--board", "orangecrab-85f", "--design", "requantizer", "--place-only",
                 "--build-dir", str(tmp_path / "build"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["stage"] == "placed" and result["timing_met"] is None and result["bitstream"] is None
    assert result["fmax_mhz"] > 0
    assert result["target_mhz"] == BOARDS["orangecrab-85f"].target_hz / 1e6 == 33.0    # the preset
    assert result["resources"]["DSP"][0] == 4
    assert not list((tmp_path / "build").glob("top.bit")) and not list((tmp_path / "build").glob("top.svf"))
    script = (tmp_path / "build" / "build_top.sh").read_text()
    assert "--no-route" in script and "--router router2" in script     # router2 is the default
    printed = capsys.readouterr().out
    assert "min] synthesis (yosys)" in printed and "min] " in printed.split("synthesis (yosys)", 1)[1]


@pytest.mark.board            # about half an hour each on 2 cores: `make board-builds`, not CI
@pytest.mark.parametrize("board", ["ulx3s-85f", "orangecrab-85f"])
def test_board_soc_build_fits_and_reports(board, tmp_path):
    """The longer tier: the SoC with its firmware and training job, through the whole flow."""
    result = _build(board, "soc", tmp_path, router="router2")
    assert result["design"] == "soc" and result["soc"]["training_iterations"] == 64
    assert result["resources"]["BRAM"][0] <= result["resources"]["BRAM"][1] == 208
    assert result["macs_per_cycle"] == 8 and result["fmax_mhz"] > 0
    assert result["timing_met"] and result["placer"] == "static"
