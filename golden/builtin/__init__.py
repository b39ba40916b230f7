"""The built-in int8 CNN for scikit-learn's 8x8 digits, shipped as package data.

`builtin_model()` loads `digits_cnn.npz`, produced by `python -m golden.builtin.pretrain`
(float training in NumPy on the digits "pretrain" split, then post-training quantization).
Its structure is a miniature MobileNetV2 so every op of the real models is exercised:

    conv0 3x3 1->16 ReLU6 | b1: pw 16->32 ReLU6, dw 3x3/2 ReLU6, pw 32->24 |
    b2: pw 24->48 ReLU6, dw 3x3 ReLU6, pw 48->24, + skip | avgpool 4x4 | classifier 24->10

Conv indices (for schemes): 0 conv0, 1 b1.pw1, 2 b1.dw, 3 b1.pw2, 4 b2.pw1, 5 b2.dw, 6 b2.pw2.
"""
from __future__ import annotations

from importlib import resources

from ..graph import Model
from ..model_io import load_model

MODEL_FILE = "digits_cnn.npz"


def builtin_model() -> Model:
    with resources.as_file(resources.files(__package__) / MODEL_FILE) as path:
        return load_model(path)
