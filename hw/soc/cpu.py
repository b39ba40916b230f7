"""The SoC's CPUs, prebuilt Verilog from PyPI, as components with Wishbone initiator ports:
VexRiscv (`pythondata-cpu-vexriscv`, two ports) and PicoRV32 (`pythondata-cpu-picorv32`, one).

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

from amaranth.hdl import ClockSignal, Instance, Module, Mux, ResetSignal, Signal
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
            platform.add_file(*cpu_verilog(self.variant))
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


PICORV32_MODULE = "picorv32"


@functools.lru_cache(maxsize=1)
def picorv32_source() -> str:
    try:
        import pythondata_cpu_picorv32
    except ImportError:
        raise ImportError("the PicoRV32 CPU needs the Python package pythondata-cpu-picorv32 "
                          "(pip install -e '.[sim]')") from None
    return (Path(pythondata_cpu_picorv32.data_location) / "picorv32.v").read_text()


class PicoRV32(wiring.Component):
    """PicoRV32 (`picorv32`, its native memory interface): RV32IM without a pipeline (3-6
    cycles an instruction besides its bus accesses), one Wishbone port `bus` for instructions
    and data. For the iCE40, whose SoC VexRiscv Lite bounds below 24 MHz by its pipeline
    control (docs/fpga.md, "iCE40 UP5K"). Configuration, and why:
    - `ENABLE_MUL`, `ENABLE_FAST_MUL`, `ENABLE_DIV`, `BARREL_SHIFTER`: the firmware is built for
      RV32IM; the soft engine multiplies and shifts in its inner loops, and the iCE40 SoC has
      no engine to spend the SB_MAC16 blocks on (the multiplier takes 4 of the 8);
    - `TWO_CYCLE_ALU`, `TWO_CYCLE_COMPARE`: a register between the ALU and what uses it, for
      the clock (measured with picorv32_wb's adapter: without them the iCEBreaker SoC routed at
      21.32 MHz, not 27.79, and the last-layer iteration took the same cycles to 0.03%);
    - no counters, interrupts, compressed ISA or trace: the firmware reads the cycle counter
      from the sysctl peripheral and uses none of them;
    - `CATCH_MISALIGN`, `CATCH_ILLINSN`: a misaligned access or an unknown instruction stops the
      core (`trap` high), and the run's timeout reports the stopped CPU.
    The native interface is the bus itself, with no adapter: `mem_valid` (a register in the
    core) is `cyc` and `stb`, and the answer's `ack` is `mem_ready`, so an access takes the
    subordinate's one cycle (picorv32_wb's adapter registers both ways: about 4). The core holds
    `mem_valid`, the address and the data until `mem_ready`, as Wishbone asks. `err` (an access
    outside every window) also ends the access, its data zero: the core has no bus-error trap.
    `cpu_reset` in (held with the domain reset); it starts at `reset_address`."""

    bus: Out(Signature(addr_width=30))
    cpu_reset: In(1)
    trap: Out(1)

    PARAMETERS = {"ENABLE_COUNTERS": 0, "ENABLE_COUNTERS64": 0, "ENABLE_REGS_16_31": 1,
                  "ENABLE_REGS_DUALPORT": 1, "TWO_STAGE_SHIFT": 1, "BARREL_SHIFTER": 1,
                  "TWO_CYCLE_COMPARE": 1, "TWO_CYCLE_ALU": 1, "COMPRESSED_ISA": 0,
                  "CATCH_MISALIGN": 1, "CATCH_ILLINSN": 1, "ENABLE_PCPI": 0, "ENABLE_MUL": 1,
                  "ENABLE_FAST_MUL": 1, "ENABLE_DIV": 1, "ENABLE_IRQ": 0, "ENABLE_TRACE": 0,
                  "REGS_INIT_ZERO": 0}

    def __init__(self, *, reset_address: int = 0):
        if reset_address % 4 or not 0 <= reset_address < 1 << 32:
            raise ValueError(f"Reset address must be a word-aligned 32-bit address, not {reset_address!r}")
        self.reset_address = reset_address
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if platform is not None:
            platform.add_file(*cpu_verilog("PicoRV32"))
        mem_valid, mem_addr, mem_wstrb = Signal(), Signal(32), Signal(4)
        params = {f"p_{name}": value for name, value in self.PARAMETERS.items()}
        m.submodules.core = Instance(
            PICORV32_MODULE, **params,
            p_PROGADDR_RESET=self.reset_address, p_PROGADDR_IRQ=self.reset_address + 0x10,
            i_clk=ClockSignal(), i_resetn=~(ResetSignal() | self.cpu_reset),
            o_mem_valid=mem_valid, o_mem_addr=mem_addr, o_mem_wdata=self.bus.dat_w,
            o_mem_wstrb=mem_wstrb, i_mem_ready=self.bus.ack | self.bus.err, i_mem_rdata=self.bus.dat_r,
            i_pcpi_wr=0, i_pcpi_rd=0, i_pcpi_wait=0, i_pcpi_ready=0, i_irq=0,
            o_trap=self.trap)
        writing = mem_wstrb.any()
        m.d.comb += [self.bus.cyc.eq(mem_valid), self.bus.stb.eq(mem_valid), self.bus.adr.eq(mem_addr[2:]),
                     self.bus.we.eq(writing), self.bus.sel.eq(Mux(writing, mem_wstrb, 0b1111))]
        return m


def cpu_verilog(variant: str) -> tuple[str, str]:
    """(file name, Verilog text) of a `SocConfig.cpu_variant`'s core, for a simulator or a build."""
    if variant == "PicoRV32":
        return "picorv32.v", picorv32_source()
    return f"VexRiscv_{variant}.v", verilog_source(variant)
