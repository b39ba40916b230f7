"""The longest register-to-register paths of a yosys-mapped ECP5 netlist, before any place and
route: a ranking of what limits the clock in the minute after synthesis, where nextpnr names
its critical path only after routing (tens of minutes for the engine, docs/fpga.md).

    python -m fpga.paths build/ulx3s-85f/top.json [--count 15] [--lines]

The netlist is yosys's `write_json` of the flattened, mapped design (a `sparsebp build` leaves it
in the build directory as top.json). Each path runs from a register or block-RAM output to a
register, block-RAM or multiplier-register input and is printed with its launch and capture
clock, the delay estimate, and the named signals it passes (with `--lines`, the engine source
lines of its carry chains, the cells that keep a source location after ABC).

Delay model, in ns (ECP5 speed 6, rounded from the device's cell timings): LUT4 0.4, PFUMX and
L6MUX21 0.3, CCU2C 0.45 from a data input and 0.06 carry to carry, MULT18X18D without registers
4.0, block-RAM clock to data 4.0, flip-flop clock to output 0.4; every net but a carry 0.8 +
0.25 log2(1 + fanout). Measured against nextpnr on the same netlist (commit 7e245a7): 73.3 ns
estimated for the worst `sync` path, 59.8 ns after placement. So rank paths with it; the clock
comes from nextpnr.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass

LUT_NS, MUX_NS, CARRY_DATA_NS, CARRY_NS, CARRY_SUM_NS = 0.4, 0.3, 0.45, 0.06, 0.12
MULT_NS, BRAM_CLOCK_TO_DATA_NS, FF_CLOCK_TO_Q_NS = 4.0, 4.0, 0.4
# Cells whose outputs start paths and whose inputs end them (a MULT18X18D only when it has
# registers; a combinational one is a path's middle).
SEQUENTIAL = {"TRELLIS_FF", "DP16KD", "EHXPLLL", "TRELLIS_IO", "DCCA", "TRELLIS_DPR16X4", "MULT18X18D",
              "ALU54B"}
CLOCK_PORTS = ("CLK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3", "WCK")
PORT_A_PREFIXES = ("DOA", "ADA", "DIA", "CEA", "WEA", "CSA", "OCEA", "RSTA")
GENERATED = re.compile(r"_(LUT4|CCU2C|PFUMX|L6MUX21|TRELLIS_FF|MULT18X18D|DP16KD|TRELLIS_DPR16X4)_|\$")


@dataclass
class Path:
    ns: float
    launch: str            # clock net of the start point
    capture: str           # clock net of the end point
    end: str               # cell type and input port of the end point
    signals: list[str]     # named nets along the path, start first, then "=> register" if any
    lines: list[str]       # source locations of the path's cells that keep one


class NetlistError(ValueError):
    """A file that is not a yosys JSON netlist with one top module."""


def load_top(design: dict) -> dict:
    modules = design.get("modules") if isinstance(design, dict) else None
    if not modules:
        raise NetlistError("not a yosys JSON netlist (no modules)")
    tops = [m for m in modules.values() if m.get("attributes", {}).get("top")]
    if len(tops) != 1:
        raise NetlistError(f"expected one top module, found {len(tops)}")
    return tops[0]


def longest_paths(design: dict, per_clock_pair: int = 15) -> list[Path]:
    """The worst path to each distinct end register (by signal name), at most `per_clock_pair`
    for each (launch, capture) pair of clocks, longest first."""
    top = load_top(design)
    cells = top["cells"]
    names = _bit_names(top["netnames"])
    driver, sinks = {}, defaultdict(list)
    for cname, cell in cells.items():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, int):
                    if directions.get(port) == "output":
                        driver[bit] = (cname, port)
                    else:
                        sinks[bit].append(cname)

    def clock_of(cname, port):
        connections = cells[cname]["connections"]
        if cells[cname]["type"] == "DP16KD":
            clock = connections.get("CLKA" if port.startswith(PORT_A_PREFIXES) else "CLKB")
        else:
            clock = next((connections[p] for p in CLOCK_PORTS if p in connections), None)
        if not clock or not isinstance(clock[0], int):
            return "none"
        return names.get(clock[0], str(clock[0]))

    def net_ns(bit):
        if driver.get(bit, (None, None))[1] == "COUT":
            return 0.0          # the dedicated carry wire
        return 0.8 + 0.25 * math.log2(1 + len(sinks[bit]))

    def starts_paths(cell):
        if cell["type"] == "MULT18X18D":
            return any(v != "NONE" for k, v in cell.get("parameters", {}).items() if k.startswith("REG_"))
        return cell["type"] in SEQUENTIAL

    arrival = {}          # bit -> (ns, previous bit, launch clock)
    combinational = {}
    for cname, cell in cells.items():
        if not starts_paths(cell):
            combinational[cname] = cell
            continue
        start_ns = {"TRELLIS_FF": FF_CLOCK_TO_Q_NS, "DP16KD": BRAM_CLOCK_TO_DATA_NS}.get(cell["type"], 1.0)
        for port, bits in _outputs(cell):
            for bit in bits:
                arrival[bit] = (start_ns, None, clock_of(cname, port))
    _propagate(combinational, arrival, net_ns, driven=set(driver))

    ends = []
    for cname, cell in cells.items():
        if cname in combinational:
            continue
        for port, bits in _inputs(cell):
            if port in CLOCK_PORTS:
                continue
            for bit in bits:
                if bit in arrival:
                    ends.append((arrival[bit][0] + net_ns(bit), bit, cname, port))
    ends.sort(key=lambda e: -e[0])

    paths, shown, seen = [], defaultdict(int), set()
    for ns, bit, cname, port in ends:
        trace = []
        walk = bit
        while walk is not None:
            trace.append(walk)
            walk = arrival[walk][1]
        trace.reverse()
        launch, capture = arrival[bit][2], clock_of(cname, port)
        signals = _named(trace, names)
        if cells[cname]["type"] == "TRELLIS_FF":
            q = [b for _, bits in _outputs(cells[cname]) for b in bits]
            signals.append("=> " + names.get(q[0], "?") if q else "=> ?")
        first, end_name = (signals[0], signals[-1]) if signals else ("", "")
        key = (launch, capture, first.split("[")[0], end_name.split("[")[0])   # one path per end register
        if key in seen or shown[(launch, capture)] >= per_clock_pair:
            continue
        seen.add(key)
        shown[(launch, capture)] += 1
        lines = []
        for b in trace:
            if b in driver:
                for location in _source_lines(cells[driver[b][0]]):
                    if location not in lines:
                        lines.append(location)
        paths.append(Path(round(ns, 1), launch, capture, f"{cells[cname]['type']}.{port}", signals, lines))
    paths.sort(key=lambda p: -p.ns)
    return paths


def _outputs(cell):
    directions = cell.get("port_directions", {})
    return [(p, [b for b in bits if isinstance(b, int)]) for p, bits in cell["connections"].items()
            if directions.get(p) == "output"]


def _inputs(cell):
    directions = cell.get("port_directions", {})
    return [(p, [b for b in bits if isinstance(b, int)]) for p, bits in cell["connections"].items()
            if directions.get(p) != "output"]


def _bit_names(netnames: dict) -> dict[int, str]:
    """Each bit's most readable name: a user-visible name before a hidden one, then the shortest."""
    best = {}
    for name, net in netnames.items():
        bits = net["bits"]
        for i, bit in enumerate(bits):
            if not isinstance(bit, int):
                continue
            label = f"{name}[{i}]" if len(bits) > 1 else name
            rank = (net.get("hide_name", 0), bool(GENERATED.search(label)), len(label))
            if bit not in best or rank < best[bit][0]:
                best[bit] = (rank, label)
    return {bit: label for bit, (_, label) in best.items()}


def _propagate(combinational: dict, arrival: dict, net_ns, driven: set) -> None:
    """Arrival times of every combinational output, in topological order (Kahn). An input no
    cell drives counts as a constant."""
    waiting, missing, ready = defaultdict(list), {}, []
    for cname, cell in combinational.items():
        unknown = [b for _, bits in _inputs(cell) for b in bits if b not in arrival and b in driven]
        missing[cname] = len(unknown)
        for bit in unknown:
            waiting[bit].append(cname)
        if not unknown:
            ready.append(cname)
    while ready:
        cell = combinational[ready.pop()]
        data, carry = (0.0, None, "none"), (-1.0, None, "none")
        for port, bits in _inputs(cell):
            for bit in bits:
                if bit not in arrival:
                    continue
                candidate = (arrival[bit][0] + net_ns(bit), bit, arrival[bit][2])
                if port == "CIN":
                    carry = max(carry, candidate, key=lambda c: c[0])
                else:
                    data = max(data, candidate, key=lambda c: c[0])
        kind = cell["type"]
        for port, bits in _outputs(cell):
            if kind == "CCU2C":
                through_carry = CARRY_NS if port == "COUT" else CARRY_SUM_NS
                options = [(data[0] + CARRY_DATA_NS,) + data[1:], (carry[0] + through_carry,) + carry[1:]]
                value = max(options, key=lambda c: c[0])
            else:
                delay = {"LUT4": LUT_NS, "MULT18X18D": MULT_NS}.get(kind, MUX_NS)
                value = (data[0] + delay,) + data[1:]
            for bit in bits:
                arrival[bit] = value
                for other in waiting.pop(bit, []):
                    missing[other] -= 1
                    if missing[other] == 0:
                        ready.append(other)


def _named(trace: list[int], names: dict[int, str]) -> list[str]:
    """The path's nets that carry a name from the design, each signal once."""
    seen, result = set(), []
    for bit in trace:
        label = names.get(bit)
        if label is None or GENERATED.search(label):
            continue
        base = label.split("[")[0]
        if base not in seen:
            seen.add(base)
            result.append(label)
    return result


def _source_lines(cell) -> list[str]:
    source = cell.get("attributes", {}).get("src", "")
    found = []
    for part in source.split("|"):
        match = re.match(r"(?:.*/)?([^/:]+\.py):(\d+)", part)
        if match and f"{match[1]}:{match[2]}" not in found:
            found.append(f"{match[1]}:{match[2]}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.paths", description=__doc__.split("\n\n")[0])
    parser.add_argument("netlist", help="yosys write_json output of a mapped ECP5 design")
    parser.add_argument("--count", type=int, default=15, help="paths per (launch, capture) clock pair")
    parser.add_argument("--lines", action="store_true", help="also print the source lines of each path")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, not {args.count}")
    try:
        with open(args.netlist) as f:
            design = json.load(f)
        paths = longest_paths(design, args.count)
    except (OSError, json.JSONDecodeError, NetlistError) as e:
        print(f"error: {args.netlist}: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{path.ns:6.1f} ns  {path.launch} -> {path.capture}  ({path.end})")
        print("          " + " -> ".join(path.signals))
        if args.lines and path.lines:
            print("          lines: " + ", ".join(path.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
