"""MIT tiny-training int8 models: read and write their pickle-in-zip format as a `Model`.

The file (see ../shared/models/tiny-training/README.md) is a zip whose member
`archive/data.pkl` pickles a dict: `first_conv`, `blocks` (each `pointwise1` (optional),
`depthwise`, `pointwise2`, `residual` (None or the add's quantization), `se` (must be None)),
`feature_mix` (None or a conv) and `classifier`. The graph built from it is

    first_conv -> [b{i}.pw1] -> b{i}.dw -> b{i}.pw2 -> [b{i}.add] -> ... -> [feature_mix]
               -> avgpool -> classifier

with node names equal to their output tensor names. `b{i}.add` adds the block input
(x1 = the residual entry's x params) and `b{i}.pw2` (x2 = its y params) into the residual's y.

Unpickling runs whatever callables a pickle names, so only the few NumPy reconstructors these
files need are allowed (`_SAFE_GLOBALS`): a malicious file is refused, not executed.
Anything wrong with a file raises `ModelFormatError` (a ValueError) with one line naming the
path and the problem.
"""
from __future__ import annotations

import codecs
import io
import math
import numbers
import pickle
import zipfile
from pathlib import Path

import numpy as np
from numpy._core import multiarray as _np_multiarray

from .conv import output_size
from .graph import INPUT, Add, AvgPool, Conv, Model, QParams

DATA_MEMBER = "archive/data.pkl"
MAX_PICKLE_BYTES = 256 * 2 ** 20     # the real models are below 1.1 MB
SCALE_RTOL = 1e-9                    # x params must repeat the producer's y params this closely


class ModelFormatError(ValueError):
    """A model file that is missing, unreadable or inconsistent; one line naming the path."""


# ------------------------------------------------------------------------------ unpickling

def _latin1_encode(text, encoding="utf-8", errors="strict"):
    # Protocol-2 pickles of bytes written by Python 3 call _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors if errors == "strict" else "strict")


def _plain_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refused an object dtype")
    return dtype


# What MIT's files (NumPy 1 era: numpy.core.*) and our own writer (NumPy 2: numpy._core.*)
# reference; nothing else may be called while loading.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _core in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _np_multiarray._reconstruct
    _SAFE_GLOBALS[(f"{_core}.multiarray", "scalar")] = _np_multiarray.scalar
del _core


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to call {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids (torch tensors) are not supported")


def read_mit_dict(path) -> dict:
    """The raw dict of a MIT model file, unpickled with the restricted unpickler."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            member = _find_data_member(names)
            if member is None:
                raise ModelFormatError(f"{path}: no archive/data.pkl member in the zip "
                                       f"(members: {', '.join(names[:5]) or 'none'})")
            info = archive.getinfo(member)
            if info.file_size > MAX_PICKLE_BYTES:
                raise ModelFormatError(f"{path}: {member} is {info.file_size} bytes, "
                                       f"more than the {MAX_PICKLE_BYTES} allowed")
            raw = archive.read(member)
    except ModelFormatError:
        raise
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(f"{path}: not a zip file or truncated ({exc})") from exc
    except Exception as exc:  # truncated members raise EOFError, zlib.error, OSError, ...
        raise ModelFormatError(f"{path}: unreadable zip ({type(exc).__name__}: {exc})") from exc
    try:
        data = _RestrictedUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # a malformed pickle can raise almost any exception type
        reason = str(exc) or type(exc).__name__
        raise ModelFormatError(f"{path}: {member} is not a valid model pickle ({reason})") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: {member} holds a {type(data).__name__}, expected a dict")
    return data


def _find_data_member(names: list[str]) -> str | None:
    if DATA_MEMBER in names:
        return DATA_MEMBER
    candidates = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    return candidates[0] if len(candidates) == 1 else None


# ------------------------------------------------------------------------------ loading

class _Tensor:
    """The tensor currently flowing: its name, quantization, channels and side."""

    def __init__(self, name: str, q: QParams, channels: int, side: int):
        self.name, self.q, self.channels, self.side = name, q, channels, side


class _Builder:
    def __init__(self, path: Path):
        self.path = path
        self.nodes: list = []

    def fail(self, where: str, problem: str):
        raise ModelFormatError(f"{self.path}: {where}: {problem}")

    def get(self, entry, key: str, where: str):
        if not isinstance(entry, dict):
            self.fail(where, f"expected a dict, found {type(entry).__name__}")
        if key not in entry:
            self.fail(where, f"missing key {key!r}")
        return entry[key]

    def integer(self, entry, key: str, where: str, lo=None, hi=None) -> int:
        value = self.get(entry, key, where)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            self.fail(where, f"{key} must be an integer, not {value!r}")
        value = int(value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(where, f"{key} = {value} outside [{lo}, {hi}]")
        return value

    def scale(self, entry, key: str, where: str) -> float:
        value = self.get(entry, key, where)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            self.fail(where, f"{key} must be a number, not {value!r}")
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            self.fail(where, f"{key} must be a positive number, not {value}")
        return value

    def qparams(self, params, prefix: str, where: str) -> QParams:
        return QParams(self.scale(params, f"{prefix}_scale", where),
                       self.integer(params, f"{prefix}_zero", where, -128, 127))

    def array(self, params, key: str, where: str, kind: str, ndim: int) -> np.ndarray:
        value = self.get(params, key, where)
        if not isinstance(value, np.ndarray):
            self.fail(where, f"{key} must be a NumPy array, not {type(value).__name__}")
        if value.ndim != ndim:
            self.fail(where, f"{key} has shape {value.shape}, expected {ndim} dimensions")
        if kind == "float":
            if value.dtype.kind != "f":
                self.fail(where, f"{key} has dtype {value.dtype}, expected a float dtype")
        elif value.dtype != np.dtype(kind):
            self.fail(where, f"{key} has dtype {value.dtype}, expected {kind}")
        return value

    def check_input(self, q: QParams, current: _Tensor, where: str, what: str = "x"):
        same_scale = abs(q.scale - current.q.scale) <= SCALE_RTOL * max(q.scale, current.q.scale)
        if not same_scale or q.zero != current.q.zero:
            self.fail(where, f"{what} params (scale {q.scale!r}, zero {q.zero}) differ from "
                             f"those of its input {current.name} (scale {current.q.scale!r}, "
                             f"zero {current.q.zero})")

    def conv(self, entry, name: str, where: str, current: _Tensor | None,
             classifier: bool = False) -> tuple[Conv, _Tensor]:
        in_channels = self.integer(entry, "in_channel", where, 1)
        out_channels = self.integer(entry, "out_channel", where, 1)
        kernel = self.kernel(entry, where)
        stride = self.integer(entry, "stride", where)
        groups = self.integer(entry, "groups", where, 1)
        if stride not in (1, 2):
            self.fail(where, f"stride must be 1 or 2, not {stride}")
        if groups not in (1, in_channels) or (groups > 1 and out_channels != in_channels):
            self.fail(where, f"groups = {groups} with {in_channels} -> {out_channels} channels: "
                             "only 1 or depthwise (groups = in = out channels) are supported")
        if "depthwise" in entry and bool(entry["depthwise"]) != (groups > 1):
            self.fail(where, f"depthwise = {entry['depthwise']} disagrees with groups = {groups}")
        if entry.get("act") is not None:
            self.fail(where, f"act = {entry['act']!r}: only None (activation folded into the "
                             "clamp) is supported")
        if classifier:
            if kernel != 1 or stride != 1:
                self.fail(where, f"the classifier must be a 1x1 stride-1 conv, not "
                                 f"{kernel}x{kernel} stride {stride}")
            in_side = out_side = 1
        else:
            in_side = self.integer(entry, "in_shape", where, 1)
            out_side = self.integer(entry, "out_shape", where, 1)
            if out_side != output_size(in_side, kernel, stride):
                self.fail(where, f"out_shape {out_side} is not what a {kernel}x{kernel} stride "
                                 f"{stride} conv makes of {in_side} "
                                 f"({output_size(in_side, kernel, stride)})")

        params = self.get(entry, "params", where)
        where_p = f"{where}.params"
        weight = self.array(params, "weight", where_p, "int8", 4)
        bias = self.array(params, "bias", where_p, "int32", 1)
        w_scales = self.array(params, "w_scales", where_p, "float", 1)
        expected = (out_channels, in_channels // groups, kernel, kernel)
        if weight.shape != expected:
            self.fail(where_p, f"weight has shape {weight.shape}, expected {expected}")
        if weight.size and int(weight.min()) < -127:
            self.fail(where_p, "weight holds -128; weights are symmetric in [-127, 127]")
        if bias.shape != (out_channels,) or w_scales.shape != (out_channels,):
            self.fail(where_p, f"bias {bias.shape} and w_scales {w_scales.shape} need "
                               f"({out_channels},)")
        if not np.all(np.isfinite(w_scales)) or np.any(w_scales <= 0):
            self.fail(where_p, "w_scales must be finite and positive")
        x_q = self.qparams(params, "x", where_p)
        y_q = self.qparams(params, "y", where_p)

        if current is not None:
            if in_channels != current.channels:
                self.fail(where, f"in_channel {in_channels} but its input {current.name} has "
                                 f"{current.channels} channels")
            if not classifier and in_side != current.side:
                self.fail(where, f"in_shape {in_side} but its input {current.name} is "
                                 f"{current.side}x{current.side}")
            self.check_input(x_q, current, where_p)
        try:
            node = Conv(name, current.name if current else INPUT, name, weight.copy(), bias.copy(),
                        w_scales.astype(np.float64), stride, groups, x_q, y_q,
                        is_classifier=classifier)
            node.requant  # the multipliers must be representable (numerics 3)
        except ValueError as exc:
            self.fail(where, str(exc))
        self.nodes.append(node)
        return node, _Tensor(name, y_q, out_channels, out_side)

    def kernel(self, entry, where: str) -> int:
        value = self.get(entry, "kernel_size", where)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = (int(value), int(value))
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(isinstance(v, numbers.Integral) for v in value)
                or value[0] != value[1] or value[0] < 1 or value[0] % 2 != 1):
            self.fail(where, f"kernel_size must be a square odd size, not {value!r}")
        return int(value[0])

    def residual(self, entry, name: str, where: str, block_input: _Tensor,
                 branch: _Tensor) -> _Tensor:
        if "kernel_size" in entry:
            self.fail(where, "residual convolutions are not supported")
        channels = self.integer(entry, "in_channel", where, 1)
        side = self.integer(entry, "in_shape", where, 1)
        for tensor in (block_input, branch):
            if (channels, side) != (tensor.channels, tensor.side):
                self.fail(where, f"adds {channels}x{side}x{side} but {tensor.name} is "
                                 f"{tensor.channels}x{tensor.side}x{tensor.side}")
        params = self.get(entry, "params", where)
        x1 = self.qparams(params, "x", f"{where}.params")
        y = self.qparams(params, "y", f"{where}.params")
        self.check_input(x1, block_input, f"{where}.params")
        self.nodes.append(Add(name, (block_input.name, branch.name), name, x1, branch.q, y))
        return _Tensor(name, y, channels, side)


def load_mit_model(path) -> Model:
    """A `Model` from one of MIT's int8 model files (zip with archive/data.pkl)."""
    path = Path(path)
    data = read_mit_dict(path)
    build = _Builder(path)
    for key in ("first_conv", "blocks", "classifier"):
        build.get(data, key, "top level")
    first, current = build.conv(data["first_conv"], "first_conv", "first_conv", None)
    input_side = build.integer(data["first_conv"], "in_shape", "first_conv", 1)

    blocks = data["blocks"]
    if not isinstance(blocks, list):
        build.fail("blocks", f"expected a list, found {type(blocks).__name__}")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        build.get(block, "depthwise", where)
        if block.get("se") is not None:
            build.fail(where, "squeeze-and-excitation (se) blocks are not supported")
        block_input = current
        if block.get("pointwise1") is not None:
            _, current = build.conv(block["pointwise1"], f"b{i}.pw1", f"{where}.pointwise1",
                                    current)
        _, current = build.conv(block["depthwise"], f"b{i}.dw", f"{where}.depthwise", current)
        if build.nodes[-1].groups == 1:
            build.fail(f"{where}.depthwise", "is not a depthwise conv")
        _, current = build.conv(build.get(block, "pointwise2", where), f"b{i}.pw2",
                                f"{where}.pointwise2", current)
        if block.get("residual") is not None:
            current = build.residual(block["residual"], f"b{i}.add", f"{where}.residual",
                                     block_input, current)
    if data.get("feature_mix") is not None:
        _, current = build.conv(data["feature_mix"], "feature_mix", "feature_mix", current)

    classifier_entry = data["classifier"]
    classifier_x = build.qparams(build.get(classifier_entry, "params", "classifier"), "x",
                                 "classifier.params")
    build.nodes.append(AvgPool("avgpool", current.name, "avgpool", current.q, classifier_x))
    pooled = _Tensor("avgpool", classifier_x, current.channels, 1)
    build.conv(classifier_entry, "classifier", "classifier", pooled, classifier=True)
    try:
        return Model(path.stem, (first.in_channels, input_side, input_side), first.x, build.nodes)
    except ValueError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc


def accumulator_range(node: Conv) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the least and greatest possible acc = b + sum W (x - z_x) (int64)."""
    w = node.weight.astype(np.int64).reshape(node.out_channels, -1)
    low, high = -128 - node.x.zero, 127 - node.x.zero      # x - z_x; padding gives 0, inside
    lo = np.minimum(w * low, w * high).sum(axis=1) + node.bias
    hi = np.maximum(w * low, w * high).sum(axis=1) + node.bias
    return lo, hi


def _scales_array(w_scales: np.ndarray) -> np.ndarray:
    as32 = w_scales.astype(np.float32)
    return as32 if np.array_equal(as32.astype(np.float64), w_scales) else w_scales.copy()


def _conv_entry(node: Conv, shapes: dict, classifier: bool = False) -> dict:
    params = {"weight": node.weight.copy(), "bias": node.bias.copy(),
              "x_scale": float(node.x.scale), "x_zero": int(node.x.zero),
              "y_scale": float(node.y.scale), "y_zero": int(node.y.zero),
              "w_scales": _scales_array(node.w_scales)}
    k = node.kernel
    if classifier:
        return {"in_channel": node.in_channels, "out_channel": node.out_channels,
                "params": params, "kernel_size": (k, k), "stride": node.stride,
                "groups": node.groups}
    return {"in_channel": node.in_channels, "in_shape": shapes[node.input][1],
            "out_channel": node.out_channels, "out_shape": shapes[node.output][1],
            "kernel_size": (k, k), "stride": node.stride, "groups": node.groups,
            "depthwise": node.depthwise, "act": None, "params": params}


def model_to_mit_dict(model: Model) -> dict:
    """The MIT dict of a model shaped like theirs (first conv, inverted-residual blocks,
    optional feature mix, average pool, classifier); ValueError for any other graph."""
    shapes = model.tensor_shapes()
    nodes = list(model.nodes)
    pos = 0

    def take(kind, check=lambda n: True):
        nonlocal pos
        node = nodes[pos] if pos < len(nodes) else None
        if isinstance(node, kind) and check(node):
            pos += 1
            return node
        return None

    def fail(problem: str):
        raise ValueError(f"{model.name}: cannot be written in MIT's format: {problem}")

    def chained(node, source: str):
        if node.input != source:
            fail(f"{node.name} reads {node.input}, expected {source}")

    first = take(Conv)
    if first is None or first.input != INPUT:
        fail("the first node must be a conv of the input")
    current = first.output
    blocks = []
    while pos < len(nodes) and not isinstance(nodes[pos], AvgPool):
        block_input = current
        pw1 = take(Conv, lambda n: not n.depthwise and not n.is_classifier)
        if pw1 is not None and isinstance(nodes[pos] if pos < len(nodes) else None, AvgPool):
            chained(pw1, current)
            break  # a lone conv before the pool is the feature mix
        if pw1 is not None:
            chained(pw1, current)
            current = pw1.output
        dw = take(Conv, lambda n: n.depthwise)
        if dw is None:
            fail(f"expected a depthwise conv at node {pos} ({nodes[pos].name})")
        chained(dw, current)
        pw2 = take(Conv, lambda n: not n.depthwise and not n.is_classifier)
        if pw2 is None:
            fail(f"expected a pointwise conv after {dw.name}")
        chained(pw2, dw.output)
        current = pw2.output
        add = take(Add)
        residual = None
        if add is not None:
            if add.inputs != (block_input, pw2.output):
                fail(f"{add.name} must add the block input {block_input} and {pw2.output}")
            if add.x2 != pw2.y:
                fail(f"{add.name}: x2 params differ from {pw2.name}'s output params")
            c, h, _ = shapes[block_input]
            residual = {"in_channel": c, "in_shape": h,
                        "params": {"x_scale": float(add.x1.scale), "x_zero": int(add.x1.zero),
                                   "y_scale": float(add.y.scale), "y_zero": int(add.y.zero)}}
            current = add.output
        blocks.append({"pointwise1": _conv_entry(pw1, shapes) if pw1 else None,
                       "depthwise": _conv_entry(dw, shapes),
                       "pointwise2": _conv_entry(pw2, shapes),
                       "residual": residual, "se": None})
    feature_mix = None
    if pos > 0 and isinstance(nodes[pos - 1], Conv) and nodes[pos - 1].output != current:
        feature_mix = _conv_entry(nodes[pos - 1], shapes)
        current = nodes[pos - 1].output
    pool = take(AvgPool)
    if pool is None:
        fail("expected the average pool before the classifier")
    chained(pool, current)
    classifier = take(Conv, lambda n: n.is_classifier)
    if classifier is None or pos != len(nodes):
        fail("the average pool must be followed by the classifier and nothing else")
    chained(classifier, pool.output)
    if pool.y != classifier.x:
        fail("the average pool's output params must be the classifier's input params")
    if first.x != model.input_q:
        fail("the first conv's input params must be the model's input params")
    return {"first_conv": _conv_entry(first, shapes), "blocks": blocks,
            "feature_mix": feature_mix, "classifier": _conv_entry(classifier, shapes, True)}


def save_mit_model(model: Model, path) -> None:
    """Write `model` as MIT's format: a zip holding archive/data.pkl (pickle protocol 2)."""
    write_mit_dict(model_to_mit_dict(model), path)


def write_mit_dict(data: dict, path) -> None:
    """Write a raw MIT dict (for tests that need malformed files, too)."""
    with zipfile.ZipFile(Path(path), "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(DATA_MEMBER, pickle.dumps(data, protocol=2))
        archive.writestr("archive/version", "3\n")
