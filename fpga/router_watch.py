"""Whether nextpnr's router2 is still converging, from the overused-wire count it logs after each
iteration (`iter=N wires=W overused=O` in `top.tim`).

router2 has no iteration limit: on a placement it cannot route, the overused wires fall to a
minimum and then climb without end, and the build would run for hours. `divergence(history)`
names that case in one sentence, or returns None:

    the overused wires are at least DIVERGED_FACTOR times their lowest count so far, and at
    least DIVERGED_MARGIN above it.

The margin keeps the noise of a router that is nearly done (one wire, then four) from counting.
Calibrated on the routes of session 18 (tests/data/fpga/router2_overuse.json): of
main's netlist on the ULX3S, seeds 1, 2 and 4 were stopped by hand after their counts had
climbed from 1,106, 262 and 1 overused wires to thousands; the rule stops them at iterations 52,
68 and 270. Seed 3 (which routed after 148 iterations) and the other routed builds never
rose more than 11 wires above their lowest count.
"""
from __future__ import annotations

import re

DIVERGED_FACTOR = 2
DIVERGED_MARGIN = 100

_ROUTER2_ITERATION = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")


def overuse_history(log_text: str) -> list[tuple[int, int]]:
    """(iteration, overused wires) of every router2 iteration in a nextpnr log so far."""
    return [(int(i), int(o)) for i, o in _ROUTER2_ITERATION.findall(log_text)]


def divergence(history: list[tuple[int, int]]) -> str | None:
    """The sentence saying router2 diverged (lowest count and where, the count that tripped the
    rule and where), or None while it may still converge."""
    best_iteration, best = None, None
    for iteration, overused in history:
        if best is None or overused < best:
            best_iteration, best = iteration, overused
        elif overused >= DIVERGED_FACTOR * best and overused >= best + DIVERGED_MARGIN:
            return (f"router2 is not converging: {overused:,} overused wires at iteration {iteration}, "
                    f"up from {best:,} at iteration {best_iteration}")
    return None
