"""`sparsebp bench` (sim/bench.py, sparsebp/bench_cli.py): the suites, the per-layer reduction,
the clock source, the one-line errors, and one built-in row run on the RTL end to end."""
import json

import pytest

from golden.builtin import builtin_model
from golden.engine.config import DEFAULT
from golden.scheme import PRESETS, parse_scheme
from golden.engine import program as isa
from sim.bench import RowSpec, dense_scheme, fmax_from, kind_table, layer_table, model_key, suite_rows
from sim.toolchain import verilator_available
from sim.training_run import CATEGORIES, categorize, operation_kind
from sparsebp.bench_cli import print_summary
from sparsebp.cli import main


def test_dense_scheme_keeps_the_layers_at_ratio_one():
    assert dense_scheme(PRESETS["builtin-sparse"]) == "bias=4;w=4:1,5:1,6:1"
    mbv2 = dense_scheme(PRESETS["mbv2-49kb"])
    assert mbv2 == "bias=16;w=36:1,39:1,41:1,42:1,45:1,48:1,49:1"     # conv 40 is bias-only (ratio 0)
    dense = parse_scheme(dense_scheme(PRESETS["builtin-sparse"]), builtin_model())
    assert set(dense.weight_convs().values()) == {1.0}


def test_default_suite_rows():
    rows, missing = suite_rows("default")
    assert missing == []
    assert RowSpec("builtin", "builtin-sparse", "dynamic", 2, "sparse") in rows
    assert RowSpec("builtin", "builtin-sparse", "static-first", 2, "sparse") in rows
    assert [r.scheme for r in rows if r.label == "ratio"] == [
        "bias=4;w=4:0.125,5:0.125,6:0.125", "bias=4;w=4:0.25,5:0.25,6:0.25", "bias=4;w=4:0.5,5:0.5,6:0.5"]
    assert {r.label for r in rows} == {"sparse", "dense", "last-layer", "full", "ratio"}
    with pytest.raises(ValueError, match="unknown suite"):
        suite_rows("nightly")


@pytest.mark.parametrize("argv", [[], ["--model", "builtin"]])
def test_stream_weights_applies_to_every_row(argv):
    """Staging frozen weights on chip is the default; `--stream-weights` turns it off for every
    row of a suite or for the one row."""
    from sparsebp.bench_cli import _specs
    from sparsebp.cli import build_parser
    staged, _ = _specs(build_parser().parse_args(["bench"] + argv))
    streamed, _ = _specs(build_parser().parse_args(["bench", "--stream-weights"] + argv))
    assert staged and all(spec.stage_weights for spec in staged)
    assert [spec.stage_weights for spec in streamed] == [False] * len(staged)
    assert [(s.model, s.scheme, s.policy) for s in streamed] == [(s.model, s.scheme, s.policy) for s in staged]


def test_paper_suite_names_absent_models(tmp_path):
    rows, missing = suite_rows("paper", shared=tmp_path)
    assert rows == [] and len(missing) == 3 and all("is absent" in m for m in missing)


def test_model_key():
    assert model_key("/x/mbv2-w0.35.pkl") == "mbv2"
    assert model_key("mcunet-5fps.pkl") == "mcunet"
    assert model_key("builtin") is None


def test_categories_and_layer_table():
    assert categorize("forward", "b1.dw forward") == ("b1.dw", "forward")
    assert categorize("backward", "b2.pw1 weight update") == ("b2.pw1", "weight gradient + update")
    assert categorize("backward", "b2.pw1 bias update") == ("b2.pw1", "bias update")
    assert categorize("backward", "b2.pw1 input-gradient prescale") == ("b2.pw1", "input gradient")
    assert categorize("backward", "b2.add gradient sum") == ("b2.add", "input gradient")
    ops = [{"layer": "a", "category": "forward", "cycles_measured": 10, "cycles_predicted": 10, "useful_macs": 80},
           {"layer": "b", "category": "forward", "cycles_measured": 5, "cycles_predicted": 5, "useful_macs": 0},
           {"layer": "a", "category": "bias update", "cycles_measured": 7, "cycles_predicted": 8, "useful_macs": 3}]
    table = layer_table(ops)
    assert [t["layer"] for t in table] == ["a", "b"]
    assert table[0]["forward"] == 10 and table[0]["bias update"] == 7 and table[0]["input gradient"] == 0
    assert (table[0]["cycles_measured"], table[0]["cycles_predicted"], table[0]["useful_macs"]) == (17, 18, 83)
    assert set(CATEGORIES) <= set(table[1])


def test_operation_kinds():
    """Copies and gathers by their compiler labels, else the operand pattern; a quantized
    gradient (MAC or ADD) is marked as running its loop nest twice."""
    mac = isa.Descriptor(opcode=isa.MAC, mode=isa.BROADCAST, epilogue=isa.REQUANT)
    assert operation_kind("b3.pw1 weights staged from external memory", mac) == "copy"
    assert operation_kind("b3.pw1 parameter table: bias", mac) == "copy"
    assert operation_kind("input rows 0-5 from external memory", mac) == "copy"
    assert operation_kind("b3.pw1 save selected input channels", mac) == "gather"
    assert operation_kind("b3.pw1 forward", mac) == "broadcast"
    dot = isa.Descriptor(opcode=isa.MAC, mode=isa.DOT, epilogue=isa.GRADIENT)
    assert operation_kind("b3.pw1 input gradient", dot) == "dot, two passes"
    raw = isa.Descriptor(opcode=isa.MAC, mode=isa.DOT, epilogue=isa.RAW32)
    assert operation_kind("classifier input gradient", raw) == "dot"
    add = isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE, epilogue=isa.GRADIENT)
    assert operation_kind("b2.add gradient sum", add) == "add, two passes"
    assert operation_kind("b2.add forward", isa.Descriptor(opcode=isa.ADD, mode=isa.ELEMENTWISE)) == "add"


def test_kind_table_groups_sums_and_orders():
    ops = [{"category": "forward", "kind": "broadcast", "cycles_measured": 60, "cycles_predicted": 60, "useful_macs": 400},
           {"category": "input gradient", "kind": "dot, two passes", "cycles_measured": 30, "cycles_predicted": 31,
            "useful_macs": 120},
           {"category": "forward", "kind": "broadcast", "cycles_measured": 10, "cycles_predicted": 10, "useful_macs": 80},
           {"category": "forward", "kind": "copy", "cycles_measured": 20, "cycles_predicted": 20, "useful_macs": 16}]
    table = kind_table(ops, lanes=8)
    assert [(t["category"], t["kind"]) for t in table] == [
        ("forward", "broadcast"), ("input gradient", "dot, two passes"), ("forward", "copy")]
    first = table[0]
    assert (first["descriptors"], first["cycles_measured"], first["useful_macs"]) == (2, 70, 480)
    assert first["mac_utilization"] == pytest.approx(480 / (8 * 70), abs=1e-4)
    assert table[1]["cycles_predicted"] == 31 and table[1]["mac_utilization"] == 0.5
    assert [t["share"] for t in table] == [0.5833, 0.25, 0.1667]


def test_summary_gives_external_traffic_in_1000_byte_kb(capsys):
    row = {"model": "m", "scheme": "s", "policy": "dynamic", "cycles_measured": 1000, "cycles_predicted": 1000,
           "peak_bytes_measured": 10, "peak_bytes_planned": 12, "external_bytes_measured": 123_456,
           "external_mb_per_s_at_fmax": 6.17, "mac_utilization": 0.5, "iteration_ms_at_fmax": 0.02,
           "bit_exact": True}
    print_summary({"fmax": {"fmax_mhz": 50, "source": "--fmax-mhz"}, "rows": [row], "not_run": []})
    line = capsys.readouterr().out.splitlines()[-1]
    assert "123.5" in line.split() and "120.6" not in line.split()      # 123,456 / 1000, not / 1024


def test_fmax_sources(tmp_path):
    assert fmax_from(42.0, None, "default") == {"fmax_mhz": 42.0, "source": "--fmax-mhz"}
    report = tmp_path / "build.json"
    report.write_text(json.dumps({"board": "ulx3s-85f", "fmax_mhz": 18.73, "timing_met": False, "macs_per_cycle": 8}))
    got = fmax_from(None, report, "default")
    assert got["fmax_mhz"] == 18.73 and "ulx3s-85f" in got["source"] and "timing met False" in got["source"]
    # a --place-only report's Fmax is an estimate, and the source says so
    report.write_text(json.dumps({"board": "ulx3s-85f", "fmax_mhz": 26.0, "timing_met": None,
                                  "stage": "placed", "macs_per_cycle": 8}))
    got = fmax_from(None, report, "default")
    assert got["fmax_mhz"] == 26.0 and "placed only: nextpnr's estimate, not a routed Fmax" in got["source"]
    assert fmax_from(None, None, "default")["fmax_mhz"] == 100.0
    report.write_text("{}")
    with pytest.raises(ValueError, match="fmax_mhz"):
        fmax_from(None, report, "default")


@pytest.mark.parametrize("argv, message", [
    (["--suite", "paper", "--model", "builtin"], "either --suite or --model"),
    (["--scheme", "last-layer"], "--scheme needs --model"),
    (["--model", "nothing.pkl"], "no such model file"),
    (["--iterations", "51"], "between 1 and 50"),
    (["--build-report", "/nonexistent.json"], "not a `sparsebp build --json` report"),
    (["--suite", "paper", "--peak-budget", "141000"], "for one row (--model)"),
])
def test_bench_errors_are_one_line(capsys, argv, message):
    assert main(["bench"] + argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


available, reason = verilator_available()


@pytest.mark.skipif(not available, reason=reason)
def test_bench_builtin_row_on_rtl(tmp_path):
    """One built-in row through the CLI: the JSON keys the issue names, RTL = cycle model for
    cycles and external traffic, the engine's high-water mark within the plan, bit-exact."""
    out = tmp_path / "bench.json"
    plots = tmp_path / "plots"
    argv = ["bench", "--model", "builtin", "--iterations", "1", "--fmax-mhz", "50", "--json", str(out)]
    try:
        import matplotlib  # noqa: F401
        argv += ["--plots", str(plots)]
    except ImportError:
        plots = None
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["git_revision"] and result["toolchain"]["verilator"] and result["config"]["lanes"] == DEFAULT.lanes
    (row,) = result["rows"]
    for key in ("model", "scheme", "policy", "cycles_measured", "cycles_predicted", "peak_bytes_measured",
                "peak_bytes_planned", "bit_exact", "mac_utilization", "iteration_ms_at_fmax"):
        assert key in row, key
    assert (row["model"], row["scheme"], row["policy"]) == (builtin_model().name, "builtin-sparse", "dynamic")
    assert row["bit_exact"] is True
    assert row["cycles_measured"] == row["cycles_predicted"] and row["cycle_model_error_max"] == 0
    assert row["external_bytes_measured"] == row["external_bytes_predicted"] > 0
    assert 0 < row["peak_bytes_measured"] <= row["peak_bytes_planned"] <= 256 * 1024
    assert 0 < row["mac_utilization"] < 1
    assert row["iteration_ms_at_fmax"] == pytest.approx(row["cycles_measured"] / 50e3, abs=1e-3)
    # bytes over the iteration's time at 50 MHz, in MB/s
    assert row["external_mb_per_s_at_fmax"] == pytest.approx(
        row["external_bytes_measured"] / (row["cycles_measured"] / 50e6) / 1e6, abs=0.01)
    assert sum(layer["cycles_measured"] for layer in row["layers"]) == \
        row["forward_cycles"] + row["backward_cycles"]
    kinds = row["cycles_by_kind"]
    assert sum(k["cycles_measured"] for k in kinds) == row["forward_cycles"] + row["backward_cycles"]
    assert sum(k["cycles_predicted"] for k in kinds) == sum(layer["cycles_predicted"] for layer in row["layers"])
    assert sum(k["useful_macs"] for k in kinds) == sum(layer["useful_macs"] for layer in row["layers"])
    assert sum(k["share"] for k in kinds) == pytest.approx(1, abs=1e-3)
    names = {(k["category"], k["kind"]) for k in kinds}
    assert ("forward", "broadcast") in names and ("forward", "copy") in names     # staged weights
    assert any(kind.endswith("two passes") for _, kind in names)                   # the input gradients
    assert all(k["useful_macs"] == 0 for k in kinds if k["kind"] in ("copy", "gather"))   # bytes times one
    assert all(k["useful_macs"] > 0 for k in kinds if k["kind"] in ("broadcast", "dot, two passes"))
    assert row["occupancy"][0][0] == 0 and max(p[2] for p in row["occupancy"]) < row["peak_bytes_planned"]
    if plots is not None:
        assert {p.name for p in plots.iterdir()} >= {"cycles_per_layer.png", "scratchpad_occupancy.png"}
