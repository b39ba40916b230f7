"""The SoC under cocotb on Verilator: the firmware trains the built-in CNN with the sparse scheme
`builtin-sparse` (channels drawn by the firmware each iteration) and the last-layer scheme exactly
as the golden model does, and reports an engine fault cleanly.

One simulator build (sim.soc_build, cached by digest; a few minutes the first time) serves all
tests. The training tests pause the firmware after every iteration (sysctl `pause`) and read every
updated conv's resident weights and parameters, the `sr` PRNG state word and the channel lists
from the scratchpad over the debug bus; the oracles are the golden Trainer and ChannelSelector,
and after the run the golden executor's whole scratchpad. Set SPARSEBP_SOC_ITERATIONS to change
the number of builtin-sparse iterations (default 6: from iteration 4 on the label is often the top
class, which caught a wrong max|A| in the firmware's quantizer that 3 iterations did not).
"""
import dataclasses
import importlib.util
import os

import numpy as np
import pytest

from hw.soc.config import SIM
from hw.soc.firmware import compiler_available
from sim.soc_cli import soc_config
from sim.toolchain import verilator_available

available, reason = verilator_available()
compiler, compiler_reason = compiler_available()
missing_cpus = [package for package in ("pythondata_cpu_vexriscv", "pythondata_cpu_picorv32")
                if importlib.util.find_spec(package) is None]
pytestmark = [pytest.mark.skipif(not available, reason=reason),
              pytest.mark.skipif(not compiler, reason=compiler_reason),
              pytest.mark.skipif(bool(missing_cpus), reason="cannot build the SoC: missing Python package(s) "
                                 f"{', '.join(missing_cpus)} (pip install -e '.[sim]')"),
              pytest.mark.slow]
ITERATIONS = int(os.environ.get("SPARSEBP_SOC_ITERATIONS", "6"))


@pytest.fixture(scope="module")
def training():
    from sim.soc_run import soc_training_run
    return soc_training_run(ITERATIONS, SIM, seed=1, pause=True, scheme_name="builtin-sparse")


def test_every_iteration_leaves_every_updated_conv_equal_to_the_golden_trainer(training):
    assert (training["status"], training["exit_code"]) == ("halted", 0)
    assert len(training["iterations"]) == ITERATIONS
    for it in training["iterations"]:
        # what was compared: convs 4-6's weights, the last four convs' and the classifier's parameters
        assert {"weights b2.pw1", "weights b2.dw", "weights b2.pw2", "weights classifier", "params b1.pw2",
                "params classifier", "prng", "list 4", "list 5", "list 6"} <= set(it["compared"])
        assert it["mismatches"] == [], f"iteration {it['iteration']}: {it['mismatches']} differ"
        assert it["weights_equal_trainer"] and it["bias_equal_trainer"]
        assert it["prng_equal_trainer"] and it["lists_equal_selector"]
        assert it["bit_exact"]
    assert training["final_scratchpad_equals_golden"]
    assert training["flash_unchanged"]
    assert training["bit_exact"]


def test_uart_transcript_reports_each_iteration_with_the_golden_loss_and_cycle_model(training):
    from sim.soc_run import parse_iterations
    lines = training["uart"]
    assert lines[0].startswith(f"sparsebp SoC: VexRiscv Lite, engine {SIM.engine.lanes} lanes, "
                               f"{SIM.engine.scratchpad_bytes // 1024} KiB scratchpad; "
                               f"{ITERATIONS} training iterations")
    assert lines[-1] == f"done: {ITERATIONS} iterations"
    rows = parse_iterations("\n".join(lines))
    assert [r["iteration"] for r in rows] == list(range(ITERATIONS))
    for row, it in zip(rows, training["iterations"]):
        assert row["label"] == it["label"]
        assert abs(row["loss"] - it["golden_loss"]) < 2e-3      # printed with 4 decimals
        # the engine's own cycle count is the golden cycle model's
        assert row["forward_cycles"] == training["predicted_forward_cycles"]
        assert row["backward_cycles"] == training["predicted_backward_cycles"]
        assert row["cycles"] > row["forward_cycles"] + row["backward_cycles"]


def test_cpu_overhead_is_measured_consistently_and_under_ten_percent(training):
    """Engine idle cycles (the CPU's overhead) are the iteration minus the two runs' busy time;
    the issue's target is under 10% of the iteration (the channel draws happen while the engine
    runs the backward program, so they cost no idle time)."""
    for it in training["iterations"]:
        busy = it["forward_cycles"] + it["backward_cycles"]
        # the iteration is idle + busy, up to the cycle between each start write and busy
        assert -2 <= it["cycles"] - (it["engine_idle_cycles"] + busy) <= 8
        # the sample and list copy and the loss step are the idle time, up to polling and bookkeeping
        cpu_work = it["sample_cycles"] + it["loss_step_cycles"]
        assert cpu_work - 50 <= it["engine_idle_cycles"] <= cpu_work + 300
        # iteration 0 starts with a cold instruction cache
        assert it["engine_idle_fraction"] < (0.15 if it["iteration"] == 0 else 0.10), it


@pytest.fixture(scope="module")
def last_layer():
    from sim.soc_run import soc_training_run
    return soc_training_run(2, SIM, seed=1, pause=True, scheme_name="last-layer")


def test_last_layer_scheme_still_runs_bit_exact(last_layer):
    """A scheme without channel selection: no lists, no draws; the classifier as the Trainer's."""
    assert (last_layer["status"], last_layer["exit_code"]) == ("halted", 0)
    for it in last_layer["iterations"]:
        assert {"weights classifier", "params classifier", "prng"} == set(it["compared"])
        assert it["mismatches"] == [] and it["bit_exact"], it
    assert last_layer["final_scratchpad_equals_golden"] and last_layer["bit_exact"]


def golden_run_of_corrupted_forward(iterations: int, index: int, bad_address: int):
    """The flash of `iterations` samples with forward descriptor `index`'s a_base set to
    `bad_address`, and the golden executor's run of that forward program from the state the
    firmware sets up (preload, sample, channel lists, PRNG seed): (experiment, machine, result)."""
    from golden.engine import program as isa
    from golden.engine.executor import Machine
    from sim.soc_run import prepare
    exp = prepare(iterations, SIM, corrupt=(index, "a_base", bad_address), pause=False)
    scratchpad = exp.program.initial_scratchpad(exp.images[0], exp.flash.job["sr_seed"])
    exp.program.write_selection(scratchpad, exp.selector().select())     # the firmware's lists
    machine = Machine(SIM.engine, exp.flash.data[:exp.flash.program_bytes])
    machine.scratchpad[:] = scratchpad
    words = exp.flash.data[:(len(exp.program.forward.descriptors) + 1) * isa.DESCRIPTOR_WORDS * 4]
    return exp, machine, machine.run(isa.decode(words.view("<u4")))


def test_soft_engine_firmware_runs_a_descriptor_and_reports_a_fault_as_the_engine_does():
    """The firmware built with the CPU running the programs (fpga/firmware/engine_soft.c) on the
    SoC's VexRiscv: descriptor 0 (a staging copy) runs on the CPU over the engine's windows,
    descriptor 1 fails its check, and the report and the memories are the engine's. A whole
    last-layer iteration takes under a minute of simulation (`sparsebp sim soc --soft-engine`)."""
    from golden.engine import program as isa
    from hw.soc.firmware import build_firmware
    from sim.soc_run import run_soc

    bad_address = SIM.engine.scratchpad_bytes + 64
    exp, machine, result = golden_run_of_corrupted_forward(1, 1, bad_address)
    assert (result.error_code, result.error_index) == (isa.ERR_A_RANGE, 1)
    before = exp.program.initial_scratchpad(exp.images[0], exp.flash.job["sr_seed"])
    exp.program.write_selection(before, exp.selector().select())
    assert not np.array_equal(machine.scratchpad, before)          # descriptor 0 wrote something

    firmware = build_firmware(SIM, soft_engine=True)
    assert len(firmware.binary) > len(build_firmware(SIM).binary)
    run = run_soc(SIM, exp.flash.data, firmware.binary)
    assert (run.status, run.exit_code) == ("halted", 1)
    assert "engine error in the forward program: code 3 (operand A out of range) at descriptor 1\n" in run.transcript
    assert f"  a_base = {bad_address}\n" in run.transcript
    assert np.array_equal(run.scratchpad, machine.scratchpad)
    assert np.array_equal(run.flash, exp.flash.data)


def test_corrupted_program_faults_the_engine_and_the_firmware_reports_it():
    from golden.engine import program as isa
    from hw.soc.firmware import build_firmware
    from sim.soc_run import run_soc

    bad_address = SIM.engine.scratchpad_bytes + 64
    # the golden executor on the same flash: the state the engine must stop in
    exp, machine, result = golden_run_of_corrupted_forward(2, 3, bad_address)
    assert (result.error_code, result.error_index) == (isa.ERR_A_RANGE, 3)

    run = run_soc(SIM, exp.flash.data, build_firmware(SIM).binary)
    assert (run.status, run.exit_code) == ("halted", 1)
    text = run.transcript
    assert ("engine error in the forward program: code 3 (operand A out of range) at descriptor 3\n"
            in text)
    assert f"descriptor 3 at external 0x{3 * isa.DESCRIPTOR_WORDS * 4:08x}, non-zero fields:\n" in text
    assert f"  a_base = {bad_address}\n" in text
    assert text.endswith("stopped\n")
    assert "iteration 0:" not in text
    # nothing outside the allowed windows changed: the scratchpad is the golden executor's after
    # descriptors 0..2 (plus the firmware's preload, sample, channel lists and PRNG seed), the
    # flash is as loaded
    assert np.array_equal(run.scratchpad, machine.scratchpad)
    assert np.array_equal(run.flash, exp.flash.data)


def test_cli_sim_soc_prints_progress_and_writes_the_json(tmp_path, capsys):
    import json
    from sparsebp.cli import main
    out = tmp_path / "soc.json"
    assert main(["sim", "soc", "--iterations", "1", "--no-pause", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scheme builtin-sparse" in printed
    assert "uart: iteration 0: label 2 loss" in printed and "uart: done: 1 iterations" in printed
    result = json.loads(out.read_text())
    assert result["scheme"] == "builtin-sparse"
    assert [it["iteration"] for it in result["iterations"]] == [0]
    for it in result["iterations"]:
        assert it["cycles"] > it["engine_idle_cycles"] > 0
        assert it["bit_exact"] is True
    assert result["final_scratchpad_equals_golden"] and result["bit_exact"]


def test_board_soc_runs_its_job_from_initialised_memories():
    """What the ULX3S-85F's bitstream carries (fpga/board_soc.py): the board's engine (8 lanes,
    256 KiB pumped scratchpad with its `fast` clock), 16 KiB of RAM holding the firmware and the
    32 KiB external memory holding the flash image from the start; nothing is loaded over the
    debug bus. The CPU starts at reset and trains as the golden model does (losses, final
    scratchpad), with the UART divided for the board's 40 MHz (two-port scratchpad)."""
    from fpga.board_soc import board_soc_config
    from fpga.boards import get_board
    from sim.soc_run import soc_training_run
    board = get_board("ulx3s-85f")
    config = board_soc_config(board.config, board.target_hz)
    assert config.engine.scratchpad_two_port and config.uart_cycles_per_bit == 347   # 40 MHz / 115200
    run = soc_training_run(2, config, seed=1, pause=False, preloaded=True)
    assert run["uart"][0].startswith("sparsebp SoC: VexRiscv Lite, engine 8 lanes, 256 KiB scratchpad; 2 ")
    assert (run["status"], run["exit_code"]) == ("halted", 0)
    assert [it["bit_exact"] for it in run["iterations"]] == [True] * 2
    assert run["final_scratchpad_equals_golden"] and run["flash_unchanged"] and run["bit_exact"]


def test_icebreaker_soc_boots_from_its_spi_flash_and_trains_bit_exact():
    """The iCE40's SoC (fpga/board_soc.py): no engine, one 128 KiB memory (the SPRAM) for RAM,
    scratchpad and external memory, nothing loaded over the debug bus. The boot ROM reads the
    boot image from a model of the SPI flash (sim/soc_cocotb.py) through the flash reader, and
    the firmware then runs one last-layer iteration's programs on the CPU as the golden model
    does (classifier, PRNG state, loss, the whole scratchpad). About 10 M cycles. The firmware's
    stack stays inside the RAM left above .bss (main.c paints it and reports its high-water mark)."""
    from sim.soc_run import soc_training_run
    config = soc_config("icebreaker")          # what `sparsebp sim soc --board icebreaker` runs
    assert not config.engine_in_hardware and config.boot_from_flash
    run = soc_training_run(1, config, seed=1, pause=True, scheme_name="last-layer")
    assert run["uart"][0].startswith("sparsebp SoC: VexRiscv Lite, programs run by the CPU for 8 lanes, "
                                     "32 KiB scratchpad; 1 ")
    assert (run["status"], run["exit_code"]) == ("halted", 0)
    (iteration,) = run["iterations"]
    assert iteration["mismatches"] == [] and iteration["weights_equal_trainer"] and iteration["prng_equal_trainer"]
    assert run["final_scratchpad_equals_golden"] and run["flash_unchanged"] and run["bit_exact"]
    # the boot (zeroing 128 KiB, copying the image) comes before the first iteration
    assert run["total_cycles"] > iteration["cycles"]
    assert run["uart"][-2] == f"stack: {run['stack_bytes_used']} of {run['stack_bytes_free_at_start']} bytes"
    assert 0 < run["stack_bytes_used"] < run["stack_bytes_free_at_start"] - 1024


@pytest.mark.parametrize("damage", ["erased", "segment outside the memory", "one bit flipped"])
def test_icebreaker_soc_refuses_a_bad_boot_image_before_running_it(damage):
    """An erased flash (or another bitstream's data) at the boot image's offset, a segment
    aimed past the memory, a bit flipped in the firmware: the boot ROM halts with its exit code
    for each before the firmware runs; nothing reaches the UART."""
    from hw.soc.boot import EXIT_BAD_IMAGE, EXIT_BAD_SEGMENT, EXIT_BAD_SUM, boot_image
    from sim.soc_run import run_soc
    config = soc_config("icebreaker")
    firmware = bytes(range(64))
    words = np.frombuffer(boot_image(config, firmware, bytes(32)), "<u4").copy()
    if damage == "erased":
        words[:] = 0xFFFF_FFFF
        code = EXIT_BAD_IMAGE
    elif damage == "segment outside the memory":
        words[3] = config.memory_bytes - 32         # the firmware's 64 bytes would run past the end
        code = EXIT_BAD_SEGMENT
    else:
        words[5 + 7] ^= 1 << 13                      # a word of the firmware
        code = EXIT_BAD_SUM
    run = run_soc(config, np.zeros(16, np.uint8), firmware, boot=words.tobytes(), max_cycles=2_000_000)
    assert (run.status, run.exit_code) == ("halted", code)
    assert run.transcript == ""
    if damage == "erased":
        assert not run.scratchpad.any()           # zeroed by the boot ROM, nothing copied


def test_icebreaker_soc_with_picorv32_trains_bit_exact_at_its_24_mhz():
    """`sparsebp sim soc --board icebreaker --cpu picorv32`: the iCE40's SoC with PicoRV32
    (hw/soc/cpu.py) on its native memory interface, at the 24 MHz its build meets, boots from
    the SPI flash model and runs one last-layer iteration's programs bit-exact, as Lite does."""
    from sim.soc_run import soc_training_run
    config = soc_config("icebreaker", "picorv32")
    assert config.cpu_variant == "PicoRV32" and config.clock_hz == 24e6 and not config.engine_in_hardware
    run = soc_training_run(1, config, seed=1, pause=True, scheme_name="last-layer")
    assert run["cpu"] == "PicoRV32"
    assert run["uart"][0].startswith("sparsebp SoC: PicoRV32, programs run by the CPU for 8 lanes, ")
    assert (run["status"], run["exit_code"]) == ("halted", 0)
    (iteration,) = run["iterations"]
    assert iteration["mismatches"] == [] and iteration["weights_equal_trainer"] and iteration["prng_equal_trainer"]
    assert run["final_scratchpad_equals_golden"] and run["flash_unchanged"] and run["bit_exact"]


def test_picorv32_drives_the_engine_bit_exact():
    """The simulation SoC with PicoRV32 instead of VexRiscv Lite: the same firmware drives the
    engine through one builtin-sparse iteration, whose engine cycles are the cycle model's."""
    from sim.soc_run import soc_training_run
    config = soc_config(None, "picorv32")
    assert config == dataclasses.replace(SIM, cpu_variant="PicoRV32")
    run = soc_training_run(1, config, seed=1, pause=True, scheme_name="builtin-sparse")
    assert run["uart"][0].startswith(f"sparsebp SoC: PicoRV32, engine {SIM.engine.lanes} lanes, ")
    assert (run["status"], run["exit_code"]) == ("halted", 0)
    (iteration,) = run["iterations"]
    assert iteration["mismatches"] == [] and iteration["bit_exact"]
    assert iteration["forward_cycles"] == run["predicted_forward_cycles"]
    assert iteration["backward_cycles"] == run["predicted_backward_cycles"]
    assert run["final_scratchpad_equals_golden"] and run["bit_exact"]
