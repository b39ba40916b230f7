"""The engine RTL on Verilator against the golden executor, byte for byte and cycle for cycle.

One simulator process runs every job of a configuration (module fixtures), then the tests
look at the results: random operations of every kind, programs that must fault, and the
built-in CNN's forward pass. The number of random cases is SPARSEBP_ENGINE_CASES (default 300).
"""
import dataclasses
import os

import numpy as np
import pytest

from golden import int_ops
from golden.builtin import builtin_model
from golden.data import load_digits
from golden.engine import layout
from golden.engine import program as isa
from golden.engine.compiler import compile_forward
from golden.engine.config import DEFAULT
from golden.engine.cycles import descriptor_cycles, end_cycles, program_external_reads
from golden.engine.executor import Machine
from sim.op_cases import CASE_CONFIG, bad_program_cases, fraction_sweep_cases, random_op_case, tight_cases
from sim.toolchain import verilator_available

available, reason = verilator_available()
pytestmark = pytest.mark.skipif(not available, reason=reason)
CASES = int(os.environ.get("SPARSEBP_ENGINE_CASES", "300"))


def golden_run(config, case_program, scratchpad, external):
    machine = Machine(config, external)
    machine.scratchpad[:] = scratchpad
    result = machine.run(case_program)
    return machine.scratchpad, result


def measured_op_cycles(result, count):
    """Per-descriptor cycles from the engine's trace (its counter starts one cycle late)."""
    ends = np.asarray(result.trace[:count], dtype=np.int64) + 1
    return np.diff(np.concatenate([[0], ends]))


# The plain scratchpad at the least external latency it allows, with one weight updater per
# lane; and the pumped one (what the ECP5 builds carry, its `fast` clock driven by sim.host) at
# its own least, D = 4, with the weight updaters shared four ways as on the boards.
SCRATCHPADS = {"plain-scratchpad": dataclasses.replace(CASE_CONFIG, weight_update_cycles=1),
               "pumped-scratchpad": dataclasses.replace(CASE_CONFIG, scratchpad_pumped=True,
                                                        external_latency_cycles=4, weight_update_cycles=4),
               "two-port-scratchpad": dataclasses.replace(CASE_CONFIG, scratchpad_two_port=True,
                                                          weight_update_cycles=4)}
UPDATE_KINDS = ("update", "update-list", "update-list-dw")


@pytest.fixture(scope="module", params=list(SCRATCHPADS))
def case_results(request):
    """The random cases on the engine with either scratchpad implementation (hw/banked_memory.py),
    and the configuration they ran with (the golden model and the cycle model take it too)."""
    from sim.engine_job import EngineJob, run_on_rtl
    config = SCRATCHPADS[request.param]
    rng = np.random.default_rng(2026)
    cases = ([random_op_case(rng, config) for _ in range(CASES)] + tight_cases(config)
             + bad_program_cases(config))
    jobs = [EngineJob(c.scratchpad, c.external) for c in cases]
    return cases, config, run_on_rtl(config, jobs)


def assert_case_matches_golden(case, rtl, config):
    """One operation's RTL run against the golden executor and the cycle model."""
    expected, outcome = golden_run(config, case.program, case.scratchpad, case.external)
    assert outcome.error_code == 0 and rtl.error_code == 0, case.name
    wrong = np.nonzero(rtl.scratchpad != expected)[0]
    assert wrong.size == 0, f"{case.name}: {wrong.size} bytes differ, first at {wrong[:8]}"
    predicted = descriptor_cycles(case.descriptors[0], config).total
    assert measured_op_cycles(rtl, 1)[0] == predicted, case.name
    assert rtl.cycles == predicted + end_cycles(config), case.name
    # the activity monitor: external traffic as the cycle model counts it, and a high-water
    # mark above every byte the operation changed
    assert rtl.external_reads == program_external_reads(case.descriptors, config), case.name
    changed = np.nonzero(rtl.scratchpad != case.scratchpad)[0]
    assert 0 < rtl.high_water <= config.scratchpad_bytes + config.lanes, case.name
    if changed.size:
        assert changed[-1] < rtl.high_water, case.name


def test_random_operations_bit_exact_and_cycle_exact(case_results):
    cases, config, results = case_results
    kinds = set()
    for case, rtl in zip(cases, results):
        if case.expect_code:
            continue
        kinds.add(case.name.split()[0])
        assert_case_matches_golden(case, rtl, config)
    assert kinds == {"conv", "pointwise", "depthwise", "avgpool", "add", "raw32", "dot", "update",
                     "bias-update", "grad-scale", "grad-dot", "grad-sum", "update-list", "update-list-dw",
                     "raw32-list", "grad-sums"}


def test_weight_updaters_shared_two_ways_bit_exact_and_cycle_exact():
    """The third sharing the configuration allows (weight_update_cycles 2; 1 and 4 run above):
    weight updates only, random and with 1 to 4 steps per vector."""
    from sim.engine_job import EngineJob, run_on_rtl
    config = dataclasses.replace(CASE_CONFIG, weight_update_cycles=2)
    rng = np.random.default_rng(2027)
    cases = ([random_op_case(rng, config, kind=kind) for kind in UPDATE_KINDS for _ in range(CASES // 15)]
             + [c for c in tight_cases(config) if c.name.split()[0] in UPDATE_KINDS])
    results = run_on_rtl(config, [EngineJob(c.scratchpad, c.external) for c in cases])
    for case, rtl in zip(cases, results):
        assert_case_matches_golden(case, rtl, config)
    paused = [c for c in cases
              if np.prod(c.descriptors[0].counts[isa.OUTPUT_LOOPS:]) < config.weight_update_cycles]
    assert paused, "no case with fewer reduction steps than the updaters' cycles"


@pytest.mark.parametrize("scratchpad", list(SCRATCHPADS))
def test_updates_at_every_fraction_width_bit_exact_and_cycle_exact(scratchpad):
    """Weight and bias updates whose results do not saturate, with the exponent swept so that
    every form of numerics 7.2's rounding is taken (sim.op_cases.fraction_sweep_cases): the
    random cases' multipliers clip nearly every new weight to +-127."""
    from sim.engine_job import EngineJob, run_on_rtl
    config = SCRATCHPADS[scratchpad]
    cases = fraction_sweep_cases(config)
    results = run_on_rtl(config, [EngineJob(c.scratchpad, c.external) for c in cases])
    changed = 0
    for case, rtl in zip(cases, results):
        assert_case_matches_golden(case, rtl, config)
        changed += int(np.count_nonzero(rtl.scratchpad != case.scratchpad))
    assert changed > 1000, "the sweep changed too few weights and biases to test the rounding"


def test_bad_programs_stop_with_code_and_write_nothing(case_results):
    cases, config, results = case_results
    bad = [(c, r) for c, r in zip(cases, results) if c.expect_code]
    assert len(bad) == 11
    for case, rtl in bad:
        expected, outcome = golden_run(config, case.program, case.scratchpad, case.external)
        assert (outcome.error_code, outcome.error_index) == (case.expect_code, case.expect_index)
        assert (rtl.error_code, rtl.error_index) == (case.expect_code, case.expect_index), case.name
        # the good descriptor 0 ran, the bad descriptor 1 wrote nothing
        assert np.array_equal(rtl.scratchpad, expected), case.name


@pytest.fixture(scope="module")
def builtin_forward():
    from sim.engine_job import EngineJob, run_on_rtl
    model = builtin_model()
    images = int_ops.quantize_images(load_digits("test").images[:3], model)
    compiled = compile_forward(model, DEFAULT, keep_masks=True)
    jobs, expected = [], []
    for image in images:
        machine = Machine(DEFAULT, compiled.external)
        machine.write(compiled.tensors["input"][0], layout.activation_bytes(image))
        jobs.append(EngineJob(machine.scratchpad.copy(), compiled.external))
        machine.run_or_raise(compiled.descriptors + [isa.Descriptor()])
        expected.append(machine.scratchpad.copy())
    return model, images, compiled, expected, run_on_rtl(DEFAULT, jobs)


def test_builtin_forward_on_rtl_matches_golden_model(builtin_forward):
    model, images, compiled, expected, results = builtin_forward
    address, shape = compiled.tensors[model.output]
    for image, golden_bytes, rtl in zip(images, expected, results):
        assert rtl.error_code == 0
        assert np.array_equal(rtl.scratchpad, golden_bytes)
        logits = layout.activation_from_bytes(rtl.scratchpad[address:address + np.prod(shape)], shape)
        reference = int_ops.forward(model, image[None])[model.output][0]
        assert np.array_equal(logits, reference)


def test_builtin_forward_cycles_match_cycle_model(builtin_forward):
    _, _, compiled, _, results = builtin_forward
    predicted = [descriptor_cycles(d, DEFAULT).total for d in compiled.descriptors]
    for rtl in results:
        assert list(measured_op_cycles(rtl, len(predicted))) == predicted
        assert rtl.cycles == sum(predicted) + end_cycles(DEFAULT)
        assert rtl.external_reads == program_external_reads(compiled.descriptors, DEFAULT)
        assert 0 < rtl.high_water <= compiled.peak_bytes     # nothing touched outside the plan


# Biases of the last six convs, weights of both blocks' pointwise and depthwise convs on random
# channel subsets, the classifier: the backward crosses the skip add, the pool and the stride-2
# depthwise conv b1.dw.
TRAINING_SCHEME = "bias=6;w=1:0.5,3:0.25,4:0.5,5:0.25,6:0.5"


@pytest.fixture(scope="module")
def training_iterations():
    """Three training iterations of the built-in CNN (fresh head) on the RTL with a deep sparse
    scheme (TRAINING_SCHEME), weights on a random subset of channels each iteration. Between the
    forward and the backward program the host does what the CPU will: the loss step, and this
    iteration's channel lists."""
    from golden.engine.training import compile_training
    from golden.scheme import ChannelSelector, parse_scheme
    from golden.train import Trainer, UpdateRule
    from sim.engine_job import EngineJob, run_on_rtl
    model = builtin_model().with_new_head(10, seed=0)
    scheme = parse_scheme(TRAINING_SCHEME, model)
    data = load_digits("train")
    images = int_ops.quantize_images(data.images[:3], model)
    trainer = Trainer(model, scheme, "dynamic", UpdateRule(), seed=1)
    host_selector = ChannelSelector(model, scheme, "dynamic", seed=3)      # the Trainer's draws
    program = compile_training(model, scheme, DEFAULT)
    scratchpad = program.initial_scratchpad(images[0], trainer.sr_rng.state)
    steps = []
    for image, label in zip(images, data.labels[:3]):
        x_at = program.forward.tensors["input"][0]
        scratchpad[x_at:x_at + image.size] = layout.activation_bytes(image)
        program.write_selection(scratchpad, host_selector.select())
        forward = run_on_rtl(DEFAULT, [EngineJob(scratchpad.copy(), program.external, 0)])[0]
        after_forward = forward.scratchpad.copy()
        program.loss_step(after_forward, model, int(label))
        backward = run_on_rtl(DEFAULT, [EngineJob(after_forward.copy(), program.external,
                                                  program.backward_base)])[0]
        scratchpad = backward.scratchpad.copy()
        trainer.step(image[None], int(label))
        updated = {n.name: (n.weight.copy(), n.bias.copy(), n.depthwise) for n in trainer.model.nodes
                   if n.name in program.forward.resident}
        steps.append((forward, backward, scratchpad, updated, trainer.sr_rng.state))
    return model, program, steps


def test_training_iterations_on_rtl_match_the_golden_trainer(training_iterations):
    model, program, steps = training_iterations
    assert set(program.forward.resident) == {"b1.pw1", "b1.dw", "b1.pw2", "b2.pw1", "b2.dw", "b2.pw2",
                                             "classifier"}
    for forward, backward, scratchpad, updated, sr_state in steps:
        assert forward.error_code == 0 and backward.error_code == 0
        for name, (weight, bias, depthwise) in updated.items():
            w_at, p_at = program.forward.resident[name]
            if w_at is not None:
                got = layout.weight_from_bytes(scratchpad[w_at:w_at + weight.size], weight.shape, depthwise)
                assert np.array_equal(got, weight), name
            assert np.array_equal(scratchpad[p_at:p_at + 4 * bias.size].view("<i4"), bias), name
        assert scratchpad[program.prng_addr:program.prng_addr + 4].view("<u4")[0] == sr_state
    originals = {n.name: n for n in model.nodes}
    for name in ("b1.pw1", "b1.pw2", "b2.pw1", "b2.dw", "b2.pw2", "classifier"):   # training moved them
        assert not np.array_equal(updated[name][0], originals[name].weight), name
    assert not np.array_equal(updated["b1.dw"][1], originals["b1.dw"].bias)


def test_training_iteration_cycles_match_cycle_model(training_iterations):
    _, program, steps = training_iterations
    for forward, backward, *_ in steps:
        for rtl, descriptors in ((forward, program.forward.descriptors), (backward, program.backward)):
            predicted = [descriptor_cycles(d, DEFAULT).total for d in descriptors]
            assert list(measured_op_cycles(rtl, len(predicted))) == predicted
            assert rtl.cycles == sum(predicted) + end_cycles(DEFAULT)
            assert rtl.external_reads == program_external_reads(descriptors, DEFAULT)
            assert 0 < rtl.high_water <= program.forward.peak_bytes   # nothing touched outside the plan


def test_weight_update_cycles_scale_with_the_selected_channels():
    """Block 2's updates at 1/8, 1/4, 1/2 and all channels, one RTL iteration each: bit-exact,
    measured = predicted, and with channel lists the cycles are exactly linear in the count.
    (Ratio 1 runs without a list, lanes over all channels: for the depthwise conv that is faster
    than the one-lane list-chunk mode at any ratio; docs/engine.md.)"""
    from sparsebp.sim_cli import SWEEP_OPS, selection_sweep
    sweep = selection_sweep("default")
    for op in SWEEP_OPS:
        rows = {r["ratio"]: r for r in sweep["rows"] if r["op"] == op}
        assert sorted(rows) == [0.125, 0.25, 0.5, 1.0]
        for r in rows.values():
            assert r["bit_exact"] and r["iteration_bit_exact"], op
            assert r["cycles_measured"] == r["cycles_predicted"], op
        c = {ratio: rows[ratio]["cycles_measured"] for ratio in rows}
        assert c[0.125] < c[0.25] < c[0.5], op
        assert c[0.5] - c[0.25] == 2 * (c[0.25] - c[0.125]), op          # linear in the selected count


def test_full_update_of_the_builtin_cnn():
    """Every conv's weights, the regular 3x3 conv0 included (one update descriptor per input
    channel): bit-exact, equal to the Trainer, cycles and external reads as predicted."""
    from sim.training_run import rtl_training_run
    result = rtl_training_run(1, "default", scheme_name="full")
    assert result["bit_exact"]
    assert any(r["op"] == "conv0 weight update" for r in result["rows"])
    for row in result["rows"]:
        assert row["cycles_measured"] == row["cycles_predicted"], row["op"]
    iteration = result["iterations"][0]
    assert iteration["external_bytes_measured"] == iteration["external_bytes_predicted"]
    assert 0 < iteration["peak_bytes_measured"] <= result["peak_scratchpad_bytes"]


def test_mobilenetv2_iteration_with_mits_49kb_scheme(shared_file):
    """One training iteration of MobileNetV2-w0.35 at 128x128 (fresh 10-class head) with MIT's
    ~49 KB scheme on the RTL in the default configuration: striped forward, back-propagation
    through blocks 11-16 (stride-2 depthwise included), channel lists; bit-exact against the
    golden executor and equal to the golden Trainer, every descriptor's cycles as predicted."""
    from sim.training_run import rtl_training_run
    model_path = shared_file("models/tiny-training/mbv2-w0.35.pkl")
    result = rtl_training_run(1, "default", scheme_name="mbv2-49kb", model_spec=str(model_path))
    assert result["peak_scratchpad_bytes"] <= DEFAULT.scratchpad_bytes
    assert result["bit_exact"]
    for row in result["rows"]:
        assert row["cycles_measured"] == row["cycles_predicted"], row["op"]
    iteration = result["iterations"][0]
    assert iteration["bit_exact"] and iteration["matches_trainer"]
    assert iteration["cycles"] > 1_000_000                 # the whole network ran
    # pointwise input gradients quantized from their int32 sums (mode SUMS) where they fit
    assert any(row["op"].endswith("input-gradient sums") for row in result["rows"])
    # the engine's monitor: external traffic as predicted, nothing touched outside the plan
    assert iteration["external_bytes_measured"] == iteration["external_bytes_predicted"]
    assert 0 < iteration["peak_bytes_measured"] <= result["peak_scratchpad_bytes"]


def test_builtin_training_iteration_on_the_two_port_engine_bit_exact_and_cycle_exact():
    """A whole compiled iteration (lists, striping, staged weights, every epilogue) on the engine
    with the two-port scratchpad: equal to the golden executor and the Trainer, and every
    descriptor's cycles what the cycle model predicts with the two-port pauses."""
    from sim.training_run import rtl_training_run
    run = rtl_training_run(iterations=1, config_name="two-port")
    assert run["bit_exact"]
    (iteration,) = run["iterations"]
    assert iteration["bit_exact"] and iteration["matches_trainer"]
    descriptors = [row for row in run["rows"] if "kind" in row]
    assert len(descriptors) > 40
    assert all(row["cycles_measured"] == row["cycles_predicted"] for row in descriptors)
    assert iteration["cycles"] == iteration["cycles_predicted"]
