"""fpga/firmware/engine_soft.c (the engine's programs run by a CPU) built for this machine with
the PyPI `ziglang` compiler and called through ctypes, so tests can hold it against the golden
executor before it runs on a softcore.

`SoftEngine(config)` builds (or reuses) the shared library, cached in
`<cache>/soft-engine-<digest>` by hw/soc/firmware.py's `cached_build` as the firmware is, from
the same sources the firmware compiles with SOFT_ENGINE. `run(descriptors, scratchpad,
external)` runs a program on copies of the memories and returns (error code, index,
scratchpad, external) as golden/engine/executor.py's `Machine.run` leaves them.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from golden.engine import program as isa
from golden.engine.c_header import isa_header
from golden.engine.config import EngineConfig
from hw.soc.firmware import (SOFT_ENGINE_HEADERS as HEADERS, SOFT_ENGINE_SOURCES as SOURCES, SOURCE_DIR,
                             FirmwareError, _zig, cached_build, compiler_available)

FLAGS = ("-O2", "-shared", "-fPIC", "-std=c11", "-Wall", "-Wextra", "-Werror")


class _Engine(ctypes.Structure):
    _fields_ = [("scratchpad", ctypes.POINTER(ctypes.c_uint8)), ("scratchpad_bytes", ctypes.c_uint32),
                ("external", ctypes.POINTER(ctypes.c_uint8)), ("external_bytes", ctypes.c_uint32),
                ("lanes", ctypes.c_uint32), ("param_channels", ctypes.c_uint32)]


def build_library() -> Path:
    """The path of the shared library, built if the cache does not hold it (FirmwareError if the
    compiler fails or is missing)."""
    ok, reason = compiler_available()
    if not ok:
        raise FirmwareError(reason)
    files = {name: (SOURCE_DIR / name).read_text() for name in SOURCES + HEADERS}
    files["engine_isa.h"] = isa_header()

    def build(work: Path) -> None:
        result = _zig("cc", *FLAGS, "-I.", "-o", "engine_soft.so", *SOURCES, cwd=work)
        if result.returncode:
            raise FirmwareError(f"compiling the soft engine in {work} failed:\n{result.stdout}{result.stderr}")

    directory, _ = cached_build("soft-engine", files, FLAGS, "engine_soft.so", build)
    return directory / "engine_soft.so"


class SoftEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.library = ctypes.CDLL(str(build_library()))
        self.library.soft_engine_run.restype = ctypes.c_int
        self.library.soft_engine_run.argtypes = [ctypes.POINTER(_Engine), ctypes.POINTER(ctypes.c_uint32),
                                                 ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]

    def run(self, descriptors: list[isa.Descriptor], scratchpad: np.ndarray, external: np.ndarray):
        """(error code, index, scratchpad, external) after running `descriptors` (encoded as the
        engine reads them; no END is added) on copies of the two memories; `external` may be
        shorter than the configuration's and is zero-filled, as `Machine` loads it."""
        spad = np.array(scratchpad, dtype=np.uint8).ravel()
        external = np.asarray(external, dtype=np.uint8).ravel()
        if spad.size != self.config.scratchpad_bytes or external.size > self.config.external_bytes:
            raise ValueError(f"a {spad.size}-byte scratchpad and {external.size} bytes of external memory do not "
                             f"match the configuration's {self.config.scratchpad_bytes} and {self.config.external_bytes}")
        ext = np.zeros(self.config.external_bytes, np.uint8)     # as the golden Machine loads it
        ext[:external.size] = external
        words = np.ascontiguousarray(isa.encode(descriptors), dtype=np.uint32) if descriptors else \
            np.zeros(0, np.uint32)
        byte_pointer = ctypes.POINTER(ctypes.c_uint8)
        engine = _Engine(spad.ctypes.data_as(byte_pointer), spad.size, ext.ctypes.data_as(byte_pointer), ext.size,
                         self.config.lanes, self.config.param_channels)
        index = ctypes.c_uint32(0)
        code = self.library.soft_engine_run(ctypes.byref(engine), words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                            len(descriptors), ctypes.byref(index))
        return code, index.value, spad, ext
