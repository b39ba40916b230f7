"""The engine's clock: the board oscillator through the FPGA's PLL, as a `sync` domain, and,
for an engine with a pumped scratchpad (hw/banked_memory.py), a `fast` domain at twice the
frequency with its rising edges on `sync`'s.

PLL parameters are searched here in Python (the same rules as the `icepll` and `ecppll`
tools) so that a target the PLL cannot make exactly is an error before any tool runs.
The reset is held until the PLL locks. nextpnr derives the PLL output's constraint from the
oscillator pin's (the board resource's `Clock`) and the PLL parameters, so none is added here.
"""
from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer


class ClockError(ValueError):
    pass


def ice40_pll_params(input_hz: float, output_hz: float) -> dict:
    """SB_PLL40 SIMPLE feedback: out = in * (DIVF+1) / ((DIVR+1) * 2**DIVQ)."""
    for divr in range(16):
        pfd = input_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                if abs(vco / 2 ** divq - output_hz) < 1:
                    mhz = pfd / 1e6
                    filter_range = 1 if mhz < 17 else 2 if mhz < 26 else 3 if mhz < 44 else \
                        4 if mhz < 66 else 5 if mhz < 101 else 6
                    return dict(DIVR=divr, DIVF=divf, DIVQ=divq, FILTER_RANGE=filter_range)
    raise ClockError(f"the iCE40 PLL cannot make exactly {output_hz / 1e6:g} MHz from "
                     f"{input_hz / 1e6:g} MHz")


def ecp5_pll_params(input_hz: float, output_hz: float) -> dict:
    """EHXPLLL with CLKOP feedback: out = in / CLKI_DIV * CLKFB_DIV, VCO = out * CLKOP_DIV."""
    for clki_div in range(1, 129):
        if input_hz / clki_div < 3.125e6:
            break
        for clkfb_div in range(1, 81):
            if abs(input_hz / clki_div * clkfb_div - output_hz) >= 1:
                continue
            dividers = [d for d in range(1, 129) if 400e6 <= output_hz * d <= 800e6]
            if dividers:    # a VCO near the middle of its range, as ecppll picks
                clkop_div = min(dividers, key=lambda d: abs(output_hz * d - 600e6))
                return dict(CLKI_DIV=clki_div, CLKFB_DIV=clkfb_div, CLKOP_DIV=clkop_div,
                            CLKOP_CPHASE=clkop_div // 2 - 1)
    raise ClockError(f"the ECP5 PLL cannot make exactly {output_hz / 1e6:g} MHz from "
                     f"{input_hz / 1e6:g} MHz")


def pll_parameters(family: str, input_hz: float, output_hz: float, fast: bool = False) -> dict:
    """The PLL's parameters for `sync` at output_hz (and `fast` at twice it, ECP5 only), or a
    ClockError saying why the PLL cannot make them."""
    if fast and family != "ecp5":
        raise ClockError(f"a pumped scratchpad's 2x clock is built for ECP5 only, not {family}")
    if fast:
        return ecp5_pumped_pll_params(input_hz, output_hz)
    if family == "ice40":
        return ice40_pll_params(input_hz, output_hz)
    try:
        return ecp5_pll_params(input_hz, output_hz)
    except ClockError as direct:
        # Some clocks are only reachable through a VCO that CLKOP feeds back at twice the
        # clock (33 MHz from 48: the PFD would be 3 MHz, below the 3.125 MHz minimum); the
        # clock then comes out of CLKOS, as the pumped PLL's `sync` does, and CLKOP stays the
        # feedback alone.
        try:
            return ecp5_pumped_pll_params(input_hz, output_hz)
        except ClockError:
            raise direct from None


def ecp5_pumped_pll_params(input_hz: float, output_hz: float) -> dict:
    """EHXPLLL for a `fast` clock at 2 x output_hz on CLKOP (the feedback) and `sync` at
    output_hz on CLKOS, divided from the same VCO by twice CLKOP's divider. Both outputs use the
    divider/2 - 1 coarse phase of the CLKOP rule above (0 degrees each), so their rising edges
    coincide. That alignment is what the tools document; no board here could measure it."""
    try:
        params = ecp5_pll_params(input_hz, 2 * output_hz)
    except ClockError:
        raise ClockError(f"the ECP5 PLL cannot make exactly {2 * output_hz / 1e6:g} MHz (twice the "
                         f"{output_hz / 1e6:g} MHz engine clock, for the pumped scratchpad) from "
                         f"{input_hz / 1e6:g} MHz") from None
    clkos_div = 2 * params["CLKOP_DIV"]
    if clkos_div > 128:
        raise ClockError(f"the ECP5 PLL cannot divide its VCO down to {output_hz / 1e6:g} MHz")
    return dict(params, CLKOS_DIV=clkos_div, CLKOS_CPHASE=clkos_div // 2 - 1)


class PLLClock(Elaboratable):
    """Drives the `sync` domain's clock at `output_hz` from the platform's default clock pin,
    and its reset until the PLL locks; with `fast`, also the `fast` domain at twice that (ECP5
    only: the iCE40 carries no pumped scratchpad, its SPRAM has one port)."""

    def __init__(self, family: str, input_hz: float, output_hz: float, fast: bool = False):
        self.family, self.input_hz, self.output_hz, self.fast = family, input_hz, output_hz, fast
        self.params = pll_parameters(family, input_hz, output_hz, fast)

    def elaborate(self, platform):
        m = Module()       # the parent defines the `sync` domain (Amaranth 0.6 wants it there)
        locked = Signal()
        pll_clk, sync_clk = Signal(), Signal()
        pin = platform.request(platform.default_clk, dir="-")
        p = self.params
        on_clkos = "CLKOS_DIV" in p     # pumped, or an ECP5 clock CLKOP reaches only at 2x
        if self.family == "ice40":
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
                p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"],
                i_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=pll_clk, o_LOCK=locked)
        else:
            from amaranth.lib import io
            m.submodules.clk_buf = clk_buf = io.Buffer("i", pin)
            clkop_hz = 2 * self.output_hz if on_clkos else self.output_hz
            secondary = {}
            if on_clkos:        # CLKOS: sync at half CLKOP, same VCO, 0 degrees
                secondary = dict(a_FREQUENCY_PIN_CLKOS=f"{self.output_hz / 1e6:g}",
                                 p_CLKOS_ENABLE="ENABLED", p_OUTDIVIDER_MUXB="DIVB",
                                 p_CLKOS_DIV=p["CLKOS_DIV"], p_CLKOS_CPHASE=p["CLKOS_CPHASE"],
                                 p_CLKOS_FPHASE=0, i_ENCLKOS=0, o_CLKOS=sync_clk)
            m.submodules.pll = Instance(
                "EHXPLLL", a_FREQUENCY_PIN_CLKI=f"{self.input_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{clkop_hz / 1e6:g}",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_CPHASE"],
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
                i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, i_CLKFB=pll_clk, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=pll_clk, o_LOCK=locked, **secondary)
        m.d.comb += ClockSignal("sync").eq(sync_clk if on_clkos else pll_clk)
        if self.fast:
            m.d.comb += ClockSignal("fast").eq(pll_clk)
            m.submodules.fast_reset_sync = ResetSynchronizer(~locked, domain="fast")
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        return m


def add_clock_domains(m: Module, clocks) -> None:
    """Define `sync` (and `fast` when `clocks.fast`) in `m` and add `clocks` (a PLLClock) as
    their driver; nothing when `clocks` is None (the design is simulated or converted alone)."""
    if clocks is None:
        return
    m.domains.sync = ClockDomain("sync")
    if getattr(clocks, "fast", False):
        m.domains.fast = ClockDomain("fast")
    m.submodules.clocks = clocks
