"""VexRiscv from the PyPI package `pythondata-cpu-vexriscv` (prebuilt Verilog), as a component
with two Wishbone initiator ports.

Variant: `Lite` (VexRiscv_Lite.v): RV32IM, five-stage pipeline with bypassing, static branch
prediction, a 2 KiB instruction cache and no data cache, iterative multiplier/divider and
shifter. Why this one for both boards:
- no data cache: every load and store goes to the bus, so the engine's registers, the scratchpad
  and the external memory need no cache maintenance in the firmware;
- iterative mul/div and shifter: no DSP blocks and few LUTs; the UP5K's eight SB_MAC16 and the
  ECP5's multipliers stay for the engine's lanes, and the UP5K has 5,280 LUT4 for everything;
- the M extension anyway, so the loss step's ten divisions are instructions, not a library;
- the 2 KiB instruction cache fits in 4 of the UP5K's 30 EBR (2 of the ECP5's 208 DP16KD) and
  lets the code run from a single-ported RAM that the data side also uses.
`Min` (no cache, no bypass, no M) is smaller but fetches every instruction over the shared bus;
`Standard`/`Full` add a data cache and single-cycle multipliers the UP5K cannot spare.
Area and Fmax on the boards are issue 6's business; they are not measured here.

Ports: `ibus`, `dbus` (Wishbone B4 classic, byte addresses `adr << 2`), `cpu_reset` in (held
with the domain reset). Interrupts are tied off; the core starts at `reset_address`.
"""

import functools
from pathlib import Path

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .wishbone import Signature

MODULE_NAME = "VexRiscv"       # every variant's top module has this name


def verilog_path(variant: str) -> Path:
    try:
        import pythondata_cpu_vexriscv
    except ImportError:
        raise ImportError("the CPU needs the Python package pythondata-cpu-vexriscv "
                          "(pip install -e '.[sim]')") from None
    path = Path(pythondata_cpu_vexriscv.data_location) / f"VexRiscv_{variant}.v"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: no VexRiscv variant {variant!r} in the package")
    return path


@functools.lru_cache(maxsize=4)
def verilog_source(variant: str) -> str:
    return verilog_path(variant).read_text()


class VexRiscv(wiring.Component):
    ibus: Out(Signature(addr_width=30))
    dbus: Out(Signature(addr_width=30))
    cpu_reset: In(1)

    def __init__(self, *, variant: str = "Lite", reset_address: int = 0):
        if reset_address % 4 or not 0 <= reset_address < 1 << 32:
            raise ValueError(f"Reset address must be a word-aligned 32-bit address, not {reset_address!r}")
        self.variant, self.reset_address = variant, reset_address
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if platform is not None:
            platform.add_file(f"VexRiscv_{self.variant}.v", verilog_source(self.variant))
        ports = {"i_clk": ClockSignal(), "i_reset": ResetSignal() | self.cpu_reset,
                 "i_externalResetVector": self.reset_address, "i_timerInterrupt": 0,
                 "i_softwareInterrupt": 0, "i_externalInterruptArray": 0}
        for prefix, bus in (("iBusWishbone", self.ibus), ("dBusWishbone", self.dbus)):
            ports.update({
                f"o_{prefix}_CYC": bus.cyc, f"o_{prefix}_STB": bus.stb, f"o_{prefix}_WE": bus.we,
                f"o_{prefix}_ADR": bus.adr, f"o_{prefix}_DAT_MOSI": bus.dat_w, f"o_{prefix}_SEL": bus.sel,
                f"i_{prefix}_DAT_MISO": bus.dat_r, f"i_{prefix}_ACK": bus.ack, f"i_{prefix}_ERR": bus.err,
                f"o_{prefix}_CTI": Signal(3, name=f"{prefix}_cti"),
                f"o_{prefix}_BTE": Signal(2, name=f"{prefix}_bte"),
            })
        m.submodules.core = Instance(MODULE_NAME, **ports)
        return m
