"""Build the SoC (hw/soc) for Verilator once: sim.build's cache, with the CPU's Verilog added.

`build_soc(config)` converts `Soc(config)` (no firmware: the testbench loads it over the debug
bus, so the simulator does not depend on the firmware; `build_soc(config, firmware, flash)`
builds the RAM and the external memory initialised instead, as a bitstream carries them), appends the CPU's Verilog
from its `pythondata-cpu-*` package to the same file, and builds it with sim.build's
Verilator runner in `<cache>/soc-<digest>`; the digest covers both texts, the flags and the tool
versions, exactly as `sim.build.build_design` does for Amaranth-only designs (whose helpers this
module reuses; build_design itself takes a single Amaranth design).
"""
from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path

from hw.soc.config import SocConfig
from sim import build as sim_build

NAME = "soc"


def soc_verilog(config: SocConfig, firmware: bytes = b"", flash: bytes = b"") -> str:
    from amaranth.back import verilog
    from hw.soc.cpu import cpu_verilog
    from hw.soc.soc import Soc
    text = verilog.convert(Soc(config, firmware, flash), name=NAME, emit_src=False)
    file_name, cpu_text = cpu_verilog(config.cpu_variant)
    return text + f"\n// ---- {file_name}\n" + cpu_text


@functools.lru_cache(maxsize=4)
def build_soc(config: SocConfig, firmware: bytes = b"", flash: bytes = b"") -> sim_build.BuiltDesign:
    began = time.perf_counter()
    verilog_text = soc_verilog(config, firmware, flash)
    build_args = list(sim_build.BUILD_ARGS)
    versions = sim_build._versions()
    digest = sim_build._digest(NAME, verilog_text, " ".join(build_args), sim_build.MAKE_VARIABLES,
                               versions, repr(config))
    root = sim_build.cache_root()
    directory = root / f"{NAME}-{digest[:20]}"
    stamp = directory / "build.json"
    with sim_build._locked(root / f"{NAME}-{digest[:20]}.lock"):
        if stamp.is_file() and (directory / NAME).is_file():
            return sim_build.BuiltDesign(NAME, directory, digest, True, time.perf_counter() - began)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        source = directory / f"{NAME}.v"
        source.write_text(verilog_text)
        runtime_key = sim_build._digest(versions, sim_build._compiler(), " ".join(build_args),
                                        sim_build.MAKE_VARIABLES)
        runtime = root / f"runtime-{runtime_key[:20]}"
        sim_build._run_verilator(NAME, source, directory, build_args, False, runtime)
        sim_build._keep_runtime_objects(directory, runtime)
        seconds = time.perf_counter() - began
        temporary = directory / "build.json.tmp"
        temporary.write_text(json.dumps({"digest": digest, "versions": versions,
                                         "build_args": build_args, "seconds": seconds}))
        temporary.replace(stamp)
    return sim_build.BuiltDesign(NAME, directory, digest, False, seconds)


if __name__ == "__main__":
    from hw.soc.config import SIM
    built = build_soc(SIM)
    print(built.directory, "reused" if built.reused else f"built in {built.build_seconds:.0f} s")
