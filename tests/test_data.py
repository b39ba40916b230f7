"""Tests of golden/data.py: digits, the CIFAR-10 layouts, bad inputs, cache and resized()."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from golden import data
from golden.data import CIFAR10_CLASSES, DataError, Dataset

JPEG_TOLERANCE = 4  # max |decoded - original| for our smooth images saved at quality=100
PER_CLASS = 3       # images per class and split in the synthetic JPEG tar


# ----------------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def sklearn_digits():
    from sklearn.datasets import load_digits
    return load_digits()


def test_digits_shapes_dtype_and_pixel_mapping(sklearn_digits):
    ds = data.load_digits("all")
    assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (1797,) and ds.labels.dtype == np.int64
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.images.min() == 0 and ds.images.max() == 255
    # round_half_up(v * 255 / 16), computed independently with exact fractions.
    table = np.array([int(Fraction(v * 255, 16) + Fraction(1, 2)) for v in range(17)])
    assert table[16] == 255 and table[8] == 128  # 127.5 rounds up
    expected = table[sklearn_digits.data.astype(int)].reshape(-1, 8, 8, 1)
    np.testing.assert_array_equal(ds.images, expected)
    np.testing.assert_array_equal(ds.labels, sklearn_digits.target)


def test_digits_splits_sizes_disjoint_and_labels(sklearn_digits):
    perm = np.random.default_rng(0).permutation(1797)
    expected_idx = {"pretrain": perm[:600], "train": perm[600:1397], "test": perm[1397:]}
    everything = data.load_digits("all")
    seen = []
    for split, size in (("pretrain", 600), ("train", 797), ("test", 400)):
        idx = data.digits_split_indices(split)
        np.testing.assert_array_equal(idx, expected_idx[split])  # permutation order kept
        ds = data.load_digits(split)
        assert len(ds) == size and ds.images.shape == (size, 8, 8, 1)
        np.testing.assert_array_equal(ds.labels, sklearn_digits.target[idx])
        np.testing.assert_array_equal(ds.images, everything.images[idx])
        seen.append(idx)
    union = np.concatenate(seen)
    assert len(np.unique(union)) == 1797  # disjoint and covering
    assert data.load_digits("train").images.max() == 255


def test_digits_unknown_split_names_allowed_values():
    with pytest.raises(ValueError, match="pretrain, train, test, all"):
        data.load_digits("validation")


# ------------------------------------------------------------------------ synthetic JPEG tar

def _pattern(split: str, label: int, index: int) -> np.ndarray:
    """A smooth 32x32 RGB image identifying (split, label, index) through its colours.

    R ramps along x (checks orientation), G ramps along y (down for train, up for test),
    B is constant 8 + 24 * label + 8 * index (distinct, 8 apart).
    """
    y, x = np.mgrid[0:32, 0:32]
    img = np.empty((32, 32, 3), np.uint8)
    img[..., 0] = x * 8
    img[..., 1] = y * 8 if split == "train" else 248 - y * 8
    img[..., 2] = 8 + 24 * label + 8 * index
    return img


def _jpeg_bytes(img: np.ndarray, size: int = 32) -> bytes:
    buf = io.BytesIO()
    pil = Image.fromarray(img)
    if size != 32:
        pil = pil.resize((size, size))
    pil.save(buf, format="JPEG", quality=100, subsampling=0)
    return buf.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _jpeg_members(top: str = "") -> list[tuple[str, bytes]]:
    """All (member name, bytes) of the synthetic tar, in a shuffled order (order must not matter)."""
    members = [(f"{top}{split}/{name}/{index:04d}.jpg", _jpeg_bytes(_pattern(split, label, index)))
               for split in ("train", "test")
               for label, name in enumerate(CIFAR10_CLASSES)
               for index in range(PER_CLASS)]
    order = np.random.default_rng(1).permutation(len(members))
    return [members[i] for i in order]


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members:
            _add_bytes(tar, name, payload)
    return path


@pytest.fixture
def jpeg_tar(tmp_path) -> Path:
    return _write_tar(tmp_path / "cifar10-jpeg.tar.gz", _jpeg_members())


def _expected_jpeg(split: str, pairs: list[tuple[int, int]]) -> np.ndarray:
    return np.stack([_pattern(split, label, index) for label, index in pairs])


def _assert_close(images: np.ndarray, expected: np.ndarray) -> None:
    diff = np.abs(images.astype(int) - expected.astype(int))
    assert diff.max() <= JPEG_TOLERANCE, diff.max()
    # Per-pixel JPEG error can reach half the B spacing (8) between images, so identify each
    # image by its mean B, where the error averages out (measured < 0.02).
    mean_b = images[..., 2].mean(axis=(1, 2)) - expected[..., 2].mean(axis=(1, 2))
    assert np.abs(mean_b).max() < 1, mean_b


@pytest.mark.parametrize("top", ["", "cifar10/", "./"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_jpeg_tar_order_labels_pixels(tmp_path, split, top):
    tar = _write_tar(tmp_path / "c.tar.gz", _jpeg_members(top))
    ds = data.load_cifar10(tar, split, cache_dir=tmp_path / "cache")
    pairs = [(label, index) for label in range(10) for index in range(PER_CLASS)]
    assert ds.images.shape == (30, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(ds.labels, [label for label, _ in pairs])
    _assert_close(ds.images, _expected_jpeg(split, pairs))


def test_jpeg_limit_is_round_robin_returned_in_class_order(jpeg_tar, tmp_path):
    # limit=12: one full round (file 0 of every class) plus file 1 of classes 0 and 1.
    ds = data.load_cifar10(jpeg_tar, "test", limit=12, cache_dir=tmp_path / "cache")
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1)] + [(label, 0) for label in range(2, 10)]
    np.testing.assert_array_equal(ds.labels, [label for label, _ in pairs])
    _assert_close(ds.images, _expected_jpeg("test", pairs))
    # limit=25: two full rounds plus file 2 of classes 0..4.
    ds = data.load_cifar10(jpeg_tar, "test", limit=25, cache_dir=tmp_path / "cache")
    assert np.bincount(ds.labels).tolist() == [3] * 5 + [2] * 5
    # A limit above the size returns everything.
    assert len(data.load_cifar10(jpeg_tar, "test", limit=1000, cache_dir=tmp_path / "c2")) == 30


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    """Records every image decode of golden.data (by the name it reports in errors)."""
    calls: list[str] = []
    real = data._decode_image

    def counting(payload: bytes, where: str):
        calls.append(where)
        return real(payload, where)

    monkeypatch.setattr(data, "_decode_image", counting)
    return calls


def test_jpeg_cache_is_used_and_keyed_by_size_and_mtime(jpeg_tar, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    first = data.load_cifar10(jpeg_tar, "test", cache_dir=cache)
    assert len(decode_calls) == 30
    files = sorted(p.name for p in cache.iterdir())
    st = jpeg_tar.stat()
    assert files == [f"cifar10-jpeg-v1-test-{st.st_size}-{st.st_mtime_ns}.npz"]

    second = data.load_cifar10(jpeg_tar, "test", cache_dir=cache)
    assert len(decode_calls) == 30  # served from the cache
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)

    limited = data.load_cifar10(jpeg_tar, "test", limit=12, cache_dir=cache)
    assert len(decode_calls) == 30  # limited loads slice the cache
    np.testing.assert_array_equal(limited.labels, [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(limited.images[:2], first.images[:2])
    np.testing.assert_array_equal(limited.images[4], first.images[6])  # class 2, file 0

    os.utime(jpeg_tar, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "changed" tar
    data.load_cifar10(jpeg_tar, "test", cache_dir=cache)
    assert len(decode_calls) == 60
    assert len(list(cache.glob("*.npz"))) == 2


def test_limited_load_without_cache_decodes_only_selection(jpeg_tar, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    ds = data.load_cifar10(jpeg_tar, "train", limit=12, cache_dir=cache)
    assert len(ds) == 12 and len(decode_calls) == 12
    assert not cache.exists() or not list(cache.iterdir())  # only full splits are cached
    assert sum(call.endswith("/0000.jpg") for call in decode_calls) == 10


def test_cache_dir_from_environment(jpeg_tar, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEBP_CACHE", str(tmp_path / "envcache"))
    data.load_cifar10(jpeg_tar, "train")
    assert len(list((tmp_path / "envcache").glob("cifar10-jpeg-v1-train-*.npz"))) == 1


def test_corrupt_cache_is_ignored(jpeg_tar, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    first = data.load_cifar10(jpeg_tar, "test", cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    cache_file.write_bytes(b"garbage")
    again = data.load_cifar10(jpeg_tar, "test", cache_dir=cache)
    assert len(decode_calls) == 60
    np.testing.assert_array_equal(again.images, first.images)


@pytest.mark.parametrize("nest", [False, True])
def test_extracted_jpeg_folder_matches_tar(jpeg_tar, tmp_path, nest):
    root = tmp_path / "extracted"
    target = root / "cifar10" if nest else root
    for name, payload in _jpeg_members():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(payload)
    (target / "train" / "cat" / "._0000.jpg").write_bytes(b"macOS resource fork, skipped")
    for split in ("train", "test"):
        from_tar = data.load_cifar10(jpeg_tar, split, cache_dir=tmp_path / "cache")
        from_dir = data.load_cifar10(root, split, limit=None)
        np.testing.assert_array_equal(from_dir.images, from_tar.images)
        np.testing.assert_array_equal(from_dir.labels, from_tar.labels)
    limited = data.load_cifar10(root, "test", limit=12)
    np.testing.assert_array_equal(limited.labels, [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9])


# ----------------------------------------------------------------------- python batch layout

BATCH_SIZES = {**{f"data_batch_{i}": 2 for i in range(1, 6)}, "test_batch": 3}


@pytest.fixture(scope="module")
def fake_batches() -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(7)
    batches, label = {}, 0
    for name, n in BATCH_SIZES.items():
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(label + k) % 10 for k in range(n)]
        label += n
        batches[name] = (rows, labels)
    return batches


def _write_batch_dir(folder: Path, batches, override: dict[str, object] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (rows, labels)) in enumerate(batches.items()):
        content = {b"batch_label": name.encode(), b"data": rows, b"labels": labels,
                   b"filenames": [f"{name}_{k}.png".encode() for k in range(len(labels))]}
        payload = (override or {}).get(name, content)
        # Alternate protocols: 2 (bytes via _codecs.encode) and 5 (arrays via _frombuffer).
        (folder / name).write_bytes(pickle.dumps(payload, protocol=2 if i % 2 else 5))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def _tar_folder(folder: Path, tar_path: Path) -> Path:
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return tar_path


def _expected_batches(batches, split):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    rows = np.concatenate([batches[n][0] for n in names])
    labels = np.concatenate([batches[n][1] for n in names])
    # Independent CHW -> HWC: channel ch of pixel (y, x) is byte ch*1024 + y*32 + x.
    hwc = np.stack([rows[:, ch * 1024:(ch + 1) * 1024].reshape(-1, 32, 32) for ch in range(3)],
                   axis=-1)
    return rows, hwc, labels


@pytest.fixture
def batch_sources(tmp_path, fake_batches) -> dict[str, Path]:
    folder = _write_batch_dir(tmp_path / "src" / "cifar-10-batches-py", fake_batches)
    return {"folder": folder, "parent folder": folder.parent,
            "tar.gz": _tar_folder(folder, tmp_path / "cifar-10-python.tar.gz")}


@pytest.mark.parametrize("form", ["folder", "parent folder", "tar.gz"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_python_batches_exact_pixels_and_labels(batch_sources, fake_batches, tmp_path, form,
                                                split):
    ds = data.load_cifar10(batch_sources[form], split, cache_dir=tmp_path / "cache")
    rows, hwc, labels = _expected_batches(fake_batches, split)
    assert ds.images.shape == (len(rows), 32, 32, 3) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images, hwc)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64 and ds.class_names == CIFAR10_CLASSES
    # Spot checks written out: image 0, pixel (y=1, x=2): R, G, B at 34, 1024+34, 2048+34.
    assert ds.images[0, 1, 2].tolist() == [rows[0, 34], rows[0, 1058], rows[0, 2082]]
    assert ds.images[-1, 31, 31, 2] == rows[-1, 3071]
    assert not (tmp_path / "cache").exists()  # batch layouts are not cached


@pytest.mark.parametrize("form", ["folder", "tar.gz"])
def test_python_batches_limit_takes_first_n(batch_sources, fake_batches, form, tmp_path):
    ds = data.load_cifar10(batch_sources[form], "train", limit=3, cache_dir=tmp_path / "c")
    rows, hwc, labels = _expected_batches(fake_batches, "train")
    np.testing.assert_array_equal(ds.images, hwc[:3])
    np.testing.assert_array_equal(ds.labels, labels[:3])  # batch 1 (2 images) + 1 of batch 2


# ------------------------------------------------------------------------------ bad inputs

def _data_error(path, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        data.load_cifar10(path, *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    path = tmp_path / "nowhere" / "cifar.tar.gz"
    message = _data_error(path, "train")
    assert str(path) in message and "no such file" in message


def test_random_file_is_not_a_tar(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    message = _data_error(path, "train", cache_dir=tmp_path)
    assert str(path) in message and "not a gzip-compressed tar" in message


def test_tar_with_wrong_layout(tmp_path):
    path = _write_tar(tmp_path / "wrong.tar.gz",
                      [("readme.txt", b"hello"), ("images/cat/1.jpg", b"x")])
    message = _data_error(path, "train", cache_dir=tmp_path)
    assert str(path) in message and "neither CIFAR-10 layout" in message


def test_truncated_tar(jpeg_tar, tmp_path):
    payload = jpeg_tar.read_bytes()
    path = tmp_path / "truncated.tar.gz"
    path.write_bytes(payload[: len(payload) // 2])
    message = _data_error(path, "test", cache_dir=tmp_path / "cache")
    assert str(path) in message and "truncated or corrupt" in message


def test_corrupt_image_in_tar(tmp_path):
    members = _jpeg_members()
    members = [(n, b"not a jpeg" if n == "train/dog/0001.jpg" else p) for n, p in members]
    path = _write_tar(tmp_path / "c.tar.gz", members)
    message = _data_error(path, "train", cache_dir=tmp_path / "cache")
    assert str(path) in message and "train/dog/0001.jpg" in message and "corrupt image" in message
    data.load_cifar10(path, "test", cache_dir=tmp_path / "cache")  # the other split is fine


def test_wrong_image_size_in_tar(tmp_path):
    members = [(n, _jpeg_bytes(_pattern("train", 0, 0), size=16) if n.endswith("cat/0000.jpg")
                else p) for n, p in _jpeg_members()]
    path = _write_tar(tmp_path / "c.tar.gz", members)
    message = _data_error(path, "train", cache_dir=tmp_path / "cache")
    assert "16x16, expected 32x32" in message and str(path) in message


def test_tar_missing_class_or_split(tmp_path):
    members = [(n, p) for n, p in _jpeg_members() if "/frog/" not in n]
    path = _write_tar(tmp_path / "nofrog.tar.gz", members)
    assert "frog" in _data_error(path, "test", cache_dir=tmp_path / "cache")
    members = [(n, p) for n, p in _jpeg_members() if n.startswith("train/")]
    path = _write_tar(tmp_path / "notest.tar.gz", members)
    message = _data_error(path, "test", cache_dir=tmp_path / "cache")
    assert str(path) in message and "no 'test/<class>/*.jpg' members" in message


def test_tar_unknown_class_folder(tmp_path):
    path = _write_tar(tmp_path / "c.tar.gz", _jpeg_members() + [("test/zebra/0.jpg", b"x")])
    message = _data_error(path, "train", cache_dir=tmp_path / "cache")
    assert "zebra" in message and str(path) in message


@pytest.mark.parametrize("override, expected", [
    ({b"data": np.zeros((2, 3072), np.uint8)}, "lacks b'labels'"),
    ({b"labels": [1, 2]}, "lacks b'data'"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "expected uint8 (N, 3072)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "expected 2 integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, "outside 0..9"),
    ([1, 2, 3], "pickle holds a list"),
])
def test_bad_batch_pickle(tmp_path, fake_batches, override, expected):
    folder = _write_batch_dir(tmp_path / "cifar-10-batches-py", fake_batches,
                              {"data_batch_3": override})
    message = _data_error(folder, "train")
    assert str(folder / "data_batch_3") in message and expected in message
    # Inside a tar the message names the archive and the member.
    tar = _tar_folder(folder, tmp_path / "b.tar.gz")
    message = _data_error(tar, "train", cache_dir=tmp_path / "cache")
    assert str(tar) in message and "cifar-10-batches-py/data_batch_3" in message


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_batch_pickle_may_not_name_other_globals(tmp_path, fake_batches):
    folder = _write_batch_dir(tmp_path / "cifar-10-batches-py", fake_batches,
                              {"test_batch": {b"data": _RunsCode(), b"labels": [0]}})
    message = _data_error(folder, "test")
    assert "refused to load" in message and "getcwd" in message
    assert str(folder / "test_batch") in message


def test_batch_folder_missing_file(tmp_path, fake_batches):
    folder = _write_batch_dir(tmp_path / "cifar-10-batches-py", fake_batches)
    (folder / "data_batch_4").unlink()
    message = _data_error(folder, "train")
    assert str(folder / "data_batch_4") in message and "missing file" in message


def test_folder_with_neither_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    message = _data_error(tmp_path, "train")
    assert str(tmp_path) in message and "neither" in message


def test_bad_arguments():
    with pytest.raises(ValueError, match="train, test"):
        data.load_cifar10("/nonexistent", "pretrain")
    with pytest.raises(ValueError, match="limit"):
        data.load_cifar10("/nonexistent", "train", limit=0)


# ---------------------------------------------------------------------------- load_dataset

def test_load_dataset_specs(jpeg_tar, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEBP_CACHE", str(tmp_path / "cache"))
    digits = data.load_dataset("digits", "test", limit=5)
    np.testing.assert_array_equal(digits.labels, data.load_digits("test").labels[:5])
    cifar = data.load_dataset(f"cifar10:{jpeg_tar}", "test", limit=12)
    np.testing.assert_array_equal(cifar.labels, [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    for spec in ("mnist", "cifar10:", "cifar100:/x"):
        with pytest.raises(DataError) as info:
            data.load_dataset(spec, "train")
        assert spec in str(info.value) and "'digits' or 'cifar10:PATH'" in str(info.value)


# -------------------------------------------------------------------- Dataset and resized()

def _dataset(images: np.ndarray) -> Dataset:
    return Dataset(images.astype(np.uint8), np.zeros(len(images), np.int64), ("only",))


def test_dataset_len_and_subset():
    ds = Dataset(np.arange(4 * 2 * 2 * 1, dtype=np.uint8).reshape(4, 2, 2, 1),
                 np.array([0, 1, 1, 0], np.int64), ("a", "b"))
    assert len(ds) == 4
    sub = ds.subset([3, 1])
    np.testing.assert_array_equal(sub.labels, [0, 1])
    np.testing.assert_array_equal(sub.images[0], ds.images[3])
    assert len(ds.subset([])) == 0
    np.testing.assert_array_equal(ds.subset(ds.labels == 1).labels, [1, 1])
    with pytest.raises(ValueError):
        Dataset(ds.images, ds.labels.astype(np.int32), ds.class_names)
    with pytest.raises(ValueError):
        Dataset(ds.images, np.array([0, 1, 2, 0], np.int64), ds.class_names)


def test_resized_identity_at_same_size():
    ds = data.load_digits("test")
    assert ds.resized(8) is ds


def test_resized_constant_stays_constant():
    ds = _dataset(np.full((3, 7, 7, 3), 123))
    for size in (1, 3, 13, 32):
        out = ds.resized(size)
        assert out.images.shape == (3, size, size, 3) and out.images.dtype == np.uint8
        assert (out.images == 123).all()


def test_resized_2x2_to_4x4_by_hand():
    # Half-pixel centres, 2 -> 4: output o samples source (o + 0.5) / 2 - 0.5
    # = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the last pixel: repeat it), so each
    # axis mixes (p0, p1) with weights (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1).
    a = np.array([[0, 100], [200, 2]])
    # Row 0 across columns: 0, 25, 75, 100. Row 3: 200, 150.5 -> 151, 51.5 -> 52, 2.
    # Row 1 = 3/4 row 0 + 1/4 row 3 (unrounded): 50, 56.375 -> 56, 69.125 -> 69, 75.5 -> 76.
    # Row 2 = 1/4 row 0 + 3/4 row 3: 150, 119.125 -> 119, 57.375 -> 57, 26.5 -> 27.
    expected = np.array([[0, 25, 75, 100],
                         [50, 56, 69, 76],
                         [150, 119, 57, 27],
                         [200, 151, 52, 2]])
    out = _dataset(a.reshape(1, 2, 2, 1)).resized(4)
    np.testing.assert_array_equal(out.images[0, :, :, 0], expected)


def test_resized_downsampling_averages_pixel_pairs_without_antialiasing():
    # 4 -> 2: sources 0.5 and 2.5, i.e. the means of pixels (0, 1) and (2, 3); .5 rounds up.
    row = np.array([10, 21, 100, 0])
    out = _dataset(np.tile(row, (4, 1)).reshape(1, 4, 4, 1)).resized(2)
    np.testing.assert_array_equal(out.images[0, :, :, 0], [[16, 50], [16, 50]])


def test_resized_upsampling_agrees_with_pil_within_one():
    img = np.random.default_rng(3).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    ours = _dataset(img).resized(20).images[0].astype(int)
    pil = np.asarray(Image.fromarray(img[0]).resize((20, 20), Image.Resampling.BILINEAR))
    assert np.abs(ours - pil.astype(int)).max() <= 1


def test_resized_digits_shape_and_labels():
    ds = data.load_digits("test")
    out = ds.resized(32)
    assert out.images.shape == (400, 32, 32, 1) and out.images.dtype == np.uint8
    np.testing.assert_array_equal(out.labels, ds.labels)
    with pytest.raises(ValueError):
        ds.resized(0)


# ------------------------------------------------------------------------ shared CIFAR-10 tar

def _shared_tar() -> Path:
    shared = os.environ.get("SPARSEBP_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return root / "data" / "cifar10-jpeg.tar.gz"


def test_shared_cifar10_tar_limited(tmp_path):
    path = _shared_tar()
    if not path.is_file():
        pytest.skip(f"{path} not found (set SPARSEBP_SHARED to the shared folder)")
    ds = data.load_cifar10(path, "test", limit=20, cache_dir=tmp_path)
    assert ds.images.shape == (20, 32, 32, 3) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, np.repeat(np.arange(10), 2))
    assert ds.images.std() > 20  # real photographs, not blank
    # Files 0000 and 0001 of each class: compare two of them with a direct Pillow decode.
    wanted = {"test/airplane/0000.jpg": 0, "test/truck/0001.jpg": 19}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                direct = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"))
                np.testing.assert_array_equal(ds.images[wanted[member.name]], direct)
