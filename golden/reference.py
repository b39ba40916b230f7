"""Float64 reference: the same graph on real values, with exact gradients.

Each op has a forward returning (output, cache) and a backward taking the cache. They serve
three purposes: the integer backward is checked against them, they are checked against finite
differences, and they train the built-in digits CNN in float before it is quantized.
Clamps are at the real images of the int8 range [-128, 127] of the output's quantization
(for a ReLU6 output, [0, 6]); the gradient passes where the pre-clamp value lies inside.
"""
from __future__ import annotations

import numpy as np

from . import conv as linear
from .graph import Add, AvgPool, Conv, INPUT, Model, node_inputs


def conv_forward(x, weight, bias, stride, groups, lo=-np.inf, hi=np.inf):
    pre = linear.conv_forward(x, weight, stride, groups) + bias[None, :, None, None]
    mask = (pre >= lo) & (pre <= hi)
    return np.clip(pre, lo, hi), (x, weight, stride, groups, mask)


def conv_backward(g_y, cache):
    """(dx, dW, db) of conv_forward."""
    x, weight, stride, groups, mask = cache
    g = g_y * mask
    dx = linear.conv_input_grad(g, weight, stride, groups, x.shape[2:])
    dW = linear.conv_weight_grad(x, g, weight.shape[2], stride, groups)
    return dx, dW, g.sum(axis=(0, 2, 3))


def add_forward(x1, x2, lo=-np.inf, hi=np.inf):
    pre = x1 + x2
    mask = (pre >= lo) & (pre <= hi)
    return np.clip(pre, lo, hi), mask


def add_backward(g_y, mask):
    return g_y * mask, g_y * mask


def avgpool_forward(x, lo=-np.inf, hi=np.inf):
    pre = x.mean(axis=(2, 3), keepdims=True)
    mask = (pre >= lo) & (pre <= hi)
    return np.clip(pre, lo, hi), (x.shape, mask)


def avgpool_backward(g_y, cache):
    shape, mask = cache
    return np.broadcast_to(g_y * mask / (shape[2] * shape[3]), shape).copy()


def softmax_cross_entropy(logits, labels):
    """(mean loss, dL/dlogits) for logits (N, C) and integer labels (N,)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels]).mean()
    g = p.copy()
    g[np.arange(n), labels] -= 1
    return loss, g / n


def dequantize_input(model: Model, x_q: np.ndarray) -> np.ndarray:
    return model.input_q.scale * (x_q.astype(np.float64) - model.input_q.zero)


def node_forward(node, inputs):
    """Real-valued forward of one quantized node with its dequantized parameters."""
    if isinstance(node, Conv):
        w = node.weight.astype(np.float64) * node.w_scales[:, None, None, None]
        b = node.bias.astype(np.float64) * node.x.scale * node.w_scales
        return conv_forward(inputs[0], w, b, node.stride, node.groups, node.y.real_min, node.y.real_max)
    if isinstance(node, Add):
        return add_forward(inputs[0], inputs[1], node.y.real_min, node.y.real_max)
    return avgpool_forward(inputs[0], node.y.real_min, node.y.real_max)


def forward(model: Model, x_real: np.ndarray) -> dict[str, np.ndarray]:
    """Real-valued tensors of the whole graph (float64, no rounding anywhere)."""
    tensors = {INPUT: x_real}
    for node in model.nodes:
        tensors[node.output], _ = node_forward(node, [tensors[n] for n in node_inputs(node)])
    return tensors
