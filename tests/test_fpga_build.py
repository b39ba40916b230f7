"""FPGA builds (fpga/, `sparsebp build`): the checks that need no tool, the nextpnr report
parser on captured real reports, and real builds of the engine-alone design for one iCE40 and
one ECP5 board (skipped with a reason when the YoWASP tools are absent).

The build tier builds the CI configurations below (a few minutes each on 2 cores); the board
presets' full builds run with SPARSEBP_FPGA_FULL=1 (docs/fpga.md gives their times).
"""
import dataclasses
import json
import os
from pathlib import Path

import pytest

from fpga import report
from fpga.boards import BOARDS, BoardError, get_board
from fpga.clocks import ClockError, ecp5_pll_params, ice40_pll_params
from fpga.fit import check_fit, estimate
from sparsebp.cli import main

DATA = Path(__file__).parent / "data" / "fpga"
FULL = os.environ.get("SPARSEBP_FPGA_FULL") == "1"


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


def test_configuration_that_cannot_fit_is_an_error_before_any_tool(capsys, tmp_path):
    # A 256 KB scratchpad needs 3 copies per bank (one per read port) with today's BankedMemory.
    build_dir = tmp_path / "b"
    assert main(["build", "--board", "ulx3s-85f", "--scratchpad-kb", "256", "--build-dir", str(build_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: 8 lanes with a 256 KB scratchpad do not fit ulx3s-85f (LFE5U-85F): "
                   "needs 394 block RAMs (scratchpad 384, external window 8) of 208")
    assert not build_dir.exists()


def test_more_lanes_than_the_multipliers_allow_is_an_error(capsys):
    assert main(["build", "--board", "orangecrab-85f", "--lanes", "16", "--scratchpad-kb", "32"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("sparsebp: error: 16 lanes with a 32 KB scratchpad do not fit orangecrab-85f (LFE5U-85F): "
                   "needs 297 DSP blocks of 156; about 99000 LUT4s of 83640")


def test_icebreaker_preset_is_refused_with_its_reasons(capsys):
    # The smallest engine EngineConfig allows (8 lanes) is about ten times the UP5K's logic.
    assert main(["build", "--board", "icebreaker"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsebp: error: 8 lanes with a 1 KB scratchpad do not fit icebreaker (iCE40UP5K): ")
    assert "LUT4s of 5280" in err and "\n" not in err


def test_ecp5_presets_fit_their_boards():
    for name in ("ulx3s-85f", "orangecrab-85f"):
        board = get_board(name)
        found = check_fit(board, board.config)
        assert (found.block_rams, found.dsps) == (202, 153)
        assert board.config.scratchpad_bytes == 128 * 1024 and board.config.lanes == 8


def test_memory_estimate_matches_what_yosys_inferred():
    board = get_board("ulx3s-85f")
    config = dataclasses.replace(board.config, lanes=16, scratchpad_bytes=256 * 1024, param_channels=512)
    found = estimate(board, config)
    # measured: yosys maps the default engine (16 lanes, 256 KB) to 402 DP16KD: 3 copies of
    # 64 blocks per bank, 4 PDPW16KD per external bank and read port, 2 for the trace
    assert (found.block_rams, found.scratchpad_blocks, found.external_blocks) == (402, 384, 16)


def test_pll_parameters_match_the_vendor_tools():
    # icepll -i 12 -o 24 and ecppll -i 25 -o 50 / -i 48 -o 60 (YoWASP), run once by hand
    assert ice40_pll_params(12e6, 24e6) == dict(DIVR=0, DIVF=63, DIVQ=5, FILTER_RANGE=1)
    assert ecp5_pll_params(25e6, 50e6) == dict(CLKI_DIV=1, CLKFB_DIV=2, CLKOP_DIV=12, CLKOP_CPHASE=5)
    assert ecp5_pll_params(48e6, 60e6) == dict(CLKI_DIV=4, CLKFB_DIV=5, CLKOP_DIV=10, CLKOP_CPHASE=4)
    with pytest.raises(ClockError, match="cannot make exactly 50 MHz from 48 MHz"):
        ecp5_pll_params(48e6, 50e6)
