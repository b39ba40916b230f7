"""The firmware's loss step (fpga/firmware/loss.h) compiled for the host with `ziglang` and
compared with the golden model on many random cases: the gradient bytes and exponent of
`golden/int_ops.py: softmax_cross_entropy_grad` times the clamp mask, S and d_t exactly, and the
Q16 loss within 1e-4 of the golden float.

The cases lean on what broke once: the label being the top class (max|A| must exclude its p_t),
ties for the top logit, saturated logits, one class, 64 classes, all-zero masks.
"""
import subprocess
import sys

import numpy as np
import pytest

from golden import int_ops
from hw.soc.firmware import SOURCE_DIR, compiler_available

ok, reason = compiler_available()
pytestmark = pytest.mark.skipif(not ok, reason=reason)
CASES = 3000


def build_host_program(tmp_path_factory, name: str, header: str):
    """Compile the firmware's host test program `name`.c (it includes `header`) for this machine."""
    out = tmp_path_factory.mktemp(name) / name
    result = subprocess.run([sys.executable, "-m", "ziglang", "cc", "-O2", "-Wall", "-Werror",
                             f"-I{SOURCE_DIR}", "-o", str(out), str(SOURCE_DIR / f"{name}.c")],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"host build of {header} failed:\n{result.stderr}")
    return out


@pytest.fixture(scope="module")
def host_loss(tmp_path_factory):
    return build_host_program(tmp_path_factory, "host_loss", "loss.h")


def random_cases(rng, count):
    cases = []
    for c in range(count):
        classes = int(rng.choice([1, 2, 10, 10, 10, 37, 64]))
        kind = c % 5
        if kind == 0:                                   # spread logits
            logits = rng.integers(-128, 128, classes)
        elif kind == 1:                                 # confident: one logit far above
            logits = rng.integers(-20, 20, classes)
            logits[rng.integers(classes)] = rng.integers(60, 128)
        elif kind == 2:                                 # near-ties
            logits = rng.integers(-3, 4, classes) + rng.integers(-100, 100)
        elif kind == 3:                                 # saturated
            logits = rng.choice([-128, 127], classes)
        else:
            logits = rng.integers(-128, 128, classes)
        label = int(rng.integers(classes))
        if kind == 1 and rng.random() < 0.5:            # the label is the top class
            label = int(np.argmax(logits))
        mask = rng.random(classes) < (0.0 if c % 50 == 0 else 0.9)
        cases.append((np.clip(logits, -128, 127).astype(np.int64), label, mask))
    return cases


@pytest.mark.parametrize("logit_scale", [0.21675813524951523, 0.05, 1.3])
def test_firmware_loss_step_equals_the_golden_model(host_loss, logit_scale):
    rng = np.random.default_rng(int(logit_scale * 1000))
    table = int_ops.softmax_table(logit_scale)
    cases = random_cases(rng, CASES)
    scale_q24 = int(round(logit_scale * 2 ** 24))
    lines = [" ".join(str(int(t)) for t in table), f"{scale_q24} {len(cases)}"]
    for logits, label, mask in cases:
        lines.append(f"{logits.size} {label} " + " ".join(map(str, logits.tolist())) + " "
                     + " ".join(str(int(m)) for m in mask))
    result = subprocess.run([str(host_loss)], input="\n".join(lines) + "\n", capture_output=True,
                            text=True, check=True)
    rows = result.stdout.splitlines()
    assert len(rows) == len(cases)
    worst_loss_error = 0.0
    for (logits, label, mask), row in zip(cases, rows):
        exponent, total, distance, loss_q16, *gradient = (int(v) for v in row.split())
        g, e, loss = int_ops.softmax_cross_entropy_grad(logits, label, table, logit_scale)
        expected = (g.astype(np.int64) * mask).tolist()
        d = logits.max() - logits
        assert (gradient, exponent) == (expected, e), (logits.tolist(), label)
        assert total == int(table[d].sum()) and distance == int(d[label])
        worst_loss_error = max(worst_loss_error, abs(loss_q16 / 2 ** 16 - loss))
    assert worst_loss_error < 1e-4


# ---------------------------------------------------------------- channel selection (select.h)

@pytest.fixture(scope="module")
def host_select(tmp_path_factory):
    return build_host_program(tmp_path_factory, "host_select", "select.h")


def _builtin_selector(seed, scheme_name="builtin-sparse"):
    from golden.builtin import builtin_model
    from golden.scheme import ChannelSelector, parse_scheme
    model = builtin_model().with_new_head(10, seed=0)
    return ChannelSelector(model, parse_scheme(scheme_name, model), "dynamic", seed=seed)


def _compare(host_select, selector, rounds):
    """select.h's draws, `rounds` iterations, equal to the golden selector's, state included."""
    convs = list(selector.counts)
    seed = selector.rng.state          # the stream's state before the first draw (zero rule applied)
    lines = [f"{seed} {rounds} {len(convs)}"]
    lines += [f"{int(selector.channels[i])} {selector.counts[i]} {int(selector.ratios[i] == 1.0)}" for i in convs]
    result = subprocess.run([str(host_select)], input="\n".join(lines) + "\n", capture_output=True,
                            text=True, check=True)
    rows = iter(result.stdout.splitlines())
    for _ in range(rounds):
        expected = selector.select()
        for i in convs:
            assert [int(v) for v in next(rows).split()] == expected[i].tolist(), i
        assert next(rows) == f"state {selector.rng.state}"
    assert next(rows, None) is None


@pytest.mark.parametrize("seed", [0, 3, 2 * 12345 + 1, 0xFFFFFFFF])
def test_firmware_channel_selection_equals_the_golden_selector_builtin_sparse(host_select, seed):
    _compare(host_select, _builtin_selector(seed), rounds=200)


def test_firmware_channel_selection_edge_shapes(host_select):
    """One channel, k = c, k = 1, ratio-1 convs (no draws) between drawing ones, 512 channels."""
    selector = _builtin_selector(99)
    shapes = [(1, 1, 0.5), (2, 1, 0.5), (3, 3, 0.99), (48, 48, 1.0), (100, 1, 0.01), (512, 300, 0.6),
              (7, 7, 1.0), (24, 12, 0.5)]
    selector.counts = {i: k for i, (c, k, r) in enumerate(shapes)}
    selector.channels = {i: c for i, (c, k, r) in enumerate(shapes)}
    selector.ratios = {i: r for i, (c, k, r) in enumerate(shapes)}
    _compare(host_select, selector, rounds=30)
