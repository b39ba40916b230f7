"""An estimate, not a model of built hardware: the cycles a scratchpad that is NOT pumped would add
to today's schedule (docs/fpga.md, proposal 11).

The pumped scratchpad gives each bank four accesses a cycle (A, B, the old-value read and the
write) by clocking its block RAMs at twice the engine clock, and that `fast` clock is what
bounds the engine at 26.8-35 MHz on the boards. A block RAM clocked with the engine has two
ports: A on one, B on the other. The write (and the old-value read the update and mask epilogues
make) then needs a cycle in which B (or A) does not read the scratchpad, i.e. a cycle without
a step. The schedule already idles `vector_pause` cycles after each output vector; the rule
estimated here lets those idle cycles host the vector's extra accesses and adds one idle cycle
for each access beyond them:

    extra per output vector = max(0, write_cycles + old-value reads - vector_pause)

for every vector but the last (whose writes fall in the drain), and only where B reads the
scratchpad (streamed weights, all-ones B and sums mode leave B's port free for the write). A
gradient whose epilogue reads masks reads them in its first pass too. The idle cycles must
also be moved to where the writes fall (today they follow the vector's last step at once,
the writes come the pipeline's latency later); the estimate assumes that alignment is built.

`python -m golden.engine.two_port [MODEL.pkl SCHEME ...]` prints the estimate for compiled
iterations (the built-in CNN's and, given MIT's models, the paper suite's rows as
`sparsebp bench` compiles them).
"""
from __future__ import annotations

import sys
from math import prod

from . import program as isa
from .config import EngineConfig
from .cycles import descriptor_cycles, vector_pause, write_cycles


def old_value_reads(d: isa.Descriptor) -> int:
    """Reads of the host port per output vector while the engine runs (hw/engine.py,
    "old-value reads"): the old weight row of an update, the 5 rows of a bias update's old
    biases, the mask byte of a gradient that multiplies by its mask."""
    if d.epilogue == isa.UPDATE:
        return 1
    if d.epilogue == isa.BIAS_UPDATE:
        return 5
    if d.epilogue == isa.GRADIENT and d.flags & isa.FLAG_MASK_IN:
        return 1
    return 0


def b_reads_scratchpad(d: isa.Descriptor) -> bool:
    if d.opcode == isa.MAC and d.mode == isa.SUMS:
        return False
    return not d.flags & (isa.FLAG_B_EXTERNAL | isa.FLAG_B_ONES)


def extra_cycles(d: isa.Descriptor, config: EngineConfig) -> int:
    """The idle cycles this descriptor would add on a two-port scratchpad (module docstring)."""
    if d.opcode == isa.END or not b_reads_scratchpad(d):
        return 0
    vectors = prod(d.counts[:isa.OUTPUT_LOOPS]) - 1
    reads = old_value_reads(d)
    extra = vectors * max(0, write_cycles(d) + reads - vector_pause(d, config))
    if d.epilogue == isa.GRADIENT:
        extra += vectors * reads          # pass 1 reads the masks as well, and writes nothing
    return extra


def program_estimate(descriptors, config: EngineConfig) -> tuple[int, int]:
    """(today's cycles, the extra cycles of a two-port scratchpad) over `descriptors`."""
    today = sum(descriptor_cycles(d, config).total for d in descriptors if d.opcode != isa.END)
    return today, sum(extra_cycles(d, config) for d in descriptors)


def _row(model_spec: str, scheme_name: str) -> tuple[int, int]:
    from golden.engine.config import DEFAULT
    from golden.engine.training import compile_training
    from golden.scheme import parse_scheme
    from golden.train import UpdateRule
    from sim.bench import mit_budget, model_key
    from sparsebp.runs import load_model_spec
    model = load_model_spec(model_spec).with_new_head(10, seed=0)
    key = model_key(model_spec)
    budget = mit_budget(key) if key else {}
    rule = UpdateRule(lr=0.002) if key else UpdateRule()      # the lr changes no cycle
    program = compile_training(model, parse_scheme(scheme_name, model), DEFAULT, rule, **budget)
    return program_estimate(list(program.forward.descriptors) + list(program.backward), DEFAULT)


def main(argv: list[str]) -> None:
    pairs = [("builtin", "builtin-sparse")] + list(zip(argv[0::2], argv[1::2]))
    for model_spec, scheme_name in pairs:
        today, extra = _row(model_spec, scheme_name)
        print(f"{model_spec.split('/')[-1]:24s} {scheme_name:16s} cycles {today:>10,d}   "
              f"two-port scratchpad +{extra:,d} ({extra / today:.2%})")


if __name__ == "__main__":
    main(sys.argv[1:])
