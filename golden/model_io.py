"""Save and load a Model as one .npz file (no pickle): arrays per node plus a JSON description.

This is the project's own format (the built-in CNN ships in it, `sparsebp train --out` writes
it). MIT's models have their own loader in golden/mit_model.py.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .graph import Add, AvgPool, Conv, Model, QParams

FORMAT = "sparsebp-model-1"


class ModelFileError(ValueError):
    """A model file that cannot be read; the message names the file and the problem."""


def _q(q: QParams) -> list:
    return [float(q.scale), int(q.zero)]


def save_model(model: Model, path) -> None:
    arrays, nodes = {}, []
    for i, node in enumerate(model.nodes):
        if isinstance(node, Conv):
            for key in ("weight", "bias", "w_scales"):
                arrays[f"{i}.{key}"] = getattr(node, key)
            nodes.append({"kind": "conv", "name": node.name, "input": node.input, "output": node.output,
                          "stride": node.stride, "groups": node.groups, "x": _q(node.x), "y": _q(node.y),
                          "is_classifier": node.is_classifier})
        elif isinstance(node, Add):
            nodes.append({"kind": "add", "name": node.name, "inputs": list(node.inputs), "output": node.output,
                          "x1": _q(node.x1), "x2": _q(node.x2), "y": _q(node.y)})
        else:
            nodes.append({"kind": "avgpool", "name": node.name, "input": node.input, "output": node.output,
                          "x": _q(node.x), "y": _q(node.y)})
    meta = {"format": FORMAT, "name": model.name, "input_shape": list(model.input_shape),
            "input_q": _q(model.input_q), "class_names": list(model.class_names), "nodes": nodes}
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_model(path) -> Model:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not a {FORMAT} file")
        nodes = []
        for i, n in enumerate(meta["nodes"]):
            if n["kind"] == "conv":
                nodes.append(Conv(n["name"], n["input"], n["output"], arrays[f"{i}.weight"],
                                  arrays[f"{i}.bias"], arrays[f"{i}.w_scales"], n["stride"], n["groups"],
                                  QParams(*n["x"]), QParams(*n["y"]), n["is_classifier"]))
            elif n["kind"] == "add":
                nodes.append(Add(n["name"], tuple(n["inputs"]), n["output"], QParams(*n["x1"]),
                                 QParams(*n["x2"]), QParams(*n["y"])))
            elif n["kind"] == "avgpool":
                nodes.append(AvgPool(n["name"], n["input"], n["output"], QParams(*n["x"]), QParams(*n["y"])))
            else:
                raise ModelFileError(f"{path}: unknown node kind {n['kind']!r}")
        return Model(meta["name"], tuple(meta["input_shape"]), QParams(*meta["input_q"]), nodes,
                     tuple(meta["class_names"]))
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
