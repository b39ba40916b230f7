"""The Trainer (golden/train.py) and channel selection (golden/scheme.py) on the built-in CNN."""
from __future__ import annotations

import math

import numpy as np
import pytest

from golden import int_ops
from golden.builtin import builtin_model
from golden.data import load_digits
from golden.scheme import PRESETS, ChannelSelector, UpdateScheme, parse_scheme
from golden.train import Trainer, UpdateRule

MASK32 = 0xFFFFFFFF
SCHEME = PRESETS["builtin-sparse"]


def ref_step(x: int) -> int:
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


class RefStream:
    def __init__(self, seed):
        self.x = seed & MASK32 or 0x9E3779B9
        self.count = 0

    def next(self):
        self.x = ref_step(self.x)
        self.count += 1
        return self.x


def ref_dynamic_selection(stream: RefStream, layers):
    """numerics 8: layers = [(index, C, rho)] in forward order -> {index: sorted selection}."""
    out = {}
    for idx, C, rho in layers:
        k = max(1, math.floor(rho * C))
        if rho == 1:
            out[idx] = list(range(C))
            continue
        perm = list(range(C))
        for i in range(k):
            j = i + stream.next() % (C - i)
            perm[i], perm[j] = perm[j], perm[i]
        out[idx] = sorted(perm[:k])
    return out


@pytest.fixture(scope="module")
def base_model():
    return builtin_model().with_new_head(10)


@pytest.fixture(scope="module")
def digits():
    model = builtin_model()
    train, test = load_digits("train"), load_digits("test")
    return (int_ops.quantize_images(train.images, model), train.labels,
            int_ops.quantize_images(test.images, model), test.labels)


def params(model):
    return [(n.weight.copy(), n.bias.copy()) for n in model.convs + [model.classifier]]


def run(model, digits, steps, seed, **kw):
    x, y = digits[0], digits[1]
    trainer = Trainer(model, SCHEME, seed=seed, **kw)
    for i in range(steps):
        trainer.step(x[i : i + 1], int(y[i]))
    return trainer


# ----------------------------------------------------------------------- (a) determinism

def test_same_seed_is_byte_identical_different_seed_differs(base_model, digits):
    a = run(base_model, digits, 20, seed=5)
    b = run(base_model, digits, 20, seed=5)
    c = run(base_model, digits, 20, seed=6)
    same = all(wa.tobytes() == wb.tobytes() and ba.tobytes() == bb.tobytes()
               for (wa, ba), (wb, bb) in zip(params(a.model), params(b.model)))
    assert same
    assert a.sr_rng.state == b.sr_rng.state and a.selector.rng.state == b.selector.rng.state
    differs = any(wa.tobytes() != wc.tobytes() for (wa, _), (wc, _) in zip(params(a.model), params(c.model)))
    assert differs
    # training really changed something, and the caller's model is untouched
    assert any(not np.array_equal(wa, w0) for (wa, _), (w0, _) in zip(params(a.model), params(base_model)))
    assert all(np.array_equal(w0, n.weight) for (w0, _), n in
               zip(params(builtin_model().with_new_head(10)), base_model.convs + [base_model.classifier]))


# ------------------------------------------------------------- (b) only allowed parameters

@pytest.mark.parametrize("policy", ["dynamic", "static-first"])
def test_only_allowed_parameters_change(base_model, digits, policy):
    x, y = digits[0], digits[1]
    trainer = Trainer(base_model, SCHEME, policy=policy, seed=3)
    convs = trainer.model.convs
    n = len(convs)
    assert n == 7
    bias_updated = set(range(n - SCHEME.bias_last, n)) | {i for i, r in SCHEME.weight_ratios.items() if r > 0}
    weight_updated = {i for i, r in SCHEME.weight_ratios.items() if r > 0}
    assert bias_updated == {3, 4, 5, 6} and weight_updated == {4, 5, 6}

    recorded = []
    original_select = trainer.selector.select

    def recording_select():
        sel = original_select()
        recorded.append({k: np.array(v) for k, v in sel.items()})
        return sel

    trainer.selector.select = recording_select
    start = params(trainer.model)
    moved_selected = {i: 0 for i in weight_updated}
    bias_moved = {i: False for i in bias_updated}
    for step in range(20):
        before = params(trainer.model)
        trainer.step(x[step : step + 1], int(y[step]))
        after = params(trainer.model)
        sel = recorded[-1]
        assert set(sel) == weight_updated
        for i in range(n):
            (w0, b0), (w1, b1) = before[i], after[i]
            if i not in bias_updated:
                assert np.array_equal(b0, b1), f"frozen bias of conv {i} changed"
            elif not np.array_equal(b0, b1):
                bias_moved[i] = True
            if i not in weight_updated:
                assert np.array_equal(w0, w1), f"frozen weights of conv {i} changed"
                continue
            changed = w0 != w1
            allowed = np.zeros_like(changed)
            if convs[i].depthwise:
                allowed[sel[i]] = True
            else:
                allowed[:, sel[i]] = True
            assert not np.any(changed & ~allowed), f"conv {i}: unselected channels changed"
            moved_selected[i] += int(changed.sum())
    assert all(v > 0 for v in moved_selected.values()), moved_selected
    assert all(bias_moved.values()), bias_moved
    # the classifier (weights and bias) trains fully
    assert not np.array_equal(start[-1][0], params(trainer.model)[-1][0])
    assert not np.array_equal(start[-1][1], params(trainer.model)[-1][1])
    # frozen prefix over the whole run
    for i in range(3):
        assert np.array_equal(start[i][0], params(trainer.model)[i][0])
        assert np.array_equal(start[i][1], params(trainer.model)[i][1])
    assert np.array_equal(start[3][0], params(trainer.model)[3][0])


def test_weight_updates_with_fixed_selection(base_model, digits, monkeypatch):
    x, y = digits[0], digits[1]
    trainer = Trainer(base_model, SCHEME, seed=9)
    fixed = {4: np.array([1, 5, 6, 20]), 5: np.array([0, 47]), 6: np.array([3, 10, 11])}
    monkeypatch.setattr(trainer.selector, "select", lambda: {k: v.copy() for k, v in fixed.items()})
    start = params(trainer.model)
    for step in range(15):
        trainer.step(x[step : step + 1], int(y[step]))
    end = params(trainer.model)
    for i, sel in fixed.items():
        changed = start[i][0] != end[i][0]
        allowed = np.zeros_like(changed)
        if trainer.model.convs[i].depthwise:
            allowed[sel] = True
        else:
            allowed[:, sel] = True
        assert changed.any() and not np.any(changed & ~allowed)


# -------------------------------------------------------------------- (c) selection policies

def test_dynamic_selection_counts_and_variation(base_model):
    sel = ChannelSelector(base_model, SCHEME, "dynamic", seed=17)
    convs = base_model.convs
    expected_k = {i: max(1, math.floor(r * convs[i].selectable_channels))
                  for i, r in SCHEME.weight_ratios.items()}
    assert expected_k == {4: 12, 5: 12, 6: 24}
    seen = {i: set() for i in expected_k}
    for _ in range(30):
        out = sel.select()
        for i, k in expected_k.items():
            s = out[i]
            assert len(s) == k and len(set(s.tolist())) == k
            assert np.all(np.diff(s) > 0)                           # ascending, distinct
            assert s.min() >= 0 and s.max() < convs[i].selectable_channels
            seen[i].add(tuple(s.tolist()))
    assert all(len(v) >= 25 for v in seen.values())                # subsets vary


def test_dynamic_selection_matches_fisher_yates_reference(base_model):
    seed = 4242
    sel = ChannelSelector(base_model, SCHEME, "dynamic", seed=seed)
    convs = base_model.convs
    layers = [(i, convs[i].selectable_channels, r) for i, r in sorted(SCHEME.weight_ratios.items())]
    stream = RefStream(seed)
    for _ in range(10):
        expected = ref_dynamic_selection(stream, layers)
        got = sel.select()
        assert {i: v.tolist() for i, v in got.items()} == expected
    assert sel.rng.state == stream.x
    assert stream.count == 10 * (12 + 12 + 24)


def test_dynamic_selection_ratio_one_consumes_no_draws(base_model):
    scheme = UpdateScheme("t", 2, {4: 1.0, 6: 0.125})
    sel = ChannelSelector(base_model, scheme, "dynamic", seed=8)
    stream = RefStream(8)
    layers = [(4, 24, 1.0), (6, 48, 0.125)]
    for _ in range(5):
        got = sel.select()
        assert got[4].tolist() == list(range(24))
        assert {i: v.tolist() for i, v in got.items()} == ref_dynamic_selection(stream, layers)
    assert stream.count == 5 * 6 and sel.rng.state == stream.x


def test_dynamic_selection_single_channel_layer_consumes_a_draw(base_model):
    # conv 0 has C = 1 input channel: rho = 0.5 gives k = max(1, 0) = 1 and the partial
    # Fisher-Yates loop of numerics 8 runs once (j = 0 + x mod 1), consuming one draw; only a
    # layer with rho = 1 consumes none. The next layer's selection depends on it.
    scheme = UpdateScheme("t", 0, {0: 0.5, 4: 0.5})
    assert base_model.convs[0].selectable_channels == 1
    sel = ChannelSelector(base_model, scheme, "dynamic", seed=21)
    stream = RefStream(21)
    layers = [(0, 1, 0.5), (4, 24, 0.5)]
    for _ in range(3):
        expected = ref_dynamic_selection(stream, layers)
        got = {i: v.tolist() for i, v in sel.select().items()}
        assert got[0] == [0]
        assert got == expected
    assert sel.rng.state == stream.x


def test_static_first_selection(base_model):
    sel = ChannelSelector(base_model, SCHEME, "static-first", seed=1)
    state = sel.rng.state
    for _ in range(3):
        out = sel.select()
        assert {i: v.tolist() for i, v in out.items()} == {4: list(range(12)), 5: list(range(12)),
                                                         6: list(range(24))}
    assert sel.rng.state == state                      # no draws


def ref_magnitude(conv, k):
    w = np.abs(conv.weight.astype(np.int64))
    if conv.depthwise:
        score = [int(w[c].sum()) for c in range(conv.out_channels)]
    else:
        score = [int(w[:, ci].sum()) for ci in range(conv.in_channels)]
    order = sorted(range(len(score)), key=lambda c: (-score[c], c))
    return sorted(order[:k])


def test_static_magnitude_selection(base_model, digits):
    model = base_model.copy()
    convs = model.convs
    # create ties: make columns 0..5 of conv 4 equal in |W| sum and the largest, column 7 too
    w = convs[4].weight
    big = np.full(w.shape[0], 127, np.int8)
    for ci in (7, 2, 5, 0, 3):
        w[:, ci, 0, 0] = big * (1 if ci % 2 else -1)
    sel = ChannelSelector(model, SCHEME, "static-magnitude", seed=1)
    state = sel.rng.state
    out = sel.select()
    for i, r in SCHEME.weight_ratios.items():
        k = max(1, math.floor(r * convs[i].selectable_channels))
        assert out[i].tolist() == ref_magnitude(convs[i], k)
    assert {0, 2, 3, 5, 7} <= set(out[4].tolist())
    # tie to the lower index: among 24 channels with all-equal scores the first k are taken
    model2 = base_model.copy()
    model2.convs[6].weight[:] = 3
    out2 = ChannelSelector(model2, SCHEME, "static-magnitude", seed=1).select()
    assert out2[6].tolist() == list(range(24))
    assert sel.rng.state == state
    # chosen once before training: unchanged while the weights train
    trainer = Trainer(model, SCHEME, policy="static-magnitude", seed=2)
    first = {i: v.tolist() for i, v in trainer.selector.select().items()}
    x, y = digits[0], digits[1]
    for step in range(5):
        trainer.step(x[step : step + 1], int(y[step]))
    assert {i: v.tolist() for i, v in trainer.selector.select().items()} == first
    assert first == {i: v.tolist() for i, v in out.items()}


# --------------------------------------------------------------------------- (d) learning

def test_one_epoch_improves_test_accuracy(base_model, digits):
    x_tr, y_tr, x_te, y_te = digits
    before = float(np.mean(int_ops.predict(base_model, x_te) == y_te))
    trainer = Trainer(base_model, SCHEME, rule=UpdateRule(lr=0.05, rounding="stochastic"), seed=1)
    losses = []
    for i in range(len(x_tr)):
        losses.append(trainer.step(x_tr[i : i + 1], int(y_tr[i])).loss)
    after = float(np.mean(int_ops.predict(trainer.model, x_te) == y_te))
    assert after - before > 0.30, (before, after)
    assert np.mean(losses[-100:]) < np.mean(losses[:100])


# ------------------------------------------------------------------------ (e) parse_scheme

def test_parse_scheme_valid(base_model):
    assert parse_scheme("builtin-sparse", base_model) is PRESETS["builtin-sparse"]
    s = parse_scheme("bias-3", base_model)
    assert s.bias_last == 3 and s.weight_ratios == {}
    s = parse_scheme("full", base_model)
    assert s.bias_last == 7 and s.weight_ratios == {i: 1.0 for i in range(7)}
    s = parse_scheme("bias=2;w=4:0.5,6:0.125", base_model)
    assert s.bias_last == 2 and s.weight_ratios == {4: 0.5, 6: 0.125}
    # ratios as fractions, the way the README and MIT's papers write them
    s = parse_scheme("bias=2;w=4:1/2,6:1/8,5:1", base_model)
    assert s.bias_last == 2 and s.weight_ratios == {4: 0.5, 6: 0.125, 5: 1.0}


@pytest.mark.parametrize("text,bad", [
    ("no-such-scheme", "no-such-scheme"),
    ("bias=2;w=4:0.3", "0.3"),
    ("bias=2;w=9:0.5", "9"),
    ("bias=1;w=-1:0.5", "-1"),
    ("bias-8", "8"),
    ("bias=2;w=4:1/3", "0.333"),
    ("bias=2;w=4:1/0", "bias=2;w=4:1/0"),
    ("bias=2;w=4:half", "half"),
])
def test_parse_scheme_errors_name_the_bad_value(base_model, text, bad):
    with pytest.raises(ValueError) as info:
        parse_scheme(text, base_model)
    assert bad in str(info.value)
