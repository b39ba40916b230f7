"""Build the training firmware (fpga/firmware/*.c, *.S) for the SoC with the PyPI `ziglang`
compiler, against a header generated from the SoC configuration (hw/soc/header.py).

`build_firmware(config)` returns a `Firmware` (the flat binary to load at the RAM's base and the
ELF's path). With `soft_engine=True` the firmware runs the programs on the CPU instead of the
engine (fpga/firmware/engine_soft.c, compiled with SOFT_ENGINE; main.c says what changes).
Builds are cached (`cached_build`) in `<cache>/firmware-<digest>` (`$SPARSEBP_SIM_CACHE` or
`~/.cache/sparsebp/sim`, as sim.build), the digest covering the sources, the generated headers,
the flags and the compiler version; a build takes a few seconds.
`compiler_available()` says whether `ziglang` is installed, for tests to skip with.
"""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import SocConfig
from .header import soc_header

SOURCE_DIR = Path(__file__).resolve().parents[2] / "fpga" / "firmware"
SOURCES = ("start.S", "main.c")
HEADERS = ("loss.h", "select.h")
# The RAM link.ld keeps free above .bss for the stack. Measured high-water marks (main.c's
# report_stack, session 23): the engine's firmware 536 bytes (the ULX3S SoC leaves it 1,524),
# the soft engine's 1,836 in a last-layer iteration and 2,220 in builtin-sparse; each floor is about
# twice its use or more.
STACK_FLOOR = 1024
SOFT_ENGINE_STACK_FLOOR = 4096
SOFT_ENGINE_SOURCES = ("engine_soft.c", "engine_soft_check.c", "engine_soft_reduce.c")
SOFT_ENGINE_HEADERS = ("engine_soft.h", "engine_soft_internal.h", "engine_soft_reduce.h")
FLAGS = ("-target", "riscv32-freestanding-none", "-mcpu=generic_rv32+m", "-Os", "-g", "-ffreestanding",
         "-fno-builtin", "-nostdlib", "-ffunction-sections", "-Wl,--gc-sections", "-Wall", "-Wextra",
         "-Werror")


class FirmwareError(RuntimeError):
    """The compiler failed; the message carries its output."""


@dataclass(frozen=True)
class Firmware:
    binary: bytes
    elf: Path
    reused: bool
    build_seconds: float


def compiler_available() -> tuple[bool, str]:
    if importlib.util.find_spec("ziglang") is None:
        return False, "cannot build firmware: missing Python package ziglang (pip install -e '.[sim]')"
    if not SOURCE_DIR.is_dir():
        return False, f"cannot build firmware: the sources are not at {SOURCE_DIR}"
    return True, ""


def _zig(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ziglang", *args], cwd=cwd, capture_output=True,
                          text=True, check=False)


def _cache_root() -> Path:
    from sim.build import cache_root
    return cache_root()


def build_firmware(config: SocConfig, soft_engine: bool = False) -> Firmware:
    if not config.engine_in_hardware:
        soft_engine = True            # no engine on the bus: the CPU runs the programs
    ok, reason = compiler_available()
    if not ok:
        raise FirmwareError(reason)
    from golden.engine.c_header import isa_header
    began = time.perf_counter()
    header = soc_header(config)
    ram = config.region("ram")
    ram_script = (f"MEMORY {{ RAM (rwx) : ORIGIN = 0x{ram.base:x}, LENGTH = 0x{ram.size:x} }}\n"
                  f"STACK_FLOOR = {SOFT_ENGINE_STACK_FLOOR if soft_engine else STACK_FLOOR};\n")
    compiled = SOURCES + (SOFT_ENGINE_SOURCES if soft_engine else ())
    flags = FLAGS + (("-DSOFT_ENGINE", f"-DSOFT_ENGINE_MAX_LANES={config.engine.lanes}") if soft_engine else ())
    sources = {name: (SOURCE_DIR / name).read_text()
               for name in compiled + HEADERS + (SOFT_ENGINE_HEADERS if soft_engine else ()) + ("link.ld",)}
    generated = {"soc.h": header, "ram.ld": ram_script}
    if soft_engine:
        generated["engine_isa.h"] = isa_header()

    def build(work: Path) -> None:
        result = _zig("cc", *flags, "-I.", "-L.", "-T", "link.ld", "-o", "firmware.elf", *compiled, cwd=work)
        if result.returncode:
            raise FirmwareError(f"compiling the firmware in {work} failed:\n{result.stdout}{result.stderr}")
        result = _zig("objcopy", "-O", "binary", "firmware.elf", "firmware.bin", cwd=work)
        if result.returncode:
            raise FirmwareError(f"objcopy failed in {work}:\n{result.stdout}{result.stderr}")
        size = (work / "firmware.bin").stat().st_size
        if size > ram.size:
            raise FirmwareError(f"the firmware ({size} bytes) does not fit the {ram.size}-byte RAM")

    directory, reused = cached_build("firmware", {**sources, **generated}, flags, "firmware.bin", build)
    binary = (directory / "firmware.bin").read_bytes()
    return Firmware(binary, directory / "firmware.elf", reused, time.perf_counter() - began)


def cached_build(kind: str, files: dict[str, str], flags, product: str, build) -> tuple[Path, bool]:
    """(the directory holding `product`, whether it was reused). The build directory is
    `<cache>/<kind>-<digest>`, the digest covering `files` (name -> text, written there before
    `build(work)` runs the tools in it), `flags` and the compiler's version; a build is moved
    into place only when it succeeded, so a failed one is never reused."""
    import ziglang
    hasher = hashlib.sha256()
    for part in [" ".join(flags), getattr(ziglang, "__version__", "")] + \
            [f"{name}\0{text}" for name, text in sorted(files.items())]:
        hasher.update(part.encode() + b"\0")
    directory = _cache_root() / f"{kind}-{hasher.hexdigest()[:20]}"
    if (directory / product).is_file():
        return directory, True
    work = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, text in files.items():
        (work / name).write_text(text)
    build(work)
    shutil.rmtree(directory, ignore_errors=True)
    work.rename(directory)
    return directory, False
