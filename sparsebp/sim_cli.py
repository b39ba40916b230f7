"""`sparsebp sim engine`: training iterations of the built-in CNN on the engine RTL (Verilator),
beside the golden executor and the golden Trainer, with per-descriptor cycles and bit-exactness.

An iteration is the engine's forward program, the host's loss step (what the CPU will do:
softmax cross-entropy gradient times the logits' clamp mask), and the engine's backward
program, which back-propagates through the layers the scheme updates; a scheme that updates
a subset of a conv's channels gets this iteration's selection from the host as a channel list
(the same ChannelSelector draws as the Trainer's). `--selection-sweep` runs the built-in CNN's
block-2 updates at 1/8, 1/4, 1/2 and all of their channels and shows the weight-update cycles
scaling with the selected count.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CONFIGS = ("default", "small")
# The built-in scheme: biases of the last four convs, block 2's weights at ratios 1/2, 1/4, 1/2
# (dynamic channel selection), and the classifier.
DEFAULT_SCHEME = "builtin-sparse"
SWEEP_RATIOS = (0.125, 0.25, 0.5, 1.0)
SWEEP_OPS = ("b2.pw1 weight update", "b2.dw weight update", "b2.pw2 weight update")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sim", help="run programs on the engine RTL under Verilator")
    sim_sub = p.add_subparsers(dest="sim_target", required=True, metavar="TARGET")
    e = sim_sub.add_parser("engine", help="training iterations on the engine RTL vs the golden model")
    e.add_argument("--model", default="builtin",
                   help="'builtin' (the digits CNN) or an MIT .pkl model (fresh 10-class head)")
    e.add_argument("--data", default=None,
                   help="'digits' (builtin's default) or 'cifar10:PATH' (MIT models; default: random images)")
    e.add_argument("--scheme", default=None,
                   help=f"update scheme, as for `sparsebp train` (builtin's default {DEFAULT_SCHEME}: biases "
                        f"of the last four convs, block 2's weights on a random half/quarter/half of their "
                        f"channels, the classifier)")
    e.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 0.05 for builtin, 0.002 for MIT models)")
    e.add_argument("--selection-sweep", action="store_true",
                   help="one iteration per ratio 1/8, 1/4, 1/2, 1 of block 2's weights: update cycles vs "
                        "selected channels")
    e.add_argument("--config", choices=CONFIGS, default="default", help="engine configuration preset")
    e.add_argument("--iterations", type=int, default=2, help="training iterations (1..50)")
    e.add_argument("--json", type=Path, help="write the rows as JSON")
    from sim.soc_cli import add_parser as add_soc_parser   # `sim soc`: the SoC (sim/soc_cli.py)
    add_soc_parser(sim_sub)


def rtl_training_run(iterations: int = 2, config_name: str = "default", seed: int = 1,
                     scheme_name: str | None = None, model_spec: str = "builtin",
                     data_spec: str | None = None, lr: float | None = None) -> dict:
    from golden import int_ops
    from golden.builtin import builtin_model
    from golden.data import load_digits
    from sparsebp.runs import load_data, load_model_spec
    from golden.engine import layout
    from golden.engine.config import PRESETS
    from golden.engine.cycles import descriptor_cycles, end_cycles
    from golden.engine.executor import Machine
    from golden.engine.training import compile_training
    from golden.engine import program as isa
    from golden.scheme import ChannelSelector, parse_scheme
    from golden.train import Trainer, UpdateRule
    from sim.engine_job import EngineJob, run_on_rtl
    from sim.toolchain import verilator_available

    if not 1 <= iterations <= 50:
        raise ValueError(f"--iterations must be between 1 and 50, not {iterations}")
    ok, reason = verilator_available()
    if not ok:
        raise ValueError(f"cannot simulate: {reason}")
    config = PRESETS[config_name]
    builtin = model_spec == "builtin"
    model = load_model_spec(model_spec).with_new_head(10, seed=0)
    if scheme_name is None:
        if not builtin:
            raise ValueError("--scheme is needed for a model file (for example mbv2-49kb)")
        scheme_name = DEFAULT_SCHEME
    scheme = parse_scheme(scheme_name, model)             # a bad name is a ValueError with the choices
    rule = UpdateRule(lr=lr if lr is not None else (0.05 if builtin else 0.002))
    if data_spec is not None:
        data, images = load_data(data_spec, "train", model, limit=iterations)
        labels = data.labels
    elif builtin:
        data = load_digits("train")
        images, labels = int_ops.quantize_images(data.images[:iterations], model), data.labels
    else:   # the engine's arithmetic does not depend on what the pixels show
        rng = np.random.default_rng(seed)
        images = rng.integers(-128, 128, (iterations,) + model.input_shape).astype(np.int8)
        labels = rng.integers(0, 10, iterations)
    trainer = Trainer(model, scheme, "dynamic", rule, seed=seed)
    host_selector = ChannelSelector(model, scheme, "dynamic", seed=2 * seed + 1)   # draws as the Trainer's
    program = compile_training(model, scheme, config, rule)
    scratchpad = program.initial_scratchpad(images[0], trainer.sr_rng.state)
    phases = (("forward", program.forward.descriptors, 0, program.forward.ops),
              ("backward", program.backward, program.backward_base, program.backward_ops))
    rows, iterations_out = [], []
    print(f"{iterations} training iteration(s) of {model.name} (scheme {scheme_name}) on the engine RTL, "
          f"{config.lanes} lanes, {config.scratchpad_bytes // 1024} KiB scratchpad "
          f"(the first run builds the simulator: a few minutes)", flush=True)
    for k, (image, label) in enumerate(zip(images, labels[:iterations])):
        x_at = program.forward.tensors["input"][0]
        scratchpad[x_at:x_at + image.size] = layout.activation_bytes(image)
        program.write_selection(scratchpad, host_selector.select())     # the CPU draws the channels first
        iteration_cycles, exact = 0, True
        loss = None
        for phase, descriptors, base, labels in phases:
            golden = Machine(config, program.external)
            golden.scratchpad[:] = scratchpad
            words = program.external[base:base + (len(descriptors) + 1) * isa.DESCRIPTOR_WORDS * 4]
            golden.run_or_raise(isa.decode(words.view("<u4")))
            rtl = run_on_rtl(config, [EngineJob(scratchpad.copy(), program.external, base)])[0]
            if rtl.error_code:
                raise RuntimeError(f"the engine stopped with error {rtl.error_code} at {phase} "
                                   f"descriptor {rtl.error_index}")
            same = bool(np.array_equal(rtl.scratchpad, golden.scratchpad))
            exact &= same
            ends = np.asarray(rtl.trace[:len(descriptors)], np.int64) + 1
            measured = np.diff(np.concatenate([[0], ends]))
            for d, op, cycles in zip(descriptors, labels, measured):
                model_cycles = descriptor_cycles(d, config)
                rows.append({"iteration": k, "phase": phase, "op": op, "cycles_measured": int(cycles),
                             "cycles_predicted": model_cycles.total, "bit_exact": same,
                             "mac_utilization": round(model_cycles.useful_macs / (config.lanes * int(cycles)), 4)})
            iteration_cycles += rtl.cycles
            predicted_total = sum(descriptor_cycles(d, config).total for d in descriptors) + end_cycles(config)
            rows.append({"iteration": k, "phase": phase, "op": "program total (with END)",
                         "cycles_measured": rtl.cycles, "cycles_predicted": predicted_total,
                         "bit_exact": same, "mac_utilization": None})
            scratchpad = rtl.scratchpad.copy()
            if phase == "forward":
                loss = program.loss_step(scratchpad, model, int(label))
        trainer.step(image[None], int(label))
        matches_trainer = resident_equal_trainer(program, trainer, scratchpad)
        iterations_out.append({"iteration": k, "loss": loss, "cycles": iteration_cycles,
                               "bit_exact": exact, "matches_trainer": matches_trainer})
        print(f"iteration {k}: loss {loss:.3f}, {iteration_cycles:,} engine cycles, bit-exact {exact}, "
              f"updated weights, biases and PRNG equal the golden Trainer's {matches_trainer}", flush=True)
    return {"model": model.name, "scheme": scheme_name, "config": dict(config.__dict__),
            "peak_scratchpad_bytes": program.forward.peak_bytes, "rows": rows,
            "iterations": iterations_out,
            "bit_exact": all(i["bit_exact"] and i["matches_trainer"] for i in iterations_out)}


def resident_equal_trainer(program, trainer, scratchpad) -> bool:
    """Every updated conv's weights and biases, and the `sr` state, equal the Trainer's."""
    from golden.engine import layout
    nodes = {n.name: n for n in trainer.model.nodes}
    for name, (w_at, p_at) in program.forward.resident.items():
        node = nodes[name]
        weights = layout.weight_bytes(node.weight, node.depthwise)
        bias = node.bias.astype("<i4").view(np.uint8)
        if w_at is not None and not np.array_equal(scratchpad[w_at:w_at + weights.size], weights):
            return False
        if not np.array_equal(scratchpad[p_at:p_at + bias.size], bias):
            return False
    prng = scratchpad[program.prng_addr:program.prng_addr + 4].view("<u4")[0]
    return bool(prng == trainer.sr_rng.state)


def print_table(result: dict) -> None:
    first = [r for r in result["rows"] if r["iteration"] == 0]
    print(f"\n{'phase':9s} {'op':34s} {'measured':>9s} {'predicted':>9s} {'MAC use':>8s}  bit-exact")
    for r in first:
        use = f"{r['mac_utilization']:.1%}" if r["mac_utilization"] is not None else ""
        print(f"{r['phase']:9s} {r['op']:34s} {r['cycles_measured']:9,d} {r['cycles_predicted']:9,d} "
              f"{use:>8s}  {r['bit_exact']}")
    print(f"peak scratchpad (planned): {result['peak_scratchpad_bytes']:,} bytes; "
          f"every iteration bit-exact and equal to the golden Trainer: {result['bit_exact']}")


def selection_sweep(config_name: str = "default") -> dict:
    """One iteration per ratio of block 2's weights; rows of the weight-update descriptors."""
    rows = []
    for ratio in SWEEP_RATIOS:
        result = rtl_training_run(1, config_name, scheme_name=f"bias=4;w=4:{ratio},5:{ratio},6:{ratio}")
        for r in result["rows"]:
            if r["op"] in SWEEP_OPS:
                rows.append(dict(r, ratio=ratio, iteration_bit_exact=result["bit_exact"]))
    return {"rows": rows, "ratios": list(SWEEP_RATIOS)}


def print_sweep(sweep: dict) -> None:
    print(f"\n{'op':22s} {'ratio':>6s} {'measured':>9s} {'predicted':>9s}  bit-exact")
    for r in sweep["rows"]:
        print(f"{r['op']:22s} {r['ratio']:6.3f} {r['cycles_measured']:9,d} {r['cycles_predicted']:9,d}  "
              f"{r['bit_exact'] and r['iteration_bit_exact']}")


def run(args) -> dict:
    if args.sim_target == "soc":
        from sim.soc_cli import run as run_soc
        return run_soc(args)
    if args.selection_sweep:
        result = selection_sweep(args.config)
        print_sweep(result)
        return result
    result = rtl_training_run(args.iterations, args.config, scheme_name=args.scheme, model_spec=args.model,
                              data_spec=args.data, lr=args.lr)
    print_table(result)
    return result
