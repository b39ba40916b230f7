"""Run the training firmware on the SoC under Verilator, beside the golden model.

`run_soc(config, flash, firmware, ...)` is the harness: it builds the SoC (sim.soc_build), runs
the cocotb module sim.soc_cocotb once, and returns a `SocRun` (UART transcript, exit code,
cycles, the scratchpad windows read at every pause, the whole scratchpad and the flash image as
read back after the halt). `progress` gets each UART line as it arrives (the cocotb process
writes the transcript to a file that this process follows).

`soc_training_run(iterations, ...)` is the experiment: the built-in digits CNN, last-layer
scheme, compiled for the SoC's engine; the firmware trains for `iterations` samples; after every
iteration the classifier's weights and bias in the scratchpad are compared byte for byte with
the golden Trainer's, and after the run the whole scratchpad with the golden executor's (forward
program, `TrainingProgram.loss_step`, backward program per iteration). `corrupt` replaces one
field of one forward descriptor in flash (a test of the error path).
"""
from __future__ import annotations

import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.soc.config import SIM, SocConfig, cpu_name

SPEC_ENV = "SPARSEBP_SOC_SPEC"
LINE = re.compile(r"iteration (\d+): label (\d+) loss (\d+\.\d+) exponent (-?\d+) cycles (\d+) "
                  r"engine_idle (\d+) forward (\d+) backward (\d+) sample (\d+) loss_step (\d+)")


@dataclass
class SocRun:
    status: str                   # "halted" or "timeout"
    exit_code: int
    cycles: int                   # from CPU reset release to halt, pauses excluded
    transcript: str
    snapshots: list[np.ndarray]   # per pause, per window, in order
    scratchpad: np.ndarray | None
    flash: np.ndarray | None
    build_seconds: float
    build_reused: bool
    run_seconds: float
    log: str = ""
    timings: dict = field(default_factory=dict)   # wall seconds in the simulator: load, run, readback

    @property
    def lines(self) -> list[str]:
        return self.transcript.splitlines()


def run_soc(config: SocConfig, flash: np.ndarray, firmware: bytes, *, windows=(),
            max_cycles: int = 20_000_000, timeout: float = 1800.0, progress=None,
            preloaded: bool = False, boot: bytes | None = None) -> SocRun:
    """`preloaded`: the simulator is built with the RAM holding `firmware` and the external
    memory `flash` from the start, as a bitstream (fpga/board_soc.py), and nothing is loaded over
    the debug bus; otherwise both are loaded over it while the CPU is held in reset, unless the
    SoC boots from flash (`config.boot_from_flash`): then a model of the SPI flash holds their
    boot image (hw/soc/boot.py; `boot` replaces it, for a test of a bad one) and the boot ROM
    loads them."""
    from hw.soc.boot import boot_image
    if preloaded and config.boot_from_flash:
        raise ValueError("a SoC that boots from flash has no memories initialised by its build")
    if config.boot_from_flash and boot is None:
        boot = boot_image(config, bytes(firmware), np.asarray(flash, np.uint8).tobytes())
    from sim.build import run_test
    from sim.soc_build import build_soc
    if preloaded:
        built = build_soc(config, bytes(firmware), np.asarray(flash, np.uint8).tobytes())
    else:
        built = build_soc(config)
    with tempfile.TemporaryDirectory(prefix="soc-run-") as folder:
        spec_path, out_path = Path(folder) / "spec.npz", Path(folder) / "out.npz"
        transcript_path = Path(folder) / "transcript.txt"
        transcript_path.write_bytes(b"")
        pause = config.region("sysctl").base + _sysctl_offset("pause")
        np.savez(spec_path, addresses=np.array([config.region("ram").base, config.region("scratchpad").base,
                                                config.region("external").base, pause], np.int64),
                 scratchpad_bytes=np.array(config.engine.scratchpad_bytes),
                 max_cycles=np.array(max_cycles), preloaded=np.array(int(preloaded)), windows=np.array(list(windows), np.int64).reshape(-1),
                 firmware=np.frombuffer(bytes(firmware), np.uint8), flash=np.asarray(flash, np.uint8),
                 boot_image=np.frombuffer(bytes(boot or b""), np.uint8),
                 boot_offset=np.array(config.boot_image_offset),
                 flash_ranges=np.array(nonzero_ranges(flash), np.int64).reshape(-1))
        finished = threading.Event()
        follower = None
        if progress is not None:
            follower = threading.Thread(target=_follow, args=(transcript_path, progress, finished), daemon=True)
            follower.start()
        began = time.perf_counter()
        try:
            run = run_test(built, "sim.soc_cocotb", timeout=timeout,
                           extra_env={SPEC_ENV: str(spec_path), SPEC_ENV + "_OUT": str(out_path),
                                      SPEC_ENV + "_TRANSCRIPT": str(transcript_path)})
        finally:
            finished.set()
            if follower is not None:
                follower.join()
        seconds = time.perf_counter() - began
        if not run.passed or not out_path.is_file():
            tail = "\n".join(run.log.splitlines()[-30:])
            raise RuntimeError(f"SoC simulation failed: {run.problems}\n{tail}")
        out = np.load(out_path)
        snapshots = [out[f"snapshot{i}"] for i in range(int(out["snapshots"]))]
        return SocRun(str(out["status"]), int(out["exit_code"]), int(out["cycles"]),
                      out["transcript"].tobytes().decode(errors="replace"), snapshots,
                      out["scratchpad"] if "scratchpad" in out else None,
                      out["flash"] if "flash" in out else None,
                      built.build_seconds, built.reused, seconds, run.log,
                      {k: run.results.get(k) for k in ("load_seconds", "run_seconds", "readback_seconds")})


def nonzero_ranges(data: np.ndarray, gap_words: int = 64) -> list[tuple[int, int]]:
    """Word-aligned byte ranges covering every non-zero byte, runs closer than `gap_words` merged.
    The simulated memories start zeroed, so only these need loading (and reading back)."""
    data = np.asarray(data, np.uint8)
    words = np.concatenate([data, np.zeros(-data.size % 4, np.uint8)]).view("<u4")
    nonzero = np.nonzero(words)[0]
    ranges = []
    for index in nonzero.tolist():
        if ranges and index - ranges[-1][1] < gap_words:
            ranges[-1][1] = index + 1
        else:
            ranges.append([index, index + 1])
    return [(4 * begin, min(4 * end, data.size)) for begin, end in ranges]


def _sysctl_offset(name: str) -> int:
    from hw.soc.registers import SYSCTL
    return SYSCTL.offset(name)


def _follow(path: Path, progress, finished: threading.Event) -> None:
    position, pending = 0, ""
    while True:
        done = finished.is_set()
        data = path.read_bytes()[position:] if path.exists() else b""
        position += len(data)
        pending += data.decode(errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            progress(line)
        if done:
            if pending:
                progress(pending)
            return
        time.sleep(0.2)


STACK = re.compile(r"^stack: (\d+) of (\d+) bytes$", re.MULTILINE)


def parse_stack(transcript: str) -> dict:
    """The soft-engine firmware's stack high-water mark (main.c, report_stack), as
    `stack_bytes_used` and `stack_bytes_free_at_start`; {} when the firmware printed none."""
    match = STACK.search(transcript)
    return {"stack_bytes_used": int(match[1]), "stack_bytes_free_at_start": int(match[2])} if match else {}


def parse_iterations(transcript: str) -> list[dict]:
    rows = []
    for match in LINE.finditer(transcript):
        k, label, loss, exponent, cycles, idle, forward, backward, sample, loss_step = match.groups()
        rows.append({"iteration": int(k), "label": int(label), "loss": float(loss), "exponent": int(exponent),
                     "cycles": int(cycles), "engine_idle_cycles": int(idle),
                     "forward_cycles": int(forward), "backward_cycles": int(backward),
                     "sample_cycles": int(sample), "loss_step_cycles": int(loss_step)})
    return rows


@dataclass
class Experiment:
    """The built-in CNN's training setup for the SoC, and its golden counterparts."""
    config: SocConfig
    model: object
    program: object
    images: list
    labels: list
    trainer: object
    flash: object                  # hw.soc.job.FlashImage
    corrupted: dict = field(default_factory=dict)
    scheme: object = None
    seed: int = 1

    def selector(self):
        """A fresh copy of the Trainer's channel selector (the same draws)."""
        from golden.scheme import ChannelSelector
        return ChannelSelector(self.model, self.scheme, "dynamic", seed=2 * self.seed + 1)

    def windows(self) -> list[tuple[str, int, int]]:
        """(what, scratchpad address, bytes) read at every pause: each updated conv's resident
        weights and parameters, the `sr` PRNG state word, the channel lists."""
        from golden.scheme import selected_count
        sizes = {address: data.size for address, data in self.program.forward.preload}
        out = []
        for name, (w_at, p_at) in self.program.forward.resident.items():
            if w_at is not None:
                out.append((f"weights {name}", w_at, int(sizes[w_at])))
            out.append((f"params {name}", p_at, int(sizes[p_at])))
        out.append(("prng", self.program.prng_addr, 4))
        for index, at in sorted((self.program.lists or {}).items()):
            k = selected_count(self.model.convs[index], self.scheme.weight_convs()[index])
            out.append((f"list {index}", at, 2 * k))
        return out


SCHEMES = ("builtin-sparse", "last-layer")
DEFAULT_SCHEME = "builtin-sparse"


def prepare(iterations: int, config: SocConfig = SIM, seed: int = 1, pause: bool = True,
            corrupt: tuple[int, str, int] | None = None, scheme_name: str = DEFAULT_SCHEME) -> Experiment:
    """`corrupt` = (forward descriptor index, field name, new value)."""
    from golden import int_ops
    from golden.builtin import builtin_model
    from golden.data import load_digits
    from golden.engine import program as isa
    from golden.engine.training import compile_training
    from golden.scheme import parse_scheme
    from golden.train import Trainer, UpdateRule
    from hw.soc.job import flash_image, selection_table

    if scheme_name not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme_name!r}; the SoC runs {', '.join(SCHEMES)}")
    model = builtin_model().with_new_head(10, seed=0)
    scheme = parse_scheme(scheme_name, model)
    data = load_digits("train")
    images = list(int_ops.quantize_images(data.images[:iterations], model))
    labels = [int(v) for v in data.labels[:iterations]]
    trainer = Trainer(model, scheme, "dynamic", UpdateRule(), seed=seed)
    program = compile_training(model, scheme, config.engine)
    flash = flash_image(config, program, model.output, model.classifier.y.scale, images, labels,
                        trainer.sr_rng.state, pause=pause, selection=selection_table(model, scheme, program),
                        select_seed=trainer.selector.rng.state)
    corrupted = {}
    if corrupt is not None:
        index, name, value = corrupt
        at = index * isa.DESCRIPTOR_WORDS * 4 + isa.FIELD_OFFSETS[name] * 4
        flash.data[at:at + 4] = np.array([value], "<i4").view(np.uint8)
        corrupted = {"index": index, "field": name, "value": value, "flash_offset": at}
    return Experiment(config, model, program, images, labels, trainer, flash, corrupted, scheme, seed)


def golden_scratchpads(exp: Experiment, iterations: int):
    """The golden executor's scratchpad after each iteration (and the loss of each), from the
    firmware's initial state: zeros, the preload, the PRNG seed."""
    from golden.engine import program as isa
    from golden.engine.executor import Machine
    program, config = exp.program, exp.config.engine
    scratchpad = program.initial_scratchpad(exp.images[0], exp.flash.job["sr_seed"])
    selector = exp.selector()
    after, losses = [], []
    for k in range(iterations):
        x_at = exp.flash.job["input_addr"]
        from golden.engine import layout
        scratchpad[x_at:x_at + exp.flash.job["input_bytes"]] = layout.activation_bytes(exp.images[k])
        program.write_selection(scratchpad, selector.select())
        for phase, base, count in (("forward", 0, len(program.forward.descriptors)),
                                   ("backward", program.backward_base, len(program.backward))):
            machine = Machine(config, program.external)
            machine.scratchpad[:] = scratchpad
            words = program.external[base:base + (count + 1) * isa.DESCRIPTOR_WORDS * 4]
            machine.run_or_raise(isa.decode(words.view("<u4")))
            scratchpad = machine.scratchpad.copy()
            if phase == "forward":
                losses.append(program.loss_step(scratchpad, exp.model, exp.labels[k]))
        after.append(scratchpad.copy())
    return after, losses


def check_iterations(iterations: int) -> None:
    """The iteration counts a SoC run takes: one training sample each, in the flash image."""
    if not 1 <= iterations <= 200:
        raise ValueError(f"--iterations must be between 1 and 200, not {iterations}")


def soc_training_run(iterations: int = 3, config: SocConfig = SIM, seed: int = 1, pause: bool = True,
                     progress=None, scheme_name: str = DEFAULT_SCHEME, preloaded: bool = False,
                     soft_engine: bool = False) -> dict:
    """Train on the SoC and compare with the golden model; returns the JSON-ready result.
    `preloaded`: firmware and flash image are the simulator's initial memory contents, as in a
    bitstream (run_soc). `soft_engine`: the firmware runs the programs on the CPU (its forward
    and backward cycles are then the CPU's) and the engine idles."""
    from golden.engine import layout
    from golden.engine.cycles import end_cycles, program_cycles
    from hw.soc.firmware import build_firmware

    check_iterations(iterations)
    soft_engine = soft_engine or not config.engine_in_hardware
    exp = prepare(iterations, config, seed, pause, scheme_name=scheme_name)
    windows = exp.windows()
    firmware = build_firmware(config, soft_engine=soft_engine)
    run = run_soc(config, exp.flash.data, firmware.binary,
                  windows=[(at, size) for _, at, size in windows] if pause else (), progress=progress,
                  preloaded=preloaded,
                  # the CPU's own run of a program takes 500-700 times the engine's cycles
                  **(dict(max_cycles=1_000_000_000, timeout=6 * 3600.0) if soft_engine else {}))
    rows = parse_iterations(run.transcript)
    golden_after, golden_losses = golden_scratchpads(exp, iterations)
    predicted_forward = program_cycles(exp.program.forward.descriptors, config.engine)
    predicted_backward = program_cycles(exp.program.backward, config.engine)
    nodes = {node.name: node for node in exp.trainer.model.nodes}
    selector = exp.selector()
    out = []
    for k in range(iterations):
        exp.trainer.step(exp.images[k][None], exp.labels[k])
        selection = selector.select()
        row = rows[k] if k < len(rows) else None
        entry = {"iteration": k, "label": exp.labels[k], "uart_line": row is not None}
        first = k * len(windows)
        if pause and first + len(windows) <= len(run.snapshots):
            checks = {"weights": [], "params": [], "prng": [], "list": []}
            mismatches = []
            for j, (what, at, size) in enumerate(windows):
                got = np.asarray(run.snapshots[first + j], np.uint8)
                kind, _, name = what.partition(" ")
                if kind == "weights":
                    node = nodes[name]
                    same = np.array_equal(got, layout.weight_bytes(node.weight, node.depthwise))
                elif kind == "params":      # the bias words, and the whole window as the golden executor's
                    node = nodes[name]
                    same = np.array_equal(got[:4 * node.bias.size].view("<i4"), node.bias) and \
                        np.array_equal(got, golden_after[k][at:at + size])
                elif kind == "prng":
                    same = int(got.view("<u4")[0]) == exp.trainer.sr_rng.state
                else:
                    same = np.array_equal(got.view("<u2"), np.asarray(selection[int(name)], np.int64))
                checks[kind].append(bool(same))
                if not same:
                    mismatches.append(what)
            entry["weights_equal_trainer"] = all(checks["weights"])
            entry["bias_equal_trainer"] = all(checks["params"])
            entry["prng_equal_trainer"] = all(checks["prng"])
            entry["lists_equal_selector"] = all(checks["list"])
            entry["compared"] = [what for what, _, _ in windows]
            entry["mismatches"] = mismatches
        if row:
            entry.update({key: row[key] for key in ("loss", "exponent", "cycles", "engine_idle_cycles",
                                                    "forward_cycles", "backward_cycles", "sample_cycles",
                                                    "loss_step_cycles")})
            entry["golden_loss"] = golden_losses[k]
            entry["engine_idle_fraction"] = round(row["engine_idle_cycles"] / row["cycles"], 4)
        entry["bit_exact"] = bool(row is not None and not entry.get("mismatches")
                                  and abs(row["loss"] - golden_losses[k]) < 2e-3)
        out.append(entry)
    final_exact = run.scratchpad is not None and bool(np.array_equal(run.scratchpad, golden_after[-1]))
    flash_unchanged = run.flash is not None and bool(np.array_equal(run.flash, exp.flash.data))
    if out:
        out[-1]["bit_exact"] = out[-1]["bit_exact"] and final_exact
    return {"model": exp.model.name, "scheme": scheme_name, "cpu": cpu_name(config.cpu_variant),
            "soft_engine": soft_engine, "engine_config": dict(config.engine.__dict__), "ram_bytes": config.ram_bytes,
            "firmware_bytes": len(firmware.binary), "status": run.status, "exit_code": run.exit_code,
            "total_cycles": run.cycles, "predicted_forward_cycles": predicted_forward,
            "predicted_backward_cycles": predicted_backward, "end_cycles": end_cycles(config.engine),
            "final_scratchpad_equals_golden": final_exact, "flash_unchanged": flash_unchanged,
            "build_seconds": round(run.build_seconds, 1), "build_reused": run.build_reused,
            "run_seconds": round(run.run_seconds, 1),
            "simulator_seconds": {k: round(v, 1) for k, v in run.timings.items() if v is not None},
            **parse_stack(run.transcript), "uart": run.lines, "iterations": out,
            "bit_exact": bool(out) and all(i["bit_exact"] for i in out) and len(rows) == iterations}
