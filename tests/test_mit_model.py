"""MIT's int8 model files: loading, consistency checks, malformed files, round trip, and the
agreement of the fixed-point requantizer with MIT's float32 formula."""
from __future__ import annotations

import copy
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from golden.graph import INPUT, Add, AvgPool, Conv, Model, QParams
from golden.mit_model import (DATA_MEMBER, ModelFormatError, accumulator_range,
                              load_mit_model, model_to_mit_dict,
                              read_mit_dict, save_mit_model, write_mit_dict)

REPO = Path(__file__).resolve().parents[1]

# file stem: (convs without the classifier, forward MACs at 128 px in millions, residual adds)
REAL_MODELS = {
    "mbv2-w0.35": (51, 16.6, 10),
    "mcunet-5fps": (42, 22.5, 7),
    "proxyless-w0.3": (60, 18.6, 13),
}


def shared_dir() -> Path:
    return Path(os.environ.get("SPARSEBP_SHARED", REPO.parent / "shared"))


def real_model_path(stem: str) -> Path:
    path = shared_dir() / "models" / "tiny-training" / f"{stem}.pkl"
    if not path.is_file():
        pytest.skip(f"MIT model file {path} is absent (set SPARSEBP_SHARED)")
    return path


def forward_macs(model: Model, resolution: int) -> int:
    shapes = model.tensor_shapes(resolution)
    total = 0
    for node in model.nodes:
        if isinstance(node, Conv):
            _, h, w = shapes[node.output]
            total += h * w * node.out_channels * node.kernel ** 2 * node.in_channels // node.groups
    return total


# ---------------------------------------------------------------------------- real models

@pytest.mark.parametrize("stem", sorted(REAL_MODELS))
def test_real_model_structure(stem):
    convs, macs_millions, adds = REAL_MODELS[stem]
    model = load_mit_model(real_model_path(stem))
    assert model.name == stem
    assert model.input_shape == (3, 128, 128)
    assert model.input_q == QParams(1 / 127.5, 0)
    assert len(model.convs) == convs
    assert sum(isinstance(n, Add) for n in model.nodes) == adds
    assert sum(isinstance(n, AvgPool) for n in model.nodes) == 1
    assert model.num_classes == 1000
    assert model.tensor_shapes()[model.output] == (1000, 1, 1)
    assert forward_macs(model, 128) == pytest.approx(macs_millions * 1e6, rel=0.02)
    # Every conv reads the tensor the node before it (or the block input) produced.
    names = [n.name for n in model.nodes]
    assert names[0] == "first_conv" and names[-2:] == ["avgpool", "classifier"]
    assert "b0.dw" in names and "b0.pw2" in names


def test_real_model_round_trip_is_identical(tmp_path):
    source = real_model_path("mbv2-w0.35")
    copy_path = tmp_path / "copy.pkl"
    save_mit_model(load_mit_model(source), copy_path)
    original, written = read_mit_dict(source), read_mit_dict(copy_path)
    assert pickle.dumps(original, protocol=4) == pickle.dumps(written, protocol=4)


@pytest.mark.parametrize("stem", ["mcunet-5fps", "proxyless-w0.3"])
def test_saturated_biases_are_handled_by_the_saturating_bias_add(stem):
    # These files hold channels whose bias sits at the int32 limits, so b + sum can leave int32;
    # numerics 4.2 saturates the bias add. The MAC sum alone must fit int32.
    from golden.int_ops import conv_accumulate, quantize_images
    model = load_mit_model(real_model_path(stem))
    saturated = sum(int(np.count_nonzero(np.abs(n.bias.astype(np.int64)) >= 2 ** 31 - 1))
                    for n in model.nodes if isinstance(n, Conv))
    assert saturated > 10
    assert any(lo.min() < -2 ** 31 or hi.max() >= 2 ** 31
               for lo, hi in map(accumulator_range, [n for n in model.nodes if isinstance(n, Conv)]))
    first = model.nodes[0]
    x = quantize_images(np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8))
    acc = conv_accumulate(first, x)
    assert acc.min() >= -2 ** 31 and acc.max() <= 2 ** 31 - 1
    expected = np.clip(conv_accumulate_unsaturated(first, x), -2 ** 31, 2 ** 31 - 1)
    assert np.array_equal(acc, expected)


def conv_accumulate_unsaturated(node, x):
    """b + sum W (x - z_x) by an explicit loop over kernel offsets, in Python-int-safe int64."""
    k, s, pad = node.kernel, node.stride, node.kernel // 2
    xp = np.pad(x.astype(np.int64) - node.x.zero, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (x.shape[2] + 2 * pad - k) // s + 1
    out = np.zeros((x.shape[0], node.out_channels, ho, ho), np.int64)
    w = node.weight.astype(np.int64)
    for u in range(k):
        for v in range(k):
            patch = xp[:, :, u:u + (ho - 1) * s + 1:s, v:v + (ho - 1) * s + 1:s]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, u, v])
    return out + node.bias.astype(np.int64)[None, :, None, None]


# ---------------------------------------------------------------------------- a small model

def small_model(feature_mix: bool = False) -> Model:
    rng = np.random.default_rng(1)

    def conv(name, source, c_in, c_out, k, stride, groups, x, y, classifier=False):
        w = rng.integers(-127, 128, size=(c_out, c_in // groups, k, k)).astype(np.int8)
        b = rng.integers(-1000, 1000, size=c_out).astype(np.int32)
        s = rng.uniform(0.001, 0.01, size=c_out).astype(np.float32).astype(np.float64)
        return Conv(name, source, name, w, b, s, stride, groups, x, y, classifier)

    q_in, q_a, q_b, q_c, q_d = (QParams(1 / 127.5, 0), QParams(6 / 255, -128),
                                QParams(0.05, 3), QParams(0.07, -2), QParams(0.09, 1))
    nodes = [conv("first_conv", INPUT, 3, 4, 3, 2, 1, q_in, q_a),
             conv("b0.dw", "first_conv", 4, 4, 3, 1, 4, q_a, q_a),
             conv("b0.pw2", "b0.dw", 4, 4, 1, 1, 1, q_a, q_b),
             conv("b1.pw1", "b0.pw2", 4, 8, 1, 1, 1, q_b, q_a),
             conv("b1.dw", "b1.pw1", 8, 8, 5, 1, 8, q_a, q_a),
             conv("b1.pw2", "b1.dw", 8, 4, 1, 1, 1, q_a, q_c),
             Add("b1.add", ("b0.pw2", "b1.pw2"), "b1.add", q_b, q_c, q_d)]
    last = "b1.add"
    if feature_mix:
        nodes.append(conv("feature_mix", last, 4, 6, 1, 1, 1, q_d, q_b))
        last, q_d = "feature_mix", q_b
    channels = 6 if feature_mix else 4
    q_pool = QParams(0.1, -1)
    nodes += [AvgPool("avgpool", last, "avgpool", q_d, q_pool),
              conv("classifier", "avgpool", channels, 5, 1, 1, 1, q_pool, QParams(0.2, -20),
                   classifier=True)]
    return Model("small", (3, 16, 16), q_in, nodes)


@pytest.mark.parametrize("feature_mix", [False, True])
def test_small_model_round_trip(tmp_path, feature_mix):
    model = small_model(feature_mix)
    path = tmp_path / "small-net.pkl"
    save_mit_model(model, path)
    with zipfile.ZipFile(path) as archive:
        assert DATA_MEMBER in archive.namelist()
    loaded = load_mit_model(path)
    assert loaded.name == "small-net"
    assert loaded.input_shape == model.input_shape and loaded.input_q == model.input_q
    assert [type(n) for n in loaded.nodes] == [type(n) for n in model.nodes]
    for ours, theirs in zip(loaded.nodes, model.nodes):
        assert ours.name == theirs.name and ours.output == theirs.output
        if isinstance(ours, Conv):
            assert ours.input == theirs.input
            assert np.array_equal(ours.weight, theirs.weight)
            assert np.array_equal(ours.bias, theirs.bias)
            assert np.array_equal(ours.w_scales, theirs.w_scales)
            assert (ours.x, ours.y, ours.stride, ours.groups, ours.is_classifier) == \
                   (theirs.x, theirs.y, theirs.stride, theirs.groups, theirs.is_classifier)
        elif isinstance(ours, Add):
            assert (ours.inputs, ours.x1, ours.x2, ours.y) == \
                   (theirs.inputs, theirs.x1, theirs.x2, theirs.y)
        else:
            assert (ours.input, ours.x, ours.y) == (theirs.input, theirs.x, theirs.y)


def test_graph_not_in_mit_shape_is_refused():
    model = small_model()
    nodes = [n for n in model.nodes if n.name not in ("b0.dw",)]
    nodes[1] = copy.copy(nodes[1])
    nodes[1].input = "first_conv"
    odd = Model("odd", model.input_shape, model.input_q, nodes)
    with pytest.raises(ValueError, match="cannot be written in MIT's format"):
        model_to_mit_dict(odd)


# ---------------------------------------------------------------------------- malformed files

def write_small(tmp_path, mutate=None, name="bad.pkl") -> Path:
    data = model_to_mit_dict(small_model())
    if mutate is not None:
        mutate(data)
    path = tmp_path / name
    write_mit_dict(data, path)
    return path


def assert_refused(path: Path, *fragments: str):
    with pytest.raises(ModelFormatError) as info:
        load_mit_model(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "absent.pkl", "no such file")


def test_not_a_zip(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"first_conv": None}))
    assert_refused(path, "not a zip")


def test_truncated_file(tmp_path):
    good = write_small(tmp_path, name="good.pkl")
    for keep in (0.5, 0.9):
        path = tmp_path / f"truncated-{keep}.pkl"
        path.write_bytes(good.read_bytes()[: int(good.stat().st_size * keep)])
        assert_refused(path)


def test_truncated_real_model(tmp_path):
    source = real_model_path("mbv2-w0.35").read_bytes()
    path = tmp_path / "mbv2-truncated.pkl"
    path.write_bytes(source[: len(source) // 2])
    assert_refused(path, "not a zip")


def test_truncated_pickle_inside_a_zip(tmp_path):
    raw = pickle.dumps(model_to_mit_dict(small_model()), protocol=2)
    path = tmp_path / "cut.pkl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(DATA_MEMBER, raw[: len(raw) // 2])
    assert_refused(path, "not a valid model pickle")


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "empty.pkl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/version", "3\n")
    assert_refused(path, "no archive/data.pkl")


def test_data_pkl_under_another_folder_is_found(tmp_path):
    path = tmp_path / "renamed.pkl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mbv2/data.pkl", pickle.dumps(model_to_mit_dict(small_model()), 2))
    assert len(load_mit_model(path).convs) == 6


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = model_to_mit_dict(small_model())
    data["classifier"]["params"]["x_zero"] = _RunsCommand(marker)
    path = tmp_path / "evil.pkl"
    write_mit_dict(data, path)
    assert_refused(path, "refused", "system")
    assert not marker.exists()


def test_pickle_of_other_callables_is_refused(tmp_path):
    path = tmp_path / "eval.pkl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(DATA_MEMBER, pickle.dumps(eval, protocol=2))
    assert_refused(path, "refused", "eval")


def test_missing_key(tmp_path):
    path = write_small(tmp_path, lambda d: d["blocks"][1]["pointwise2"]["params"].pop("w_scales"))
    assert_refused(path, "blocks[1].pointwise2.params", "'w_scales'")
    path = write_small(tmp_path, lambda d: d.pop("classifier"), name="no-classifier.pkl")
    assert_refused(path, "'classifier'")


def test_wrong_weight_dtype(tmp_path):
    def to_float(d):
        params = d["blocks"][0]["depthwise"]["params"]
        params["weight"] = params["weight"].astype(np.float32)
    assert_refused(write_small(tmp_path, to_float), "blocks[0].depthwise.params",
                   "weight has dtype float32")


def test_wrong_bias_dtype_and_shapes(tmp_path):
    def bias_int64(d):
        d["first_conv"]["params"]["bias"] = d["first_conv"]["params"]["bias"].astype(np.int64)
    assert_refused(write_small(tmp_path, bias_int64), "bias has dtype int64")

    def weight_shape(d):
        d["blocks"][1]["pointwise1"]["params"]["weight"] = np.zeros((8, 3, 1, 1), np.int8)
    assert_refused(write_small(tmp_path, weight_shape, "w.pkl"), "weight has shape (8, 3, 1, 1)")

    def out_shape(d):
        d["blocks"][1]["depthwise"]["out_shape"] = 3
    assert_refused(write_small(tmp_path, out_shape, "o.pkl"), "out_shape 3")

    def negative_scale(d):
        d["blocks"][1]["depthwise"]["params"]["w_scales"][0] = -1.0
    assert_refused(write_small(tmp_path, negative_scale, "s.pkl"), "w_scales must be")


def test_inconsistent_chaining(tmp_path):
    def other_scale(d):
        d["blocks"][1]["pointwise1"]["params"]["x_scale"] *= 1.001
    assert_refused(write_small(tmp_path, other_scale), "blocks[1].pointwise1.params", "differ")

    def other_zero(d):
        d["blocks"][1]["residual"]["params"]["x_zero"] += 1
    assert_refused(write_small(tmp_path, other_zero, "z.pkl"), "blocks[1].residual", "differ")

    def other_channels(d):
        d["classifier"]["in_channel"] = 7
        d["classifier"]["params"]["weight"] = np.ones((5, 7, 1, 1), np.int8)
    assert_refused(write_small(tmp_path, other_channels, "c.pkl"), "classifier", "in_channel 7")


# ---------------------------------------------------------------------------- requantization

@pytest.mark.parametrize("stem", sorted(REAL_MODELS))
def test_requant_agrees_with_mit_float32(stem):
    from golden.agreement import requant_agreement
    from golden.int_ops import quantize_images

    model = load_mit_model(real_model_path(stem))
    images = np.random.default_rng(0).integers(0, 256, size=(3, 128, 128, 3), dtype=np.uint8)
    result = requant_agreement(model, quantize_images(images, model))
    assert result["outputs"] == sum(int(np.prod(s)) for name, s in
                                    model.tensor_shapes().items()
                                    if name in {n.output for n in model.nodes
                                                if isinstance(n, Conv)}) * 3
    assert result["fraction"] < 0.01
    assert result["max_abs_diff"] <= 1
    assert result["forward_mismatches"] == 0
    assert len(result["layers"]) == len(model.convs) + 1
