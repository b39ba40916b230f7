"""What the CLI's subcommands do, as functions returning JSON-ready dicts.

Kept apart from argument parsing so tests and scripts can call them directly. Long work shows
progress on stderr; results are printed as short human-readable lines on stdout.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from golden.graph import Model
from golden.int_ops import predict, quantize_images
from golden.scheme import parse_scheme
from golden.train import Trainer, UpdateRule


def load_model_spec(spec: str) -> Model:
    """'builtin', an MIT pickle-in-zip (.pkl), or a sparsebp .npz model."""
    if spec == "builtin":
        from golden.builtin import builtin_model
        return builtin_model()
    path = Path(spec)
    if path.suffix == ".npz":
        from golden.model_io import load_model
        return load_model(path)
    if path.suffix == ".pkl":
        from golden.mit_model import load_mit_model
        return load_mit_model(path)
    raise ValueError(f"unknown model {spec!r}: use 'builtin', an MIT .pkl file or a sparsebp .npz file")


def load_data(spec: str, split: str, model: Model, limit=None, resolution=None):
    """Dataset resized to the model's input (or `resolution`), and its int8 input codes."""
    from golden.data import load_dataset
    data = load_dataset(spec, split, limit=limit)
    size = resolution or model.input_shape[1]
    if data.images.shape[1] != size:
        data = data.resized(size)
    return data, quantize_images(data.images, model)


def accuracy(model: Model, x_q, labels) -> float:
    return float((predict(model, x_q) == labels).mean()) if len(labels) else 0.0


def _progress(done: int, total: int, start: float, loss: float) -> None:
    """A live line on a terminal; ten plain lines per run in a log."""
    tty = sys.stderr.isatty()
    if not (tty or done == total or done % max(1, total // 10) == 0):
        return
    rate = done / max(time.time() - start, 1e-9)
    line = f"  {done}/{total} steps  {rate:.0f} steps/s  loss {loss:.3f}"
    if tty:
        print(f"\r{line}   ", end="\n" if done == total else "", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def planned_peak(model: Model, scheme, resolution=None) -> int | None:
    try:
        from golden.memory import plan_memory
    except ImportError:
        return None
    return plan_memory(model, scheme, resolution=resolution).peak_bytes


def train_run(model_spec, data_spec, scheme_name, policy, epochs, seed, lr, rounding, qas,
              new_head=True, limit=None, test_limit=None, resolution=None, out=None) -> dict:
    model = load_model_spec(model_spec)
    train, x_train = load_data(data_spec, "train", model, limit, resolution)
    test, x_test = load_data(data_spec, "test", model, test_limit, resolution)
    if new_head:
        model = model.with_new_head(len(train.class_names), seed=seed, class_names=train.class_names)
    elif model.num_classes < int(train.labels.max()) + 1:
        raise ValueError(f"{model.name} has {model.num_classes} classes, the data has more; drop --keep-head")
    scheme = parse_scheme(scheme_name, model)
    rule = UpdateRule(lr=lr, qas=qas, rounding=rounding)
    trainer = Trainer(model, scheme, policy, rule, seed=seed)
    before = accuracy(model, x_test, test.labels)
    print(f"{model.name}: {len(train)} training images, scheme {scheme.name}, policy {policy}, "
          f"rounding {rounding}, QAS {'on' if qas else 'off'}; test accuracy before: {before:.3f}")
    order_rng = np.random.default_rng(seed)
    epoch_losses = []
    start = time.time()
    total = epochs * len(train)
    done = 0
    for epoch in range(epochs):
        losses = []
        for i in order_rng.permutation(len(train)):
            losses.append(trainer.step(x_train[i : i + 1], int(train.labels[i])).loss)
            done += 1
            _progress(done, total, start, float(np.mean(losses[-100:])))
        epoch_losses.append(float(np.mean(losses)))
        print(f"epoch {epoch + 1}/{epochs}: mean loss {epoch_losses[-1]:.4f}")
    train_seconds = time.time() - start
    after = accuracy(trainer.model, x_test, test.labels)
    print(f"test accuracy after: {after:.3f}")
    total_weights = sum(n.weight.size for n in trainer.model.convs) + trainer.model.classifier.weight.size
    if out is not None:
        from golden.model_io import save_model
        save_model(trainer.model, out)
    return {
        "model": model.name, "data": data_spec, "scheme": scheme.name, "policy": policy,
        "epochs": epochs, "seed": seed, "lr": lr, "rounding": rounding, "qas": qas,
        "train_images": len(train), "test_images": len(test),
        "accuracy_before": before, "accuracy": after, "epoch_losses": epoch_losses,
        "updated_weight_fraction": scheme.updated_weight_count(trainer.model) / total_weights,
        "planned_peak_bytes": planned_peak(trainer.model, scheme, resolution),
        "train_seconds": round(train_seconds, 2),
    }


def eval_run(model_spec, data_spec, split, limit, resolution) -> dict:
    model = load_model_spec(model_spec)
    data, x_q = load_data(data_spec, split, model, limit, resolution)
    predictions = np.concatenate([predict(model, x_q[s : s + 64]) for s in range(0, len(x_q), 64)]) \
        if len(x_q) else np.zeros(0, np.int64)
    acc = float((predictions == data.labels).mean()) if len(x_q) else 0.0
    print(f"{model.name} on {data_spec} {split} ({len(data)} images): accuracy {acc:.4f}"
          + ("  (model classes differ from the data's; accuracy is not meaningful)"
             if model.num_classes != len(data.class_names) else ""))
    return {"model": model.name, "data": data_spec, "split": split, "images": len(data),
            "accuracy": acc, "predictions": predictions.astype(int).tolist()}


def plan_run(model_spec, scheme_name, resolution, classes=None) -> dict:
    """`classes`: plan with a fresh head of that many classes (what train and bench run), not
    the model's own (MIT's models carry ImageNet's 1000, whose weights dominate the peak)."""
    from golden.memory import format_plan, plan_memory
    model = load_model_spec(model_spec)
    if classes:
        model = model.with_new_head(classes, seed=0)
    scheme = parse_scheme(scheme_name, model)
    rows = {}
    for reorder in (True, False):
        for striped in (True, False):
            plan = plan_memory(model, scheme, resolution=resolution, reorder=reorder, striped=striped)
            rows[f"reorder={reorder},striped={striped}"] = plan
    best = rows["reorder=True,striped=True"]
    # what the engine's compiler allocates (docs/memory.md "Engine rules"): a bound on the
    # compiled iteration's peak, within 1% of it on MIT's presets
    engine = plan_memory(model, scheme, resolution=resolution, rules="engine")
    print(format_plan(best))
    for key, plan in rows.items():
        print(f"{key:32s} peak {plan.peak_bytes:>10,} bytes at {plan.peak_at}")
    print(f"{'engine rules (the compiler)':32s} peak {engine.peak_bytes:>10,} bytes at {engine.peak_at}")
    head = model.classifier.out_channels
    print(f"head: {head} classes" + ("" if classes else " (the model's own; --classes N for a fresh head)"))
    return {"model": model.name, "scheme": scheme.name, "resolution": resolution or model.input_shape[1],
            "classes": head,
            "planned_peak_bytes": best.peak_bytes, "engine_rules_peak_bytes": engine.peak_bytes,
            "engine_rules_peak_at": engine.peak_at,
            "variants": {k: {"peak_bytes": p.peak_bytes, "peak_at": p.peak_at, "breakdown": p.breakdown}
                         for k, p in rows.items()}}


def requant_run(model_spec, data_spec, limit) -> dict:
    from golden.agreement import requant_agreement
    model = load_model_spec(model_spec)
    if data_spec:
        _, x_q = load_data(data_spec, "test", model, limit)
    else:
        rng = np.random.default_rng(0)
        c, h, w = model.input_shape
        x_q = quantize_images(rng.integers(0, 256, (limit, h, w, c), dtype=np.uint8), model)
    result = requant_agreement(model, x_q)
    print({k: v for k, v in result.items() if not isinstance(v, (list, dict))})
    return result
