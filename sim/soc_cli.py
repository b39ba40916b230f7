"""`sparsebp sim soc`: the training firmware on the SoC under Verilator, against the golden model.

Prints the firmware's UART lines as they arrive (the progress indicator), then a table of the
iterations: cycles, engine idle cycles (the CPU overhead), the loss, and whether the classifier
in the scratchpad equals the golden Trainer's byte for byte (every updated conv's resident weights and
parameters, the `sr` PRNG state, the channel lists). `--json` writes the same, with a
list `iterations` of {cycles, engine_idle_cycles, bit_exact, ...}.

`--board BOARD` runs the SoC a board's bitstream carries (fpga/board_soc.py: the board's engine,
16 KiB of RAM, a 32 KiB external memory, the UART divided for the board's clock) with the RAM and
the external memory built initialised, as in the bitstream, instead of loaded over the debug bus.
`--board icebreaker` runs the iCE40's SoC, which has no engine (the CPU runs the programs) and
boots from its SPI flash: a model of the flash holds the boot image, and the boot ROM loads it.
"""
from __future__ import annotations

import time
from pathlib import Path


def add_parser(sim_subparsers) -> None:
    from hw.soc.config import CPU_CHOICES
    s = sim_subparsers.add_parser("soc", help="training iterations run by the firmware on the SoC (VexRiscv + engine)")
    s.add_argument("--iterations", type=int, default=3, help="training iterations (1..200)")
    s.add_argument("--scheme", choices=("builtin-sparse", "last-layer"), default="builtin-sparse",
                   help="update scheme (default builtin-sparse: biases of the last 4 convs, weights of convs "
                        "4-6 on channels the firmware draws each iteration, the classifier)")
    s.add_argument("--seed", type=int, default=1, help="seed of the golden Trainer (the sr PRNG stream)")
    s.add_argument("--no-pause", action="store_true",
                   help="do not stop after each iteration to read the classifier (faster; only the "
                        "final scratchpad is compared)")
    s.add_argument("--board", metavar="BOARD",
                   help="run the SoC of BOARD's bitstream with its memories initialised as there "
                        "(ulx3s-85f, orangecrab-85f) or loaded from its SPI flash by the boot ROM (icebreaker: "
                        "no engine, the CPU runs the programs), instead of the small simulation SoC")
    s.add_argument("--soft-engine", action="store_true",
                   help="the CPU runs the programs itself (fpga/firmware/engine_soft.c) and the engine idles: "
                        "what a board without the engine would do; bit-exact and 500-700 times the engine's "
                        "cycles (a last-layer iteration: about 9 M cycles, under a minute of simulation)")
    s.add_argument("--cpu", choices=list(CPU_CHOICES),
                   help="the SoC's CPU: vexriscv-lite (default) or picorv32 (with --board, at the clock "
                        "the board's SoC with it was built for: hw/soc/cpu.py, fpga/boards.py)")
    s.add_argument("--json", type=Path, help="write the results as JSON")


def soc_config(board_name: str | None, cpu: str | None = None):
    """The simulation SoC, or the SoC of a board's bitstream; `cpu` a `--cpu` name (else the
    SoC's own CPU). A bad board name is a ValueError."""
    import dataclasses
    from hw.soc.config import CPU_CHOICES, SIM
    variant = CPU_CHOICES[cpu] if cpu is not None else None
    if board_name is None:
        return SIM if variant is None else dataclasses.replace(SIM, cpu_variant=variant)
    from fpga.board_soc import board_soc_config
    from fpga.boards import get_board
    board = get_board(board_name)
    if variant is not None:
        board = board.with_cpu(variant)
    return board_soc_config(board.config, board.soc_target_hz, board.soc_engine_in_hardware, board.soc_cpu)


def run(args) -> dict:
    from sim.toolchain import verilator_available
    from hw.soc.firmware import compiler_available
    from hw.soc.config import cpu_name
    board_name = getattr(args, "board", None)
    config = soc_config(board_name, getattr(args, "cpu", None))
    from sim.soc_run import check_iterations
    check_iterations(args.iterations)      # before the banner: a refused run prints nothing else
    for ok, reason in (verilator_available(), compiler_available()):
        if not ok:
            raise ValueError(reason)
    began = time.perf_counter()
    scheme = getattr(args, "scheme", "builtin-sparse")
    engine = f"engine {config.engine.lanes} lanes" if config.engine_in_hardware else "no engine, boot from SPI flash"
    print(f"{args.iterations} training iteration(s) of the built-in CNN (scheme {scheme}) run by the firmware on the SoC "
          f"({cpu_name(config.cpu_variant)}, {engine}, "
          f"{config.engine.scratchpad_bytes // 1024} KiB scratchpad); the first run builds the simulator "
          f"(several minutes)", flush=True)

    def progress(line: str) -> None:
        elapsed = time.perf_counter() - began
        print(f"  [{elapsed:6.1f} s] uart: {line}", flush=True)

    from sim.soc_run import soc_training_run
    result = soc_training_run(args.iterations, config, seed=args.seed, pause=not args.no_pause, progress=progress,
                              scheme_name=scheme, preloaded=board_name is not None and not config.boot_from_flash,
                              soft_engine=getattr(args, "soft_engine", False))
    result["board"] = board_name
    print(f"\n{'iter':>4s} {'cycles':>8s} {'engine idle':>11s} {'idle %':>7s} {'forward':>8s} "
          f"{'backward':>8s} {'loss':>7s} {'golden':>7s}  bit-exact")
    for it in result["iterations"]:
        if "cycles" not in it:
            print(f"{it['iteration']:4d}  (no UART line)")
            continue
        print(f"{it['iteration']:4d} {it['cycles']:8,d} {it['engine_idle_cycles']:11,d} "
              f"{it['engine_idle_fraction']:7.2%} {it['forward_cycles']:8,d} {it['backward_cycles']:8,d} "
              f"{it['loss']:7.4f} {it['golden_loss']:7.4f}  {it['bit_exact']}")
    print(f"status {result['status']}, exit code {result['exit_code']}; final scratchpad equals the golden "
          f"executor's: {result['final_scratchpad_equals_golden']}; every iteration bit-exact: {result['bit_exact']}")
    if "stack_bytes_used" in result:
        print(f"stack: at most {result['stack_bytes_used']:,d} of the {result['stack_bytes_free_at_start']:,d} "
              f"bytes above .bss used")
    print(f"simulator {'reused' if result['build_reused'] else 'built'} "
          f"({result['build_seconds']} s), run {result['run_seconds']} s")
    return result
