"""Data loaders of the golden model: scikit-learn's digits and CIFAR-10.

Contract
--------
Every loader returns a `Dataset`: `images` uint8 (N, H, W, C) with pixel values 0..255,
`labels` int64 (N,), `class_names` a tuple of str indexed by label. Loaders are deterministic:
the same input gives the same arrays in the same order.

Anything wrong with the *input data* (missing path, not a tar, unexpected layout, corrupt image,
wrong pickle contents) raises `DataError`: a `ValueError` whose message is one line naming the
path and the problem, meant to be printed to the user as it is. Wrong *arguments* (unknown split,
bad limit or size) raise a plain `ValueError`.

load_digits(split)
    scikit-learn's 8x8 digits (1797 images, values 0..16) as uint8 round_half_up(v * 255 / 16)
    (so 16 -> 255), shape (N, 8, 8, 1), class names "0".."9". Splits are cut from
    `np.random.default_rng(0).permutation(1797)`: "pretrain" = its first 600, "train" = the next
    797, "test" = the last 400, each in permutation order; "all" = all 1797 in scikit-learn's
    order. `digits_split_indices(split)` gives the indices into scikit-learn's order.

load_cifar10(path, split, limit=None, cache_dir=None)
    split "train" or "test"; `path` is any of
      (a) a JPEG tar.gz with members [TOP/]{train,test}/<class>/<file>.jpg (TOP optional),
      (b) the official cifar-10-python.tar.gz (cifar-10-batches-py/data_batch_1..5, test_batch),
      (c) the extracted cifar-10-batches-py/ folder, or a folder containing it,
      (d) a folder laid out like (a) extracted (train/<class>/*.jpg, or one folder holding that).
    JPEG layouts (a), (d): images are decoded to RGB 32x32 and ordered by (label, file name).
    `limit=N` selects the first N images of the round-robin order (class 0 file 0, class 1
    file 0, ..., class 9 file 0, class 0 file 1, ...), so classes stay balanced, and returns
    them in (label, file name) order.
    Batch layouts (b), (c): file order (data_batch_1..5, or test_batch, then row order), CHW
    rows converted to HWC; `limit=N` takes the first N.
    Decoding a JPEG tar (a) costs ~20 s for all 60,000 images, so a full-split load writes the
    decoded arrays to `<cache_dir>/cifar10-jpeg-v1-<split>-<tar size>-<tar mtime_ns>.npz`
    (cache_dir defaults to $SPARSEBP_CACHE, else ~/.cache/sparsebp). A changed tar therefore
    misses the cache and is read again; stale cache files are never deleted automatically.
    Limited loads slice the cache when it exists and otherwise decode only the selected images
    (and write no cache). Folders (c), (d) and batch tars (b) are not cached.

load_dataset(spec, split, limit=None)
    spec "digits" (limit = first N of the split) or "cifar10:PATH".

Dataset.resized(size)
    size x size bilinear resampling with half-pixel centres (align_corners=False, like
    torch.nn.functional.interpolate(mode="bilinear", antialias=False); PIL agrees when
    upsampling), no antialiasing when downsampling, rounded half up to uint8.
"""
from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from numpy._core import multiarray as _np_multiarray
from numpy._core import numeric as _np_numeric
from PIL import Image

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SPLITS = ("train", "test")
DIGITS_SPLITS = ("pretrain", "train", "test", "all")

_DIGITS_COUNT = 1797
# Slices of the seed-0 permutation; "all" is handled separately (original order).
_DIGITS_SLICES = {"pretrain": slice(0, 600), "train": slice(600, 1397), "test": slice(1397, 1797)}

_CIFAR_SIDE = 32
_CIFAR_ROW = 3 * _CIFAR_SIDE * _CIFAR_SIDE  # 3072 bytes per image in a batch pickle
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_BATCH_DIR = "cifar-10-batches-py"
_BATCH_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_ALL_BATCH_FILES = frozenset(_BATCH_FILES["train"] + _BATCH_FILES["test"])
_CACHE_VERSION = 1  # bump when the decoded arrays would change, so old caches are not reused
_RESIZE_CHUNK = 1024  # images per float64 pass in resized(): bounds memory for 60k images


class DataError(ValueError):
    """Bad input data. The message is one line: '<path>: <what is wrong>'."""

    def __init__(self, message: str):
        # Messages embed exception texts from tarfile/Pillow/pickle; keep them on one line
        # because callers print them as a single user-facing error.
        super().__init__(" ".join(str(message).splitlines()))


@dataclass(frozen=True, eq=False)  # eq=False: ndarray fields have no single truth value
class Dataset:
    """Images and labels of one split; see the module docstring for the contract."""

    images: np.ndarray  # uint8, shape (N, H, W, C), pixel values 0..255
    labels: np.ndarray  # int64, shape (N,)
    class_names: tuple[str, ...]

    def __post_init__(self):
        # Check once here so every consumer can rely on the contract without re-checking.
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {self.labels.shape}")
        if not isinstance(self.class_names, tuple):
            raise ValueError("class_names must be a tuple of str")
        if self.labels.size and (self.labels.min() < 0
                                 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in 0..{len(self.class_names) - 1}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices) -> Dataset:
        """The images at `indices` (integer array-like or boolean mask), in that order."""
        idx = np.asarray(indices)
        if idx.dtype != np.bool_:
            if idx.size and idx.dtype.kind not in "iu":
                raise TypeError(f"indices must be integers or a boolean mask, got {idx.dtype}")
            idx = idx.astype(np.intp, copy=False)  # np.asarray([]) is float64
        return Dataset(self.images[idx], self.labels[idx], self.class_names)

    def resized(self, size: int) -> Dataset:
        """Images resampled to size x size (bilinear, half-pixel centres, round half up).

        Returns self when the images already are size x size.
        """
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        n, h, w, c = self.images.shape
        if h == size and w == size:
            return self
        rows, cols = _bilinear_taps(h, size), _bilinear_taps(w, size)
        out = np.empty((n, size, size, c), np.uint8)
        for start in range(0, n, _RESIZE_CHUNK):
            stop = start + _RESIZE_CHUNK
            out[start:stop] = _resize_chunk(self.images[start:stop], rows, cols)
        return Dataset(out, self.labels, self.class_names)


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weight of i1 for each output position along one axis.

    Half-pixel centres: output o samples source coordinate (o + 0.5) * n_in / n_out - 0.5.
    Coordinates below 0 are clamped to 0 and i1 is clamped to the last pixel, so the border
    pixel is repeated (torch's align_corners=False convention).
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def _lerp_axis1(x: np.ndarray, taps) -> np.ndarray:
    """Linear interpolation of float64 x along axis 1 (in place on the gathered copies)."""
    i0, i1, w1 = taps
    shape = (-1,) + (1,) * (x.ndim - 2)  # weights broadcast over the trailing axes
    out = x[:, i0]
    out *= (1.0 - w1).reshape(shape)
    far = x[:, i1]
    far *= w1.reshape(shape)
    out += far
    return out


def _resize_chunk(images: np.ndarray, rows, cols) -> np.ndarray:
    """Separable bilinear resampling of (n, h, w, c) uint8 images, rounded once at the end.

    Elementwise float64 arithmetic (rows first, then columns) rather than a matrix product:
    BLAS may fuse multiply-adds differently per machine, and the golden model must be
    bit-reproducible.
    """
    n, _, w, c = images.shape
    x = _lerp_axis1(images.astype(np.float64), rows)
    size = x.shape[1]
    # Columns: view (n, size, w, c) as (n * size, w, c) so they are axis 1 as well.
    x = _lerp_axis1(x.reshape(n * size, w, c), cols).reshape(n, size, -1, c)
    x += 0.5
    np.floor(x, out=x)  # round half up
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


# --------------------------------------------------------------------------------- arguments

def _check_choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _check_limit(limit) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be None or a positive int, got {limit!r}")


# ------------------------------------------------------------------------------------ digits

def digits_split_indices(split: str) -> np.ndarray:
    """Indices into scikit-learn's digits order of a split (see the module docstring)."""
    _check_choice("digits split", split, DIGITS_SPLITS)
    if split == "all":
        return np.arange(_DIGITS_COUNT)
    return np.random.default_rng(0).permutation(_DIGITS_COUNT)[_DIGITS_SLICES[split]]


def load_digits(split: str) -> Dataset:
    """scikit-learn's 8x8 digits as uint8 (N, 8, 8, 1) images; see the module docstring."""
    idx = digits_split_indices(split)
    # Imported here: scikit-learn takes about a second to import and only digits need it.
    from sklearn.datasets import load_digits as sklearn_load_digits

    raw = sklearn_load_digits()
    if raw.data.shape != (_DIGITS_COUNT, 64):
        raise RuntimeError(f"scikit-learn digits have shape {raw.data.shape}, "
                           f"expected ({_DIGITS_COUNT}, 64)")
    values = raw.data.astype(np.int64)  # integers 0..16 stored as float64
    # round_half_up(v * 255 / 16) = floor((2 * 255 * v + 16) / 32), exact in integers.
    pixels = (values * 510 + 16) // 32
    images = pixels.astype(np.uint8).reshape(-1, 8, 8, 1)
    labels = raw.target.astype(np.int64)
    names = tuple(str(t) for t in raw.target_names)
    return Dataset(images[idx], labels[idx], names)


# ------------------------------------------------------------------------------------ CIFAR-10

def load_cifar10(path, split: str, limit: int | None = None, cache_dir=None) -> Dataset:
    """CIFAR-10 `split` from a JPEG tar/folder or the official batches; see the module docstring."""
    _check_choice("CIFAR-10 split", split, CIFAR10_SPLITS)
    _check_limit(limit)
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    if root.is_dir():
        return _load_cifar_folder(root, split, limit)
    return _load_cifar_tar(root, split, limit, cache_dir)


def _cifar_dataset(images: np.ndarray, labels: np.ndarray) -> Dataset:
    return Dataset(images, labels.astype(np.int64, copy=False), CIFAR10_CLASSES)


def _round_robin_first(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Ascending indices of the first `limit` images of the class round-robin order.

    `labels` must be sorted (images grouped by class, file-name order within a class), so an
    image's rank within its class is its index minus the index of its class's first image.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    rank = np.arange(n) - np.searchsorted(labels, labels, side="left")
    order = np.lexsort((labels, rank))  # by rank within class, then by class
    return np.sort(order[:limit])


def _decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode one image file to RGB uint8 (32, 32, 3); `where` names it in errors."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{where}: corrupt image ({exc})") from exc
    if rgb.shape != (_CIFAR_SIDE, _CIFAR_SIDE, 3):
        raise DataError(f"{where}: image is {rgb.shape[1]}x{rgb.shape[0]}, expected 32x32")
    return rgb


# An image entry of a JPEG layout: (label, file name, where for errors, bytes or Path).
_Entry = tuple[int, str, str, object]


def _decode_entries(entries: list[_Entry], limit, read: Callable[[object], bytes]) -> Dataset:
    """Decode the round-robin selection of `entries` (sorted by label, file name)."""
    labels = np.array([e[0] for e in entries], np.int64)
    keep = _round_robin_first(labels, limit)
    images = np.empty((len(keep), _CIFAR_SIDE, _CIFAR_SIDE, 3), np.uint8)
    for out, i in enumerate(keep):
        _, _, where, source = entries[i]
        images[out] = _decode_image(read(source), where)
    return _cifar_dataset(images, labels[keep])


def _check_all_classes(entries: list[_Entry], where: str, split: str) -> None:
    # A class without images means a broken or partial copy; better to say so than to train
    # on nine classes.
    present = {e[0] for e in entries}
    missing = [name for label, name in enumerate(CIFAR10_CLASSES) if label not in present]
    if missing:
        raise DataError(f"{where}: no '{split}' images for class(es) {', '.join(missing)}")


def _is_image_name(name: str) -> bool:
    # Dot files are skipped: macOS tar/zip tools add '._0000.jpg' resource-fork companions.
    return not name.startswith(".") and name.lower().endswith(_IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------- CIFAR-10 folders

def _load_cifar_folder(root: Path, split: str, limit) -> Dataset:
    """Layouts (c) and (d): an extracted batch folder or an extracted JPEG tree."""
    jpeg_root = _find_jpeg_root(root)
    if jpeg_root is not None:
        return _decode_entries(_list_jpeg_folder(jpeg_root, split), limit, _read_file)
    batch_dir = _find_batch_dir(root)
    if batch_dir is not None:
        return _load_batch_folder(batch_dir, split, limit)
    raise DataError(f"{root}: neither a CIFAR-10 JPEG folder ({split}/<class>/*.jpg) nor a "
                    f"{_BATCH_DIR}/ folder")


def _find_jpeg_root(root: Path) -> Path | None:
    """root itself or its one subfolder holding train/ or test/, else None."""
    def has_split(folder: Path) -> bool:
        return any((folder / s).is_dir() for s in CIFAR10_SPLITS)

    if has_split(root):
        return root
    found = sorted(child for child in root.iterdir() if child.is_dir() and has_split(child))
    if len(found) > 1:
        raise DataError(f"{root}: several JPEG trees ({', '.join(f.name for f in found)}); "
                        "pass one of them")
    return found[0] if found else None


def _find_batch_dir(root: Path) -> Path | None:
    if any((root / name).is_file() for name in _ALL_BATCH_FILES):
        return root
    if (root / _BATCH_DIR).is_dir():
        return root / _BATCH_DIR
    return None


def _list_jpeg_folder(root: Path, split: str) -> list[_Entry]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{root}: no '{split}' folder")
    unknown = sorted(p.name for p in split_dir.iterdir()
                     if p.is_dir() and p.name not in CIFAR10_CLASSES)
    if unknown:
        raise DataError(f"{split_dir}: unexpected class folder(s) {', '.join(unknown)}")
    entries: list[_Entry] = []
    for label, name in enumerate(CIFAR10_CLASSES):
        class_dir = split_dir / name
        files = [p for p in class_dir.iterdir() if p.is_file() and _is_image_name(p.name)] \
            if class_dir.is_dir() else []
        entries += [(label, f.name, str(f), f) for f in sorted(files, key=lambda p: p.name)]
    _check_all_classes(entries, str(split_dir), split)
    return entries


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _load_batch_folder(batch_dir: Path, split: str, limit) -> Dataset:
    parts = []
    for name in _BATCH_FILES[split]:
        file = batch_dir / name
        if not file.is_file():
            raise DataError(f"{file}: missing file (expected in {_BATCH_DIR}/)")
        parts.append(_parse_batch(_read_file(file), str(file)))
        if limit is not None and sum(len(p[1]) for p in parts) >= limit:
            break  # later batches cannot contribute to the first `limit` images
    return _stack_batches(parts, limit)


# ------------------------------------------------------------------------------- CIFAR-10 tars

def _load_cifar_tar(path: Path, split: str, limit, cache_dir) -> Dataset:
    """Layouts (a) and (b); JPEG tars go through the decoded-array cache."""
    cache_file = _cache_file(path, split, cache_dir)
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached if limit is None else cached.subset(_round_robin_first(cached.labels, limit))
    entries, batches = _scan_tar(path, split)
    if entries:
        dataset = _decode_entries(entries, limit, lambda data: data)
        if limit is None:
            _write_cache(cache_file, dataset)
        return dataset
    parts = [_parse_batch(batches[name][1], f"{path}: member {batches[name][0]}")
             for name in _BATCH_FILES[split]]
    return _stack_batches(parts, limit)


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a gzip-compressed tar archive ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _scan_tar(path: Path, split: str) -> tuple[list[_Entry], dict[str, tuple[str, bytes]]]:
    """One streaming pass: the split's JPEG entries, or its batch pickles.

    Exactly one of the two results is non-empty; a tar with neither layout is a DataError.
    Batches map file name (data_batch_1, ...) to (member name, bytes).
    """
    entries: list[_Entry] = []
    batches: dict[str, tuple[str, bytes]] = {}
    tops: set[tuple[str, ...]] = set()  # leading folders seen before <split>/<class>/<file>
    saw_jpeg_layout = saw_batches = False
    with _open_tar(path) as tar:
        try:
            for member in tar:
                if not member.isfile():
                    continue
                # str.split, not PurePosixPath: this runs 60,000 times per pass.
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if len(parts) in (3, 4) and parts[-3] in CIFAR10_SPLITS \
                        and _is_image_name(parts[-1]):
                    if parts[-2] not in CIFAR10_CLASSES:
                        raise DataError(f"{path}: member {member.name} is in unknown class "
                                        f"folder '{parts[-2]}'")
                    saw_jpeg_layout = True
                    tops.add(tuple(parts[:-3]))
                    if parts[-3] == split:
                        data = tar.extractfile(member).read()
                        label = CIFAR10_CLASSES.index(parts[-2])
                        entries.append((label, parts[-1], f"{path}: member {member.name}", data))
                elif parts and parts[-1] in _ALL_BATCH_FILES:
                    saw_batches = True
                    if parts[-1] in _BATCH_FILES[split]:
                        if parts[-1] in batches:
                            raise DataError(f"{path}: two members named {parts[-1]}")
                        batches[parts[-1]] = (member.name, tar.extractfile(member).read())
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{path}: truncated or corrupt tar archive ({exc})") from exc
    if len(tops) > 1:
        names = ", ".join(sorted("/".join(t) or "." for t in tops))
        raise DataError(f"{path}: images under several top-level folders ({names})")
    if entries:
        _check_all_classes(entries, str(path), split)
        entries.sort(key=lambda e: (e[0], e[1]))
        return entries, {}
    if saw_jpeg_layout:
        raise DataError(f"{path}: no '{split}/<class>/*.jpg' members")
    if saw_batches:
        missing = [n for n in _BATCH_FILES[split] if n not in batches]
        if missing:
            raise DataError(f"{path}: missing member(s) {', '.join(missing)}")
        return [], batches
    raise DataError(f"{path}: neither CIFAR-10 layout: expected members "
                    f"[TOP/]{split}/<class>/*.jpg or {_BATCH_DIR}/{_BATCH_FILES[split][0]}")


# ---------------------------------------------------------------------------- batch pickles

# The globals a CIFAR-10 batch pickle may reference. Unpickling runs whatever callables the
# pickle names, so anything else is refused: a downloaded file must not run code. NumPy 1
# pickles (the official file) name numpy.core.*, NumPy 2 ones numpy._core.*; Python 3 pickles
# of bytes at protocol 2 use _codecs.encode.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _core in ("numpy.core", "numpy._core"):
    _PICKLE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _np_multiarray._reconstruct
    _PICKLE_GLOBALS[(f"{_core}.multiarray", "scalar")] = _np_multiarray.scalar
    _PICKLE_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _np_numeric._frombuffer
del _core


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None


def _batch_field(batch: dict, key: str):
    # Official pickles (Python 2, loaded with encoding="bytes") have bytes keys; accept str
    # keys too for batches re-pickled under Python 3.
    return batch.get(key.encode(), batch.get(key))


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch pickle to (uint8 (n, 32, 32, 3) HWC images, int64 (n,) labels)."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # a malformed pickle can raise almost any exception type
        raise DataError(f"{where}: not a CIFAR-10 batch pickle ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{where}: pickle holds a {type(batch).__name__}, expected a dict")
    data, labels = _batch_field(batch, "data"), _batch_field(batch, "labels")
    missing = [k for k, v in (("b'data'", data), ("b'labels'", labels)) if v is None]
    if missing:
        raise DataError(f"{where}: batch pickle lacks {' and '.join(missing)}")
    try:
        data, labels = np.asarray(data), np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: b'data'/b'labels' are not arrays ({exc})") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        raise DataError(f"{where}: b'data' is {data.dtype} {data.shape}, "
                        f"expected uint8 (N, {_CIFAR_ROW})")
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{where}: b'labels' is {labels.dtype} {labels.shape}, "
                        f"expected {len(data)} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{where}: b'labels' outside 0..{len(CIFAR10_CLASSES) - 1}")
    # Each row is the image's R, G, B planes, each 32x32 row-major: CHW -> HWC.
    images = data.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _stack_batches(parts: list[tuple[np.ndarray, np.ndarray]], limit) -> Dataset:
    images = np.concatenate([p[0] for p in parts])[:limit]
    labels = np.concatenate([p[1] for p in parts])[:limit]
    return _cifar_dataset(np.ascontiguousarray(images), labels)


# ---------------------------------------------------------------------------------- cache

def default_cache_dir() -> Path:
    """$SPARSEBP_CACHE if set and non-empty, else ~/.cache/sparsebp."""
    env = os.environ.get("SPARSEBP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sparsebp"


def _cache_file(tar_path: Path, split: str, cache_dir) -> Path:
    """Cache path keyed by the tar's size and mtime, so a changed tar misses the cache."""
    try:
        st = tar_path.stat()
    except OSError as exc:
        raise DataError(f"{tar_path}: cannot read ({exc.strerror or exc})") from exc
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / (f"cifar10-jpeg-v{_CACHE_VERSION}-{split}-"
                        f"{st.st_size}-{st.st_mtime_ns}.npz")


def _read_cache(file: Path) -> Dataset | None:
    """The cached split, or None when absent or unreadable (it is then decoded again)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
        if images.shape[1:] != (_CIFAR_SIDE, _CIFAR_SIDE, 3):
            return None
        return _cifar_dataset(images, labels)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(file: Path, dataset: Dataset) -> None:
    """Write atomically (temporary file + rename) so no reader sees a half-written cache."""
    # Per-process temporary name: concurrent writers do not clobber each other's file, and
    # open() (unlike mkstemp) gives the file the umask's permissions, so it can be shared.
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                np.savez(f, images=dataset.images, labels=dataset.labels)
            os.replace(tmp, file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        # The cache only saves time; an unwritable cache directory must not fail the load.
        warnings.warn(f"{file}: cannot write CIFAR-10 cache ({exc})", RuntimeWarning,
                      stacklevel=3)


# ------------------------------------------------------------------------------ entry point

def load_dataset(spec: str, split: str, limit: int | None = None) -> Dataset:
    """Load "digits" or "cifar10:PATH"; `limit` as in load_cifar10 (digits: first N)."""
    _check_limit(limit)
    if spec == "digits":
        dataset = load_digits(split)
        return dataset if limit is None else dataset.subset(np.arange(min(limit, len(dataset))))
    prefix = "cifar10:"
    if isinstance(spec, str) and spec.startswith(prefix) and len(spec) > len(prefix):
        return load_cifar10(spec[len(prefix):], split, limit)
    raise DataError(f"{spec}: unknown data set; accepted: 'digits' or 'cifar10:PATH' with PATH "
                    f"a cifar10-jpeg.tar.gz, cifar-10-python.tar.gz, {_BATCH_DIR}/ or an "
                    "extracted JPEG folder")
