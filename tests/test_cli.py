"""The command line: the demo's promise, JSON keys, and one-line errors that change nothing."""
import json

import pytest

from sparsebp.cli import main


def test_demo_improves_over_untrained_head(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--epochs", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["accuracy"] > result["accuracy_before"] + 0.4
    assert result["accuracy"] > 0.8
    assert 0 < result["updated_weight_fraction"] < 1
    assert result["planned_peak_bytes"] > 0


def test_train_json_keys_and_saved_model(tmp_path):
    out, model = tmp_path / "train.json", tmp_path / "model.npz"
    assert main(["train", "--data", "digits", "--scheme", "last-layer", "--policy", "static-first",
                 "--epochs", "1", "--limit", "200", "--json", str(out), "--out", str(model)]) == 0
    result = json.loads(out.read_text())
    for key in ("accuracy", "updated_weight_fraction", "planned_peak_bytes"):
        assert key in result
    assert 0 <= result["accuracy"] <= 1
    evaluated = tmp_path / "eval.json"
    assert main(["eval", "--model", str(model), "--json", str(evaluated)]) == 0
    ev = json.loads(evaluated.read_text())
    assert ev["accuracy"] == pytest.approx(result["accuracy"])
    assert len(ev["predictions"]) == ev["images"]


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--scheme", "nonsense"], "unknown scheme"),
    (["train", "--model", "missing.npz"], "missing.npz"),
    (["train", "--model", "model.onnx"], "unknown model"),
    (["train", "--data", "imagenet"], "imagenet"),
    (["eval", "--data", "cifar10:/nonexistent/cifar.tar.gz"], "/nonexistent/cifar.tar.gz"),
    (["train", "--scheme", "bias=2;w=99:0.5"], "99"),
    (["sim", "engine", "--iterations", "0"], "--iterations"),
    (["sim", "engine", "--model", "model.onnx"], "unknown model"),
    (["sim", "engine", "--scheme", "nonsense"], "unknown scheme"),
    # refused by the compiler before anything is simulated
    (["sim", "engine", "--scheme", "bias=7;w=0:0.5"], "regular 3x3 convs run over all input channels"),
    (["sim", "soc", "--board", "arty-a7"], "unknown board 'arty-a7'"),
    (["sim", "soc", "--iterations", "0"], "--iterations must be between 1 and 200"),
    (["bench", "--model", "builtin", "--scheme", "nonsense"], "unknown scheme"),
    (["bench", "--model", "builtin", "--scheme", "bias=0;w=0:1/3"], "ratio 0.333"),
])
def test_user_errors_are_one_line(argv, fragment, capsys, tmp_path):
    assert main(argv + ["--json", str(tmp_path / "x.json")]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sparsebp: error:") and fragment in err[0]
    assert not (tmp_path / "x.json").exists()
    if argv[0] in ("bench", "sim") and argv[1] != "engine":
        assert captured.out == ""       # refused before the run's banner


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--lr", "-1"],
                                  ["train", "--policy", "random"], ["frobnicate"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_plan_with_a_fresh_head_plans_what_train_and_bench_run(tmp_path, capsys):
    """`--classes N` plans the model with a fresh N-class head (the model train and bench run),
    not its own; the JSON and the printout say which head was planned."""
    from golden.builtin import builtin_model
    from golden.memory import plan_memory
    from golden.scheme import parse_scheme
    own, fresh = tmp_path / "own.json", tmp_path / "fresh.json"
    assert main(["plan", "--json", str(own)]) == 0
    assert main(["plan", "--classes", "3", "--json", str(fresh)]) == 0
    printed = capsys.readouterr().out
    assert "head: 3 classes" in printed and "the model's own" in printed
    own, fresh = json.loads(own.read_text()), json.loads(fresh.read_text())
    model = builtin_model().with_new_head(3, seed=0)
    assert (own["classes"], fresh["classes"]) == (builtin_model().classifier.out_channels, 3)
    scheme = parse_scheme("builtin-sparse", model)
    assert fresh["engine_rules_peak_bytes"] == plan_memory(model, scheme, rules="engine").peak_bytes
    assert fresh["engine_rules_peak_bytes"] != own["engine_rules_peak_bytes"]


def test_plan_reports_the_engine_rules_beside_the_default_rules(tmp_path):
    """`sparsebp plan` prints and writes the engine-rules plan (docs/memory.md): for the built-in
    CNN a bound on what compile_training allocates, below the default rules' figure."""
    from golden.builtin import builtin_model
    from golden.engine.config import DEFAULT
    from golden.engine.training import compile_training
    from golden.scheme import parse_scheme
    out = tmp_path / "plan.json"
    assert main(["plan", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    model = builtin_model()
    scheme = parse_scheme("builtin-sparse", model)
    # the plan packs what the compiler packs; weights staged on chip can only lower the peak
    streamed = compile_training(model, scheme, DEFAULT, stage_weights=False).forward.peak_bytes
    assert streamed <= result["engine_rules_peak_bytes"] <= 1.02 * streamed
    assert compile_training(model, scheme, DEFAULT).forward.peak_bytes <= streamed
    assert result["engine_rules_peak_bytes"] < result["planned_peak_bytes"]
