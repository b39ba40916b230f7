"""Integer forward and backward of every op (docs/numerics.md sections 4 and 6).

Activations are int8 NCHW arrays; accumulators int64 (the numerics guarantee they fit int32);
gradients are (int8 array, exponent) pairs. Forward functions also return the 1-bit mask of
their clamp, which the trainer keeps only where backward needs it.
"""
from __future__ import annotations

import numpy as np

from . import conv as linear
from .fixedpoint import quantize_gradient, round_shift
from .graph import Add, AvgPool, Conv, INPUT, Model, node_inputs

INT32_LIMIT = 2 ** 31


def quantize_images(images: np.ndarray, model: Model | None = None) -> np.ndarray:
    """uint8 NHWC pixels -> int8 NCHW input codes, p - 128 (numerics 4.1)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), not {images.dtype} {images.shape}")
    if model is not None and images.shape[3] != model.input_shape[0]:
        raise ValueError(f"{model.name} takes {model.input_shape[0]} input channels, "
                         f"the images have {images.shape[3]}")
    x = images.astype(np.int16) - 128
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).astype(np.int8))


def _clamp_with_mask(pre: np.ndarray):
    mask = (pre >= -128) & (pre <= 127)
    return np.clip(pre, -128, 127).astype(np.int8), mask


def conv_accumulate(node: Conv, x: np.ndarray) -> np.ndarray:
    """acc = sat32(b + sum W (x - z_x)) (numerics 4.2), as int64.

    The MAC sum alone always fits int32 (checked); the bias add saturates, because MIT's models
    carry biases pinned at -2^31 and 2^31-1 on some (mostly dead) channels.
    """
    centred = x.astype(np.float64) - node.x.zero
    total = linear.conv_forward(centred, node.weight.astype(np.float64), node.stride, node.groups)
    total = np.rint(total).astype(np.int64)
    if total.size and np.abs(total).max() >= INT32_LIMIT:
        raise OverflowError(f"{node.name}: MAC sum exceeds int32")
    acc = total + node.bias.astype(np.int64)[None, :, None, None]
    return np.clip(acc, -INT32_LIMIT, INT32_LIMIT - 1)


def conv_forward(node: Conv, x: np.ndarray):
    acc = conv_accumulate(node, x)
    pre = node.y.zero + node.requant.apply(acc, channel_axis=1)
    return _clamp_with_mask(pre)


def add_forward(node: Add, x1: np.ndarray, x2: np.ndarray):
    m1, m2, n = node.multipliers
    total = (x1.astype(np.int64) - node.x1.zero) * m1 + (x2.astype(np.int64) - node.x2.zero) * m2
    return _clamp_with_mask(node.y.zero + round_shift(total, n))


def avgpool_mult(node: AvgPool, hw: int):
    from .fixedpoint import Multiplier
    return Multiplier.from_real(node.x.scale / (node.y.scale * hw))


def avgpool_forward(node: AvgPool, x: np.ndarray):
    hw = x.shape[2] * x.shape[3]
    total = (x.astype(np.int64) - node.x.zero).sum(axis=(2, 3), keepdims=True)
    return _clamp_with_mask(node.y.zero + avgpool_mult(node, hw).apply(total))


def node_forward(node, inputs: list[np.ndarray]):
    if isinstance(node, Conv):
        return conv_forward(node, inputs[0])
    if isinstance(node, Add):
        return add_forward(node, inputs[0], inputs[1])
    return avgpool_forward(node, inputs[0])


def forward(model: Model, x_q: np.ndarray, keep=None, start: str = INPUT,
            nodes=None) -> dict[str, np.ndarray]:
    """Run the nodes; returns the tensors by name (all, or those in `keep` plus the output).

    `start`/`nodes` let a caller resume from a cached tensor: pass the tensors already known in
    `x_q` as a dict and the remaining nodes.
    """
    tensors = dict(x_q) if isinstance(x_q, dict) else {start: x_q}
    remaining = model.nodes if nodes is None else nodes
    last_use = {}
    for i, node in enumerate(remaining):
        for name in node_inputs(node):
            last_use[name] = i
    for i, node in enumerate(remaining):
        y, _ = node_forward(node, [tensors[n] for n in node_inputs(node)])
        tensors[node.output] = y
        if keep is not None:
            for name in node_inputs(node):
                if last_use[name] == i and name not in keep:
                    tensors.pop(name, None)
    return tensors


def logits(model: Model, x_q: np.ndarray, batch: int = 64) -> np.ndarray:
    """int8 logits (N, classes), computed in batches."""
    out = []
    for s in range(0, len(x_q), batch):
        t = forward(model, x_q[s : s + batch], keep=set())
        out.append(t[model.output][:, :, 0, 0])
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.int8)


def predict(model: Model, x_q: np.ndarray, batch: int = 64) -> np.ndarray:
    """Predicted class per image (argmax of the int8 logits, ties to the lower class)."""
    return logits(model, x_q, batch).argmax(axis=1)


# ---------------------------------------------------------------- backward (numerics 6)

def conv_backward(node: Conv, g_y: np.ndarray, e_y: int, mask: np.ndarray,
                  input_hw: tuple[int, int], x_selected: np.ndarray | None = None, selected: np.ndarray | None = None,
                  need_input_grad: bool = True):
    """Returns (input gradient (g, e) or None, bias gradient int64 (O,), weight gradient or None).

    The weight gradient covers only the `selected` input channels (for depthwise: the selected
    channels' rows), computed from `x_selected`, the saved int8 input restricted to them.
    """
    G = g_y.astype(np.int64) * mask
    bias_grad = G.sum(axis=(0, 2, 3))
    weight_grad = None
    if x_selected is not None:
        xc = x_selected.astype(np.float64) - node.x.zero
        if node.depthwise:
            dW = linear.conv_weight_grad(xc, G[:, selected].astype(np.float64), node.kernel,
                                         node.stride, node.groups)
        else:
            dW = linear.conv_weight_grad(xc, G.astype(np.float64), node.kernel, node.stride, 1)
        weight_grad = np.rint(dW).astype(np.int64)
    input_grad = None
    if need_input_grad:
        scale = node.input_grad_scale
        g_scaled, e_scaled = quantize_gradient(G * scale.F[None, :, None, None], e_y - scale.N)
        dx = linear.conv_input_grad(g_scaled.astype(np.float64), node.weight.astype(np.float64),
                                    node.stride, node.groups, input_hw)
        input_grad = quantize_gradient(np.rint(dx).astype(np.int64), e_scaled)
    return input_grad, bias_grad, weight_grad


def add_backward(g_y: np.ndarray, e_y: int, mask: np.ndarray):
    G = (g_y.astype(np.int64) * mask).astype(np.int8)
    return (G, e_y), (G.copy(), e_y)


def avgpool_backward(g_y: np.ndarray, e_y: int, mask: np.ndarray, input_hw: tuple[int, int]):
    from .fixedpoint import ChannelScale
    h, w = input_hw
    scale = ChannelScale.from_real([1.0 / (h * w)])
    G = g_y.astype(np.int64) * mask * int(scale.F[0])
    g, e = quantize_gradient(G, e_y - scale.N)
    return np.ascontiguousarray(np.broadcast_to(g, g.shape[:2] + (h, w))), e


def softmax_table(logit_scale: float) -> np.ndarray:
    """T[d] = round_half_up(2^16 exp(-s_l d)), d = 0..255 (numerics 6.1)."""
    d = np.arange(256, dtype=np.float64)
    return np.floor(2.0 ** 16 * np.exp(-logit_scale * d) + 0.5).astype(np.int64)


def softmax_cross_entropy_grad(logits_q: np.ndarray, label: int, table: np.ndarray,
                               logit_scale: float):
    """(gradient int8 (C,), exponent, loss float) for one sample's int8 logits.

    The loss is for reporting only: ln(S / 2^16) + s_l * d_t, which stays finite where the
    table entry T[d_t] has underflowed to 0.
    """
    l = logits_q.astype(np.int64).ravel()
    d = l.max() - l
    t = table[d]
    S = int(t.sum())
    p = (t * 2 ** 15 + S // 2) // S
    A = p.copy()
    A[label] -= 2 ** 15
    g, e = quantize_gradient(A, -15)
    loss = float(np.log(S / 2.0 ** 16) + logit_scale * d[label])
    return g, e, loss
