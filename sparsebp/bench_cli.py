"""`sparsebp bench`: training iterations on the engine RTL beside the golden model's predictions
and MIT's Cortex-M7 figures (sim/bench.py), printed as tables and written as JSON and plots.

    sparsebp bench                                   the built-in CNN's suite (a few minutes)
    sparsebp bench --suite paper                     MIT's three models (hours; ../shared)
    sparsebp bench --model M --scheme S --policy P   one row
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from golden.engine.config import PRESETS
from golden.scheme import POLICIES

from .args import positive_float, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="cycles and memory of training iterations: RTL vs golden model vs MIT")
    p.add_argument("--suite", choices=("default", "paper"), default=None,
                   help="default: the built-in CNN (when no --model is given); paper: MobileNetV2-w0.35, "
                        "MCUNet-5fps, ProxylessNAS-w0.3 with MIT's schemes")
    p.add_argument("--model", help="one row: 'builtin', mbv2, mcunet, proxyless (from ../shared) or a .pkl path")
    p.add_argument("--scheme", help="one row's update scheme (default: builtin-sparse, or MIT's for its models)")
    p.add_argument("--policy", choices=POLICIES, default="dynamic", help="one row's channel selection")
    p.add_argument("--config", choices=sorted(PRESETS), default="default", help="engine configuration preset")
    p.add_argument("--image-external", action="store_true",
                   help="one row: keep the sample in external memory, read a stem stripe at a time")
    p.add_argument("--peak-budget", type=positive_int,
                   help="one row: the widest stripes whose planned peak stays within this many bytes")
    p.add_argument("--stream-weights", action="store_true",
                   help="every row: read frozen weights from external memory at each use instead of "
                        "staging them on chip where the scratchpad has room below the peak")
    p.add_argument("--iterations", type=positive_int, help="per row (default 2 for the built-in CNN, 1 for MIT's)")
    p.add_argument("--fmax-mhz", type=positive_float, help="clock for the iteration times")
    p.add_argument("--build-report", type=Path, help="a `sparsebp build --json` report: its Fmax for the times")
    p.add_argument("--shared", type=Path, help="the shared folder (default $SPARSEBP_SHARED or ../shared)")
    p.add_argument("--plots", type=Path, help="write the PNG plots into this folder (needs matplotlib)")
    p.add_argument("--json", type=Path, help="write rows, layers and environment as JSON")


def _specs(args):
    specs, missing = _row_specs(args)
    return [dataclasses.replace(spec, stage_weights=not args.stream_weights) for spec in specs], missing


def _row_specs(args):
    from golden.experiment import resolve_model
    from sim.bench import MIT_SCHEMES, RowSpec, model_key, suite_rows
    from sim.training_run import BUILTIN_SCHEME
    if args.iterations is not None and args.iterations > 50:
        raise ValueError(f"--iterations must be between 1 and 50, not {args.iterations}")
    if args.model is None:
        if args.scheme is not None:
            raise ValueError("--scheme needs --model")
        if args.image_external or args.peak_budget is not None:
            raise ValueError("--image-external and --peak-budget are for one row (--model); "
                             "the suites set their own")
        return suite_rows(args.suite or "default", args.iterations, args.shared)
    if args.suite is not None:
        raise ValueError("give either --suite or --model, not both")
    model = resolve_model(args.model, args.shared)
    if model != "builtin" and not Path(model).is_file():
        raise ValueError(f"{model}: no such model file")
    key = model_key(model)
    if args.scheme is not None:
        scheme = args.scheme
    elif model == "builtin":
        scheme = BUILTIN_SCHEME
    elif key is not None:
        scheme = MIT_SCHEMES[key][0]
    else:
        raise ValueError("--scheme is needed for this model")
    from golden.scheme import parse_scheme
    from sparsebp.runs import load_model_spec
    parse_scheme(scheme, load_model_spec(model))     # a bad scheme is refused before anything runs
    n = args.iterations or (2 if model == "builtin" else 1)
    label = "mit" if key is not None and scheme in MIT_SCHEMES[key] else "custom"
    return [RowSpec(model, scheme, args.policy, n, label, args.image_external, args.peak_budget)], []


def run(args) -> dict:
    from sim.bench import Refused, bench_row, environment, fmax_from
    from sim.toolchain import verilator_available
    if args.plots is not None:
        from .bench_plots import require_matplotlib
        require_matplotlib()                        # before hours of simulation, not after
    specs, missing = _specs(args)
    fmax = fmax_from(args.fmax_mhz, args.build_report, args.config)
    setting = environment(args.config)        # the revision the simulator is built from, not the one at the end
    ok, reason = verilator_available()
    if not ok:
        raise ValueError(f"cannot simulate: {reason}")
    for sentence in missing:
        print(f"skipped: {sentence}")
    rows, refused = [], []
    for spec in specs:
        print(f"\n=== {Path(spec.model).stem} / {spec.scheme} / {spec.policy}", flush=True)
        try:
            row = bench_row(spec, args.config, fmax["fmax_mhz"])
        except Refused as why:
            print(f"not run: {why}")
            refused.append({"model": Path(spec.model).stem, "scheme": spec.scheme, "policy": spec.policy,
                            "label": spec.label, "reason": str(why)})
            continue
        print_layers(row)
        rows.append(row)
    result = {**setting, "fmax": fmax, "rows": rows, "not_run": refused, "missing": missing}
    print_summary(result)
    if args.plots is not None:
        from .bench_plots import write_plots
        for path in write_plots(result, args.plots):
            print(f"wrote {path}")
    return result


def print_layers(row: dict) -> None:
    from sim.training_run import CATEGORIES
    short = {"forward": "fwd", "input gradient": "in-grad", "weight gradient + update": "w-grad+upd",
             "bias update": "bias-upd"}
    print(f"{'layer':24s} " + " ".join(f"{short[c]:>10s}" for c in CATEGORIES) +
          f" {'measured':>10s} {'predicted':>10s} {'MAC use':>8s}")
    for layer in row["layers"]:
        use = layer["useful_macs"] / (row["lanes"] * layer["cycles_measured"])
        print(f"{layer['layer'][:24]:24s} " + " ".join(f"{layer[c]:10,d}" for c in CATEGORIES) +
              f" {layer['cycles_measured']:10,d} {layer['cycles_predicted']:10,d} {use:8.1%}")
    print(f"\n{'where the cycles go':44s} {'descriptors':>11s} {'cycles':>10s} {'share':>6s} {'MAC use':>8s}")
    for kind in row["cycles_by_kind"]:
        print(f"{(kind['category'] + ': ' + kind['kind'])[:44]:44s} {kind['descriptors']:11,d} "
              f"{kind['cycles_measured']:10,d} {kind['share']:6.1%} {kind['mac_utilization']:8.1%}")
    print(f"\n{'iteration':>9s} {'cycles':>10s} {'predicted':>10s} {'peak B':>8s} {'ext bytes':>10s} "
          f"{'predicted':>10s} {'loss':>6s}  bit-exact  equals Trainer")
    for i in row["per_iteration"]:
        print(f"{i['iteration']:9d} {i['cycles']:10,d} {i['cycles_predicted']:10,d} {i['peak_bytes_measured']:8,d} "
              f"{i['external_bytes_measured']:10,d} {i['external_bytes_predicted']:10,d} {i['loss']:6.3f}  "
              f"{str(i['bit_exact']):9s}  {i['matches_trainer']}")


def print_summary(result: dict) -> None:
    print(f"\nclock for the times: {result['fmax']['fmax_mhz']:g} MHz ({result['fmax']['source']})")
    print(f"{'model':16s} {'scheme':24s} {'policy':13s} {'cycles':>10s} {'predicted':>10s} {'peak B':>8s} "
          f"{'planned':>8s} {'ext KB':>8s} {'ext MB/s':>8s} {'MAC use':>7s} {'ms':>7s} {'MIT ms':>7s}  bit-exact")
    for r in result["rows"]:
        mit = f"{r['mit_ms']:7d}" if "mit_ms" in r else f"{'':7s}"
        print(f"{r['model'][:16]:16s} {r['scheme'][:24]:24s} {r['policy']:13s} {r['cycles_measured']:10,d} "
              f"{r['cycles_predicted']:10,d} {r['peak_bytes_measured']:8,d} {r['peak_bytes_planned']:8,d} "
              f"{r['external_bytes_measured'] / 1000:8.1f} {r['external_mb_per_s_at_fmax']:8.1f} "
              f"{r['mac_utilization']:7.1%} "
              f"{r['iteration_ms_at_fmax']:7.2f} {mit}  {r['bit_exact']}")
    for r in result["not_run"]:
        print(f"{r['model'][:16]:16s} {r['scheme'][:24]:24s} {r['policy']:13s} not run: {r['reason']}")
