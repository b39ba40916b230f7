"""The benchmark's PNG plots (matplotlib, the `ml` extra), from `sparsebp bench`'s result:

- `cycles_per_layer.png`: the first row's measured cycles per layer, stacked by category
  (forward, input gradient, fused weight gradient + update, bias update).
- `scratchpad_occupancy.png`: the first row's planned scratchpad occupancy over one iteration
  at the measured cycles, with the engine's measured high-water mark and the planned peak.
- `cycles_vs_ratio.png`: backward cycles of the rows that differ only in the update ratio
  (suite rows labelled 'ratio', 'sparse' and 'dense' of one model), against the ratio.
"""
from __future__ import annotations

from pathlib import Path


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plots needs matplotlib: pip install -e '.[ml]'") from None


def write_plots(result: dict, folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sim.training_run import CATEGORIES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    if not rows:
        return []
    written = []
    first = rows[0]
    title = f"{first['model']}, {first['scheme']}, {first['policy']}"

    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(first["layers"]) + 2), 4.2))
    names = [layer["layer"] for layer in first["layers"]]
    bottom = [0] * len(names)
    for category in CATEGORIES:
        values = [layer[category] for layer in first["layers"]]
        ax.bar(range(len(names)), values, bottom=bottom, label=category)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("cycles (measured on the RTL)")
    ax.set_title(f"Cycles per layer: {title}", fontsize=9)
    ax.legend(fontsize=7)
    written.append(_save(fig, folder / "cycles_per_layer.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    cycles = [point[0] for point in first["occupancy"]]
    ax.step(cycles, [point[1] / 1024 for point in first["occupancy"]], where="post", label="allocated (plan)")
    ax.step(cycles, [point[2] / 1024 for point in first["occupancy"]], where="post",
            label="highest block end (plan)", alpha=0.7)
    ax.axhline(first["peak_bytes_planned"] / 1024, color="k", linestyle="--", linewidth=0.8, label="planned peak")
    ax.axhline(first["peak_bytes_measured"] / 1024, color="r", linestyle=":", linewidth=1.0,
               label="engine high-water mark (measured)")
    ax.axvline(first["forward_cycles"], color="grey", linewidth=0.6)
    ax.set_xlabel("cycle of the iteration (forward, then backward)")
    ax.set_ylabel("scratchpad KiB")
    ax.set_title(f"Scratchpad occupancy over one iteration: {title}", fontsize=9)
    ax.legend(fontsize=7)
    written.append(_save(fig, folder / "scratchpad_occupancy.png"))

    sweep = ratio_points(rows)
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 4))
        for model, points in sweep.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"{model}: measured")
            ax.plot([p[0] for p in points], [p[2] for p in points], "x--", label=f"{model}: cycle model")
        ax.set_xlabel("fraction of the updated convs' channels selected")
        ax.set_ylabel("backward cycles per iteration")
        ax.set_title("Backward cycles against the update ratio", fontsize=9)
        ax.legend(fontsize=7)
        written.append(_save(fig, folder / "cycles_vs_ratio.png"))
    return written


def ratio_points(rows: list[dict]) -> dict[str, list[tuple[float, int, int]]]:
    """Per model, (ratio, measured, predicted backward cycles) of its 'ratio' rows and its
    'dense' row (ratio 1); models without 'ratio' rows are left out."""
    import re
    out: dict[str, list] = {}
    for row in rows:
        if row["label"] == "ratio":
            ratio = float(re.findall(r":([0-9.]+)", row["scheme"])[0])
        elif row["label"] == "dense":
            ratio = 1.0
        else:
            continue
        out.setdefault(row["model"], []).append((ratio, row["backward_cycles"], row["backward_cycles_predicted"]))
    return {m: sorted(p) for m, p in out.items() if len(p) > 1}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
