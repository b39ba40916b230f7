"""What the two-port scratchpad costs in cycles, from the cycle model (golden/engine/cycles.py,
which the RTL tests hold the engine to with either scratchpad): a compiled iteration's cycles
with the pumped scratchpad (`DEFAULT`) and with the two-port one (`TWO_PORT`), which pauses a
cycle more after the output vectors that need a port for their old-value reads or writes
(docs/engine.md, "The two-port scratchpad").

`python -m golden.engine.two_port [MODEL.pkl SCHEME ...]` prints both for the built-in CNN's
builtin-sparse iteration and, given MIT's models, the paper suite's rows as `sparsebp bench`
compiles them (each compiled for its own configuration).
"""
from __future__ import annotations

import sys

from .config import DEFAULT, TWO_PORT, EngineConfig
from .cycles import program_cycles


def iteration_cycles(model_spec: str, scheme_name: str, config: EngineConfig) -> int:
    """Cycles of one training iteration (forward and backward programs) of `model_spec` with
    `scheme_name`, compiled for `config` with the bench's memory budget for MIT's models."""
    from golden.engine.training import compile_training
    from golden.scheme import parse_scheme
    from golden.train import UpdateRule
    from sim.bench import mit_budget, model_key
    from sparsebp.runs import load_model_spec
    model = load_model_spec(model_spec).with_new_head(10, seed=0)
    key = model_key(model_spec)
    budget = mit_budget(key) if key else {}
    rule = UpdateRule(lr=0.002) if key else UpdateRule()      # the lr changes no cycle
    program = compile_training(model, parse_scheme(scheme_name, model), config, rule, **budget)
    return (program_cycles(list(program.forward.descriptors), config)
            + program_cycles(list(program.backward), config))


def main(argv: list[str]) -> None:
    pairs = [("builtin", "builtin-sparse")] + list(zip(argv[0::2], argv[1::2]))
    for model_spec, scheme_name in pairs:
        pumped = iteration_cycles(model_spec, scheme_name, DEFAULT)
        two_port = iteration_cycles(model_spec, scheme_name, TWO_PORT)
        print(f"{model_spec.split('/')[-1]:24s} {scheme_name:16s} pumped {pumped:>10,d}   "
              f"two-port {two_port:>10,d} ({two_port / pumped - 1:+.2%})")


if __name__ == "__main__":
    main(sys.argv[1:])
