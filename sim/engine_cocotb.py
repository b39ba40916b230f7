"""cocotb side of sim.engine_job: load each job through the host port, run, read back.

The engine runs on its own between `start` and `done`; Python only waits (HostDriver.run).
"""
import os
import time

import cocotb
import numpy as np

from hw.engine import Engine
from sim.engine_job import JOB_ENV
from sim.host import EngineError, HostDriver

SCRATCHPAD, EXTERNAL, TRACE, MONITOR = 0, 1, 2, 3


async def _write_changed(driver, dut, space, old: np.ndarray, new: np.ndarray) -> None:
    dut.host_space.value = space
    old_words = old.view("<u4")
    new_words = new.view("<u4")
    changed = np.nonzero(old_words != new_words)[0]
    if changed.size == 0:
        return
    # contiguous runs, written with one burst each
    breaks = np.nonzero(np.diff(changed) != 1)[0] + 1
    for run in np.split(changed, breaks):
        await driver.write_words(int(run[0]), new_words[run[0]:run[-1] + 1])


@cocotb.test()
async def run_jobs(dut):
    jobs = np.load(os.environ[JOB_ENV])
    count = int(jobs["count"])
    spad_bytes = int(jobs["scratchpad_bytes"])
    driver = HostDriver(dut, read_latency=Engine.HOST_READ_LATENCY)
    await driver.reset()
    scratchpad = np.zeros(spad_bytes, np.uint8)
    external = np.zeros(0, np.uint8)
    out = {}
    for i in range(count):
        began = time.perf_counter()
        new_spad = jobs[f"scratchpad{i}"]
        new_ext = jobs[f"external{i}"]
        new_ext = np.concatenate([new_ext, np.zeros((-new_ext.size) % 4, np.uint8)])
        size = max(external.size, new_ext.size)
        old_ext = np.zeros(size, np.uint8); old_ext[:external.size] = external
        padded_ext = np.zeros(size, np.uint8); padded_ext[:new_ext.size] = new_ext
        await _write_changed(driver, dut, EXTERNAL, old_ext, padded_ext)
        await _write_changed(driver, dut, SCRATCHPAD, scratchpad, new_spad)
        external = padded_ext
        program_base, max_cycles = (int(v) for v in jobs[f"meta{i}"])
        loaded = time.perf_counter()
        dut.program_base.value = program_base
        try:
            cycles = await driver.run(max_cycles)
            error = (0, 0)
        except EngineError as failure:
            cycles, error = failure.cycles, (failure.code, failure.index)
        ran = time.perf_counter()
        descriptors = error[1] if error[0] else None
        dut.host_space.value = SCRATCHPAD
        scratchpad = (await driver.read_words(0, spad_bytes // 4)).view(np.uint8)
        dut.host_space.value = TRACE
        finished = int(descriptors) if descriptors is not None else 1024
        trace = await driver.read_words(0, min(finished, 1024))  # entries past the last are stale
        dut.host_space.value = MONITOR
        out[f"monitor{i}"] = await driver.read_words(0, 2)     # high water, external reads
        out[f"seconds{i}"] = np.array([loaded - began, ran - loaded, time.perf_counter() - ran])
        out[f"scratchpad{i}"] = scratchpad
        out[f"cycles{i}"] = np.array(cycles)
        out[f"trace{i}"] = trace
        out[f"error{i}"] = np.array(error)
    np.savez(os.environ[JOB_ENV + "_OUT"], **out)
