"""Gradients: the float64 reference against finite differences, and the integer ops of
golden/int_ops.py against the float64 reference and against naive loops of
docs/numerics.md sections 4 and 6.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from golden import int_ops, reference
from golden.graph import Add, AvgPool, Conv, QParams


# ------------------------------------------------------------------ independent references

from numerics_oracle import ref_floor_log2, ref_multiplier, ref_round_half_up  # noqa: F401

def ref_round_shift(a: int, k: int) -> int:
    return a if k == 0 else (a + (1 << (k - 1))) >> k


def ref_apply(a: int, m: float) -> int:
    M, n = ref_multiplier(m)
    return ref_round_shift(a * M, n)


def ref_quantize(A, e_A: int):
    flat = [int(a) for a in np.ravel(A)]
    amax = max((abs(a) for a in flat), default=0)
    k = max(0, amax.bit_length() - 7)
    g = [min(127, max(-127, ref_round_shift(a, k))) for a in flat]
    return np.array(g, dtype=np.int64).reshape(np.shape(A)), e_A + k


def cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def rel_l2(a, ref) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(ref)) / np.linalg.norm(ref))


def numeric_grad(f, arr: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. every element of arr (modified in place)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        fp = f()
        arr[idx] = old - eps
        fm = f()
        arr[idx] = old
        grad[idx] = (fp - fm) / (2 * eps)
    return grad


def interior_bounds(values: np.ndarray, margin: float) -> tuple[float, float]:
    """Clamp bounds that clip some elements but lie at least `margin` from every value."""
    v = np.sort(values.ravel())
    def pick(q_lo, q_hi):
        i0, i1 = int(q_lo * (len(v) - 1)), int(q_hi * (len(v) - 1))
        gaps = v[i0 + 1 : i1 + 1] - v[i0:i1]
        best = i0 + int(np.argmax(gaps))
        assert v[best + 1] - v[best] > 2 * margin
        return (v[best] + v[best + 1]) / 2
    return pick(0.05, 0.3), pick(0.7, 0.95)


CONV_CASES = [(s, k, dw) for s in (1, 2) for k in (1, 3, 5) for dw in (False, True)]
FD_EPS = 1e-6


# ------------------------------------------------------------ (a) reference vs finite diffs

@pytest.mark.parametrize("stride,kernel,depthwise", CONV_CASES)
@pytest.mark.parametrize("clamped", [False, True])
def test_reference_conv_vs_finite_differences(stride, kernel, depthwise, clamped):
    rng = np.random.default_rng(100 + 10 * stride + kernel + 50 * depthwise)
    n, c_in, h, w = 2, 3, 7, 6
    c_out = c_in if depthwise else 4
    groups = c_in if depthwise else 1
    x = rng.normal(size=(n, c_in, h, w))
    W = rng.normal(size=(c_out, c_in // groups, kernel, kernel))
    b = rng.normal(size=c_out)
    pre, _ = reference.conv_forward(x, W, b, stride, groups)
    lo, hi = interior_bounds(pre, 1e-3) if clamped else (-1e6, 1e6)
    G = rng.normal(size=pre.shape)

    def loss():
        y, _ = reference.conv_forward(x, W, b, stride, groups, lo, hi)
        return float(np.sum(G * y))

    y, cache = reference.conv_forward(x, W, b, stride, groups, lo, hi)
    if clamped:
        assert 0 < cache[4].sum() < cache[4].size       # some elements really are clipped
    dx, dW, db = reference.conv_backward(G, cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    for analytic, arr in ((dx, x), (dW, W), (db, b)):
        num = numeric_grad(loss, arr, FD_EPS)
        assert rel_l2(analytic, num) < 1e-6


@pytest.mark.parametrize("clamped", [False, True])
def test_reference_add_vs_finite_differences(clamped):
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    lo, hi = interior_bounds(x1 + x2, 1e-3) if clamped else (-1e6, 1e6)
    G = rng.normal(size=x1.shape)
    loss = lambda: float(np.sum(G * reference.add_forward(x1, x2, lo, hi)[0]))
    _, mask = reference.add_forward(x1, x2, lo, hi)
    d1, d2 = reference.add_backward(G, mask)
    assert rel_l2(d1, numeric_grad(loss, x1, FD_EPS)) < 1e-6
    assert rel_l2(d2, numeric_grad(loss, x2, FD_EPS)) < 1e-6


@pytest.mark.parametrize("clamped", [False, True])
def test_reference_avgpool_vs_finite_differences(clamped):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 8, 3, 5))
    lo, hi = interior_bounds(x.mean(axis=(2, 3)), 1e-4) if clamped else (-1e6, 1e6)
    G = rng.normal(size=(3, 8, 1, 1))
    loss = lambda: float(np.sum(G * reference.avgpool_forward(x, lo, hi)[0]))
    y, cache = reference.avgpool_forward(x, lo, hi)
    assert y.shape == (3, 8, 1, 1)
    dx = reference.avgpool_backward(G, cache)
    assert rel_l2(dx, numeric_grad(loss, x, FD_EPS)) < 1e-6


def test_reference_softmax_cross_entropy_vs_finite_differences():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(4, 10)) * 3
    labels = np.array([0, 3, 9, 3])
    loss, g = reference.softmax_cross_entropy(logits, labels)
    # loss value against a direct formula
    lse = np.log(np.exp(logits).sum(axis=1))
    assert loss == pytest.approx(np.mean(lse - logits[np.arange(4), labels]), rel=1e-12)
    num = numeric_grad(lambda: reference.softmax_cross_entropy(logits, labels)[0], logits, 1e-5)
    assert rel_l2(g, num) < 1e-6


# ------------------------------------------------------------------- integer test fixtures

def make_conv(rng, c_in, c_out, kernel, stride, depthwise, y_scale_factor=1.0):
    groups = c_in if depthwise else 1
    weight = rng.integers(-127, 128, size=(c_out, c_in // groups, kernel, kernel)).astype(np.int8)
    w_scales = rng.uniform(0.002, 0.02, size=c_out)
    xq = QParams(float(rng.uniform(0.01, 0.05)), int(rng.integers(-20, 21)))
    fan_in = kernel * kernel * (c_in // groups)
    # output scale so that the accumulator range roughly spans int8 (some clamping happens)
    typical = xq.scale * float(w_scales.mean()) * 127 * 70 * math.sqrt(fan_in)
    yq = QParams(typical / 127 * y_scale_factor, int(rng.integers(-30, 31)))
    bias = rng.integers(-2000, 2001, size=c_out).astype(np.int32)
    return Conv("c", "input", "y", weight, bias, w_scales, stride, groups, xq, yq)


def naive_conv_forward(node: Conv, x: np.ndarray):
    """numerics 4.2 with Python ints and explicit loops."""
    n_b, c_in, h, w = x.shape
    K, S, P = node.kernel, node.stride, node.kernel // 2
    ho, wo = (h + 2 * P - K) // S + 1, (w + 2 * P - K) // S + 1
    zx, zy = node.x.zero, node.y.zero
    y = np.zeros((n_b, node.out_channels, ho, wo), dtype=np.int64)
    mask = np.zeros(y.shape, dtype=bool)
    for c in range(node.out_channels):
        m = node.x.scale * float(node.w_scales[c]) / node.y.scale
        group = [c] if node.depthwise else range(c_in)
        for nb, i, j in itertools.product(range(n_b), range(ho), range(wo)):
            acc = int(node.bias[c])
            for gi, ci in enumerate(group):
                for u, v in itertools.product(range(K), range(K)):
                    hh, ww = i * S + u - P, j * S + v - P
                    xv = int(x[nb, ci, hh, ww]) if 0 <= hh < h and 0 <= ww < w else zx
                    acc += int(node.weight[c, 0 if node.depthwise else gi, u, v]) * (xv - zx)
            pre = zy + ref_apply(acc, m)
            y[nb, c, i, j] = min(127, max(-128, pre))
            mask[nb, c, i, j] = -128 <= pre <= 127
    return y, mask


def naive_weight_grad(node: Conv, x: np.ndarray, G: np.ndarray, selected) -> np.ndarray:
    """numerics 6.2 weight gradient over the selected channels, int64 einsum per (u, v)."""
    K, S, P = node.kernel, node.stride, node.kernel // 2
    n_b, c_in, h, w = x.shape
    ho, wo = G.shape[2:]
    xc = np.zeros((n_b, c_in, h + 2 * P + S * 2, w + 2 * P + S * 2), dtype=np.int64)
    xc[:, :, P : P + h, P : P + w] = x.astype(np.int64) - node.x.zero    # padding: z_x - z_x = 0
    G = G.astype(np.int64)
    if node.depthwise:
        out = np.zeros((len(selected), 1, K, K), dtype=np.int64)
    else:
        out = np.zeros((node.out_channels, len(selected), K, K), dtype=np.int64)
    for u, v in itertools.product(range(K), range(K)):
        win = xc[:, :, u : u + (ho - 1) * S + 1 : S, v : v + (wo - 1) * S + 1 : S]
        if node.depthwise:
            for r, c in enumerate(selected):
                out[r, 0, u, v] = int(np.sum(G[:, c] * win[:, c]))
        else:
            out[:, :, u, v] = np.einsum("nchw,nkhw->ck", G, win[:, selected])
    return out


# ------------------------------------------------------------- (b) integer forward, exact

@pytest.mark.parametrize("stride,kernel,depthwise", CONV_CASES)
def test_int_conv_forward_vs_naive_loops(stride, kernel, depthwise):
    rng = np.random.default_rng(200 + 10 * stride + kernel + 50 * depthwise)
    c_in = 3
    node = make_conv(rng, c_in, c_in if depthwise else 4, kernel, stride, depthwise, 0.3)
    x = rng.integers(-128, 128, size=(2, c_in, 5, 6)).astype(np.int8)
    y, mask = int_ops.conv_forward(node, x)
    y_ref, mask_ref = naive_conv_forward(node, x)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y.astype(np.int64), y_ref)
    np.testing.assert_array_equal(mask, mask_ref)
    assert 0 < mask.sum() < mask.size          # both clamped and unclamped outputs occur


def test_int_conv_forward_relu6_and_bias_only():
    # A ReLU6 output (s_y = 6/255, z_y = -128): the clamp at -128 is the ReLU.
    w = np.zeros((2, 1, 1, 1), np.int8)
    node = Conv("c", "input", "y", w, np.array([-1000, 1200], np.int32), np.array([0.01, 0.01]),
                1, 1, QParams(0.02, 0), QParams(6 / 255, -128))
    y, mask = int_ops.conv_forward(node, np.zeros((1, 1, 2, 2), np.int8))
    # acc = bias; pre = -128 + round(bias * 0.0002 * 255 / 6)
    m = 0.02 * 0.01 / (6 / 255)
    assert y[0, 0].ravel().tolist() == [-128] * 4
    assert not mask[0, 0].any()
    # 1200 * 0.0085 = 10.2 -> 10
    assert y[0, 1].ravel().tolist() == [-128 + ref_apply(1200, m)] * 4 == [-118] * 4
    assert mask[0, 1].all()


@pytest.mark.parametrize("seed", range(4))
def test_int_add_forward_vs_numerics_4_3(seed):
    rng = np.random.default_rng(300 + seed)
    q1 = QParams(float(rng.uniform(0.02, 0.2)), int(rng.integers(-20, 21)))
    q2 = QParams(float(rng.uniform(0.02, 0.2)), int(rng.integers(-20, 21)))
    qy = QParams(float(rng.uniform(0.05, 0.15)), int(rng.integers(-20, 21)))
    node = Add("a", ("p", "q"), "y", q1, q2, qy)
    x1 = rng.integers(-128, 128, size=(2, 3, 4, 4)).astype(np.int8)
    x2 = rng.integers(-128, 128, size=(2, 3, 4, 4)).astype(np.int8)
    r1, r2 = Fraction(q1.scale / qy.scale), Fraction(q2.scale / qy.scale)
    n = 30 - ref_floor_log2(max(r1, r2))
    M1, M2 = ref_round_half_up(r1 * 2 ** n), ref_round_half_up(r2 * 2 ** n)
    assert 2 ** 30 <= max(M1, M2) < 2 ** 31
    y, mask = int_ops.add_forward(node, x1, x2)
    for idx in np.ndindex(x1.shape):
        pre = qy.zero + ref_round_shift((int(x1[idx]) - q1.zero) * M1 + (int(x2[idx]) - q2.zero) * M2, n)
        assert int(y[idx]) == min(127, max(-128, pre))
        assert bool(mask[idx]) == (-128 <= pre <= 127)
    assert 0 < mask.sum() < mask.size


@pytest.mark.parametrize("hw,same_q", [((4, 4), True), ((3, 3), True), ((4, 4), False), ((2, 5), False)])
def test_int_avgpool_forward_vs_numerics_4_4(hw, same_q):
    rng = np.random.default_rng(400 + hw[0] * 10 + hw[1])
    qx = QParams(0.1, int(rng.integers(-10, 11)))
    qy = qx if same_q else QParams(0.03, int(rng.integers(-10, 11)))
    node = AvgPool("p", "x", "y", qx, qy)
    x = rng.integers(-128, 128, size=(2, 6) + hw).astype(np.int8)
    x[0, 0] = 127                      # a clamped output when s_y < s_x
    y, mask = int_ops.avgpool_forward(node, x)
    assert y.shape == (2, 6, 1, 1)
    m = qx.scale / (qy.scale * hw[0] * hw[1])
    if same_q and hw == (4, 4):
        assert ref_multiplier(m) == (2 ** 30, 34)     # exact 1/16
    for nb, c in np.ndindex(2, 6):
        total = int(np.sum(x[nb, c].astype(np.int64) - qx.zero))
        pre = qy.zero + ref_apply(total, m)
        assert int(y[nb, c, 0, 0]) == min(127, max(-128, pre))
        assert bool(mask[nb, c, 0, 0]) == (-128 <= pre <= 127)


# -------------------------------------------------- (b) integer backward vs the reference

def selection_for(rng, node: Conv):
    k = max(1, node.in_channels // 2)
    return np.sort(rng.choice(node.in_channels, size=k, replace=False))


@pytest.mark.parametrize("stride,kernel,depthwise", CONV_CASES)
@pytest.mark.parametrize("batch", [1, 2])
def test_int_conv_backward_vs_reference(stride, kernel, depthwise, batch):
    rng = np.random.default_rng(500 + 10 * stride + kernel + 50 * depthwise + 1000 * batch)
    c_in = 6
    c_out = c_in if depthwise else 5
    node = make_conv(rng, c_in, c_out, kernel, stride, depthwise)
    h, w = 8, 7
    x = rng.integers(-128, 128, size=(batch, c_in, h, w)).astype(np.int8)
    _, mask = int_ops.conv_forward(node, x)
    assert mask.mean() > 0.5
    g_y = rng.integers(-127, 128, size=mask.shape).astype(np.int8)
    e_y = int(rng.integers(-20, -5))
    sel = selection_for(rng, node)
    x_sel = x[:, sel]
    input_grad, bias_grad, weight_grad = int_ops.conv_backward(
        node, g_y, e_y, mask, (h, w), x_sel, sel, need_input_grad=True)

    # the float64 reference on the same dequantized values and masks
    x_real = node.x.scale * (x.astype(np.float64) - node.x.zero)
    w_real = node.weight.astype(np.float64) * node.w_scales[:, None, None, None]
    cache = (x_real, w_real, stride, node.groups, mask)
    dx_ref, dW_ref, db_ref = reference.conv_backward(g_y.astype(np.float64) * 2.0 ** e_y, cache)

    # input gradient: int8 with a shared exponent, close to the reference
    g_x, e_x = input_grad
    assert g_x.dtype == np.int8 and g_x.shape == x.shape and g_x.min() >= -127
    dx = g_x.astype(np.float64) * 2.0 ** e_x
    assert cosine(dx, dx_ref) > 0.99
    assert rel_l2(dx, dx_ref) < 0.05

    # bias gradient: exact integers, sum of G over (n, i, j)
    G = g_y.astype(np.int64) * mask
    assert bias_grad.tolist() == [int(G[:, c].sum()) for c in range(c_out)]
    np.testing.assert_allclose(bias_grad * 2.0 ** e_y, db_ref, rtol=1e-12, atol=1e-300)

    # weight gradient: exact integers over the selected channels only
    expected = naive_weight_grad(node, x, G, sel)
    assert weight_grad.dtype == np.int64 and weight_grad.shape == expected.shape
    np.testing.assert_array_equal(weight_grad, expected)
    ref_sel = dW_ref[sel] if depthwise else dW_ref[:, sel]
    np.testing.assert_allclose(weight_grad * node.x.scale * 2.0 ** e_y, ref_sel, rtol=1e-9,
                               atol=1e-12 * np.abs(ref_sel).max())


def test_int_conv_backward_input_grad_follows_numerics_6_2_exactly():
    """The input gradient's two quantizers and the per-channel scale, step by step."""
    rng = np.random.default_rng(600)
    node = make_conv(rng, 4, 3, 3, 2, False)
    x = rng.integers(-128, 128, size=(1, 4, 5, 5)).astype(np.int8)
    _, mask = int_ops.conv_forward(node, x)
    g_y = rng.integers(-127, 128, size=mask.shape).astype(np.int8)
    e_y = -9
    (g_x, e_x), _, wg = int_ops.conv_backward(node, g_y, e_y, mask, (5, 5), None, None, True)
    assert wg is None
    # channel scale of s_w, computed independently
    f = [Fraction(float(s)) for s in node.w_scales]
    N = 14 - ref_floor_log2(max(f))
    F = [ref_round_half_up(v * 2 ** N) for v in f]
    if max(F) == 2 ** 15:
        N -= 1
        F = [ref_round_half_up(v * 2 ** N) for v in f]
    G = g_y.astype(np.int64) * mask
    A1 = G * np.array(F, dtype=np.int64)[None, :, None, None]
    g1, e1 = ref_quantize(A1, e_y - N)
    dX = np.zeros((1, 4, 5, 5), dtype=np.int64)
    for c, ci, u, v, i, j in itertools.product(range(3), range(4), range(3), range(3), range(3), range(3)):
        hh, ww = i * 2 + u - 1, j * 2 + v - 1
        if 0 <= hh < 5 and 0 <= ww < 5:
            dX[0, ci, hh, ww] += int(node.weight[c, ci, u, v]) * int(g1[0, c, i, j])
    g_ref, e_ref = ref_quantize(dX, e1)
    assert e_x == e_ref
    np.testing.assert_array_equal(g_x.astype(np.int64), g_ref)


def test_int_conv_backward_without_input_grad_or_weights():
    rng = np.random.default_rng(601)
    node = make_conv(rng, 3, 3, 3, 1, True)
    x = rng.integers(-128, 128, size=(1, 3, 4, 4)).astype(np.int8)
    _, mask = int_ops.conv_forward(node, x)
    g_y = rng.integers(-127, 128, size=mask.shape).astype(np.int8)
    ig, bg, wg = int_ops.conv_backward(node, g_y, -3, mask, (4, 4), None, None, False)
    assert ig is None and wg is None
    assert bg.tolist() == [int((g_y.astype(np.int64) * mask)[:, c].sum()) for c in range(3)]


def test_int_add_backward_vs_reference():
    rng = np.random.default_rng(700)
    g_y = rng.integers(-127, 128, size=(1, 4, 3, 3)).astype(np.int8)
    mask = rng.random(g_y.shape) < 0.7
    (g1, e1), (g2, e2) = int_ops.add_backward(g_y, -11, mask)
    r1, r2 = reference.add_backward(g_y.astype(np.float64) * 2.0 ** -11, mask)
    assert e1 == e2 == -11 and g1.dtype == np.int8 and g2.dtype == np.int8
    np.testing.assert_array_equal(g1.astype(np.float64) * 2.0 ** e1, r1)
    np.testing.assert_array_equal(g2.astype(np.float64) * 2.0 ** e2, r2)
    g1[0, 0, 0, 0] = 99                     # two independent tensors
    assert g2[0, 0, 0, 0] == (g_y[0, 0, 0, 0] if mask[0, 0, 0, 0] else 0)


@pytest.mark.parametrize("hw", [(4, 4), (2, 2), (8, 8), (3, 3), (7, 7), (2, 5)])
def test_int_avgpool_backward_vs_reference(hw):
    rng = np.random.default_rng(800 + hw[0] * 10 + hw[1])
    g_y = rng.integers(-127, 128, size=(2, 16, 1, 1)).astype(np.int8)
    mask = rng.random(g_y.shape) < 0.8
    e_y = -7
    g, e = int_ops.avgpool_backward(g_y, e_y, mask, hw)
    assert g.shape == (2, 16) + hw and g.dtype == np.int8
    dx_ref = reference.avgpool_backward(g_y.astype(np.float64) * 2.0 ** e_y, ((2, 16) + hw, mask))
    dx = g.astype(np.float64) * 2.0 ** e
    assert np.all(g == g[:, :, :1, :1])                  # the same value at every (i, j)
    # numerics 6.3 on Python ints
    f = Fraction(1, hw[0] * hw[1])
    N = 14 - ref_floor_log2(f)
    F = ref_round_half_up(f * 2 ** N)
    if F == 2 ** 15:
        N, F = N - 1, ref_round_half_up(f * 2 ** (N - 1))
    g_ref, e_ref = ref_quantize(g_y.astype(np.int64) * mask * F, e_y - N)
    assert e == e_ref
    np.testing.assert_array_equal(g[:, :, 0, 0], g_ref[:, :, 0, 0])
    if (hw[0] * hw[1]) & (hw[0] * hw[1] - 1) == 0:
        np.testing.assert_array_equal(dx, dx_ref)         # power of two: exact
    else:
        assert cosine(dx, dx_ref) > 0.999 and rel_l2(dx, dx_ref) < 0.01


# ------------------------------------------------------------------------ (c) the loss

@pytest.mark.parametrize("seed", range(12))
def test_softmax_cross_entropy_grad_vs_float(seed):
    rng = np.random.default_rng(900 + seed)
    classes = int(rng.choice([2, 10, 37, 100]))
    s_l = float(rng.uniform(0.03, 0.12))
    z_l = int(rng.integers(-10, 11))
    logits_q = rng.integers(-100, 101, size=classes).astype(np.int8)
    label = int(rng.integers(classes))
    table = int_ops.softmax_table(s_l)
    # table of numerics 6.1, independently
    expected_T = [ref_round_half_up(Fraction(2 ** 16 * math.exp(-s_l * d))) for d in range(256)]
    assert table.tolist() == expected_T and table[0] == 2 ** 16
    g, e, loss = int_ops.softmax_cross_entropy_grad(logits_q, label, table, s_l)
    assert g.dtype == np.int8 and g.shape == (classes,) and g.min() >= -127
    real = s_l * (logits_q.astype(np.float64) - z_l)
    p = np.exp(real - real.max())
    p /= p.sum()
    expected = p.copy()
    expected[label] -= 1
    got = g.astype(np.float64) * 2.0 ** e
    assert np.abs(got - expected).max() < 2 / 127 * np.abs(expected).max()
    ce = -math.log(p[label])
    assert abs(loss - ce) < 1e-3 * max(1.0, ce)
    # the integers of numerics 6.1 exactly
    d = [int(logits_q.max()) - int(v) for v in logits_q]
    S = sum(expected_T[di] for di in d)
    A = [(expected_T[di] * 2 ** 15 + S // 2) // S - (2 ** 15 if i == label else 0) for i, di in enumerate(d)]
    g_ref, e_ref = ref_quantize(A, -15)
    assert e == e_ref and g.tolist() == g_ref.tolist()


def test_softmax_cross_entropy_grad_uniform_logits():
    # 10 equal logits: p = 2^15 / 10 rounded = 3277; A_t = 3277 - 32768 = -29491
    table = int_ops.softmax_table(0.1)
    g, e, loss = int_ops.softmax_cross_entropy_grad(np.zeros(10, np.int8), 4, table, 0.1)
    A = [3277] * 10
    A[4] -= 2 ** 15
    g_ref, e_ref = ref_quantize(A, -15)
    assert e == e_ref == -7 and g.tolist() == g_ref.tolist()
    assert loss == pytest.approx(math.log(10), abs=1e-9)
