"""Sparse update schemes (MIT's form, BRIEF 1.3) and channel selection policies (numerics 8).

A scheme names the convs whose bias is updated (the last `bias_last` convs), the convs whose
weights are updated with a ratio of their input channels (all channels of a depthwise conv are
its "input channels"), and whether the classifier is trained (weights and bias, fully).
Conv indices count in forward order from 0, classifier excluded.
"""
from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import dataclass, field

import numpy as np

from .graph import Conv, Model
from .prng import Xorshift32

ALLOWED_RATIOS = (0.0, 0.125, 0.25, 0.5, 1.0)
POLICIES = ("static-first", "static-magnitude", "dynamic")


@dataclass(frozen=True)
class UpdateScheme:
    name: str
    bias_last: int                               # bias update for the last k convs
    weight_ratios: dict[int, float] = field(default_factory=dict)   # conv index -> ratio
    classifier: bool = True

    def __post_init__(self):
        if self.bias_last < 0:
            raise ValueError(f"bias_last must be >= 0, not {self.bias_last}")
        for idx, ratio in self.weight_ratios.items():
            if ratio not in ALLOWED_RATIOS:
                raise ValueError(f"conv {idx}: ratio {ratio} is not one of {ALLOWED_RATIOS}")

    def check(self, model: Model) -> None:
        n = len(model.convs)
        if self.bias_last > n:
            raise ValueError(f"scheme {self.name}: bias_last {self.bias_last} exceeds the model's {n} convs")
        bad = [i for i in self.weight_ratios if not 0 <= i < n]
        if bad:
            raise ValueError(f"scheme {self.name}: conv indices {bad} outside 0..{n - 1} of {model.name}")

    def bias_convs(self, model: Model) -> set[int]:
        n = len(model.convs)
        return set(range(n - self.bias_last, n)) | {i for i, r in self.weight_ratios.items() if r > 0}

    def weight_convs(self) -> dict[int, float]:
        return {i: r for i, r in sorted(self.weight_ratios.items()) if r > 0}

    def earliest_updated(self, model: Model) -> int | None:
        """Index of the earliest conv with any update, None if only the classifier trains."""
        idx = self.bias_convs(model) | set(self.weight_convs())
        return min(idx) if idx else None

    def updated_weight_count(self, model: Model) -> int:
        """Weights updated per iteration (selected channels of weight convs, plus the classifier)."""
        convs = model.convs
        total = 0
        for i, r in self.weight_convs().items():
            conv = convs[i]
            # one selected channel of a regular conv is a column W[:, ci]; of a depthwise, a row W[c]
            per_channel = conv.kernel ** 2 * (1 if conv.depthwise else conv.out_channels)
            total += selected_count(conv, r) * per_channel
        if self.classifier:
            total += model.classifier.weight.size
        return total


def selected_count(conv: Conv, ratio: float) -> int:
    return max(1, math.floor(ratio * conv.selectable_channels))


def _scheme(name, bias_last, idx, ratios):
    return UpdateScheme(name, bias_last, dict(zip(idx, ratios)))


# MIT's published sparse schemes for the three models (tiny-training's scripts and paper).
PRESETS: dict[str, UpdateScheme] = {s.name: s for s in [
    _scheme("mbv2-49kb", 16, [36, 39, 40, 41, 42, 45, 48, 49], [1, 1, 0, 0.25, 0.125, 0.125, 0.125, 0.125]),
    _scheme("mbv2-99kb", 25, [27, 30, 33, 36, 39, 42, 45, 48], [1, 1, 1, 1, 1, 0.125, 0.5, 1]),
    _scheme("mcunet-50kb", 20, [23, 24, 27, 30, 33, 39], [0, 0.25, 0.5, 0.5, 0, 0]),
    _scheme("proxyless-50kb", 21, [39, 42, 44, 45, 50, 51, 54, 57], [0.25, 1, 0, 1, 0, 0.125, 0.25, 0.25]),
    UpdateScheme("last-layer", 0, {}),
    # The built-in digits CNN (golden/builtin): biases of its last 4 convs, weights of block 2.
    _scheme("builtin-sparse", 4, [4, 5, 6], [0.5, 0.25, 0.5]),
]}


def parse_scheme(text: str, model: Model) -> UpdateScheme:
    """A preset name, 'last-layer', 'bias-K', 'full', or 'bias=K;w=I:R,I:R,...'."""
    n = len(model.convs)
    if text in PRESETS:
        scheme = PRESETS[text]
    elif text == "full":
        scheme = UpdateScheme("full", n, {i: 1.0 for i in range(n)})
    elif text.startswith("bias-") and text[5:].isdigit():
        scheme = UpdateScheme(text, int(text[5:]), {})
    elif text.startswith("bias="):
        try:
            parts = dict(p.split("=", 1) for p in text.split(";"))
            ratios = {}
            for item in filter(None, parts.get("w", "").split(",")):
                idx, ratio = item.split(":")
                ratios[int(idx)] = float(Fraction(ratio))     # "1/8" as the README writes it, or 0.125
            scheme = UpdateScheme(text, int(parts["bias"]), ratios)
        except (ValueError, KeyError, ZeroDivisionError) as exc:
            raise ValueError(f"cannot parse scheme {text!r}: {exc}") from None
    else:
        raise ValueError(f"unknown scheme {text!r}; use one of {sorted(PRESETS)}, 'full', "
                         "'bias-K', or 'bias=K;w=IDX:RATIO,...'")
    scheme.check(model)
    return scheme


class ChannelSelector:
    """Picks the selected input channels of each weight-updated conv, per iteration."""

    def __init__(self, model: Model, scheme: UpdateScheme, policy: str, seed: int):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
        self.policy = policy
        self.rng = Xorshift32(seed)
        self.ratios = scheme.weight_convs()
        self.counts = {i: selected_count(model.convs[i], r) for i, r in self.ratios.items()}
        self.static = {}
        for i, k in self.counts.items():
            conv = model.convs[i]
            if policy == "static-magnitude":
                per_channel = np.abs(conv.weight.astype(np.int64))
                score = per_channel.sum(axis=(1, 2, 3)) if conv.depthwise else per_channel.sum(axis=(0, 2, 3))
                order = np.lexsort((np.arange(len(score)), -score))    # largest first, ties to lower index
                self.static[i] = np.sort(order[:k])
            else:
                self.static[i] = np.arange(k)
        self.channels = {i: conv.selectable_channels for i, conv in enumerate(model.convs) if i in self.counts}

    def select(self) -> dict[int, np.ndarray]:
        """Selected channels (ascending) of every weight-updated conv for the next iteration."""
        if self.policy != "dynamic":
            return dict(self.static)
        out = {}
        for i, k in self.counts.items():
            c = self.channels[i]
            if self.ratios[i] == 1.0:      # numerics 8: only a ratio-1 layer consumes no draws
                out[i] = np.arange(c)
                continue
            perm = list(range(c))
            for j in range(k):
                r = j + self.rng.next() % (c - j)
                perm[j], perm[r] = perm[r], perm[j]
            out[i] = np.sort(np.array(perm[:k]))
        return out
