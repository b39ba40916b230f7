"""The quantized graph: tensors' quantization, the three node kinds, and a Model that lists them.

A Model is a straight list of nodes in forward order; each node names its input tensor(s) and
its output tensor, so skip connections are expressed by name. The golden model computes on
these objects and never sees how the hardware packs them (see docs/numerics.md).

Conv indices (used by update schemes) count the Conv nodes in forward order from 0 with the
classifier excluded, as MIT's schemes do.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .fixedpoint import ChannelScale, Multiplier, MultiplierVector

INPUT = "input"


@dataclass(frozen=True)
class QParams:
    """Activation quantization: real = scale * (q - zero)."""
    scale: float
    zero: int

    def __post_init__(self):
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"activation scale must be a positive number, not {self.scale}")
        if not -128 <= int(self.zero) <= 127:
            raise ValueError(f"activation zero point must lie in [-128, 127], not {self.zero}")

    @property
    def real_min(self) -> float:
        return self.scale * (-128 - self.zero)

    @property
    def real_max(self) -> float:
        return self.scale * (127 - self.zero)


@dataclass(eq=False)
class Conv:
    """Conv2d with per-output-channel int8 weights, int32 bias, K//2 padding, stride 1 or 2."""
    name: str
    input: str
    output: str
    weight: np.ndarray          # int8 (O, I/groups, K, K)
    bias: np.ndarray            # int32 (O,)
    w_scales: np.ndarray        # float64 (O,)
    stride: int
    groups: int
    x: QParams
    y: QParams
    is_classifier: bool = False

    def __post_init__(self):
        w = self.weight
        if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 != 1:
            raise ValueError(f"{self.name}: weight must be (O, I/groups, K, K) with odd K, not {w.shape}")
        if self.stride not in (1, 2):
            raise ValueError(f"{self.name}: stride must be 1 or 2, not {self.stride}")
        if self.groups not in (1, self.out_channels) or (self.groups > 1 and w.shape[1] != 1):
            raise ValueError(f"{self.name}: groups must be 1 or the channel count (depthwise)")
        if self.bias.shape != (self.out_channels,) or self.w_scales.shape != (self.out_channels,):
            raise ValueError(f"{self.name}: bias and w_scales need one entry per output channel")
        if not np.all(np.isfinite(self.w_scales)) or np.any(self.w_scales <= 0):
            raise ValueError(f"{self.name}: weight scales must be positive")
        self.weight = np.ascontiguousarray(w, dtype=np.int8)
        self.bias = np.ascontiguousarray(self.bias, dtype=np.int32)
        self.w_scales = np.asarray(self.w_scales, dtype=np.float64)

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    @property
    def depthwise(self) -> bool:
        return self.groups > 1

    @property
    def selectable_channels(self) -> int:
        """Channels a weight-update ratio applies to: input channels (= channels if depthwise)."""
        return self.in_channels

    @cached_property
    def requant(self) -> MultiplierVector:
        return MultiplierVector.from_real(self.x.scale * self.w_scales / self.y.scale)

    @cached_property
    def input_grad_scale(self) -> ChannelScale:
        return ChannelScale.from_real(self.w_scales)


@dataclass(eq=False)
class Add:
    """Residual add of two int8 tensors, requantized to y."""
    name: str
    inputs: tuple[str, str]
    output: str
    x1: QParams
    x2: QParams
    y: QParams

    @cached_property
    def multipliers(self) -> tuple[int, int, int]:
        """(M1, M2, n) with a shared shift (numerics 4.3)."""
        r1, r2 = self.x1.scale / self.y.scale, self.x2.scale / self.y.scale
        n = Multiplier.from_real(max(r1, r2)).n
        return (int(np.floor(r1 * 2.0 ** n + 0.5)), int(np.floor(r2 * 2.0 ** n + 0.5)), n)


@dataclass(eq=False)
class AvgPool:
    """Global average pool to 1x1, requantized to y."""
    name: str
    input: str
    output: str
    x: QParams
    y: QParams


Node = Conv | Add | AvgPool


def node_inputs(node: Node) -> tuple[str, ...]:
    return node.inputs if isinstance(node, Add) else (node.input,)


@dataclass(eq=False)
class Model:
    """A quantized network: input (C, H, W) and its quantization, nodes in forward order."""
    name: str
    input_shape: tuple[int, int, int]
    input_q: QParams
    nodes: list[Node]
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self):
        known = {INPUT}
        for node in self.nodes:
            for name in node_inputs(node):
                if name not in known:
                    raise ValueError(f"{node.name} reads tensor {name!r} before it is produced")
            if node.output in known:
                raise ValueError(f"tensor {node.output!r} is produced twice")
            known.add(node.output)
        if not self.nodes or not isinstance(self.nodes[-1], Conv) or not self.nodes[-1].is_classifier:
            raise ValueError("the last node must be the classifier conv")

    @property
    def convs(self) -> list[Conv]:
        """Conv nodes in forward order, classifier excluded (MIT's conv indices)."""
        return [n for n in self.nodes if isinstance(n, Conv) and not n.is_classifier]

    @property
    def classifier(self) -> Conv:
        return self.nodes[-1]

    @property
    def output(self) -> str:
        return self.classifier.output

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def tensor_shapes(self, resolution: int | None = None) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of every tensor for an input of the given resolution (default: native)."""
        from .conv import output_size
        c, h, w = self.input_shape
        if resolution is not None:
            h = w = resolution
        shapes = {INPUT: (c, h, w)}
        for node in self.nodes:
            if isinstance(node, Conv):
                _, ih, iw = shapes[node.input]
                shapes[node.output] = (node.out_channels, output_size(ih, node.kernel, node.stride),
                                       output_size(iw, node.kernel, node.stride))
            elif isinstance(node, Add):
                shapes[node.output] = shapes[node.inputs[0]]
            else:
                shapes[node.output] = (shapes[node.input][0], 1, 1)
        return shapes

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node_inputs(node):
                out.setdefault(name, []).append(node)
        return out

    def copy(self) -> "Model":
        return copy.deepcopy(self)

    def with_new_head(self, num_classes: int, seed: int = 0,
                      class_names: tuple[str, ...] = ()) -> "Model":
        """A copy whose classifier is replaced by a fresh `num_classes` head.

        Weights are drawn uniformly in [-8, 8] with scale s = 1/(8*sqrt(C_in)) * 4 per channel
        (small logits at start), bias 0; the logit quantization keeps the old head's.
        """
        model = self.copy()
        old = model.classifier
        rng = np.random.default_rng(seed)
        c_in = old.in_channels
        weight = rng.integers(-8, 9, size=(num_classes, c_in, 1, 1)).astype(np.int8)
        w_scales = np.full(num_classes, 0.5 / (8 * np.sqrt(c_in)))
        model.nodes[-1] = Conv(old.name, old.input, old.output, weight,
                               np.zeros(num_classes, np.int32), w_scales, 1, 1, old.x, old.y,
                               is_classifier=True)
        model.class_names = tuple(class_names)
        return model
