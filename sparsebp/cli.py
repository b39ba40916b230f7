"""`sparsebp`: the project's one command line, with subcommands.

    sparsebp demo                      built-in digits CNN: fresh head, sparse int8 training
    sparsebp train --model ... --data ... --scheme ... --policy ... --json OUT
    sparsebp eval --model PATH --data ... --limit N --json OUT
    sparsebp plan --model ... --scheme ... [--resolution R] [--classes N]
    sparsebp check-requant --model PATH [--data ...]
    sparsebp sim engine [--model ...] [--config ...] --json OUT
    sparsebp build --board {icebreaker,ulx3s-85f,orangecrab-85f} [--json OUT]
    sparsebp bench [--suite paper | --model ... --scheme ... --policy ...] [--plots DIR] --json OUT

Errors a user can cause print one line `sparsebp: error: ...` and exit with status 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from golden.scheme import POLICIES, PRESETS
from golden.train import ROUNDINGS

from . import bench_cli, build_cli, experiment_cli, runs, sim_cli
from .args import positive_float, positive_int

EPILOG = "Schemes: " + ", ".join(sorted(PRESETS)) + ", full, bias-K, or 'bias=K;w=IDX:RATIO,...'"


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


def _add_training_options(p: argparse.ArgumentParser, scheme_default: str) -> None:
    p.add_argument("--scheme", default=scheme_default, help="update scheme (see below)")
    p.add_argument("--policy", choices=POLICIES, default="dynamic", help="channel selection policy")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lr", type=positive_float, default=0.05, help="learning rate (QAS scale)")
    p.add_argument("--rounding", choices=ROUNDINGS, default="stochastic", help="int8 weight rounding")
    p.add_argument("--no-qas", action="store_true", help="plain SGD on the int8 codes (ablation)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsebp", description=__doc__.splitlines()[0], epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train the built-in digits CNN's fresh head with sparse int8 updates")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--no-rtl", action="store_true",
                   help="skip the training iterations on the engine RTL (Verilator)")
    p.add_argument("--json", type=Path, help="write the results as JSON")

    p = sub.add_parser("train", help="int8 sparse training with the golden model", epilog=EPILOG)
    p.add_argument("--model", default="builtin", help="'builtin', an MIT .pkl, or a sparsebp .npz")
    p.add_argument("--data", default="digits", help="'digits' or 'cifar10:PATH'")
    _add_training_options(p, "builtin-sparse")
    p.add_argument("--limit", type=positive_int, help="use at most N training images")
    p.add_argument("--test-limit", type=positive_int, help="evaluate on at most N test images")
    p.add_argument("--resolution", type=positive_int, help="input resolution (default: the model's)")
    p.add_argument("--keep-head", action="store_true", help="keep the model's classifier instead of a fresh one")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    p.add_argument("--out", type=Path, help="save the trained model (.npz)")

    p = sub.add_parser("eval", help="int8 inference accuracy")
    p.add_argument("--model", default="builtin")
    p.add_argument("--data", default="digits")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=positive_int)
    p.add_argument("--resolution", type=positive_int)
    p.add_argument("--json", type=Path)

    p = sub.add_parser("plan", help="planned peak memory of one training iteration", epilog=EPILOG)
    p.add_argument("--model", default="builtin")
    p.add_argument("--scheme", default="builtin-sparse")
    p.add_argument("--resolution", type=positive_int)
    p.add_argument("--classes", type=positive_int,
                   help="plan with a fresh head of N classes, as train (on its data) and bench (10) "
                        "do; default: the model's own head (1000 classes for MIT's models)")
    p.add_argument("--json", type=Path)

    p = sub.add_parser("check-requant", help="fixed-point requantization vs MIT's float formula")
    p.add_argument("--model", required=True, help="an MIT .pkl model")
    p.add_argument("--data", default=None, help="'cifar10:PATH' (default: random images)")
    p.add_argument("--limit", type=positive_int, default=100)
    p.add_argument("--json", type=Path)

    experiment_cli.add_parser(sub)
    sim_cli.add_parser(sub)
    build_cli.add_parser(sub)
    bench_cli.add_parser(sub)
    return parser


def _write_json(path: Path | None, result: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    print(f"wrote {path}")


def cmd_demo(args) -> dict:
    result = runs.train_run(model_spec="builtin", data_spec="digits", scheme_name="builtin-sparse",
                            policy="dynamic", epochs=args.epochs, seed=1, lr=0.05,
                            rounding="stochastic", qas=True, new_head=True)
    print()
    print(f"accuracy with the untrained head: {result['accuracy_before']:.3f}")
    print(f"accuracy after {args.epochs} epochs of int8 sparse training: {result['accuracy']:.3f}")
    print(f"weights updated per iteration: {result['updated_weight_fraction']:.1%}; "
          f"planned peak training memory: {result['planned_peak_bytes']:,} bytes")
    if not args.no_rtl:
        from sim.toolchain import verilator_available
        ok, reason = verilator_available()
        if ok:
            print()
            from sim.training_run import rtl_training_run
            rtl = rtl_training_run(iterations=2)
            sim_cli.print_table(rtl)
            result["rtl"] = rtl
        else:
            print(f"\nskipping the RTL iterations: {reason}")
    return result


def cmd_train(args) -> dict:
    return runs.train_run(model_spec=args.model, data_spec=args.data, scheme_name=args.scheme,
                          policy=args.policy, epochs=args.epochs, seed=args.seed, lr=args.lr,
                          rounding=args.rounding, qas=not args.no_qas, new_head=not args.keep_head,
                          limit=args.limit, test_limit=args.test_limit, resolution=args.resolution,
                          out=args.out)


def cmd_eval(args) -> dict:
    return runs.eval_run(args.model, args.data, args.split, args.limit, args.resolution)


def cmd_plan(args) -> dict:
    return runs.plan_run(args.model, args.scheme, args.resolution, args.classes)


def cmd_check_requant(args) -> dict:
    return runs.requant_run(args.model, args.data, args.limit)


COMMANDS = {"sim": sim_cli.run, "demo": cmd_demo, "train": cmd_train, "eval": cmd_eval, "plan": cmd_plan,
            "check-requant": cmd_check_requant, "experiment": experiment_cli.run, "build": build_cli.run,
            "bench": bench_cli.run}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    start = time.time()
    try:
        result = COMMANDS[args.command](args)
        _write_json(getattr(args, "json", None), result)
    except (UserError, ValueError, OSError) as exc:
        # ValueError covers the loaders' DataError / ModelFormatError / ModelFileError.
        print(f"sparsebp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sparsebp: interrupted", file=sys.stderr)
        return 130
    print(f"done in {time.time() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
