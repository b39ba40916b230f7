"""Prefix cache (golden/prefix_cache.py), experiment rows (golden/experiment.py), `sparsebp experiment`.

The claim that matters: training and evaluating from the cached outputs of the frozen prefix is
bit-identical to training from the images.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from golden import experiment as exp
from golden import int_ops
from golden import prefix_cache as pc
from golden.builtin import builtin_model
from golden.data import load_digits
from golden.graph import INPUT
from golden.scheme import PRESETS, parse_scheme
from golden.train import Trainer, UpdateRule
from sparsebp.cli import main


@pytest.fixture(scope="module")
def model():
    return builtin_model().with_new_head(10, seed=3)


@pytest.fixture(scope="module")
def digits():
    return load_digits("train")


def _params(model):
    return [(n.weight.copy(), n.bias.copy()) for n in model.convs + [model.classifier]]


def _train_both(model, scheme, policy, rule, images, labels, cache, seed=5):
    """Steps from the images and from the cache; asserts equal results at every step."""
    x = int_ops.quantize_images(images, model)
    a = Trainer(model, scheme, policy, rule, seed=seed)
    b = Trainer(model, scheme, policy, rule, seed=seed)
    for i in range(len(labels)):
        assert a.step(x[i : i + 1], int(labels[i])) == b.step(cache.sample(i), int(labels[i]))
    for (wa, ba), (wb, bb) in zip(_params(a.model), _params(b.model)):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    return a, b, x


def test_cut_tensors_include_skip_inputs(model):
    names = [n.name for n in model.nodes]
    assert pc.cut_tensors(model, 0) == [INPUT]
    # Cutting inside block 2 (before b2.pw2) needs b2.dw's output and the block input for the Add.
    pos = names.index("b2.pw2")
    assert pc.cut_tensors(model, pos) == sorted([model.nodes[names.index("b2.dw")].output,
                                                 model.nodes[names.index("b1.pw2")].output])
    assert pc.scheme_cut(model, parse_scheme("bias-1", model)) == pos
    assert pc.scheme_cut(model, PRESETS["last-layer"]) == len(model.nodes) - 1
    assert pc.scheme_cut(model, parse_scheme("full", model)) == 0
    with pytest.raises(ValueError):
        pc.cut_tensors(model, len(model.nodes))


@pytest.mark.parametrize("scheme_text,policy,rounding,qas", [
    ("builtin-sparse", "dynamic", "stochastic", True),
    ("builtin-sparse", "static-magnitude", "truncate", False),
    ("bias-1", "dynamic", "stochastic", True),          # cut with a skip tensor
    ("last-layer", "static-first", "nearest", True),
    ("full", "dynamic", "stochastic", True),            # cut 0: the input codes
])
def test_training_from_cache_is_bit_identical(model, digits, tmp_path, scheme_text, policy, rounding, qas):
    scheme = parse_scheme(scheme_text, model)
    images, labels = digits.images[:24], digits.labels[:24]
    cache = pc.load_or_build(model, images, labels, "train", pc.scheme_cut(model, scheme), cache_dir=tmp_path)
    a, b, x = _train_both(model, scheme, policy, UpdateRule(lr=0.1, qas=qas, rounding=rounding),
                          images, labels, cache)
    np.testing.assert_array_equal(pc.predict_from(b.model, cache), int_ops.predict(a.model, x))


def test_cache_on_disk_chained_and_keyed(model, digits, tmp_path):
    images, labels = digits.images[:40], digits.labels[:40]
    names = [n.name for n in model.nodes]
    early, late = names.index("b1.dw"), names.index("b2.pw2")
    direct = pc.load_or_build(model, images, labels, "train", late, write=False)
    assert direct.path is None
    first = pc.load_or_build(model, images, labels, "train", early, cache_dir=tmp_path)
    chained = pc.load_or_build(model, images, labels, "train", late, cache_dir=tmp_path)   # from `first`
    again = pc.load_or_build(model, images, labels, "train", late, cache_dir=tmp_path)     # from disk
    assert first.path.exists() and chained.path == again.path and again.built_seconds == 0
    assert chained.path.parent == first.path.parent
    for c in (chained, again):
        assert set(c.tensors) == set(direct.tensors)
        for name in direct.tensors:
            np.testing.assert_array_equal(c.tensors[name], direct.tensors[name])
            assert c.tensors[name].dtype == np.int8
    # A fresh head shares the cache; other data, resolution or backbone weights do not.
    folder = pc.cache_folder(model, images, labels, "train", 8, tmp_path)
    assert folder == first.path.parent
    assert pc.cache_folder(builtin_model().with_new_head(10, seed=9), images, labels, "train", 8, tmp_path) == folder
    assert pc.cache_folder(model, images[:39], labels[:39], "train", 8, tmp_path) != folder
    assert pc.cache_folder(model, images, labels, "train", 16, tmp_path) != folder
    changed = model.copy()
    changed.convs[0].weight[0, 0, 0, 0] ^= 1
    assert pc.cache_folder(changed, images, labels, "train", 8, tmp_path) != folder


def test_resume_position_checks(model, digits):
    scheme = PRESETS["builtin-sparse"]
    trainer = Trainer(model, scheme, "dynamic", UpdateRule(), seed=1)
    full = int_ops.forward(model, int_ops.quantize_images(digits.images[:1], model))
    names = [n.name for n in model.nodes]
    late = names.index("b2.pw2")
    with pytest.raises(ValueError, match="updated"):       # past the earliest updated conv
        trainer.step({t: full[t] for t in pc.cut_tensors(model, late)}, 0)
    with pytest.raises(ValueError, match="needs"):         # the skip input is missing
        Trainer(model, parse_scheme("bias-1", model), "dynamic", UpdateRule(), seed=1).step(
            {model.nodes[names.index("b2.dw")].output: full[model.nodes[names.index("b2.dw")].output]}, 0)
    with pytest.raises(ValueError, match="no tensor"):
        trainer.step({"nonexistent": full[INPUT]}, 0)


def test_run_row_equals_sparsebp_train(tmp_path, monkeypatch):
    from sparsebp.runs import train_run
    monkeypatch.setenv("SPARSEBP_CACHE", str(tmp_path))
    protocol = exp.Protocol(epochs=1, train_images=120, test_images=100, resolution=None, schedule="constant")
    row = exp.ROWS["builtin-sparse"]
    ours = exp.run_row(row, seed=4, protocol=protocol, progress=False)
    theirs = train_run("builtin", "digits", "builtin-sparse", "dynamic", 1, 4, row.lr, "stochastic", True,
                       limit=120, test_limit=100)
    assert ours["accuracy"] == theirs["accuracy"] and ours["epoch_losses"] == theirs["epoch_losses"]
    assert ours["accuracy_before"] == theirs["accuracy_before"]
    assert ours["planned_peak_bytes"] == theirs["planned_peak_bytes"]
    assert ours["updated_weight_fraction"] == pytest.approx(theirs["updated_weight_fraction"])
    assert 0 < ours["updated_conv_weight_fraction"] < 1
    assert ours["command"].startswith("sparsebp experiment --row builtin-sparse --seed 4")
    assert ours["command"].endswith("--schedule constant")
    cosine = exp.run_row(row, seed=4, protocol=exp.Protocol(1, 120, 100, None), progress=False)
    assert cosine["accuracy"] != ours["accuracy"] or cosine["epoch_losses"] != ours["epoch_losses"]
    assert exp.scheduled_lr(0.1, "cosine", 0, 1000) == 0.1
    assert exp.scheduled_lr(0.1, "cosine", 549, 1000) == pytest.approx(0.05 * (1 + np.cos(np.pi * 0.5)))
    assert exp.scheduled_lr(0.1, "constant", 999, 1000) == 0.1


def test_rows_and_schemes_are_well_formed():
    for row in exp.ROWS.values():
        assert row.policy in ("static-first", "static-magnitude", "dynamic")
        assert row.model in exp.MODEL_FILES or row.model == "builtin"
        if row.model != "builtin":
            assert row.scheme in exp.SCHEMES or row.scheme in PRESETS or row.scheme in ("full",) \
                or row.scheme.startswith("bias-")
    assert exp.ROWS["mbv2-49kb-static"].policy == "static-first"


def test_cli_experiment_json_summary_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPARSEBP_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    for seed in (1, 2):
        out = results / f"builtin-s{seed}.json"
        assert main(["experiment", "--row", "builtin-sparse", "--seed", str(seed), "--limit", "60",
                     "--test-limit", "60", "--json", str(out)]) == 0
        r = json.loads(out.read_text())
        for key in ("accuracy", "planned_peak_bytes", "engine_peak_bytes", "updated_weight_fraction", "wall_seconds",
                    "command"):
            assert key in r
        assert r["train_images"] == 60 and r["resolution"] == 8
    assert main(["experiment", "--model", "builtin", "--scheme", "last-layer", "--policy", "static-first",
                 "--limit", "30", "--test-limit", "30", "--json", str(tmp_path / "custom.json")]) == 0
    custom = json.loads((tmp_path / "custom.json").read_text())
    assert "--scheme last-layer" in custom["command"]
    png, table = tmp_path / "plot.png", tmp_path / "table.md"
    assert main(["experiment", "--summarize", str(results), "--plot", str(png), "--table", str(table)]) == 0
    assert png.stat().st_size > 1000 and "± " in table.read_text() and "builtin-sparse" in table.read_text()
    assert main(["experiment", "--list"]) == 0
    capsys.readouterr()
    assert main(["experiment", "--row", "no-such-row"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsebp: error: unknown row") and "\n" not in err
    assert main(["experiment"]) == 1
    assert main(["experiment", "--row", "builtin-sparse", "--scheme", "full"]) == 1


def test_mit_model_from_cache_is_bit_identical(shared_file, tmp_path):
    from golden.data import load_cifar10
    from golden.mit_model import load_mit_model
    model = load_mit_model(shared_file("models/tiny-training/mbv2-w0.35.pkl")).with_new_head(10, seed=1)
    data = load_cifar10(shared_file("data/cifar10-jpeg.tar.gz"), "test", limit=3)
    scheme = PRESETS["mbv2-49kb"]
    cache = pc.load_or_build(model, data.images, data.labels, "test", pc.scheme_cut(model, scheme),
                             resolution=128, cache_dir=tmp_path)
    assert sorted(cache.tensors) == ["b10.pw2", "b11.dw"]
    _train_both(model, scheme, "dynamic", UpdateRule(), data.resized(128).images, data.labels, cache)


def test_experiment_trainer_freezes_out_of_range_channels_only(model, digits):
    scheme = PRESETS["builtin-sparse"]
    x = int_ops.quantize_images(digits.images[:10], model)
    a = Trainer(model, scheme, "dynamic", UpdateRule(), seed=2)
    b = exp.ExperimentTrainer(model, scheme, "dynamic", UpdateRule(), seed=2)
    assert b.frozen_channels == [0, 0]
    for i in range(10):
        assert a.step(x[i : i + 1], int(digits.labels[i])) == b.step(x[i : i + 1], int(digits.labels[i]))
    for (wa, ba), (wb, bb) in zip(_params(a.model), _params(b.model)):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    # A "dead" channel like MCUNet's (tiny s_w): the Trainer refuses the model, the
    # experiment's trainer freezes that channel's bias and trains the rest.
    dead = model.copy()
    conv = dead.convs[6]                        # b2.pw2, bias-updated by builtin-sparse
    conv.w_scales = conv.w_scales.copy()
    conv.w_scales[0] = 1e-10
    with pytest.raises(ValueError, match=r"conv 'b2\.pw2'.*bias update multiplier of channel 0 "):
        Trainer(dead, scheme, "dynamic", UpdateRule(), seed=2)
    c = exp.ExperimentTrainer(dead, scheme, "dynamic", UpdateRule(), seed=2)
    assert c.frozen_channels == [0, 1]
    before = c.model.convs[6].bias.copy()
    for i in range(10):
        c.step(int_ops.quantize_images(digits.images[i : i + 1], dead), int(digits.labels[i]))
    after = c.model.convs[6].bias
    assert after[0] == before[0] and np.any(after[1:] != before[1:])


@pytest.mark.parametrize("model_name,scheme_name", [("builtin", "builtin-sparse"),
                                                    ("mbv2-w0.35", "mbv2-49kb")])
def test_engine_peak_is_the_compiled_iterations_peak_on_the_default_engine(shared_file, model_name, scheme_name):
    """engine_peak_bytes compiles for a roomy copy of the default configuration; where the scheme
    fits 256 KB that must be the peak of the program compiled for the default itself."""
    import dataclasses
    from golden.engine.config import DEFAULT
    from golden.engine.training import compile_training
    if model_name == "builtin":
        model = builtin_model().with_new_head(10, seed=3)
    else:
        from sparsebp.runs import load_model_spec
        model = load_model_spec(str(shared_file(f"models/tiny-training/{model_name}.pkl"))).with_new_head(10, seed=0)
    scheme = parse_scheme(scheme_name, model)
    rule = UpdateRule(lr=0.002)
    peak = exp.engine_peak_bytes(model, scheme, rule, model.input_shape[1])
    on_default = compile_training(model, scheme, DEFAULT, rule, image_external=True)
    assert peak == on_default.forward.peak_bytes <= DEFAULT.scratchpad_bytes
    assert exp.engine_peak_bytes(model, scheme, rule, model.input_shape[1] + 1) is None
    assert dataclasses.replace(DEFAULT, **exp.ROOMY_ENGINE).scratchpad_bytes > DEFAULT.scratchpad_bytes
