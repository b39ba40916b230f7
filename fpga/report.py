"""Read nextpnr's results: the `--report` JSON (cell utilization, per-clock Fmax) and, for the
iCE40, the LUT4 and flip-flop counts of the log's packing messages (its utilization counts
logic cells, each a LUT4 plus a flip-flop).

`summarize` turns them into the build report's `resources` (name -> [used, total]) and clock
figures. The names are the same for both families: LUT, FF, BRAM, SPRAM, DSP.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

# nextpnr cell type per resource, per family
CELLS = {
    "ice40": {"LC": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM", "DSP": "ICESTORM_DSP"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "LUTRAM": "TRELLIS_RAMW", "BRAM": "DP16KD",
             "DSP": "MULT18X18D"},
}


class ReportError(ValueError):
    pass


def parse_nextpnr_report(text: str) -> dict:
    try:
        report = json.loads(text)
        utilization = {name: (int(v["used"]), int(v["available"])) for name, v in report["utilization"].items()}
        fmax = {name: (float(v["achieved"]), float(v["constraint"])) for name, v in report.get("fmax", {}).items()}
    except (ValueError, KeyError, TypeError) as e:
        raise ReportError(f"not a nextpnr --report file: {e}") from None
    return {"utilization": utilization, "fmax": fmax}


_PACKING = re.compile(r"Info:\s+(\d+) LCs used as (LUT4 only|LUT4 and DFF|DFF only)")
ICE40_LOGIC_CELLS = 5280


def parse_nextpnr_log(text: str) -> dict:
    """LUT4 and flip-flop counts from nextpnr-ice40's packing messages ('N LCs used as LUT4
    only', '... as LUT4 and DFF', '... as DFF only'); each logic cell has one of each."""
    counts = {kind: int(n) for n, kind in _PACKING.findall(text)}
    if not counts:
        return {}
    lut = counts.get("LUT4 only", 0) + counts.get("LUT4 and DFF", 0)
    ff = counts.get("DFF only", 0) + counts.get("LUT4 and DFF", 0)
    return {"LUT": (lut, ICE40_LOGIC_CELLS), "FF": (ff, ICE40_LOGIC_CELLS)}


def summarize(family: str, report: dict, log_text: str = "") -> dict:
    """`resources` and clock figures for the build report. The engine's clock is the clock
    with the tightest constraint (the PLL output; the oscillator net, if listed, is slower)."""
    utilization = report["utilization"]
    resources = {}
    if family == "ice40":
        resources.update(parse_nextpnr_log(log_text))
    for name, cell in CELLS[family].items():
        resources[name] = list(utilization.get(cell, (0, 0)))
    if family == "ecp5":
        resources["SPRAM"] = [0, 0]
    resources = {k: list(v) for k, v in resources.items()}
    if not report["fmax"]:
        raise ReportError("the nextpnr report has no clock (is the design clocked?)")
    clocks = {k: [round(a, 2), round(c, 2)] for k, (a, c) in report["fmax"].items()}
    pumped = _pumped_pair(report["fmax"])
    bound = {}
    if pumped is None:
        clock, (achieved, constraint) = max(report["fmax"].items(), key=lambda kv: kv[1][1])
    else:
        clock, fast = pumped
        bounds = {f"{clock} paths": report["fmax"][clock][0], f"{fast} paths / 2": report["fmax"][fast][0] / 2}
        for (launch, capture), ns in crossing_delays(log_text).items():
            if {launch, capture} == {clock, fast}:
                bounds[f"{launch} -> {capture} in half a cycle"] = 1000 / (2 * ns)
        limit = min(bounds, key=bounds.get)
        achieved, constraint = bounds[limit], report["fmax"][clock][1]
        bound = {"fmax_limited_by": limit, "fmax_bounds_mhz": {k: round(v, 2) for k, v in bounds.items()}}
    return {"resources": resources, "clock_net": clock, "fmax_mhz": round(achieved, 2),
            "target_mhz": round(constraint, 2), "timing_met": achieved >= constraint, "clocks": clocks, **bound}

def _pumped_pair(fmax: dict):
    """(engine clock, fast clock) when one clock's constraint is twice another's (the pumped
    scratchpad's `fast` beside the engine's `sync`), else None. Then the engine's clock is the
    least of its own paths' Fmax, half the fast clock's, and what each path between the two
    allows in half an engine cycle (docs/fpga.md, "Measured results")."""
    for engine, (_, slow) in fmax.items():
        for fast, (_, quick) in fmax.items():
            if fast != engine and abs(quick - 2 * slow) < 1e-6 * quick:
                return engine, fast
    return None


_CROSSING = re.compile(r"Max delay posedge (\S+)\s+-> posedge (\S+)\s*: ([\d.]+) ns")


def crossing_delays(log_text: str) -> dict:
    """nextpnr's 'Max delay posedge A -> posedge B' lines: (A, B) -> ns, the last one of each."""
    return {(a, b): float(ns) for a, b, ns in _CROSSING.findall(log_text)}


def format_table(result: dict) -> str:
    design = result.get("design", "engine")
    if design in ("engine", "soc"):
        engine = (f"engine {result['lanes']} lanes, {result['macs_per_cycle']} MACs/cycle, "
                  f"scratchpad {result['scratchpad_bytes']} bytes")
        what = engine if design == "engine" else f"SoC: CPU and {engine}"
    else:
        what = f"{design} alone"
    lines = [f"board {result['board']} ({result['device']}), {what}",
             f"{'resource':10} {'used':>8} {'total':>8} {'use':>6}"]
    for name, (used, total) in result["resources"].items():
        share = f"{100 * used / total:.1f}%" if total else "-"
        lines.append(f"{name:10} {used:8d} {total:8d} {share:>6}")
    if result.get("stage") == "placed":
        lines.append(f"Fmax after placement {result['fmax_mhz']:.2f} MHz against {result['target_mhz']:.2f} MHz "
                     f"(nextpnr's estimate; not routed, so timing is not known)")
    else:
        verdict = "met" if result["timing_met"] else "FAILED"
        lines.append(f"Fmax {result['fmax_mhz']:.2f} MHz against {result['target_mhz']:.2f} MHz: timing {verdict}")
    if "fmax_limited_by" in result:
        lines.append(f"  (the engine clock's bound, set by {result['fmax_limited_by']})")
    if "build_seconds" in result:
        lines.append(f"build {result['build_seconds']:.0f} s; bitstream {result['bitstream'] or 'none (placed only)'}")
    return "\n".join(lines)


def read_build_dir(family: str, build_dir: Path, name: str = "top", placed_only: bool = False) -> dict:
    """The build's figures from nextpnr's report and log. After `--no-route` (`placed_only`) the
    report has the utilization but no Fmax: the clocks are then the log's estimates for the
    placed design, and `timing_met` is None, since only routing can tell."""
    build_dir = Path(build_dir)
    report = parse_nextpnr_report((build_dir / f"{name}.report.json").read_text())
    log_path = build_dir / f"{name}.tim"
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    if placed_only:
        report["fmax"] = fmax_estimates(log_text)
        figures = summarize(family, report, log_text)
        return {**figures, "timing_met": None, "stage": "placed"}
    return {**summarize(family, report, log_text), "stage": "routed"}


def fmax_estimates(text: str) -> dict:
    """clock -> (achieved, constraint) from a nextpnr log's 'Max frequency for clock' lines;
    nextpnr prints them after placement and after routing, and the last of each clock wins."""
    return {clock: (float(achieved), float(constraint)) for clock, achieved, _, constraint in _FMAX.findall(text)}


_UTILISATION = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")
_FMAX = re.compile(r"Max frequency for clock '([^']+)': ([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def parse_nextpnr_progress_log(text: str) -> dict:
    """What a nextpnr log says before the route finishes (a build stopped early): the cell
    utilization after packing and the last Fmax estimate, in parse_nextpnr_report's shape."""
    utilization = {name: (int(used), int(total)) for name, used, total in _UTILISATION.findall(text)}
    fmax = fmax_estimates(text)
    if not utilization:
        raise ReportError("no 'Device utilisation' section in this nextpnr log")
    return {"utilization": utilization, "fmax": fmax}
