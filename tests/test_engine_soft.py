"""fpga/firmware/engine_soft.c, the engine's programs run by a CPU, built for this machine
(sim/soft_engine.py) and held against the golden executor byte for byte: the random operations
and faulting programs the RTL runs, and whole training iterations of the built-in CNN (and of
MobileNetV2 with MIT's scheme when ../shared has the model)."""
import numpy as np
import pytest

from golden import int_ops
from golden.builtin import builtin_model
from golden.data import load_digits
from golden.engine import program as isa
from golden.engine.config import SMALL
from golden.engine.executor import Machine
from golden.engine.training import compile_training
from golden.scheme import ChannelSelector, parse_scheme
from golden.train import UpdateRule
from hw.soc.firmware import compiler_available
from sim.op_cases import CASE_CONFIG, bad_program_cases, fraction_sweep_cases, random_op_case, tight_cases

available, reason = compiler_available()
pytestmark = pytest.mark.skipif(not available, reason=reason)

END = [isa.Descriptor()]


@pytest.fixture(scope="module")
def soft():
    from sim.soft_engine import SoftEngine
    return SoftEngine


def golden_run(config, descriptors, scratchpad, external):
    machine = Machine(config, external)
    machine.scratchpad[:] = scratchpad
    result = machine.run(descriptors)
    index = result.error_index if result.error_code else result.descriptors
    return result.error_code, index, machine.scratchpad


def test_random_operations_and_faulting_programs_match_the_golden_executor(soft):
    engine = soft(CASE_CONFIG)
    rng = np.random.default_rng(2026)
    cases = [random_op_case(rng, CASE_CONFIG) for _ in range(400)] + tight_cases(CASE_CONFIG) \
        + bad_program_cases(CASE_CONFIG)
    kinds = set()
    for case in cases:
        code, index, expected = golden_run(CASE_CONFIG, case.program, case.scratchpad, case.external)
        assert (code, index) == (case.expect_code, case.expect_index if code else len(case.descriptors)), case.name
        got_code, got_index, scratchpad, external = engine.run(case.program, case.scratchpad, case.external)
        assert (got_code, got_index) == (code, index), case.name
        wrong = np.nonzero(scratchpad != expected)[0]
        assert wrong.size == 0, f"{case.name}: {wrong.size} bytes differ, first at {wrong[:8]}"
        assert np.array_equal(external[:case.external.size], case.external), f"{case.name} wrote external memory"
        kinds.add(case.name.split(" ")[0])
    # every kind the generator makes was run (a renamed kind would otherwise drop out silently)
    assert {"conv", "pointwise", "depthwise", "avgpool", "add", "raw32", "raw32-list", "dot", "update",
            "update-list", "update-list-dw", "bias-update", "grad-dot", "grad-sum", "grad-scale",
            "grad-sums"} <= kinds


def test_updates_at_every_fraction_width(soft):
    """sim.op_cases.fraction_sweep_cases: updates that do not saturate, the exponent swept across
    every form of the rounding."""
    engine = soft(CASE_CONFIG)
    cases = fraction_sweep_cases(CASE_CONFIG, exponent_step=5)
    assert len(cases) > 150
    for case in cases:
        code, _, expected = golden_run(CASE_CONFIG, case.program, case.scratchpad, case.external)
        assert code == 0, case.name
        got_code, _, got, _ = engine.run(case.program, case.scratchpad, case.external)
        assert got_code == 0 and np.array_equal(got, expected), case.name


def test_a_program_without_end_stops_at_its_length(soft):
    engine = soft(CASE_CONFIG)
    case = random_op_case(np.random.default_rng(7), CASE_CONFIG)
    code, index, _, _ = engine.run(case.descriptors, case.scratchpad, case.external)
    assert (code, index) == (isa.ERR_PROGRAM_RANGE, len(case.descriptors))


def test_the_memories_must_match_the_configuration(soft):
    engine = soft(CASE_CONFIG)
    with pytest.raises(ValueError, match="do not match"):
        engine.run(END, np.zeros(100, np.uint8), np.zeros(0, np.uint8))


def iterations_side_by_side(engine, config, model, scheme_text, iterations, images, labels, **compile_options):
    """Each iteration's forward and backward programs on the golden executor and on the soft
    engine, the host's steps done on both; yields the index of each program run and whether
    the two scratchpads were equal after it."""
    scheme = parse_scheme(scheme_text, model)
    program = compile_training(model, scheme, config, UpdateRule(), **compile_options)
    machine = Machine(config, program.external)
    machine.scratchpad[:] = program.initial_scratchpad(images[0], 12345)
    scratchpad = machine.scratchpad.copy()
    selector = ChannelSelector(model, scheme, "dynamic", seed=3)
    for it in range(iterations):
        selection = selector.select()
        for memory in (machine.scratchpad, scratchpad):
            program.write_image(memory, images[it])
            program.write_selection(memory, selection)
        machine.load_external(0, program.external)
        for phase, descriptors in (("forward", program.forward.descriptors), ("backward", program.backward)):
            result = machine.run_or_raise(descriptors + END)
            code, index, scratchpad, _ = engine.run(descriptors + END, scratchpad, program.external)
            assert (code, index) == (result.error_code, result.descriptors)
            yield f"iteration {it} {phase}", bool(np.array_equal(scratchpad, machine.scratchpad))
            if phase == "forward":
                program.loss_step(machine.scratchpad, model, int(labels[it]))
                program.loss_step(scratchpad, model, int(labels[it]))


@pytest.mark.parametrize("scheme_text", ["builtin-sparse", "full", "bias=4;w=4:1/4,5:1/4,6:1/4"])
def test_training_iterations_of_the_builtin_cnn(soft, scheme_text):
    model = builtin_model().with_new_head(10, seed=0)
    data = load_digits("train")
    images = int_ops.quantize_images(data.images[:3], model)
    runs = list(iterations_side_by_side(soft(SMALL), SMALL, model, scheme_text, 3, images, data.labels))
    assert len(runs) == 6
    assert all(equal for _, equal in runs), [name for name, equal in runs if not equal]


def test_mobilenetv2_iteration_with_mits_49kb_scheme(soft, shared_file):
    """One iteration of MobileNetV2-w0.35 at 128x128 (a fresh 10-class head) with MIT's scheme
    and budget, as the paper suite compiles it: striped blocks, staged weights, int32 sums,
    channel lists, the image in external memory."""
    from golden.engine.config import DEFAULT
    from sparsebp.runs import load_model_spec
    from sim.bench import mit_budget
    model = load_model_spec(str(shared_file("models/tiny-training/mbv2-w0.35.pkl"))).with_new_head(10, seed=0)
    image = np.random.default_rng(5).integers(-128, 128, model.input_shape).astype(np.int8)
    runs = list(iterations_side_by_side(soft(DEFAULT), DEFAULT, model, "mbv2-49kb", 1, [image], [3],
                                        **mit_budget("mbv2")))
    assert len(runs) == 2
    assert all(equal for _, equal in runs), [name for name, equal in runs if not equal]


PROBE = r"""
#include "engine_soft.h"
/* what fpga/firmware/main.c provides; nothing else may be missing */
void *memset(void *to, int value, unsigned long count)
{ unsigned char *p = to; while (count--) *p++ = (unsigned char)value; return to; }
void *memcpy(void *to, const void *from, unsigned long count)
{ unsigned char *p = to; const unsigned char *q = from; while (count--) *p++ = *q++; return to; }
void _start(void)
{
    static uint8_t scratchpad[64];
    static const uint32_t words[1];
    struct soft_engine engine = {scratchpad, sizeof scratchpad, scratchpad, sizeof scratchpad, 8, 8};
    uint32_t index;
    soft_engine_run(&engine, words, 1, &index);
    for (;;) {}
}
"""


def test_it_links_for_the_socs_cpu(tmp_path):
    """The same file with the firmware's flags (RV32IM, no C library): no 64-bit division or
    other runtime call is needed beyond the memset and memcpy the firmware defines."""
    from golden.engine.c_header import isa_header
    from hw.soc.firmware import FLAGS, SOURCE_DIR, _zig
    from sim.soft_engine import HEADERS, SOURCES
    for name in SOURCES + HEADERS:
        (tmp_path / name).write_text((SOURCE_DIR / name).read_text())
    (tmp_path / "engine_isa.h").write_text(isa_header())
    (tmp_path / "probe.c").write_text(PROBE)
    result = _zig("cc", *FLAGS, "-I.", "-o", "probe.elf", "probe.c", *SOURCES, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "probe.elf").stat().st_size > 0
