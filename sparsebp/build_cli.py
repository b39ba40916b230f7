"""`sparsebp build --board BOARD [--design soc]`: an FPGA build for one board (fpga/build.py),
its bitstream, and a utilization and timing report as a table and, with --json, as JSON.

Errors a user can cause (an unknown board, a configuration that does not fit, missing tools)
are one line before any tool runs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .args import positive_int


def seed_list(text: str) -> list[int]:
    """'3' or '3,1,2': placement seeds, each at least 1."""
    return [positive_int(part) for part in text.split(",")]


def add_parser(subparsers) -> None:
    from fpga.boards import BOARDS
    from hw.soc.config import CPU_CHOICES
    p = subparsers.add_parser("build", help="FPGA bitstream of the engine or the SoC for a board, with a report")
    # choices are checked by fpga.boards.get_board so the message is the project's one-line error
    p.add_argument("--board", required=True, metavar="BOARD", help=f"one of {', '.join(sorted(BOARDS))}")
    p.add_argument("--design", default="engine", choices=["engine", "requantizer", "soc"],
                   help="the engine alone (default), one per-lane requantizer alone, or the SoC "
                        "(CPU, engine, firmware and the built-in CNN's training job in the bitstream)")
    p.add_argument("--lanes", type=int, help="override the preset's lane count")
    p.add_argument("--scratchpad-kb", type=int, help="override the preset's scratchpad size (KiB)")
    p.add_argument("--scratchpad", choices=list(SCRATCHPAD_KINDS),
                   help="override the preset's scratchpad: pumped (two block-RAM ports at twice the "
                        "engine clock, the ECP5 presets) or two-port (two ports on the engine's clock, "
                        "one more pause cycle where a vector needs them; docs/fpga.md proposal 11)")
    p.add_argument("--cpu", choices=list(CPU_CHOICES),
                   help="the SoC's CPU (--design soc): vexriscv-lite (every board's) or picorv32 (fewer "
                        "logic levels, more cycles; the iCEBreaker's SoC meets 24 MHz with it, at 24 MHz "
                        "and seed 2 unless --clock-mhz and --seed say otherwise)")
    p.add_argument("--clock-mhz", type=float, help="override the preset's clock (the PLL must make it exactly)")
    p.add_argument("--build-dir", type=Path, help="where the tools run (default build/BOARD)")
    p.add_argument("--seed", type=seed_list,
                   help="nextpnr placement seed, or seeds to try in order (3,1,2) until one routes and "
                        "meets timing; a seed whose router stops converging is stopped (default: the "
                        "seed with which the design last routed on the board, fpga/boards.py "
                        "ROUTED_SEEDS; else 1)")
    p.add_argument("--placer", choices=["heap", "static"],
                   help="nextpnr's placer (default: static on the ECP5 boards, the one with which the "
                        "SoC routes; heap, nextpnr's own default, on the iCE40, where the two placed alike)")
    p.add_argument("--router", choices=["router1", "router2"], default="router2",
                   help="nextpnr's router (default router2: router1 never got past its second "
                        "iteration on the whole engine here)")
    p.add_argument("--synthesis", choices=["flat", "hierarchical"], default="flat",
                   help="yosys on the flattened design (default, fewest LUTs) or module by module, "
                        "then flattened (about 9%% more LUTs on the engine)")
    p.add_argument("--place-only", action="store_true",
                   help="stop after placement (nextpnr --no-route): the report's Fmax is nextpnr's estimate "
                        "for the placed design, timing_met is null and no bitstream is written; the whole "
                        "engine places in about half an hour, where routing takes hours")
    p.add_argument("--json", type=Path, help="write the report as JSON")


# --scratchpad: the EngineConfig fields of each kind of one-copy scratchpad
SCRATCHPAD_KINDS = {"pumped": dict(scratchpad_pumped=True, scratchpad_two_port=False),
                    "two-port": dict(scratchpad_pumped=False, scratchpad_two_port=True)}


def board_config(board, lanes=None, scratchpad_kb=None, scratchpad=None):
    changes = dict(SCRATCHPAD_KINDS[scratchpad]) if scratchpad else {}
    if lanes is not None:
        changes["lanes"] = lanes
    if scratchpad_kb is not None:
        changes["scratchpad_bytes"] = scratchpad_kb * 1024
    return dataclasses.replace(board.config, **changes)


def run(args) -> dict:
    from fpga import build
    from fpga.boards import get_board
    from fpga.report import format_table
    from hw.soc.config import CPU_CHOICES

    board = get_board(args.board)
    config = board_config(board, args.lanes, args.scratchpad_kb, args.scratchpad)
    try:
        clock_hz = None if args.clock_mhz is None else args.clock_mhz * 1e6
        options = dict(build_dir=args.build_dir, config=config, design=args.design, clock_hz=clock_hz,
                       placer=args.placer, router=args.router, synthesis=args.synthesis,
                       place_only=args.place_only, cpu=args.cpu and CPU_CHOICES[args.cpu])
        if args.seed is None:
            result = build.build(board.name, **options)          # the board's seed for the design
        else:
            result = build.build_trying_seeds(board.name, args.seed, **options)
    except (build.ToolsMissing, RuntimeError) as exc:
        raise ValueError(str(exc)) from None
    print(format_table(result))
    for attempt in result.get("attempts", []):
        print(f"seed {attempt['seed']} before it: {attempt['outcome']}")
    return result
