"""The int8 forward against the float64 reference of the same graph (numerics 10).

Per node, the int8 output must match the reference op applied to the node's own dequantized int8
inputs within half an output step everywhere (the only difference is the final rounding, plus the
fixed-point multiplier's 2^-30 relative error); compounded through the network the logits must
still point the same way. Figures for 1,000 CIFAR-10 images are in docs/numerics.md section 10.
"""
import numpy as np
import pytest

from golden import reference as ref
from golden.builtin import builtin_model
from golden.data import load_digits
from golden.graph import Add
from golden.int_ops import forward, quantize_images


def dequant(q, t):
    return q.scale * (t.astype(np.float64) - q.zero)


def local_errors(model, x_q):
    """Largest |int8 output - reference op on the node's int8 inputs| of each node, in output steps."""
    tensors = forward(model, x_q)
    errors = {}
    for node in model.nodes:
        names, qs = (node.inputs, (node.x1, node.x2)) if isinstance(node, Add) else ((node.input,), (node.x,))
        ins = [dequant(q, tensors[n]) if n != "input" else ref.dequantize_input(model, tensors[n])
               for q, n in zip(qs, names)]
        expected, _ = ref.node_forward(node, ins)
        got = dequant(node.y, tensors[node.output])
        errors[node.name] = np.abs(got - expected).max() / node.y.scale
    return tensors, errors


def centred_cosine(a, b):
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_builtin_model_matches_reference():
    model = builtin_model()
    x_q = quantize_images(load_digits("test").images[:64])
    tensors, errors = local_errors(model, x_q)
    assert max(errors.values()) <= 0.5 + 1e-3, errors
    logits = dequant(model.classifier.y, tensors[model.output][:, :, 0, 0])
    real = ref.forward(model, ref.dequantize_input(model, x_q))[model.output][:, :, 0, 0]
    assert centred_cosine(logits, real).mean() > 0.97
    assert (logits.argmax(1) == real.argmax(1)).mean() > 0.9


def test_mbv2_on_cifar10_matches_reference(shared_file):
    model_path = shared_file("models/tiny-training/mbv2-w0.35.pkl")
    data_path = shared_file("data/cifar10-jpeg.tar.gz")
    from golden.data import load_cifar10
    from golden.mit_model import load_mit_model
    model = load_mit_model(model_path)
    images = load_cifar10(data_path, "test", limit=20).resized(128).images
    x_q = quantize_images(images, model)
    tensors, errors = local_errors(model, x_q)
    assert max(errors.values()) <= 0.5 + 1e-3, max(errors.items(), key=lambda kv: kv[1])
    logits = dequant(model.classifier.y, tensors[model.output][:, :, 0, 0])
    real = ref.forward(model, ref.dequantize_input(model, x_q))[model.output][:, :, 0, 0]
    assert centred_cosine(logits, real).mean() > 0.9
