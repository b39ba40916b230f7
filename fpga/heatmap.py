"""Where router2's overuse sits: a nextpnr `--router2-heatmap PREFIX` run writes, for every
routing iteration N, `PREFIX_congestion_by_net_N.csv` (one `net,overused wires` line per net).
This sums those lines by the part of the design each net belongs to.

    python -m fpga.heatmap build/ulx3s-85f/h/heat_congestion_by_net_5.csv [--top 20]

A net of the engine (`soc.engine.engine.NAME...` in the SoC, `dut.NAME...` in the engine-alone
build, whose wrapper names it `dut`: fpga/wrapper.py) is grouped by NAME with its digits
replaced by `#`, so the eight lanes' `acc0`..`acc7` are one group; the packer's suffixes
(`_TRELLIS...`, `$...`, `[...]`) are dropped. The CPU's nets are `cpu`; anything else is
`other: ` and its first two name parts. docs/fpga.md, "Measured results", has the tables this
made and the nextpnr command.
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

ENGINE_PREFIXES = ("soc.engine.engine.", "dut.")
CPU_PREFIXES = ("soc.cpu",)


class HeatmapError(ValueError):
    pass


def group_of(net: str) -> str:
    """The group a net's overuse is counted under (module docstring)."""
    for prefix in ENGINE_PREFIXES:
        if net.startswith(prefix):
            key = net[len(prefix):].split(".")[0]
            break
    else:
        if net.startswith(CPU_PREFIXES):
            return "cpu"
        return "other: " + ".".join(net.split(".")[:2])
    key = re.sub(r"(_TRELLIS|\$|\[).*", "", key)
    return re.sub(r"\d+", "#", key)


def overuse_by_group(lines) -> tuple[int, list[tuple[str, int, int]]]:
    """(total overuse, [(group, overuse, nets)] largest first) from a heatmap CSV's lines."""
    overuse, nets, total = collections.Counter(), collections.Counter(), 0
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line:
            continue
        net, comma, value = line.rpartition(",")
        if not comma or not value.strip().isdigit():
            raise HeatmapError(f"line {number} is not 'net,overused wires': {line[:80]!r}")
        group, wires = group_of(net), int(value)
        overuse[group] += wires
        nets[group] += 1
        total += wires
    return total, [(g, v, nets[g]) for g, v in overuse.most_common()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.heatmap", description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="a PREFIX_congestion_by_net_N.csv file")
    parser.add_argument("--top", type=int, default=20, help="groups to print (default 20)")
    args = parser.parse_args(argv)
    try:
        with open(args.csv) as f:
            total, groups = overuse_by_group(f)
    except (OSError, HeatmapError) as e:
        print(f"fpga.heatmap: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.csv.name}: {total} overused wires in all")
    for group, value, count in groups[:args.top]:
        share = 100 * value / total if total else 0.0
        print(f"{value:8d} {share:5.1f}% {count:6d} nets  {group}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
