"""fpga.paths on small hand-made netlists: arrival times follow the documented delay model,
paths are ranked and named, and bad input is refused with a message."""
import json
import math

import pytest

from fpga.paths import NetlistError, longest_paths, main

NET_1 = 0.8 + 0.25 * math.log2(2)      # a net with one sink (the module docstring's model)


def ff(d, q, clk=100):
    return {"type": "TRELLIS_FF", "port_directions": {"DI": "input", "CLK": "input", "Q": "output"},
            "connections": {"DI": [d], "CLK": [clk], "Q": [q]}}


def lut(a, z, src=""):
    cell = {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
            "connections": {"A": [a], "Z": [z]}}
    if src:
        cell["attributes"] = {"src": src}
    return cell


def ccu2c(a0, cin, s0, cout, src="engine.py:7.1-7.9"):
    return {"type": "CCU2C", "attributes": {"src": src},
            "port_directions": {"A0": "input", "CIN": "input", "S0": "output", "COUT": "output"},
            "connections": {"A0": [a0], "CIN": [cin], "S0": [s0], "COUT": [cout]}}


def design(cells, netnames):
    return {"modules": {"top": {"attributes": {"top": 1}, "cells": cells,
                                "netnames": {n: {"bits": b, "hide_name": 0} for n, b in netnames.items()}}}}


def two_paths():
    # long: q_a -> LUT -> LUT -> reg_b; short: q_c -> LUT -> reg_d; both clocked by `clk`
    cells = {"a": ff(90, 1), "l1": lut(1, 2, "engine.py:12.5-12.9"), "l2": lut(2, 3), "b": ff(3, 4),
             "c": ff(91, 5), "l3": lut(5, 6), "d": ff(6, 7)}
    names = {"clk": [100], "q_a": [1], "mid": [2], "sum_b": [3], "reg_b": [4], "q_c": [5], "reg_d": [7]}
    return design(cells, names)


def test_arrival_is_the_documented_model_and_paths_are_ranked():
    paths = longest_paths(two_paths())
    ends = [p.signals[-1] for p in paths]
    assert ends[:2] == ["=> reg_b", "=> reg_d"]
    # clock-to-Q, then per LUT its input net and 0.4 ns, then the net into the register
    assert paths[0].ns == pytest.approx(0.4 + 2 * (NET_1 + 0.4) + NET_1, abs=0.051)
    assert paths[1].ns == pytest.approx(0.4 + NET_1 + 0.4 + NET_1, abs=0.051)
    assert paths[0].signals[:3] == ["q_a", "mid", "sum_b"]
    assert paths[0].launch == paths[0].capture == "clk"
    assert paths[0].end == "TRELLIS_FF.DI"
    assert paths[0].lines == ["engine.py:12"]


def test_carry_wires_cost_no_routing():
    # q -> CCU2C A0 -> COUT -> CIN of a second CCU2C -> S0 -> register
    cells = {"r": ff(90, 1), "c0": ccu2c(1, 80, 50, 2), "c1": ccu2c(81, 2, 3, 51), "e": ff(3, 4)}
    paths = longest_paths(design(cells, {"clk": [100], "x": [1], "s": [3], "y": [4]}))
    expected = 0.4 + NET_1 + 0.45 + 0.0 + 0.12 + NET_1
    assert paths[0].ns == pytest.approx(expected, abs=0.051)
    assert paths[0].signals == ["x", "s", "=> y"]


def test_one_path_per_pair_limit():
    paths = longest_paths(two_paths(), per_clock_pair=1)
    assert len(paths) == 1 and paths[0].signals[-1] == "=> reg_b"


def test_not_a_netlist_is_refused(tmp_path, capsys):
    with pytest.raises(NetlistError, match="no modules"):
        longest_paths({"creator": "x"})
    with pytest.raises(NetlistError, match="one top module"):
        longest_paths({"modules": {"a": {"cells": {}, "netnames": {}}}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_command_line_prints_paths(tmp_path, capsys):
    netlist = tmp_path / "top.json"
    netlist.write_text(json.dumps(two_paths()))
    assert main([str(netlist), "--count", "1", "--lines"]) == 0
    out = capsys.readouterr().out
    assert "q_a -> mid -> sum_b -> => reg_b" in out and "lines: engine.py:12" in out
    with pytest.raises(SystemExit):
        main([str(netlist), "--count", "0"])
