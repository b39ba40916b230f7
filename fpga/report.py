"""Read nextpnr's results: the `--report` JSON (cell utilization, per-clock Fmax) and, for the
iCE40, the log's pre-packing LUT4 and flip-flop counts (its utilization counts logic cells,
each a LUT4 plus a flip-flop).

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


_LOG_COUNTS = {"LUT": re.compile(r"Total LUT4s:\s+(\d+)/\s*(\d+)"),
               "FF": re.compile(r"Total DFFs:\s+(\d+)/\s*(\d+)")}


def parse_nextpnr_log(text: str) -> dict:
    """LUT4 and DFF counts of nextpnr-ice40's 'Logic utilisation before packing'."""
    found = {}
    for name, pattern in _LOG_COUNTS.items():
        match = pattern.search(text)
        if match:
            found[name] = (int(match.group(1)), int(match.group(2)))
    return found


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
    clock, (achieved, constraint) = max(report["fmax"].items(), key=lambda kv: kv[1][1])
    return {"resources": resources, "clock_net": clock, "fmax_mhz": round(achieved, 2),
            "target_mhz": round(constraint, 2), "timing_met": achieved >= constraint,
            "clocks": {k: [round(a, 2), round(c, 2)] for k, (a, c) in report["fmax"].items()}}


def format_table(result: dict) -> str:
    if result.get("design", "engine") == "engine":
        what = (f"engine {result['lanes']} lanes, {result['macs_per_cycle']} MACs/cycle, "
                f"scratchpad {result['scratchpad_bytes']} bytes")
    else:
        what = f"{result['design']} alone"
    lines = [f"board {result['board']} ({result['device']}), {what}",
             f"{'resource':10} {'used':>8} {'total':>8} {'use':>6}"]
    for name, (used, total) in result["resources"].items():
        share = f"{100 * used / total:.1f}%" if total else "-"
        lines.append(f"{name:10} {used:8d} {total:8d} {share:>6}")
    verdict = "met" if result["timing_met"] else "FAILED"
    lines.append(f"Fmax {result['fmax_mhz']:.2f} MHz against {result['target_mhz']:.2f} MHz: timing {verdict}")
    if "build_seconds" in result:
        lines.append(f"build {result['build_seconds']:.0f} s; bitstream {result['bitstream']}")
    return "\n".join(lines)


def read_build_dir(family: str, build_dir: Path, name: str = "top") -> dict:
    build_dir = Path(build_dir)
    report = parse_nextpnr_report((build_dir / f"{name}.report.json").read_text())
    log_path = build_dir / f"{name}.tim"
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return summarize(family, report, log_text)
