"""`sparsebp sim engine`: run a compiled program on the engine RTL (Verilator) and the golden
executor, and report per descriptor: cycles measured and predicted, bit-exactness, MAC use.

Today the engine runs the forward pass (docs/engine.md, "Status"); the rows say so in `phase`.
"""
from __future__ import annotations

import argparse

import numpy as np

CONFIGS = ("default", "small")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sim", help="run programs on the engine RTL under Verilator")
    sim_sub = p.add_subparsers(dest="sim_target", required=True, metavar="TARGET")
    e = sim_sub.add_parser("engine", help="the model's forward pass on the engine RTL vs the golden model")
    e.add_argument("--model", default="builtin", help="'builtin' or a sparsebp .npz")
    e.add_argument("--config", choices=CONFIGS, default="default", help="engine configuration preset")
    e.add_argument("--images", type=int, default=2, help="test images to run (digits)")
    e.add_argument("--json", type=__import__("pathlib").Path, help="write the rows as JSON")


def run(args) -> dict:
    from golden import int_ops
    from golden.data import load_digits
    from golden.engine import layout
    from golden.engine import program as isa
    from golden.engine.compiler import compile_forward
    from golden.engine.config import PRESETS
    from golden.engine.cycles import descriptor_cycles, end_cycles
    from golden.engine.executor import Machine
    from sim.toolchain import verilator_available

    from . import runs

    if not 1 <= args.images <= 100:
        raise ValueError(f"--images must be between 1 and 100, not {args.images}")
    ok, reason = verilator_available()
    if not ok:
        raise ValueError(f"cannot simulate: {reason}")
    config = PRESETS[args.config]
    model = runs.load_model_spec(args.model) if args.model != "builtin" else None
    if model is None:
        from golden.builtin import builtin_model
        model = builtin_model()
    if model.input_shape[0] != 1:
        raise ValueError(f"{model.name}: `sim engine` feeds it digits, which have 1 channel")
    compiled = compile_forward(model, config, keep_masks=True, keep_tensors=True)
    images = int_ops.quantize_images(load_digits("test").images[:args.images], model)

    from sim.engine_job import EngineJob, run_on_rtl
    jobs, expected = [], []
    for image in images:
        machine = Machine(config, compiled.external)
        machine.write(compiled.tensors["input"][0], layout.activation_bytes(image))
        jobs.append(EngineJob(machine.scratchpad.copy(), compiled.external))
        machine.run_or_raise(compiled.descriptors + [isa.Descriptor()])
        expected.append(machine.scratchpad.copy())
    print(f"simulating {len(jobs)} forward pass(es) of {model.name} on the engine RTL "
          f"({config.lanes} lanes, {config.scratchpad_bytes // 1024} KiB scratchpad)...", flush=True)
    results = run_on_rtl(config, jobs)

    rows = []
    nodes = [n for n in model.nodes]
    for k, (image, rtl, golden_bytes) in enumerate(zip(images, results, expected)):
        if rtl.error_code:
            raise RuntimeError(f"the engine stopped with error {rtl.error_code} at descriptor {rtl.error_index}")
        ends = np.asarray(rtl.trace[:len(compiled.descriptors)], np.int64) + 1
        measured = np.diff(np.concatenate([[0], ends]))
        for i, (d, node) in enumerate(zip(compiled.descriptors, nodes)):
            address, shape = compiled.tensors[node.output]
            size = int(np.prod(shape))
            same = bool(np.array_equal(rtl.scratchpad[address:address + size], golden_bytes[address:address + size]))
            mask_at = compiled.masks[node.output]
            mask_size = (size + 7) // 8
            same &= bool(np.array_equal(rtl.scratchpad[mask_at:mask_at + mask_size],
                                        golden_bytes[mask_at:mask_at + mask_size]))
            model_cycles = descriptor_cycles(d, config)
            rows.append({"image": k, "op": compiled.ops[i], "phase": "forward",
                         "cycles_measured": int(measured[i]), "cycles_predicted": model_cycles.total,
                         "bit_exact": same,
                         "mac_utilization": round(model_cycles.useful_macs / (config.lanes * int(measured[i])), 4)})
        logits_at, logit_shape = compiled.tensors[model.output]
        rows_total = {"image": k, "op": "total (with END)", "phase": "forward",
                      "cycles_measured": rtl.cycles,
                      "cycles_predicted": sum(r["cycles_predicted"] for r in rows if r["image"] == k) + end_cycles(config),
                      "bit_exact": bool(np.array_equal(rtl.scratchpad, golden_bytes)),
                      "mac_utilization": None}
        rows.append(rows_total)
    first = [r for r in rows if r["image"] == 0]
    print(f"\n{'op':28s} {'measured':>9s} {'predicted':>9s} {'MAC use':>8s}  bit-exact")
    for r in first:
        use = f"{r['mac_utilization']:.1%}" if r["mac_utilization"] is not None else ""
        print(f"{r['op']:28s} {r['cycles_measured']:9d} {r['cycles_predicted']:9d} {use:>8s}  {r['bit_exact']}")
    all_exact = all(r["bit_exact"] for r in rows)
    print(f"\nimages: {len(jobs)}; every byte of every image bit-exact: {all_exact}; "
          f"planned scratchpad peak (tensors kept): {compiled.peak_bytes:,} bytes")
    return {"model": model.name, "config": config.__dict__ | {}, "phase": "forward",
            "peak_scratchpad_bytes": compiled.peak_bytes, "bit_exact": all_exact, "rows": rows}
