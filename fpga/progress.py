"""What a running build is doing, read from the logs its tools write: a line a user can follow
through a build of hours (the whole engine: about 10 minutes of yosys, half an hour of placement
and hours of routing on this machine, docs/fpga.md).

`build_stage(build_dir)` reads yosys's log (`top.rpt`) and nextpnr's (`top.tim`) and returns the
stage and its latest figure; `ProgressReporter` prints a line when the stage changes and, within
a long stage, every `interval` seconds. Reading a log never changes the build.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from .router_watch import overuse_history

_YOSYS_PASS = re.compile(r"^[\d.]+ Executing (.+?)\.?$", re.M)
_HEAP = re.compile(r"at (?:initial placer iter|iteration #)\s*(\d+), (?:type ALL: )?wirelen")
_ANNEALING = re.compile(r"at iteration #(\d+): temp = [\d.]+, timing cost = \d+, wirelen = (\d+)")
_STATIC = re.compile(r"^Info: iter=(\d+) steplen=", re.M)
_STATIC_OVERLAP = re.compile(r"^Info: overlap: COMB=([\d.]+)%", re.M)
_ROUTER1 = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|", re.M)


def nextpnr_stage(text: str) -> tuple[str, str]:
    """(stage, latest figure) from a nextpnr log so far."""
    if "Program finished normally" in text:
        return "packing the bitstream", "nextpnr finished"
    # nextpnr logs "Routing.." only after router2's main loop: its start marks routing too
    if any(mark in text for mark in ("Routing globals", "Running router2", "Routing..")):
        router2, router1 = overuse_history(text), _ROUTER1.findall(text)
        if router2:
            iteration, overused = router2[-1]
            return "routing", f"router2 iteration {iteration}: {int(overused):,} overused wires"
        if router1:
            done, remaining = router1[-1]
            return "routing", f"router1: {int(done):,} arcs routed, {int(remaining):,} remaining"
        return "routing", "started"
    if "Running simulated annealing placer" in text:
        steps = _ANNEALING.findall(text)
        return "placing (annealing)", (f"iteration {steps[-1][0]}, wirelength {int(steps[-1][1]):,}"
                                       if steps else "started")
    if "Running Static placer" in text:
        steps, overlaps = _STATIC.findall(text), _STATIC_OVERLAP.findall(text)
        return "placing (static)", (f"iteration {steps[-1]}, {overlaps[-1]}% of the logic overlapping"
                                    if steps and overlaps else "started")
    if "Creating initial analytic placement" in text:
        steps = _HEAP.findall(text)
        return "placing (analytic)", f"iteration {steps[-1]}" if steps else "started"
    if "Packing" in text:
        return "packing cells", ""
    return "nextpnr starting", ""


def yosys_stage(text: str) -> tuple[str, str]:
    passes = _YOSYS_PASS.findall(text)
    return "synthesis (yosys)", passes[-1] if passes else "started"


def build_stage(build_dir: Path, name: str = "top") -> tuple[str, str]:
    """(stage, latest figure) of the build running in `build_dir`, from its tools' logs."""
    build_dir = Path(build_dir)
    nextpnr_log = build_dir / f"{name}.tim"
    if nextpnr_log.exists():
        return nextpnr_stage(nextpnr_log.read_text(errors="replace"))
    yosys_log = build_dir / f"{name}.rpt"
    if yosys_log.exists():
        return yosys_stage(yosys_log.read_text(errors="replace"))
    return "starting", ""


class ProgressReporter:
    """`poll()` logs e.g. "[N min] routing: router2 iteration 9: 18,419 overused wires" when the
    stage changed since the last line or `interval` seconds have passed in the same stage."""

    def __init__(self, build_dir: Path, log=print, interval: float = 600.0, clock=time.monotonic):
        self.build_dir, self.log, self.interval, self.clock = Path(build_dir), log, interval, clock
        self.start = self.last_time = clock()
        self.last_stage = None

    def poll(self) -> None:
        stage, detail = build_stage(self.build_dir)
        now = self.clock()
        if stage != self.last_stage or now - self.last_time >= self.interval:
            minutes = (now - self.start) / 60
            self.log(f"  [{minutes:.0f} min] {stage}" + (f": {detail}" if detail else ""))
            self.last_stage, self.last_time = stage, now
