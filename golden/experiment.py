"""Issue 3's experiment rows: transfer learning with MIT's int8 models, accuracy vs memory.

A `Row` fixes what is trained (model, update scheme, selection policy, QAS, rounding, learning
rate); `run_row` trains it for one seed under a protocol (epochs, number of training and test
images, resolution) and returns a JSON-ready dict: accuracy, planned peak training memory
(golden/memory.py), updated-weight fraction, wall time and the command that reruns it.

Training is exactly `sparsebp train`'s (same head initialisation, same image order, same
Trainer seeds, same evaluation), so a row's accuracy equals what `sparsebp train` prints for
the same arguments. The difference is speed: the frozen prefix (every node in front of the
scheme's earliest updated conv) is computed once per image and cached on disk
(golden/prefix_cache.py); each training step and the evaluation start forward at that cut.

`summarize(paths)` groups result files by row and protocol (mean and spread over seeds) and
`markdown_table` / `plot_accuracy_vs_memory` turn that into docs/results.md's table and figure.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import prefix_cache
from .fixedpoint import MULTIPLIER_LIMIT, MultiplierVector
from .graph import Conv, Model
from .scheme import parse_scheme
from .train import Trainer, UpdateRule, update_factors

MODEL_FILES = {
    "mbv2": "models/tiny-training/mbv2-w0.35.pkl",
    "mcunet": "models/tiny-training/mcunet-5fps.pkl",
    "proxyless": "models/tiny-training/proxyless-w0.3.pkl",
}
CIFAR10_FILE = "data/cifar10-jpeg.tar.gz"

# Schemes of ours, written in parse_scheme's 'bias=K;w=IDX:RATIO,...' form.
SCHEMES = {
    # Li & Chang's operating point on our MobileNetV2-w0.35: about 2% of conv weights per
    # iteration (4,890 of 238,688 = 2.05%), spread over the pw1 convs of blocks 9-13, b13.pw2 and
    # b16.dw at ratio 1/8, biases of the last 25 convs; planned peak 183.6 KiB at 128x128.
    "mbv2-dyn2pct": "bias=25;w=27:0.125,30:0.125,33:0.125,36:0.125,39:0.125,41:0.125,49:0.125",
    # MIT's CIFAR-10 setting for MCUNet (86.9% int8 SGD-M + QAS): the last two blocks, fully.
    "mcunet-last2": "bias=6;w=36:1,37:1,38:1,39:1,40:1,41:1",
    # The same for MobileNetV2-w0.35: blocks 15 and 16, fully (the largest update run here).
    "mbv2-last2": "bias=6;w=45:1,46:1,47:1,48:1,49:1,50:1",
    # About 2% of MCUNet's conv weights (9,288 of 463,216 = 2.01%) in the layers of mcunet-50kb
    # and their neighbours (b8.pw1, b8.dw, b8.pw2, b9.pw1, b10.pw1) at ratios 1/4 and 1/2,
    # biases of the last 20 convs.
    "mcunet-dyn2pct": "bias=20;w=24:0.25,25:0.5,26:0.25,27:0.25,30:0.25",
}


def bounded_update_multipliers(node: Conv, rule: UpdateRule):
    """update_multipliers (golden/train.py) with out-of-range channels frozen.

    MCUNet's file has "dead" channels (s_w = 3.9e-9, numerics 4.2) whose QAS bias multiplier
    lr / (s_x s_w) exceeds the 2^29 a fixed-point multiplier can hold, so golden/train.py
    refuses to train such a conv at all. Here such a channel gets the multiplier (0, 1), i.e.
    a zero update: the channel is frozen. Every other channel's multiplier is exactly
    golden/train.py's. Returns (U, V, number of frozen entries of U and of V).
    """
    u, v = update_factors(node, rule)
    frozen = (int((u >= MULTIPLIER_LIMIT).sum()), int((v >= MULTIPLIER_LIMIT).sum()))
    return (MultiplierVector.from_real(np.where(u >= MULTIPLIER_LIMIT, 0.0, u)),
            MultiplierVector.from_real(np.where(v >= MULTIPLIER_LIMIT, 0.0, v)), frozen)


class ExperimentTrainer(Trainer):
    """golden/train.py's Trainer, except that update multipliers out of range freeze their channel.

    For models without such channels (MobileNetV2-w0.35, the built-in CNN) it is the Trainer.
    `frozen_channels` counts the frozen (weight, bias) entries of the convs the scheme updates.
    """

    def set_rule(self, rule: UpdateRule) -> None:
        self.rule = rule
        self.multipliers, self.frozen_channels = {}, [0, 0]
        updated = set(self.bias_nodes) | set(self.weight_index)
        # Only convs on the backward path (from the earliest updated one on) use multipliers.
        for node in self.model.nodes[self.start:]:
            if isinstance(node, Conv):
                U, V, (fu, fv) = bounded_update_multipliers(node, rule)
                self.multipliers[id(node)] = (U, V)
                if node in updated:
                    self.frozen_channels[0] += fu if node in self.weight_index else 0
                    self.frozen_channels[1] += fv if node in self.bias_nodes else 0


@dataclass(frozen=True)
class Row:
    """What is trained; the protocol (seed, epochs, images, resolution) is given to run_row."""
    name: str
    method: str                  # the table's label
    model: str                   # a key of MODEL_FILES, 'builtin', or a model path
    scheme: str                  # a preset, a key of SCHEMES, or anything parse_scheme takes
    policy: str = "dynamic"
    qas: bool = True
    rounding: str = "stochastic"
    lr: float = 0.002            # peak of the cosine schedule; see docs/results.md
    headline: bool = False       # run with 3 seeds


def _rows() -> list[Row]:
    rows = []
    for m, bias_k, presets in (("mbv2", 16, ("mbv2-49kb", "mbv2-99kb")),
                               ("mcunet", 20, ("mcunet-50kb",))):
        rows.append(Row(f"{m}-last-layer", "last layer only", m, "last-layer", "static-first", headline=True))
        best = {"mbv2": 0.02, "mcunet": 0.01}[m]      # the head alone prefers a larger lr
        rows.append(Row(f"{m}-last-layer-lr{best:g}", f"last layer only, lr {best:g}", m, "last-layer",
                        "static-first", lr=best, headline=True))
        rows.append(Row(f"{m}-bias{bias_k}", f"bias only (last {bias_k}) + head", m, f"bias-{bias_k}",
                        "static-first", headline=True))
        for p in presets:
            rows.append(Row(f"{p}-static", f"MIT sparse {p[-4:]}, static first-k", m, p, "static-first",
                            headline=True))
            rows.append(Row(f"{p}-magnitude", f"MIT sparse {p[-4:]}, static top-k magnitude", m, p,
                            "static-magnitude"))
            rows.append(Row(f"{p}-dynamic", f"sparse {p[-4:]}, dynamic selection", m, p, "dynamic",
                            headline=True))
        rows.append(Row(f"{m}-dyn2pct", "~2% of conv weights, dynamic", m, f"{m}-dyn2pct", "dynamic",
                        headline=True))
        rows.append(Row(f"{m}-dyn2pct-static", "~2% of conv weights, static first-k", m, f"{m}-dyn2pct",
                        "static-first", headline=True))
        rows.append(Row(f"{m}-last2", "last two blocks, full", m, f"{m}-last2", "dynamic", headline=True))
    # Ablations: QAS, rounding.
    rows += [
        Row("mcunet-last2-noqas", "last two blocks, no QAS", "mcunet", "mcunet-last2", "dynamic", qas=False),
        Row("mcunet-last2-truncate", "last two blocks, truncation", "mcunet", "mcunet-last2", "dynamic",
            rounding="truncate"),
        Row("mbv2-49kb-dynamic-noqas", "sparse 49kb, dynamic, no QAS", "mbv2", "mbv2-49kb", "dynamic", qas=False),
        Row("mbv2-49kb-dynamic-truncate", "sparse 49kb, dynamic, truncation", "mbv2", "mbv2-49kb", "dynamic",
            rounding="truncate"),
        Row("mbv2-49kb-static-truncate", "MIT sparse 49kb, static first-k, truncation (MIT's device)",
            "mbv2", "mbv2-49kb", "static-first", rounding="truncate"),
        Row("mbv2-dyn2pct-truncate", "~2% dynamic, truncation", "mbv2", "mbv2-dyn2pct", "dynamic",
            rounding="truncate"),
        Row("mcunet-full", "full update (all convs)", "mcunet", "full", "dynamic"),
        Row("mbv2-full", "full update (all convs)", "mbv2", "full", "dynamic"),
        # A tiny row for tests and smoke runs: the built-in digits CNN.
        Row("builtin-sparse", "built-in CNN, sparse", "builtin", "builtin-sparse", "dynamic", lr=0.05),
    ]
    return rows


ROWS: dict[str, Row] = {r.name: r for r in _rows()}


SCHEDULES = ("cosine", "constant")
LR_UPDATE_EVERY = 50                     # steps between learning-rate changes (host recompiles U, V)


@dataclass(frozen=True)
class Protocol:
    epochs: int = 1
    train_images: int | None = 5000      # None: the whole split
    test_images: int | None = 2000
    resolution: int | None = 128         # None: the model's own
    schedule: str = "cosine"             # lr * (1 + cos(pi * t / T)) / 2, t = step, T = all steps

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")


def scheduled_lr(lr: float, schedule: str, step: int, total: int) -> float:
    """The learning rate from `step` on (changed every LR_UPDATE_EVERY steps)."""
    if schedule == "constant" or total <= 0:
        return lr
    import math
    t = (step // LR_UPDATE_EVERY) * LR_UPDATE_EVERY
    return max(lr * 0.5 * (1 + math.cos(math.pi * t / total)), lr * 1e-3)


REDUCED = Protocol()
FULL = Protocol(epochs=1, train_images=None, test_images=None, resolution=128, schedule="cosine")


def shared_dir(shared=None) -> Path:
    if shared is not None:
        return Path(shared)
    if "SPARSEBP_SHARED" in os.environ:
        return Path(os.environ["SPARSEBP_SHARED"])
    return Path(__file__).resolve().parent.parent.parent / "shared"


def resolve_model(spec: str, shared=None) -> str:
    if spec in MODEL_FILES:
        path = shared_dir(shared) / MODEL_FILES[spec]
        if not path.exists():
            raise ValueError(f"{path} is absent (pass --shared or set SPARSEBP_SHARED)")
        return str(path)
    return spec


def default_data(row: Row, shared=None) -> str:
    if row.model == "builtin":
        return "digits"
    path = shared_dir(shared) / CIFAR10_FILE
    if not path.exists():
        raise ValueError(f"{path} is absent (pass --data cifar10:PATH or --shared)")
    return f"cifar10:{path}"


def resolve_scheme(text: str, model: Model):
    return parse_scheme(SCHEMES.get(text, text), model)


def _file_digest(spec: str) -> str | None:
    path = Path(spec)
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def command_for(row: Row, seed: int, protocol: Protocol, json_path=None, free_form=False) -> str:
    """The `sparsebp experiment` command line that reruns this row with this seed and protocol."""
    if free_form or row.name not in ROWS or ROWS[row.name] != row:
        parts = ["sparsebp", "experiment", "--model", row.model, "--scheme", SCHEMES.get(row.scheme, row.scheme),
                 "--policy", row.policy, "--rounding", row.rounding, "--lr", repr(row.lr)]
        if not row.qas:
            parts.append("--no-qas")
    else:
        parts = ["sparsebp", "experiment", "--row", row.name]
        if row.lr != ROWS[row.name].lr:
            parts += ["--lr", repr(row.lr)]
    parts += ["--seed", str(seed), "--epochs", str(protocol.epochs)]
    parts += ["--limit", str(protocol.train_images)] if protocol.train_images else ["--limit", "all"]
    parts += ["--test-limit", str(protocol.test_images)] if protocol.test_images else ["--test-limit", "all"]
    if protocol.resolution:
        parts += ["--resolution", str(protocol.resolution)]
    if protocol.schedule != "cosine":
        parts += ["--schedule", protocol.schedule]
    if json_path is not None:
        parts += ["--json", str(json_path)]
    return " ".join(shlex.quote(p) for p in parts)


def _progress(done: int, total: int, start: float, loss: float) -> None:
    if done == total or done % max(1, total // 10) == 0:
        rate = done / max(time.time() - start, 1e-9)
        print(f"  {done}/{total} steps  {rate:.1f} steps/s  loss {loss:.3f}", file=sys.stderr, flush=True)


# Room enough for any scheme of MIT's models, so a scheme beyond 256 KB still gets its figure.
ROOMY_ENGINE = {"scratchpad_bytes": 2 ** 24, "external_bytes": 2 ** 26}


def engine_peak_bytes(model: Model, scheme, rule: UpdateRule, resolution: int) -> int | None:
    """Peak scratchpad bytes of one training iteration as the engine compiler builds it
    (golden/engine/training.py: the default engine, the image in external memory, the stripe
    rows of the smallest peak): what the hardware needs, where `plan_memory` is the planner's
    estimate. Compiled for a copy of the default configuration with a 16 MiB scratchpad, so
    schemes beyond 256 KB get a figure too; the stripe choice depends only on the peaks, so a
    scheme that fits 256 KB gets the same program and peak there. None when the compiler cannot
    build the iteration (or the model's input is not `resolution`)."""
    import dataclasses

    from .engine.compiler import CompileError
    from .engine.config import DEFAULT
    from .engine.training import compile_training
    if model.input_shape[1] != resolution:
        return None
    try:
        program = compile_training(model, scheme, dataclasses.replace(DEFAULT, **ROOMY_ENGINE), rule,
                                   image_external=True)
    except CompileError:
        return None
    return program.forward.peak_bytes


def run_row(row: Row, seed: int = 1, protocol: Protocol = REDUCED, data: str | None = None,
            shared=None, cache_dir=None, use_cache: bool = True, json_path=None,
            progress: bool = True) -> dict:
    """Train one row for one seed; returns the JSON-ready result.

    `use_cache=False` keeps the prefix outputs in memory only (nothing written to disk).
    """
    from golden.data import load_dataset
    from golden.memory import plan_memory
    from sparsebp.runs import load_model_spec

    wall = time.time()
    model_spec = resolve_model(row.model, shared)
    data = data or default_data(row, shared)
    base = load_model_spec(model_spec)
    train = load_dataset(data, "train", limit=protocol.train_images)
    test = load_dataset(data, "test", limit=protocol.test_images)
    resolution = protocol.resolution or base.input_shape[1]
    model = base.with_new_head(len(train.class_names), seed=seed, class_names=train.class_names)
    scheme = resolve_scheme(row.scheme, model)
    rule = UpdateRule(lr=row.lr, qas=row.qas, rounding=row.rounding)
    trainer = ExperimentTrainer(model, scheme, row.policy, rule, seed=seed)
    cut = prefix_cache.scheme_cut(model, scheme)
    # The input codes themselves (cut 0, e.g. a full update) are not worth a disk file.
    write = use_cache and cut > 0
    t0 = time.time()
    train_cache = prefix_cache.load_or_build(model, train.images, train.labels, "train", cut, resolution,
                                             cache_dir, write=write, progress=progress)
    test_cache = prefix_cache.load_or_build(model, test.images, test.labels, "test", cut, resolution,
                                            cache_dir, write=write, progress=progress)
    cache_seconds = time.time() - t0

    def accuracy(m: Model) -> float:
        if not len(test_cache):
            return 0.0
        return float((prefix_cache.predict_from(m, test_cache) == test.labels).mean())

    before = accuracy(model)
    if progress:
        print(f"{row.name} seed {seed}: {model.name}, scheme {scheme.name}, policy {row.policy}, "
              f"QAS {'on' if row.qas else 'off'}, rounding {row.rounding}, lr {row.lr}; "
              f"{len(train)} training images at {resolution}x{resolution}, forward from "
              f"{model.nodes[cut].name} (node {cut}); accuracy before {before:.4f}", file=sys.stderr, flush=True)
    order_rng = np.random.default_rng(seed)            # as sparsebp train (sparsebp/runs.py)
    epoch_losses = []
    total, done = protocol.epochs * len(train), 0
    t1 = time.time()
    for _ in range(protocol.epochs):
        losses = []
        for i in order_rng.permutation(len(train)):
            if protocol.schedule != "constant" and done % LR_UPDATE_EVERY == 0:
                trainer.set_rule(UpdateRule(lr=scheduled_lr(row.lr, protocol.schedule, done, total),
                                            qas=row.qas, rounding=row.rounding))
            losses.append(trainer.step(train_cache.sample(int(i)), int(train.labels[i])).loss)
            done += 1
            if progress:
                _progress(done, total, t1, float(np.mean(losses[-200:])))
        epoch_losses.append(float(np.mean(losses)) if losses else 0.0)
    train_seconds = time.time() - t1
    t2 = time.time()
    after = accuracy(trainer.model)
    eval_seconds = time.time() - t2
    trained = trainer.model
    conv_weights = sum(n.weight.size for n in trained.convs)
    all_weights = conv_weights + trained.classifier.weight.size
    updated = scheme.updated_weight_count(trained)
    updated_conv = updated - (trained.classifier.weight.size if scheme.classifier else 0)
    plan = plan_memory(trained, scheme, resolution=resolution)
    engine_peak = engine_peak_bytes(trained, scheme, rule, resolution)
    result = {
        "row": row.name, "method": row.method, "model": model.name, "model_file": model_spec,
        "model_sha256": _file_digest(model_spec), "data": data,
        "scheme": scheme.name, "scheme_key": row.scheme, "policy": row.policy, "qas": row.qas,
        "rounding": row.rounding, "lr": row.lr, "seed": seed, "epochs": protocol.epochs,
        "train_images": len(train), "test_images": len(test), "resolution": resolution,
        "accuracy_before": before, "accuracy": after, "epoch_losses": epoch_losses,
        "planned_peak_bytes": plan.peak_bytes, "planned_peak_at": plan.peak_at,
        "backward_peak_bytes": plan.backward_peak, "engine_peak_bytes": engine_peak,
        "updated_weights": updated, "updated_weight_fraction": updated / all_weights,
        "updated_conv_weight_fraction": updated_conv / conv_weights,
        "frozen_out_of_range": {"weight_channels": trainer.frozen_channels[0],
                                "bias_channels": trainer.frozen_channels[1]},
        "cut_node": model.nodes[cut].name, "cut_position": cut,
        "cut_tensors": prefix_cache.cut_tensors(model, cut),
        "prefix_cache_seconds": round(cache_seconds, 2),
        "prefix_computed_seconds": round(train_cache.built_seconds + test_cache.built_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "step_ms": round(1000 * train_seconds / max(total, 1), 3),
        "eval_seconds": round(eval_seconds, 2), "wall_seconds": round(time.time() - wall, 2),
        "protocol": asdict(protocol),
        "command": command_for(row, seed, protocol, json_path),
    }
    if progress:
        print(f"{row.name} seed {seed}: accuracy {after:.4f} (before {before:.4f}); planned peak "
              f"{plan.peak_bytes:,} B; {train_seconds:.0f} s training ({result['step_ms']:.1f} ms/step)",
              file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------------- summaries

@dataclass
class Summary:
    row: str
    method: str
    model: str
    scheme: str
    policy: str
    qas: bool
    rounding: str
    protocol: dict
    planned_peak_bytes: int
    updated_conv_weight_fraction: float
    engine_peak_bytes: int | None = None     # the compiled iteration's peak (engine_peak_bytes)
    accuracies: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    wall_seconds: list[float] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def spread(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0


def summarize(paths) -> list[Summary]:
    """Group result JSON files by (row, protocol), seeds ascending; ordered by model, then peak."""
    groups: dict[tuple, Summary] = {}
    results = []
    for path in paths:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a result file ({exc})") from None
    results.sort(key=lambda r: (r.get("row", ""), r.get("seed", 0)))
    for r in results:
        key = (r["row"], r["scheme"], r["policy"], r["qas"], r["rounding"], r["lr"],
               json.dumps(r["protocol"], sort_keys=True))
        s = groups.get(key)
        if s is None:
            s = groups[key] = Summary(r["row"], r["method"], r["model"], r["scheme_key"], r["policy"],
                                      r["qas"], r["rounding"], r["protocol"], r["planned_peak_bytes"],
                                      r["updated_conv_weight_fraction"], r.get("engine_peak_bytes"))
        s.accuracies.append(r["accuracy"])
        s.seeds.append(r["seed"])
        s.step_ms.append(r["step_ms"])
        s.wall_seconds.append(r["wall_seconds"])
        s.commands.append(r["command"])
    return sorted(groups.values(), key=lambda s: (s.model, s.planned_peak_bytes, s.row))


def markdown_table(summaries: list[Summary]) -> str:
    lines = ["| row | model | method | policy | QAS | rounding | planned peak (KiB) | engine peak (KiB) "
             "| conv weights updated / iter | accuracy (mean ± sd) | seeds | ms/step | command (first seed) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        acc = f"{100 * s.mean:.2f} ± {100 * s.spread:.2f}" if len(s.accuracies) > 1 else f"{100 * s.mean:.2f}"
        lines.append(
            f"| {s.row} | {s.model} | {s.method} | {s.policy} | {'on' if s.qas else 'off'} | {s.rounding} "
            f"| {s.planned_peak_bytes / 1024:.1f} "
            f"| {'-' if s.engine_peak_bytes is None else f'{s.engine_peak_bytes / 1024:.1f}'} "
            f"| {100 * s.updated_conv_weight_fraction:.2f}% | {acc} "
            f"| {','.join(map(str, s.seeds))} | {np.mean(s.step_ms):.1f} | `{s.commands[0]}` |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_memory(summaries: list[Summary], out, title=None) -> None:
    """Accuracy (mean, error bar = sd over seeds) against peak memory, one marker per row: the
    compiled iteration's peak when every row has one (engine_peak_bytes), else the planner's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engine = all(s.engine_peak_bytes is not None for s in summaries)

    def peak_kib(s: Summary) -> float:
        return (s.engine_peak_bytes if engine else s.planned_peak_bytes) / 1024

    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = {"mobilenetv2": "tab:blue", "mbv2": "tab:blue", "mcunet": "tab:orange"}
    markers = {"dynamic": "o", "static-first": "s", "static-magnitude": "D"}
    for s in summaries:
        colour = next((c for k, c in colours.items() if k in s.model.lower()), "tab:gray")
        filled = s.qas and s.rounding == "stochastic"
        ax.errorbar(peak_kib(s), 100 * s.mean, yerr=100 * s.spread, fmt=markers.get(s.policy, "o"),
                    color=colour, mfc=colour if filled else "white", ms=7, capsize=3)
        ax.annotate(s.row, (peak_kib(s), 100 * s.mean), textcoords="offset points",
                    xytext=(5, 3), fontsize=6.5)
    ax.axvline(256, color="k", ls=":", lw=1)
    ax.text(258, ax.get_ylim()[0] + 0.5, "256 KiB", fontsize=8)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter
    ax.xaxis.set_major_locator(FixedLocator([32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("peak training memory of the compiled iteration (KiB, golden/engine, log scale)" if engine
                  else "planned peak training memory (KiB, golden/memory.py, log scale)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title(title or "Accuracy vs peak training memory (reduced protocol)")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="tab:blue", marker="o", ls="", label="MobileNetV2-w0.35"),
               Line2D([], [], color="tab:orange", marker="o", ls="", label="MCUNet-5fps"),
               Line2D([], [], color="k", marker="o", ls="", label="dynamic selection"),
               Line2D([], [], color="k", marker="s", ls="", label="static first-k"),
               Line2D([], [], color="k", marker="D", ls="", label="static magnitude"),
               Line2D([], [], color="k", marker="o", mfc="white", ls="", label="no QAS or truncation")]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
