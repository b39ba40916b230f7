"""Back-propagation through layers as engine programs, on the golden executor.

The gradient epilogue is checked against numerics 5's definitions (golden/fixedpoint.py), and
whole compiled training iterations against the golden Trainer: every resident weight and bias
and the `sr` stream's state, byte for byte, after every iteration.
"""
import re

import numpy as np
import pytest

from golden import int_ops
from golden.builtin import builtin_model
from golden.data import load_digits
from golden.engine import layout
from golden.engine import program as isa
from golden.engine.compiler import Allocator, CompileError
from golden.engine.config import EngineConfig, SMALL
from golden.engine.cycles import descriptor_cycles, program_cycles, program_external_reads
from golden.engine.executor import Machine
from golden.engine.training import _lowering, compile_training
from golden.fixedpoint import add_gradients, quantize_gradient
from golden.graph import INPUT, AvgPool, Conv, Model, QParams
from golden.scheme import ChannelSelector, parse_scheme
from golden.train import Trainer, UpdateRule
from synthetic import conv_factory

TINY = EngineConfig(lanes=8, scratchpad_bytes=8192, external_bytes=4096)


def _run(machine, descriptors):
    machine.run_or_raise(descriptors + [isa.Descriptor()])


@pytest.mark.parametrize("seed", range(40))
def test_gradient_sum_matches_numerics(seed):
    rng = np.random.default_rng(seed)
    m = Machine(TINY)
    C, P = 8 * int(rng.integers(1, 4)), int(rng.integers(1, 6))
    g1, g2 = rng.integers(-127, 128, (P, C)), rng.integers(-127, 128, (P, C))
    e1 = int(rng.integers(-40, 10))
    e2 = e1 + int(rng.choice([0, 2, -5, 23, 24, 31, -40]))
    mask = rng.integers(0, 2, (P, C))
    m.write(0, g1.astype(np.int8))
    m.write(1024, g2.astype(np.int8))
    m.write(4000, np.array([e1, e2], "<i4"))
    m.write(3000, np.packbits(mask.ravel().astype(np.uint8), bitorder="little"))
    d = isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT, flags=isa.FLAG_MASK_IN,
                       lanes_total=C, counts=[C // 8, P, 1, 1, 1, 1], a_base=0, a_strides=[8, C, 0, 0, 0, 0],
                       b_base=1024, b_strides=[8, C, 0, 0, 0, 0], out_base=2048, out_strides=[8, C, 0],
                       mask_base=3000, exp_addr=4000, exp2_addr=4004, exp_out_addr=4008)
    _run(m, [d])
    g, e = add_gradients(g1, e1, g2, e2)
    assert np.array_equal(m.read(2048, P * C, np.int8).reshape(P, C), g * mask)
    assert m.read(4008, 1, np.int32)[0] == e


@pytest.mark.parametrize("seed", range(20))
def test_scaled_gradient_and_dot_match_numerics(seed):
    rng = np.random.default_rng(100 + seed)
    m = Machine(TINY)
    C, P, Ci = int(rng.integers(1, 20)), int(rng.integers(1, 6)), int(rng.integers(1, 12))
    G = rng.integers(-127, 128, (P, C))
    F = rng.integers(1, 2 ** 15, C)
    W = rng.integers(-127, 128, (Ci, C))
    e_y = int(rng.integers(-30, 0))
    m.write(0, G.astype(np.int8))
    m.write(500, layout.param_bytes(np.zeros(C), F, np.zeros(C)))
    m.write(1000, W.astype(np.int8))
    m.write(4000, np.array([e_y], "<i4"))
    chunks = -(-C // 8)
    prescale = isa.Descriptor(opcode=isa.MAC, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT,
                              flags=isa.FLAG_SCALE | isa.FLAG_B_ONES, lanes_total=C,
                              counts=[chunks, P, 1, 1, 1, 1], a_strides=[8, C, 0, 0, 0, 0],
                              out_base=2000, out_strides=[8, C, 0], param_base=500,
                              exp_addr=4000, exp_offset=-9, exp_out_addr=4004)
    dot = isa.Descriptor(opcode=isa.MAC, mode=isa.DOT, epilogue=isa.GRADIENT, chunk_loop=3, lanes_total=C,
                         counts=[P, Ci, 1, chunks, 1, 1], a_base=2000, a_strides=[C, 0, 0, 8, 0, 0],
                         b_base=1000, b_strides=[0, C, 0, 8, 0, 0], out_base=3000, out_strides=[Ci, 1, 0],
                         exp_addr=4004, exp_out_addr=4008)
    _run(m, [prescale, dot])
    g1, e1 = quantize_gradient(G * F[None, :], e_y - 9)
    assert np.array_equal(m.read(2000, P * C, np.int8).reshape(P, C), g1)
    assert m.read(4004, 1, np.int32)[0] == e1
    g2, e2 = quantize_gradient(g1.astype(np.int64) @ W.T, e1)
    assert np.array_equal(m.read(3000, P * Ci, np.int8).reshape(P, Ci), g2)
    assert m.read(4008, 1, np.int32)[0] == e2


def run_iterations(scheme_text, iterations, config=SMALL, rounding="stochastic", image_external=False,
                   model=None, stage_weights=True):
    """Compiled iterations on the golden executor beside the Trainer; yields per-iteration
    (loss from the program, loss from the Trainer, names of mismatching tensors, prng equal).
    With `image_external` the host writes each image into external memory. `model` defaults to
    the built-in CNN with a fresh head."""
    model = model or builtin_model().with_new_head(10, seed=0)
    scheme = parse_scheme(scheme_text, model)
    rule = UpdateRule(rounding=rounding)
    data = load_digits("train")
    images = int_ops.quantize_images(data.images[:iterations], model)
    trainer = Trainer(model, scheme, "dynamic", rule, seed=1)
    host_selector = ChannelSelector(model, scheme, "dynamic", seed=2 * 1 + 1)   # the Trainer's draws
    program = compile_training(model, scheme, config, rule, image_external=image_external,
                               stage_weights=stage_weights)
    machine = Machine(config, program.external)
    machine.scratchpad[:] = program.initial_scratchpad(images[0], trainer.sr_rng.state)
    for it in range(iterations):
        program.write_image(machine.scratchpad, images[it])
        machine.load_external(0, program.external)
        program.write_selection(machine.scratchpad, host_selector.select())
        _run(machine, program.forward.descriptors)
        loss = program.loss_step(machine.scratchpad, model, int(data.labels[it]))
        _run(machine, program.backward)
        result = trainer.step(images[it][None], int(data.labels[it]))
        wrong = []
        for name, (w_at, p_at) in program.forward.resident.items():
            node = next(n for n in trainer.model.nodes if n.name == name)
            weights = layout.weight_bytes(node.weight, node.depthwise)
            bias = node.bias.astype("<i4").view(np.uint8)
            if w_at is not None and not np.array_equal(machine.scratchpad[w_at:w_at + weights.size], weights):
                wrong.append(name + " weights")
            if not np.array_equal(machine.scratchpad[p_at:p_at + bias.size], bias):
                wrong.append(name + " bias")
        same_prng = int(machine.read(program.prng_addr, 1, np.uint32)[0]) == trainer.sr_rng.state
        yield loss, result.loss, wrong, same_prng


def assert_iterations_equal_the_trainer(scheme_text, iterations, **options):
    """run_iterations, asserting every iteration bit-exact (loss, resident weights and biases,
    PRNG state) and that the losses differ (the images differ and the model moves)."""
    losses = []
    for loss, trainer_loss, wrong, same_prng in run_iterations(scheme_text, iterations, **options):
        assert loss == trainer_loss
        assert wrong == []
        assert same_prng
        losses.append(loss)
    assert len(set(losses)) == iterations


def _with_dead_channel(conv_index, channel=3, scale=1e-12):
    """The built-in CNN (fresh head) with one "dead" channel in a conv, as MCUNet's file has:
    a weight scale so small that its QAS update factors exceed what a multiplier holds."""
    model = builtin_model().with_new_head(10, seed=0)
    conv = model.convs[conv_index]
    conv.w_scales = conv.w_scales.copy()
    conv.w_scales[channel] = scale
    return model


def test_a_conv_on_the_backward_path_that_is_not_updated_needs_no_update_multipliers():
    """b2.dw (conv 5) only passes the gradient on to b2.pw1, whose weights are updated: with a
    dead channel in b2.dw the Trainer and the compiler still build the iteration, bit-exact."""
    model = _with_dead_channel(5)
    assert_iterations_equal_the_trainer("bias=1;w=4:1", 3, model=model)


@pytest.mark.parametrize("scheme", ["bias=2;w=4:1", "bias=1;w=5:1"])
def test_an_updated_conv_with_a_dead_channel_is_refused_by_name(scheme):
    """Updating b2.dw's biases (bias=2) or weights (w=5) needs its channel 3's multiplier, which
    does not fit: the Trainer and the compiler both refuse, naming the conv, the channel and
    the learning rate that would fit."""
    model = _with_dead_channel(5)
    parsed = parse_scheme(scheme, model)
    with pytest.raises(ValueError, match=r"conv 'b2\.dw'.*channel 3 .*a learning rate below") as exc:
        compile_training(model, parsed, SMALL, UpdateRule())
    with pytest.raises(ValueError, match=r"conv 'b2\.dw'.*channel 3 .*a learning rate below") as exc:
        Trainer(model, parsed, "dynamic", UpdateRule(), seed=1)
    # The Trainer adds the rate every updated conv takes, and that rate trains.
    fits = float(re.search(r"a learning rate below (\S+) fits every updated conv", str(exc.value)).group(1))
    Trainer(model, parsed, "dynamic", UpdateRule(lr=fits * 0.99), seed=1)


@pytest.mark.parametrize("scheme,rounding", [("last-layer", "stochastic"), ("bias-4", "stochastic"),
                                             ("bias=4;w=4:1,5:1,6:1", "stochastic"),
                                             ("bias=4;w=4:1,5:1,6:1", "truncate"),
                                             ("bias=5;w=3:1", "nearest"), ("builtin-sparse", "stochastic"),
                                             ("builtin-sparse", "truncate"),
                                             ("bias=4;w=4:0.125,5:0.5,6:0.25", "stochastic"),
                                             ("bias=6;w=1:0.5,3:0.25", "stochastic")])
def test_compiled_iterations_equal_the_trainer(scheme, rounding):
    assert_iterations_equal_the_trainer(scheme, 4, rounding=rounding)


@pytest.mark.parametrize("rounding", ["stochastic", "truncate"])
def test_full_scheme_equals_the_trainer(rounding):
    """Every conv's weights, conv0's a regular 3x3 one: one update descriptor per input channel."""
    model = builtin_model().with_new_head(10, seed=0)
    program = compile_training(model, parse_scheme("full", model), SMALL, UpdateRule(rounding=rounding))
    assert program.backward_ops.count("conv0 weight update") == model.convs[0].in_channels
    assert_iterations_equal_the_trainer("full", 3, rounding=rounding)


@pytest.mark.parametrize("stage_weights", [False, True])
def test_frozen_weights_staged_on_chip_change_no_byte_and_no_peak(stage_weights):
    """Frozen weights copied into the scratchpad where the plan has room below the peak (forward
    convs, a striped block's, a depthwise input gradient's): the same iterations as streaming
    them, no higher peak, fewer external reads, and the copies' cycles."""
    model = builtin_model().with_new_head(10, seed=0)
    scheme = parse_scheme("bias=6;w=1:0.5,3:0.25", model)
    staged = compile_training(model, scheme, SMALL, UpdateRule())
    streamed = compile_training(model, scheme, SMALL, UpdateRule(), stage_weights=False)
    copies = {phase: [d for d, op in zip(descriptors, ops) if "weights staged" in op]
              for phase, descriptors, ops in (("forward", staged.forward.descriptors, staged.forward.ops),
                                              ("backward", staged.backward, staged.backward_ops))}
    assert copies["forward"] and copies["backward"]
    assert not any("weights staged" in op for op in streamed.forward.ops + streamed.backward_ops)
    assert staged.forward.peak_bytes <= streamed.forward.peak_bytes
    reads = {name: program_external_reads(p.forward.descriptors, SMALL) + program_external_reads(p.backward, SMALL)
             for name, p in (("staged", staged), ("streamed", streamed))}
    assert reads["staged"] < reads["streamed"]
    extra = sum(descriptor_cycles(d, SMALL).total for phase in copies.values() for d in phase)
    assert program_cycles(staged.forward.descriptors, SMALL) + program_cycles(staged.backward, SMALL) == \
        program_cycles(streamed.forward.descriptors, SMALL) + program_cycles(streamed.backward, SMALL) + extra
    # each staged conv reads B from the scratchpad, below the peak
    for program in (staged.forward.descriptors, staged.backward):
        for d in program:
            if not d.flags & (isa.FLAG_B_EXTERNAL | isa.FLAG_B_ONES) and d.opcode == isa.MAC:
                assert d.b_base < staged.forward.peak_bytes
    assert_iterations_equal_the_trainer("bias=6;w=1:0.5,3:0.25", 3, stage_weights=stage_weights)


def test_buffers_are_freed_after_their_last_reader():
    """Bias-only convs update the bias before their input gradient, so G is dead once
    prescaled; clamp masks and saved inputs leave the scratchpad after their last reader; of a
    resident parameter table only the bias stays (the forward step copies the rest in)."""
    model = builtin_model().with_new_head(10, seed=0)
    program = compile_training(model, parse_scheme("bias-4", model), SMALL, UpdateRule())
    ops = program.backward_ops
    for name in ("b2.pw2", "b2.dw", "b2.pw1"):
        assert ops.index(f"{name} bias update") < ops.index(f"{name} input-gradient prescale")
    sizes = {address: data.size for address, data in program.forward.preload}
    for name, (_, p_at) in program.forward.resident.items():
        node = next(n for n in model.nodes if n.name == name)
        assert sizes[p_at] == 4 * node.out_channels
        assert f"{name} parameter table: bias" in program.forward.ops
    alloc = Allocator(SMALL.scratchpad_bytes, slack=SMALL.lanes)        # the compile again, to see its buffers
    _lowering(model, parse_scheme("bias-4", model), UpdateRule(), program.stripe_rows)(alloc, SMALL)
    assert [name for name in alloc.blocks if re.match(r"mask:|grad\d", name)] == ["mask:" + model.output]


def test_an_external_image_read_whole_equals_the_trainer():
    """Under the full scheme conv0 (not striped) is updated and reads its input in the backward
    pass: the image, written into external memory, is copied whole into the scratchpad."""
    model = builtin_model().with_new_head(10, seed=0)
    program = compile_training(model, parse_scheme("full", model), SMALL, UpdateRule(), image_external=True)
    assert "input from external memory" in program.forward.ops and "input" in program.forward.tensors
    for loss, trainer_loss, wrong, same_prng in run_iterations("full", 2, image_external=True):
        assert loss == trainer_loss and wrong == [] and same_prng


def test_conv0_weights_move_under_the_full_scheme():
    model = builtin_model().with_new_head(10, seed=0)
    trainer = Trainer(model, parse_scheme("full", model), "dynamic", UpdateRule(), seed=1)
    data = load_digits("train")
    image = int_ops.quantize_images(data.images[:1], model)[0]
    trainer.step(image[None], int(data.labels[0]))
    assert not np.array_equal(trainer.model.convs[0].weight, model.convs[0].weight)


def test_what_the_engine_cannot_run_yet_is_refused_with_a_sentence():
    model = builtin_model().with_new_head(10, seed=0)
    with pytest.raises(CompileError, match=r"conv0: weight updates of regular 3x3 convs run over all input "
                                           r"channels \(ratio 1\), not 0.5: they take one descriptor per input "
                                           r"channel, and a descriptor cannot take that channel from a channel "
                                           r"list entry"):
        compile_training(model, parse_scheme("bias=7;w=0:0.5", model), SMALL)


def strided_model() -> Model:
    """Pointwise -> regular 3x3 stride 2 -> depthwise 3x3 stride 2 -> pool -> classifier: the
    input gradients of both strided kinds lie on the backward path."""
    conv = conv_factory(np.random.default_rng(5), bias_bound=1000, scale_range=(0.002, 0.01))

    q_in, q_a, q_b, q_c, q_p = (QParams(1 / 64, 0), QParams(0.05, -128), QParams(0.08, -20),
                                QParams(0.1, 5), QParams(0.05, -3))
    nodes = [conv("c0", INPUT, 4, 8, 1, 1, 1, q_in, q_a),
             conv("c1", "c0", 8, 8, 3, 2, 1, q_a, q_b),
             conv("c2", "c1", 8, 8, 3, 2, 8, q_b, q_c),
             AvgPool("pool", "c2", "pool", q_c, q_p),
             conv("classifier", "pool", 8, 3, 1, 1, 1, q_p, QParams(0.2, -10), classifier=True)]
    return Model("strided", (4, 9, 9), q_in, nodes)


def run_strided(scheme_text, rounding="stochastic"):
    """Four compiled iterations of `strided_model` beside the Trainer, every resident weight and
    bias and the `sr` state compared after each; returns (program, the model before, the
    Trainer's model after)."""
    model = strided_model()
    scheme = parse_scheme(scheme_text, model)
    rule = UpdateRule(lr=0.5, rounding=rounding)
    rng = np.random.default_rng(9)
    trainer = Trainer(model, scheme, "dynamic", rule, seed=2)
    host_selector = ChannelSelector(model, scheme, "dynamic", seed=5)
    program = compile_training(model, scheme, SMALL, rule)
    machine = Machine(SMALL, program.external)
    image0 = rng.integers(-128, 128, (4, 9, 9))
    machine.scratchpad[:] = program.initial_scratchpad(image0, trainer.sr_rng.state)
    x_at = program.forward.tensors["input"][0]
    for it in range(4):
        image = image0 if it == 0 else rng.integers(-128, 128, (4, 9, 9))
        label = int(rng.integers(0, 3))
        x = layout.activation_bytes(image)
        machine.scratchpad[x_at:x_at + x.size] = x
        program.write_selection(machine.scratchpad, host_selector.select())
        _run(machine, program.forward.descriptors)
        loss = program.loss_step(machine.scratchpad, model, label)
        _run(machine, program.backward)
        assert loss == trainer.step(image[None].astype(np.int8), label).loss
        for node in trainer.model.nodes:
            if node.name in program.forward.resident:
                w_at, p_at = program.forward.resident[node.name]
                weights = layout.weight_bytes(node.weight, node.depthwise)
                if w_at is not None:
                    assert np.array_equal(machine.scratchpad[w_at:w_at + weights.size], weights), node.name
                assert np.array_equal(machine.scratchpad[p_at:p_at + 4 * node.out_channels].view("<i4"),
                                      node.bias), node.name
        assert int(machine.read(program.prng_addr, 1, np.uint32)[0]) == trainer.sr_rng.state
    return program, model, trainer.model


@pytest.mark.parametrize("scheme_text", ["bias=3", "bias=3;w=0:0.5,2:0.25"])
def test_strided_input_gradients_equal_the_trainer(scheme_text):
    program, model, trained = run_strided(scheme_text)
    assert any("zero grid" in op for op in program.backward_ops)
    moved = [n.name for n, m in zip(trained.nodes, model.nodes)
             if isinstance(n, Conv) and not np.array_equal(n.bias, m.bias)]
    assert "c0" in moved                      # the gradient crossed both strided convs


@pytest.mark.parametrize("scheme_text,rounding", [("bias=3;w=1:1", "stochastic"), ("bias=3;w=1:1", "truncate"),
                                                  ("bias=3;w=0:1,1:1,2:1", "stochastic")])
def test_regular_3x3_strided_weight_updates_equal_the_trainer(scheme_text, rounding):
    """c1 is a regular 3x3 stride-2 conv with padding 1 over 8 input channels: eight update
    descriptors continue one `sr` stream in numerics 7.4's order."""
    program, model, trained = run_strided(scheme_text, rounding)
    assert program.backward_ops.count("c1 weight update") == 8
    before, after = model.nodes[1].weight, trained.nodes[1].weight
    assert not np.array_equal(before, after)
    assert all(not np.array_equal(before[:, ci], after[:, ci]) for ci in range(8))


def test_sparse_regular_3x3_weight_updates_are_refused_with_a_sentence():
    model = strided_model()
    with pytest.raises(CompileError, match=r"c1: weight updates of regular 3x3 convs run over all input channels "
                                           r"\(ratio 1\), not 0.5"):
        compile_training(model, parse_scheme("bias=3;w=1:0.5", model), SMALL)
