"""How often the fixed-point requantizer (numerics 4.2) disagrees with MIT's float32 formula.

For every Conv node, both requantizers are applied to the SAME int32 accumulators: those of the
layer's input as computed by our integer forward (`golden.int_ops`). The differences are
therefore per layer, never compounded through the network.

MIT (tiny-training, quantized_ops_diff.py) computes, in float32 as torch does,

    effective_scale = float32(x_scale * w_scales / y_scale)     (the quotient taken in float64)
    y = clamp(round_half_even(float32(acc) * effective_scale) + y_zero, -128, 127)

while ours is `clamp(y_zero + round_shift(acc * M[c], n[c]), -128, 127)`. A difference is
counted after the clamp. "Ties" are differing outputs where acc * m is exactly x.5 in float64
(m the float64 quotient), i.e. where only the tie rule (half up vs half even) differs.
"""
from __future__ import annotations

import numpy as np

from . import int_ops
from .graph import Conv, Model


def mit_effective_scale(node: Conv) -> np.ndarray:
    """MIT's per-channel float32 multiplier: the float64 quotient rounded to float32."""
    return (node.x.scale * node.w_scales.astype(np.float64) / node.y.scale).astype(np.float32)


def mit_requantize(node: Conv, acc: np.ndarray) -> np.ndarray:
    """MIT's float32 requantization of int accumulators (N, C, H, W), as int64 outputs."""
    scale = mit_effective_scale(node)[None, :, None, None]
    product = acc.astype(np.float32) * scale             # float32 * float32 -> float32
    return np.clip(np.round(product).astype(np.int64) + node.y.zero, -128, 127)


def fixed_point_requantize(node: Conv, acc: np.ndarray) -> np.ndarray:
    """Ours (numerics 4.2), as int64 outputs."""
    return np.clip(node.y.zero + node.requant.apply(acc, channel_axis=1), -128, 127)


_SUMMED = ("outputs", "differing", "ties_float64", "ours_match_float64", "forward_mismatches")
_MAXED = ("max_abs_diff", "max_tie_distance")


def _layer_counts(node: Conv, x: np.ndarray, y_forward: np.ndarray) -> dict:
    acc = int_ops.conv_accumulate(node, x)
    ours = fixed_point_requantize(node, acc)
    theirs = mit_requantize(node, acc)
    diff = ours != theirs
    exact = acc[diff].astype(np.float64) * np.broadcast_to(
        (node.x.scale * node.w_scales / node.y.scale)[None, :, None, None], acc.shape)[diff]
    fraction = exact - np.floor(exact)
    rounded = np.clip(np.floor(exact + 0.5).astype(np.int64) + node.y.zero, -128, 127)
    return {"outputs": int(acc.size), "differing": int(np.count_nonzero(diff)),
            "max_abs_diff": int(np.abs(ours - theirs).max()) if acc.size else 0,
            "ties_float64": int(np.count_nonzero(fraction == 0.5)),
            "ours_match_float64": int(np.count_nonzero(ours[diff] == rounded)),
            "max_tie_distance": float(np.abs(fraction - 0.5).max()) if exact.size else 0.0,
            # Our requantizer must be what the forward computed; anything else is a bug.
            "forward_mismatches": int(np.count_nonzero(ours != y_forward))}


def requant_agreement(model: Model, x_q: np.ndarray, batch: int = 16) -> dict:
    """Compare both requantizers on every Conv node for the int8 inputs `x_q` (N, C, H, W).

    Returns totals `outputs`, `differing`, `fraction`, `max_abs_diff`, `ties_float64`;
    `ours_match_float64`: differing outputs where ours equals the float64 product rounded to
    nearest (the rest match MIT); `max_tie_distance`: over differing outputs, the largest
    |frac(acc * m) - 0.5| in float64 (small: they are all near ties); `forward_mismatches`
    (ours vs the forward's own output: 0 unless int_ops disagrees with numerics 4.2);
    `images`; and `layers`: the counts per Conv node name, in forward order.
    """
    x_q = np.asarray(x_q)
    convs = [n for n in model.nodes if isinstance(n, Conv)]
    layers = {n.name: dict.fromkeys(_SUMMED + _MAXED, 0) for n in convs}
    for start in range(0, len(x_q), batch):
        tensors = int_ops.forward(model, x_q[start : start + batch])
        for node in convs:
            counts = _layer_counts(node, tensors[node.input], tensors[node.output])
            layer = layers[node.name]
            for key, value in counts.items():
                layer[key] = max(layer[key], value) if key in _MAXED else layer[key] + value
    total = {key: sum(layer[key] for layer in layers.values()) for key in _SUMMED}
    total.update({key: max((layer[key] for layer in layers.values()), default=0)
                  for key in _MAXED})
    total["fraction"] = total["differing"] / total["outputs"] if total["outputs"] else 0.0
    return {"model": model.name, "images": int(len(x_q)), **total,
            "layers": [{"name": name, **counts} for name, counts in layers.items()]}
