"""fpga.heatmap: router2's per-net overuse summed by the part of the design a net belongs to."""
import pytest

from fpga.heatmap import HeatmapError, group_of, main, overuse_by_group


def test_nets_are_grouped_by_engine_module_with_lanes_merged():
    assert group_of("soc.engine.engine.acc3[17]") == "acc#"
    assert group_of("soc.engine.engine.weight_updater1.s4_LUT4_Z") == "weight_updater#"
    assert group_of("dut.product_TRELLIS_FF_Q") == "product"
    assert group_of("soc.engine.engine.mult_mem.0.5_DOA13_LUT4_C_Z[0]") == "mult_mem"
    assert group_of("soc.cpu.VexRiscv.decode_INSTRUCTION[3]") == "cpu"
    assert group_of("clocks.fast_reset_sync.locked_LUT4_D_Z") == "other: clocks.fast_reset_sync"


def test_overuse_is_summed_per_group_largest_first():
    lines = ["soc.engine.engine.acc0[1],5\n", "soc.engine.engine.acc7[2],3\n", "soc.cpu.x,4\n",
             "\n", "clocks.a.b,1\n"]
    total, groups = overuse_by_group(lines)
    assert total == 13
    assert groups == [("acc#", 8, 2), ("cpu", 4, 1), ("other: clocks.a", 1, 1)]


def test_a_malformed_line_is_an_error_naming_it():
    with pytest.raises(HeatmapError, match="line 2 is not 'net,overused wires'"):
        overuse_by_group(["a.b,1\n", "a.b,many\n"])


def test_command_prints_shares(tmp_path, capsys):
    csv = tmp_path / "heat_congestion_by_net_5.csv"
    csv.write_text("soc.engine.engine.product[0],3\nsoc.cpu.y,1\n")
    assert main([str(csv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "heat_congestion_by_net_5.csv: 4 overused wires in all"
    assert "75.0%" in out[1] and out[1].endswith("product")
    assert "25.0%" in out[2] and out[2].endswith("cpu")


def test_command_refuses_a_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "none.csv")]) == 1
    assert capsys.readouterr().err.startswith("fpga.heatmap: error:")
