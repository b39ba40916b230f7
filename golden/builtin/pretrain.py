"""Train the built-in digits CNN in float64 NumPy, quantize it, write digits_cnn.npz.

    python -m golden.builtin.pretrain [--out PATH] [--epochs N]

Deterministic for a given NumPy version (seeded, single-threaded arithmetic order aside).
Float training uses the reference ops (golden/reference.py); quantization is MIT's scheme:
per-channel symmetric int8 weights, ReLU6 outputs at (6/255, -128), other activations
asymmetric from their calibration min/max, biases int32 at s_x * s_w.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import reference as ref
from ..data import load_digits
from ..graph import Add, AvgPool, Conv, INPUT, Model, QParams

INPUT_Q = QParams(1 / 128, 0)      # x_real = (p - 128) / 128
RELU6_Q = QParams(6 / 255, -128)
CLASSES = tuple(str(d) for d in range(10))

# (name, input, output, in_ch, out_ch, kernel, stride, depthwise, relu6)
LAYERS = [
    ("conv0", INPUT, "conv0", 1, 16, 3, 1, False, True),
    ("b1.pw1", "conv0", "b1.pw1", 16, 32, 1, 1, False, True),
    ("b1.dw", "b1.pw1", "b1.dw", 32, 32, 3, 2, True, True),
    ("b1.pw2", "b1.dw", "b1.pw2", 32, 24, 1, 1, False, False),
    ("b2.pw1", "b1.pw2", "b2.pw1", 24, 48, 1, 1, False, True),
    ("b2.dw", "b2.pw1", "b2.dw", 48, 48, 3, 1, True, True),
    ("b2.pw2", "b2.dw", "b2.pw2", 48, 24, 1, 1, False, False),
]
ADD = ("b2.add", ("b1.pw2", "b2.pw2"), "b2.add")
POOL = ("pool", "b2.add", "pool")
CLASSIFIER = ("classifier", "pool", "logits", 24, 10)


def init_params(rng) -> dict:
    params = {}
    for name, _, _, cin, cout, k, _, dw, _ in LAYERS + [CLASSIFIER + (1, 1, False, False)]:
        fan_in = k * k * (1 if dw else cin)
        shape = (cout, 1 if dw else cin, k, k)
        params[name] = [rng.normal(0, np.sqrt(2 / fan_in), shape), np.zeros(cout)]
    return params


def float_forward(params, x):
    """Returns (logits (N, 10), caches, tensors) of the float network."""
    tensors, caches = {INPUT: x}, {}
    for name, src, dst, _, _, _, stride, dw, relu6 in LAYERS:
        w, b = params[name]
        lo, hi = (0.0, 6.0) if relu6 else (-np.inf, np.inf)
        tensors[dst], caches[name] = ref.conv_forward(tensors[src], w, b, stride, w.shape[0] if dw else 1, lo, hi)
    tensors[ADD[2]], caches[ADD[0]] = ref.add_forward(tensors[ADD[1][0]], tensors[ADD[1][1]])
    tensors[POOL[2]], caches[POOL[0]] = ref.avgpool_forward(tensors[POOL[1]])
    w, b = params[CLASSIFIER[0]]
    tensors["logits"], caches[CLASSIFIER[0]] = ref.conv_forward(tensors["pool"], w, b, 1, 1)
    return tensors["logits"][:, :, 0, 0], caches, tensors


def float_backward(params, caches, g_logits):
    grads, g = {}, {}
    dx, dw, db = ref.conv_backward(g_logits[:, :, None, None], caches[CLASSIFIER[0]])
    grads[CLASSIFIER[0]] = [dw, db]
    g[POOL[2]] = dx
    g[ADD[2]] = ref.avgpool_backward(g[POOL[2]], caches[POOL[0]])
    g1, g2 = ref.add_backward(g[ADD[2]], caches[ADD[0]])
    g[ADD[1][0]], g[ADD[1][1]] = g1, g2
    for name, src, dst, *_ in reversed(LAYERS):
        dx, dw, db = ref.conv_backward(g.pop(dst), caches[name])
        grads[name] = [dw, db]
        g[src] = g.get(src, 0) + dx
    return grads


def train_float(images_q, labels, epochs=60, lr=0.01, seed=0):
    rng = np.random.default_rng(seed)
    params = init_params(rng)
    x_all = images_q.astype(np.float64) * INPUT_Q.scale
    moments = {k: [[np.zeros_like(p), np.zeros_like(p)] for p in v] for k, v in params.items()}
    t = 0
    for epoch in range(epochs):
        order = rng.permutation(len(labels))
        for s in range(0, len(order), 32):
            idx = order[s : s + 32]
            out, caches, _ = float_forward(params, x_all[idx])
            _, g = ref.softmax_cross_entropy(out, labels[idx])
            grads = float_backward(params, caches, g)
            t += 1
            for k in params:                      # Adam
                for j in range(2):
                    m, v = moments[k][j]
                    m[...] = 0.9 * m + 0.1 * grads[k][j]
                    v[...] = 0.999 * v + 0.001 * grads[k][j] ** 2
                    params[k][j] -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return params


def _asymmetric(lo: float, hi: float) -> QParams:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-6) / 255
    return QParams(scale, int(np.clip(np.round(-128 - lo / scale), -128, 127)))


def quantize(params, calib_x) -> Model:
    _, _, tensors = float_forward(params, calib_x)
    q = {INPUT: INPUT_Q}
    for name, *_, relu6 in LAYERS:
        q[name] = RELU6_Q if relu6 else _asymmetric(tensors[name].min(), tensors[name].max())
    q[ADD[2]] = _asymmetric(tensors[ADD[2]].min(), tensors[ADD[2]].max())
    q[POOL[2]] = q[ADD[2]]
    q["logits"] = _asymmetric(tensors["logits"].min(), tensors["logits"].max())

    def make_conv(name, src, dst, stride, groups, is_classifier=False):
        w, b = params[name]
        s_w = np.maximum(np.abs(w).max(axis=(1, 2, 3)), 1e-8) / 127
        w_q = np.clip(np.round(w / s_w[:, None, None, None]), -127, 127).astype(np.int8)
        b_q = np.round(b / (q[src].scale * s_w)).astype(np.int32)
        return Conv(name, src, dst, w_q, b_q, s_w, stride, groups, q[src], q[dst], is_classifier)

    nodes = [make_conv(n, src, dst, stride, cout if dw else 1)
             for n, src, dst, _, cout, _, stride, dw, _ in LAYERS]
    nodes.append(Add(ADD[0], ADD[1], ADD[2], q[ADD[1][0]], q[ADD[1][1]], q[ADD[2]]))
    nodes.append(AvgPool(POOL[0], POOL[1], POOL[2], q[POOL[1]], q[POOL[2]]))
    nodes.append(make_conv(CLASSIFIER[0], CLASSIFIER[1], CLASSIFIER[2], 1, 1, True))
    return Model("builtin-digits", (1, 8, 8), INPUT_Q, nodes, CLASSES)


def main(argv=None):
    from ..int_ops import predict, quantize_images
    from ..model_io import save_model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("digits_cnn.npz"))
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args(argv)
    pre = load_digits("pretrain")
    x_q = quantize_images(pre.images)
    params = train_float(x_q, pre.labels, epochs=args.epochs)
    model = quantize(params, x_q.astype(np.float64) * INPUT_Q.scale)
    for split in ("pretrain", "test"):
        d = load_digits(split)
        acc = (predict(model, quantize_images(d.images)) == d.labels).mean()
        print(f"int8 accuracy on digits {split}: {acc:.3f}")
    save_model(model, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
