"""Disk cache of the frozen prefix's int8 outputs, so training can start forward at the cut.

Layers in front of the earliest updated conv never change during training (an update scheme
freezes them), so their int8 outputs depend only on the model's frozen weights and the image.
`load_or_build` computes them once per image, in batches, and keeps them on disk; training
(`Trainer.step` with a dict of tensors) and evaluation (`predict_from`) then start at the cut.
The integer forward is exact whatever the batch size, so training from the cache is
bit-identical to training from the images (tests/test_experiment.py checks it).

The cut is a node position `p` of `model.nodes`: nodes `0..p-1` form the prefix, and the cache
holds every tensor they produce that a node at `p` or later reads (`cut_tensors`), e.g. a block
input still needed by a skip Add. Position 0 caches the input codes themselves.

Files live in `<cache_dir>/prefix-v1/<model digest>-r<resolution>-<split>-<data digest>/cut<p>.npz`
(cache_dir defaults to $SPARSEBP_CACHE, else ~/.cache/sparsebp). The model digest covers every
node but the classifier (names, weights, biases, scales, quantization), so a fresh head shares
the cache and any other change misses it; the data digest covers the images (before resizing)
and labels. A cut not yet on disk is computed from the latest cached cut in front of it when
there is one, else from the images. Stale files are never deleted automatically.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import int_ops
from .graph import Add, AvgPool, Conv, INPUT, Model, node_inputs

CACHE_VERSION = "prefix-v1"


def cut_tensors(model: Model, position: int) -> list[str]:
    """Names of the tensors produced before node `position` and read at or after it."""
    if not 0 <= position < len(model.nodes):
        raise ValueError(f"cut position {position} outside 0..{len(model.nodes) - 1} of {model.name}")
    if position == 0:
        return [INPUT]
    produced = {INPUT} | {n.output for n in model.nodes[:position]}
    return sorted({name for node in model.nodes[position:] for name in node_inputs(node)
                   if name in produced})


def scheme_cut(model: Model, scheme) -> int:
    """The latest cut a scheme allows: the position of its earliest updated node."""
    earliest = scheme.earliest_updated(model)
    node = model.classifier if earliest is None else model.convs[earliest]
    return next(p for p, n in enumerate(model.nodes) if n is node)


def model_digest(model: Model) -> str:
    """sha256 of everything the prefix output depends on: all nodes but the classifier."""
    h = hashlib.sha256()
    h.update(repr((model.input_shape, model.input_q.scale, model.input_q.zero)).encode())
    for node in model.nodes[:-1]:
        h.update(type(node).__name__.encode())
        if isinstance(node, Conv):
            h.update(repr((node.name, node.input, node.output, node.stride, node.groups,
                           node.x.scale, node.x.zero, node.y.scale, node.y.zero)).encode())
            for array in (node.weight, node.bias, node.w_scales):
                h.update(np.ascontiguousarray(array).tobytes())
        elif isinstance(node, Add):
            h.update(repr((node.name, node.inputs, node.output, node.x1, node.x2, node.y)).encode())
        elif isinstance(node, AvgPool):
            h.update(repr((node.name, node.input, node.output, node.x, node.y)).encode())
    return h.hexdigest()[:20]


def data_digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr((images.shape, str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.asarray(labels, np.int64).tobytes())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPARSEBP_CACHE", Path.home() / ".cache" / "sparsebp"))


@dataclass
class PrefixCache:
    """int8 tensors at a cut, one row per image (N, C, H, W), and the labels."""
    position: int
    tensors: dict[str, np.ndarray]
    labels: np.ndarray
    path: Path | None = None
    built_seconds: float = 0.0      # time spent computing it now (0 when read from disk)

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """The cut tensors of image i, batch 1: what `Trainer.step` takes instead of x_q."""
        return {name: t[i : i + 1] for name, t in self.tensors.items()}

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: t[start:stop] for name, t in self.tensors.items()}


def _forward_range(model: Model, tensors: dict[str, np.ndarray], start: int, stop: int) -> dict:
    """Run nodes start..stop-1 on known tensors; return the tensors at cut `stop`."""
    if start == stop:
        return {name: tensors[name] for name in cut_tensors(model, stop)}
    known = int_ops.forward(model, tensors, nodes=model.nodes[start:stop])
    return {name: known[name] for name in cut_tensors(model, stop)}


def _read(path: Path, position: int) -> PrefixCache | None:
    try:
        with np.load(path) as f:
            tensors = {k[2:]: f[k] for k in f.files if k.startswith("t:")}
            return PrefixCache(position, tensors, f["labels"], path)
    except (OSError, ValueError, KeyError):
        return None


def _write(path: Path, cache: PrefixCache) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, labels=cache.labels, **{f"t:{k}": v for k, v in cache.tensors.items()})
    os.replace(tmp, path)


def cache_folder(model: Model, images: np.ndarray, labels: np.ndarray, split: str,
                 resolution: int, cache_dir=None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / CACHE_VERSION / (f"{model_digest(model)}-r{resolution}-{split}-"
                                   f"{data_digest(images, labels)}")


def load_or_build(model: Model, images: np.ndarray, labels: np.ndarray, split: str,
                  position: int, resolution: int | None = None, cache_dir=None,
                  batch: int = 64, write: bool = True, progress: bool = False) -> PrefixCache:
    """The prefix outputs at cut `position` for uint8 NHWC `images` (any size; resized here).

    `resolution` defaults to the model's input size; images are resized batch by batch with
    `Dataset.resized`, exactly as the whole-array call would. `write=False` computes without
    touching the disk (tests of bit-identity use it too).
    """
    from .data import Dataset
    images = np.asarray(images)
    labels = np.asarray(labels, np.int64)
    size = resolution or model.input_shape[1]
    cut_tensors(model, position)                         # validates the position
    folder = cache_folder(model, images, labels, split, size, cache_dir)
    path = folder / f"cut{position:03d}.npz"
    if write and path.exists():
        cached = _read(path, position)
        if cached is not None and len(cached) == len(labels):
            return cached
    start_time = time.time()
    source, source_pos = None, 0
    if write and folder.is_dir():
        # the latest cut already on disk in front of this one saves recomputing the front layers
        for p in sorted((int(f.stem[3:]) for f in folder.glob("cut*.npz") if f.stem[3:].isdigit()),
                        reverse=True):
            if p < position:
                source = _read(folder / f"cut{p:03d}.npz", p)
                if source is not None and len(source) == len(labels):
                    source_pos = p
                    break
                source = None
    parts: dict[str, list[np.ndarray]] = {name: [] for name in cut_tensors(model, position)}
    n = len(labels)
    classes = tuple(str(i) for i in range(int(labels.max()) + 1)) if n else ()
    for s in range(0, n, batch):
        if source is not None:
            known = source.batch(s, s + batch)
        else:
            chunk = Dataset(images[s : s + batch], labels[s : s + batch], classes).resized(size)
            known = {INPUT: int_ops.quantize_images(chunk.images, model)}
        out = _forward_range(model, known, source_pos, position)
        for name in parts:
            parts[name].append(out[name])
        if progress and (s // batch) % 10 == 0:
            done = min(s + batch, n)
            rate = done / max(time.time() - start_time, 1e-9)
            print(f"  prefix cache cut {position} ({model.nodes[position].name}): {done}/{n} images, "
                  f"{rate:.1f} images/s", file=sys.stderr, flush=True)
    tensors = {name: (np.concatenate(p) if p else np.zeros((0,), np.int8)) for name, p in parts.items()}
    cache = PrefixCache(position, tensors, labels, path if write else None, time.time() - start_time)
    if write:
        _write(path, cache)
    return cache


def predict_from(model: Model, cache: PrefixCache, batch: int = 256) -> np.ndarray:
    """Predicted class per cached image: forward from the cut (ties to the lower class)."""
    nodes = model.nodes[cache.position:]
    out = []
    for s in range(0, len(cache), batch):
        t = int_ops.forward(model, cache.batch(s, s + batch), nodes=nodes, keep=set())
        out.append(t[model.output][:, :, 0, 0].argmax(axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)
