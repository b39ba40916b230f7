"""`sparsebp sim engine`: training iterations of the built-in CNN on the engine RTL (Verilator),
beside the golden executor and the golden Trainer, with per-descriptor cycles and bit-exactness.

An iteration is the engine's forward program, the host's loss step (what the CPU will do:
softmax cross-entropy gradient times the logits' clamp mask), and the engine's backward
program, which back-propagates through the layers the scheme updates; a scheme that updates
a subset of a conv's channels gets this iteration's selection from the host as a channel list
(the same ChannelSelector draws as the Trainer's). `--selection-sweep` runs the built-in CNN's
block-2 updates at 1/8, 1/4, 1/2 and all of their channels and shows the weight-update cycles
scaling with the selected count. The iterations themselves are sim/training_run.py's.
"""
from __future__ import annotations

from pathlib import Path

from golden.engine.config import PRESETS
from golden.scheme import POLICIES
from sim.training_run import BUILTIN_SCHEME

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
                   help=f"update scheme, as for `sparsebp train` (builtin's default {BUILTIN_SCHEME}: biases "
                        f"of the last four convs, block 2's weights on a random half/quarter/half of their "
                        f"channels, the classifier)")
    e.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 0.05 for builtin, 0.002 for MIT models)")
    e.add_argument("--selection-sweep", action="store_true",
                   help="one iteration per ratio 1/8, 1/4, 1/2, 1 of block 2's weights: update cycles vs "
                        "selected channels")
    e.add_argument("--policy", choices=POLICIES, default="dynamic",
                   help="channel selection: a new random subset each iteration (dynamic) or a fixed one")
    e.add_argument("--config", choices=sorted(PRESETS), default="default", help="engine configuration preset")
    e.add_argument("--iterations", type=int, default=2, help="training iterations (1..50)")
    e.add_argument("--json", type=Path, help="write the rows as JSON")
    from sim.soc_cli import add_parser as add_soc_parser   # `sim soc`: the SoC (sim/soc_cli.py)
    add_soc_parser(sim_sub)


def print_table(result: dict) -> None:
    first = [r for r in result["rows"] if r["iteration"] == 0]
    print(f"\n{'phase':9s} {'op':34s} {'measured':>9s} {'predicted':>9s} {'MAC use':>8s}  bit-exact")
    for r in first:
        use = f"{r['mac_utilization']:.1%}" if r["mac_utilization"] is not None else ""
        print(f"{r['phase']:9s} {r['op']:34s} {r['cycles_measured']:9,d} {r['cycles_predicted']:9,d} "
              f"{use:>8s}  {r['bit_exact']}")
    measured = max(i["peak_bytes_measured"] for i in result["iterations"])
    print(f"peak scratchpad: {measured:,} bytes touched by the engine (its monitor), "
          f"{result['peak_scratchpad_bytes']:,} planned; "
          f"every iteration bit-exact and equal to the golden Trainer: {result['bit_exact']}")


def selection_sweep(config_name: str = "default") -> dict:
    """One iteration per ratio of block 2's weights; rows of the weight-update descriptors."""
    from sim.training_run import rtl_training_run
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
    from sim.training_run import rtl_training_run
    result = rtl_training_run(args.iterations, args.config, scheme_name=args.scheme, model_spec=args.model,
                              data_spec=args.data, lr=args.lr, policy=args.policy)
    print_table(result)
    return result
