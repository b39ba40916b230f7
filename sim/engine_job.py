"""Run engine programs on the RTL under Verilator: the host side.

`run_on_rtl(config, jobs)` builds the engine for `config` (cached by sim.build), writes the jobs
to a file, runs the cocotb module `sim.engine_cocotb` once for all of them, and returns one
`RtlResult` per job: the whole scratchpad after the run, the cycles from start to done, the
per-descriptor finishing cycles from the engine's trace memory, and the error state.

A job is the engine's whole input: the scratchpad image, the external memory image and the
external address of the program. The cocotb side writes only the words that differ from what
the previous job left behind (it reads the scratchpad back after every run anyway), so a job
costs about one host access per scratchpad word.
"""
from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.engine.config import EngineConfig

JOB_ENV = "SPARSEBP_ENGINE_JOBS"


@dataclass
class EngineJob:
    scratchpad: np.ndarray       # uint8, config.scratchpad_bytes
    external: np.ndarray         # uint8, at most config.external_bytes
    program_base: int = 0
    max_cycles: int = 50_000_000


@dataclass
class RtlResult:
    scratchpad: np.ndarray
    cycles: int
    trace: np.ndarray            # cycle count at the end of each finished descriptor
    error_code: int
    error_index: int
    high_water: int              # one past the highest scratchpad byte the engine touched (monitor)
    external_reads: int          # L-byte reads of external memory during the run (monitor)
    seconds: tuple = ()          # wall time: loading through the host port, the run, reading back


@functools.lru_cache(maxsize=4)
def build_engine(config: EngineConfig):
    """Convert and build once per configuration (conversion of the default engine takes
    minutes; sim.build caches the Verilog under a digest of hw/ and golden/, and the compiled
    simulator, across processes)."""
    from hw.engine import Engine
    from sim.build import build_design, source_fingerprint
    return build_design("engine", lambda: Engine(config), parameters_digest=repr(config),
                        verilog_key=source_fingerprint("hw", "golden") + repr(config))


def run_on_rtl(config: EngineConfig, jobs: list[EngineJob], timeout: float = 3600.0) -> list[RtlResult]:
    from sim.build import run_test
    built = build_engine(config)
    with tempfile.TemporaryDirectory(prefix="engine-jobs-") as folder:
        job_file = Path(folder) / "jobs.npz"
        arrays = {"count": np.array(len(jobs)),
                  "scratchpad_bytes": np.array(config.scratchpad_bytes)}
        for i, job in enumerate(jobs):
            if job.scratchpad.size != config.scratchpad_bytes:
                raise ValueError(f"job {i}: scratchpad image of {job.scratchpad.size} bytes, "
                                 f"the configuration has {config.scratchpad_bytes}")
            arrays[f"scratchpad{i}"] = np.asarray(job.scratchpad, np.uint8)
            arrays[f"external{i}"] = np.asarray(job.external, np.uint8)
            arrays[f"meta{i}"] = np.array([job.program_base, job.max_cycles], np.int64)
        np.savez(job_file, **arrays)
        out_file = Path(folder) / "out.npz"
        run = run_test(built, "sim.engine_cocotb", timeout=timeout,
                       extra_env={JOB_ENV: str(job_file), JOB_ENV + "_OUT": str(out_file)})
        if not run.passed or not out_file.is_file():
            tail = "\n".join(run.log.splitlines()[-30:])
            raise RuntimeError(f"engine simulation failed: {run.problems}\n{tail}")
        out = np.load(out_file)
        return [RtlResult(out[f"scratchpad{i}"], int(out[f"cycles{i}"]), out[f"trace{i}"],
                          int(out[f"error{i}"][0]), int(out[f"error{i}"][1]),
                          int(out[f"monitor{i}"][0]), int(out[f"monitor{i}"][1]),
                          tuple(float(t) for t in out[f"seconds{i}"])) for i in range(len(jobs))]
