"""Training iterations on the engine RTL (Verilator) beside the golden executor and the golden
Trainer: what `sparsebp sim engine`, `sparsebp demo` and `sparsebp bench` run.

An iteration is the host's channel draw (this iteration's lists, written before the forward
pass), the engine's forward program, the host's loss step (softmax cross-entropy gradient times
the logits' clamp mask) and the engine's backward program. Each program runs on the golden
executor and on the RTL from the same scratchpad; the RTL's scratchpad carries on. After the
iteration every updated weight, bias and the PRNG state is compared with the golden Trainer's.

`rtl_training_run` returns a dict:
- `rows`: one per descriptor and one per program total, with `iteration`, `phase`, `op`, `layer`,
  `category` (see `CATEGORIES`), `kind` (descriptors only, see `operation_kind`),
  `cycles_measured`, `cycles_predicted`, `bit_exact`, `useful_macs` (the cycle model's; 0 for
  copies and gathers, whose products are bytes times one), `mac_utilization`,
  `external_bytes_predicted`; program totals add `external_bytes_measured`
  and `high_water` (the engine's activity monitor, hw/engine.py), and `simulator_seconds` (wall
  time inside the simulator: loading through the host port, the run, reading back).
- `iterations`: per iteration `cycles`, `cycles_predicted`, `wall_seconds` (all of it: golden
  executor, simulator processes, Trainer), `peak_bytes_measured` (highest
  monitor reading of its two programs), `external_bytes_measured` / `_predicted`, `bit_exact`,
  `matches_trainer`, `loss`.
- `occupancy`: the planned scratchpad occupancy over the first iteration, at measured cycles
  (`occupancy_in_cycles`).
- `peak_scratchpad_bytes`: the compiler's planned peak; `bit_exact`: every iteration bit-exact
  and equal to the Trainer.
"""
from __future__ import annotations

import time

import numpy as np

# Where a descriptor's cycles go. The weight gradient and the weight update are one fused
# descriptor (the gradient is never stored), so they are one category.
CATEGORIES = ("forward", "input gradient", "weight gradient + update", "bias update")
BUILTIN_SCHEME = "builtin-sparse"          # the built-in CNN's default scheme


def categorize(phase: str, op: str) -> tuple[str, str]:
    """(layer, category) of a descriptor label: 'b2.pw1 weight update' -> ('b2.pw1', ...)."""
    layer = op.split()[0]
    if phase == "forward":
        return layer, "forward"
    if op.endswith("weight update"):
        return layer, "weight gradient + update"
    if op.endswith("bias update"):
        return layer, "bias update"
    return layer, "input gradient"         # prescale, zero grid, dX, pool/add backward, sums


# Descriptors that only move bytes (golden/engine/compiler.py: `copy_descriptors` and the channel
# gather), by the label the compiler gives them
COPY_LABELS = ("weights staged from external memory", "parameter table:", "from external memory",
               "kept from the previous stripe")
GATHER_LABEL = "save selected input channels"
MOVES_BYTES = ("copy", "gather")         # kinds whose products (bytes times one) are not useful MACs


def operation_kind(op: str, descriptor) -> str:
    """How a descriptor uses the lanes, for splitting cycles (`sim.bench.kind_table`): 'copy'
    and 'gather' for data movement, 'add' for a residual add or gradient sum, else the MAC's
    operand pattern ('broadcast', 'elementwise', 'dot'); ', two passes' follows when the
    output is a quantized gradient, whose loop nest runs twice: max |v|, then the values
    (docs/engine.md, "Gradient epilogue")."""
    from golden.engine import program as isa
    if any(phrase in op for phrase in COPY_LABELS):
        return "copy"
    if op.endswith(GATHER_LABEL):
        return "gather"
    kind = "add" if descriptor.opcode == isa.ADD else isa.MODES[descriptor.mode]
    return kind + ", two passes" if descriptor.epilogue == isa.GRADIENT else kind


def default_lr(builtin: bool) -> float:
    return 0.05 if builtin else 0.002


def rtl_training_run(iterations: int = 2, config_name: str = "default", seed: int = 1,
                     scheme_name: str | None = None, model_spec: str = "builtin",
                     data_spec: str | None = None, lr: float | None = None,
                     policy: str = "dynamic", image_external: bool = False,
                     peak_budget: int | None = None, stage_weights: bool = True) -> dict:
    """`iterations` training iterations on the RTL; see the module docstring. `image_external`,
    `peak_budget` and `stage_weights` go to the compiler (golden/engine/training.py: the sample
    in external memory, read a stripe at a time; the widest stripes within the budget; frozen
    weights copied on chip where the plan has room). A bad scheme,
    policy or count is a ValueError before anything runs."""
    from golden import int_ops
    from golden.data import load_digits
    from golden.engine import program as isa
    from golden.engine.config import PRESETS
    from golden.engine.cycles import descriptor_cycles, end_cycles, external_reads, program_external_reads
    from golden.engine.executor import Machine
    from golden.engine.training import compile_training
    from golden.scheme import POLICIES, ChannelSelector, parse_scheme
    from golden.train import Trainer, UpdateRule
    from sim.engine_job import EngineJob, run_on_rtl
    from sim.toolchain import verilator_available
    from sparsebp.runs import load_data, load_model_spec

    if not 1 <= iterations <= 50:
        raise ValueError(f"--iterations must be between 1 and 50, not {iterations}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    ok, reason = verilator_available()
    if not ok:
        raise ValueError(f"cannot simulate: {reason}")
    config = PRESETS[config_name]
    builtin = model_spec == "builtin"
    model = load_model_spec(model_spec).with_new_head(10, seed=0)
    if scheme_name is None:
        if not builtin:
            raise ValueError("--scheme is needed for a model file (for example mbv2-49kb)")
        scheme_name = BUILTIN_SCHEME
    scheme = parse_scheme(scheme_name, model)             # a bad name is a ValueError with the choices
    rule = UpdateRule(lr=lr if lr is not None else default_lr(builtin))
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
    trainer = Trainer(model, scheme, policy, rule, seed=seed)
    host_selector = ChannelSelector(model, scheme, policy, seed=2 * seed + 1)   # draws as the Trainer's
    program = compile_training(model, scheme, config, rule, image_external=image_external,
                               peak_budget=peak_budget, stage_weights=stage_weights)
    scratchpad = program.initial_scratchpad(images[0], trainer.sr_rng.state)
    phases = (("forward", program.forward.descriptors, 0, program.forward.ops),
              ("backward", program.backward, program.backward_base, program.backward_ops))
    L = config.lanes
    rows, iterations_out = [], []
    print(f"{iterations} training iteration(s) of {model.name} (scheme {scheme_name}, policy {policy}) on the "
          f"engine RTL, {config.lanes} lanes, {config.scratchpad_bytes // 1024} KiB scratchpad "
          f"(the first run builds the simulator: a few minutes)", flush=True)
    for k, (image, label) in enumerate(zip(images, labels[:iterations])):
        program.write_image(scratchpad, image)       # into the scratchpad or the external image
        program.write_selection(scratchpad, host_selector.select())     # the CPU draws the channels first
        began = time.perf_counter()
        totals = {"cycles": 0, "cycles_predicted": 0, "peak_bytes_measured": 0,
                  "external_bytes_measured": 0, "external_bytes_predicted": 0}
        exact, loss = True, None
        phase_starts = []
        for phase, descriptors, base, op_labels in phases:
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
            for d, op, cycles in zip(descriptors, op_labels, measured):
                model_cycles = descriptor_cycles(d, config)
                layer, category = categorize(phase, op)
                kind = operation_kind(op, d)
                # a copy's or gather's products are bytes times one: not useful work
                useful = 0 if kind in MOVES_BYTES else model_cycles.useful_macs
                rows.append({"iteration": k, "phase": phase, "op": op, "layer": layer, "category": category,
                             "kind": kind, "cycles_measured": int(cycles), "cycles_predicted": model_cycles.total,
                             "bit_exact": same, "useful_macs": useful,
                             "mac_utilization": round(useful / (L * int(cycles)), 4),
                             "external_bytes_predicted": external_reads(d, config) * L})
            predicted_total = sum(descriptor_cycles(d, config).total for d in descriptors) + end_cycles(config)
            external_predicted = program_external_reads(descriptors, config) * L
            rows.append({"iteration": k, "phase": phase, "op": "program total (with END)", "layer": None,
                         "category": None, "cycles_measured": rtl.cycles, "cycles_predicted": predicted_total,
                         "bit_exact": same, "mac_utilization": None,
                         "external_bytes_predicted": external_predicted,
                         "external_bytes_measured": rtl.external_reads * L, "high_water": rtl.high_water,
                         "simulator_seconds": dict(zip(("load", "run", "read back"), rtl.seconds))})
            if k == 0:
                phase_starts.append(totals["cycles"] + np.concatenate([[0], ends[:-1]]))
            totals["cycles"] += rtl.cycles
            totals["cycles_predicted"] += predicted_total
            totals["peak_bytes_measured"] = max(totals["peak_bytes_measured"], rtl.high_water)
            totals["external_bytes_measured"] += rtl.external_reads * L
            totals["external_bytes_predicted"] += external_predicted
            scratchpad = rtl.scratchpad.copy()
            if phase == "forward":
                loss = program.loss_step(scratchpad, model, int(label))
        if k == 0:
            occupancy = occupancy_in_cycles(program.occupancy, np.concatenate(phase_starts), totals["cycles"])
        trainer.step(image[None], int(label))
        matches_trainer = resident_equal_trainer(program, trainer, scratchpad)
        totals["wall_seconds"] = round(time.perf_counter() - began, 1)
        iterations_out.append(dict(totals, iteration=k, loss=loss, bit_exact=exact, matches_trainer=matches_trainer))
        print(f"iteration {k}: loss {loss:.3f}, {totals['cycles']:,} engine cycles, bit-exact {exact}, "
              f"updated weights, biases and PRNG equal the golden Trainer's {matches_trainer}", flush=True)
    return {"model": model.name, "scheme": scheme_name, "policy": policy, "config": dict(config.__dict__),
            "image_external": image_external, "peak_budget": peak_budget,
            "peak_scratchpad_bytes": program.forward.peak_bytes, "rows": rows,
            "iterations": iterations_out, "occupancy": occupancy,
            "bit_exact": all(i["bit_exact"] and i["matches_trainer"] for i in iterations_out)}


def occupancy_in_cycles(timeline, descriptor_starts, total_cycles: int) -> list[list[int]]:
    """The compiler's occupancy timeline with descriptor positions turned into the measured
    cycle at which that descriptor started (the end of the iteration after the last one):
    [[cycle, bytes allocated, highest block end], ...]."""
    starts = list(map(int, descriptor_starts)) + [int(total_cycles)]
    return [[starts[min(position, len(starts) - 1)], int(used), int(top)] for position, used, top in timeline]


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
