"""`sparsebp experiment`: rerun one row of docs/results.md (issue 3), or summarize results.

    sparsebp experiment --row mbv2-49kb-dynamic --seed 1 --json docs/results/mbv2-49kb-dynamic-s1.json
    sparsebp experiment --model PATH.pkl --scheme mbv2-49kb --policy dynamic [--no-qas] ...
    sparsebp experiment --list
    sparsebp experiment --summarize docs/results [--plot OUT.png] [--table OUT.md]

A row fixes model, scheme, policy, QAS, rounding and learning rate (golden/experiment.py ROWS);
the protocol options default to the reduced protocol of docs/results.md (1 epoch, 5,000 training
and 2,000 test images, 128x128); `--limit all --test-limit all` is the whole data set.
The frozen prefix's outputs are cached under ~/.cache/sparsebp (SPARSEBP_CACHE moves it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from golden import experiment as exp
from golden.scheme import POLICIES
from golden.train import ROUNDINGS

from .args import count_or_all, positive_float, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("experiment", help="rerun a row of docs/results.md (accuracy vs memory)",
                              description=__doc__.splitlines()[0])
    what = p.add_argument_group("what to train (a --row, or --model and --scheme)")
    what.add_argument("--row", help="a named row (see --list)")
    what.add_argument("--model", help="'builtin', mbv2, mcunet, proxyless, an MIT .pkl or a sparsebp .npz")
    what.add_argument("--scheme", help="a scheme preset, a key of golden/experiment.py SCHEMES, or 'bias=K;w=...'")
    what.add_argument("--policy", choices=POLICIES, help="channel selection (default dynamic)")
    what.add_argument("--rounding", choices=ROUNDINGS, help="int8 weight rounding (default stochastic)")
    what.add_argument("--no-qas", action="store_true", help="plain SGD on the int8 codes (ablation)")
    what.add_argument("--lr", type=positive_float, help="peak learning rate (default: the row's, 0.002 for most)")
    proto = p.add_argument_group("protocol (defaults: the reduced protocol of docs/results.md)")
    proto.add_argument("--seed", type=int, default=1)
    proto.add_argument("--epochs", type=positive_int, default=exp.REDUCED.epochs)
    proto.add_argument("--limit", type=count_or_all, default=exp.REDUCED.train_images,
                       help="training images (class-balanced first N), or 'all'")
    proto.add_argument("--test-limit", type=count_or_all, default=exp.REDUCED.test_images,
                       help="test images, or 'all'")
    proto.add_argument("--resolution", type=positive_int, default=exp.REDUCED.resolution)
    proto.add_argument("--schedule", choices=exp.SCHEDULES, default=exp.REDUCED.schedule,
                       help="learning-rate schedule over all steps (cosine decay, or constant as sparsebp train)")
    proto.add_argument("--data", help="'digits' or 'cifar10:PATH' (default: CIFAR-10 in the shared folder; "
                                      "digits for the built-in model)")
    proto.add_argument("--shared", type=Path, help="the shared folder (default $SPARSEBP_SHARED or ../shared)")
    proto.add_argument("--no-cache", action="store_true", help="do not read or write the prefix cache on disk")
    out = p.add_argument_group("listing and summaries")
    out.add_argument("--list", action="store_true", help="list the named rows")
    out.add_argument("--summarize", type=Path, metavar="DIR", help="summarize the result JSON files in DIR")
    out.add_argument("--plot", type=Path, help="with --summarize: write the accuracy-vs-memory PNG")
    out.add_argument("--table", type=Path, help="with --summarize: write the markdown table")
    p.add_argument("--json", type=Path, help="write the result as JSON")
    return p


def _row_from_args(args) -> exp.Row:
    if args.row is not None:
        if args.row not in exp.ROWS:
            raise ValueError(f"unknown row {args.row!r}; `sparsebp experiment --list` shows them")
        if args.model is not None or args.scheme is not None:
            raise ValueError("--row fixes the model and scheme; drop --model/--scheme or --row")
        base = exp.ROWS[args.row]
    else:
        if args.scheme is None:
            raise ValueError("give --row NAME, or --model and --scheme (see --list)")
        model = args.model or "builtin"
        base = exp.Row(f"custom:{Path(model).stem}:{args.scheme}", "custom", model, args.scheme)
    changes = {}
    if args.policy is not None:
        changes["policy"] = args.policy
    if args.rounding is not None:
        changes["rounding"] = args.rounding
    if args.no_qas:
        changes["qas"] = False
    if args.lr is not None:
        changes["lr"] = args.lr
    if args.row is not None and changes:
        # An overridden row is a different experiment: name it so, and rerun it in free form.
        suffix = ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
        changes["name"] = f"{base.name}[{suffix}]"
    from dataclasses import replace
    return replace(base, **changes)


def _require_matplotlib() -> None:
    """--plot needs matplotlib, an optional extra: say how to get it instead of a traceback."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install -e '.[ml]' (make test installs it)")


def run(args) -> dict:
    if args.list:
        for row in exp.ROWS.values():
            print(f"{row.name:28s} {row.model:8s} {row.scheme:16s} {row.policy:16s} "
                  f"QAS {'on ' if row.qas else 'off'} {row.rounding:10s} {row.method}")
        return {"rows": {name: vars(row) for name, row in exp.ROWS.items()}}
    if args.summarize is not None:
        files = sorted(Path(args.summarize).glob("*.json"))
        if not files:
            raise ValueError(f"{args.summarize}: no result .json files")
        if args.plot is not None:
            _require_matplotlib()                             # fail before writing anything
        summaries = exp.summarize(files)
        table = exp.markdown_table(summaries)
        print(table)
        if args.table is not None:
            args.table.parent.mkdir(parents=True, exist_ok=True)
            args.table.write_text(table)
        if args.plot is not None:
            exp.plot_accuracy_vs_memory(summaries, args.plot)
            print(f"wrote {args.plot}")
        return {"rows": [dict(vars(s), mean=s.mean, spread=s.spread) for s in summaries]}
    row = _row_from_args(args)
    resolution = args.resolution
    if row.model == "builtin" and args.resolution == exp.REDUCED.resolution and args.data in (None, "digits"):
        resolution = None                                     # the digits are 8x8
    protocol = exp.Protocol(epochs=args.epochs, train_images=args.limit, test_images=args.test_limit,
                            resolution=resolution, schedule=args.schedule)
    result = exp.run_row(row, seed=args.seed, protocol=protocol, data=args.data, shared=args.shared,
                         use_cache=not args.no_cache, json_path=args.json)
    if row.name not in exp.ROWS:
        result["command"] = exp.command_for(row, args.seed, protocol, args.json, free_form=True)
    print(f"{result['row']} seed {result['seed']}: accuracy {result['accuracy']:.4f} "
          f"(before {result['accuracy_before']:.4f}), planned peak {result['planned_peak_bytes']:,} bytes, "
          f"{100 * result['updated_conv_weight_fraction']:.2f}% of conv weights per iteration, "
          f"{result['wall_seconds']:.0f} s")
    return result
