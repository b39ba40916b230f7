"""fpga/firmware/engine_soft.c (the engine's programs run by a CPU) built for this machine with
the PyPI `ziglang` compiler and called through ctypes, so tests can hold it against the golden
executor before it runs on a softcore.

`SoftEngine(config)` builds (or reuses) the shared library: cached in `<cache>/soft-engine-<digest>`
(sim.build's cache root), the digest covering the C sources, the generated `engine_isa.h`, the
flags and the compiler version. `run(descriptors, scratchpad, external)` runs a program on
copies of the memories and returns (error code, index, scratchpad, external) as
golden/engine/executor.py's `Machine.run` leaves them.
"""
from __future__ import annotations

import ctypes
import hashlib
import shutil

import numpy as np

from golden.engine import program as isa
from golden.engine.c_header import isa_header
from golden.engine.config import EngineConfig
from hw.soc.firmware import SOURCE_DIR, FirmwareError, _cache_root, _zig, compiler_available

SOURCES = ("engine_soft.c", "engine_soft_check.c")
HEADERS = ("engine_soft.h", "engine_soft_internal.h")
FLAGS = ("-O2", "-shared", "-fPIC", "-std=c11", "-Wall", "-Wextra", "-Werror")


class _Engine(ctypes.Structure):
    _fields_ = [("scratchpad", ctypes.POINTER(ctypes.c_uint8)), ("scratchpad_bytes", ctypes.c_uint32),
                ("external", ctypes.POINTER(ctypes.c_uint8)), ("external_bytes", ctypes.c_uint32),
                ("lanes", ctypes.c_uint32), ("param_channels", ctypes.c_uint32)]


def build_library():
    """The path of the shared library, built if the cache does not hold it (FirmwareError if the
    compiler fails or is missing)."""
    ok, reason = compiler_available()
    if not ok:
        raise FirmwareError(reason)
    import ziglang
    header = isa_header()
    sources = {name: (SOURCE_DIR / name).read_text() for name in SOURCES + HEADERS}
    hasher = hashlib.sha256()
    for part in [header, " ".join(FLAGS), getattr(ziglang, "__version__", "")] + \
            [f"{name}\0{text}" for name, text in sorted(sources.items())]:
        hasher.update(part.encode() + b"\0")
    directory = _cache_root() / f"soft-engine-{hasher.hexdigest()[:20]}"
    library = directory / "engine_soft.so"
    if library.is_file():
        return library
    work = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, text in sources.items():
        (work / name).write_text(text)
    (work / "engine_isa.h").write_text(header)
    result = _zig("cc", *FLAGS, "-I.", "-o", "engine_soft.so", *SOURCES, cwd=work)
    if result.returncode:
        raise FirmwareError(f"compiling the soft engine in {work} failed:\n{result.stdout}{result.stderr}")
    shutil.rmtree(directory, ignore_errors=True)
    work.rename(directory)
    return library


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
