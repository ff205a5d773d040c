"""What the RL^2 policy zoo holds: one row per trained cell, and its learning curves on one figure.

The zoo is ``leaderboard/zoo/<task>/<cell>/`` (``$RL2BENCH_ZOO`` overrides it); each cell folder has the
trainer's ``meta.json`` and ``curve.csv``. ``python -m rl2bench zoo`` prints the table and can draw the
normalized curves (random = 0, the paper's Gittins / OPSRL = 1) of every bandit and MDP cell, so a
reader sees at a glance which cells reached the paper's RL^2 and which are still climbing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rl2bench.errors import UserError

COLUMNS = ["task", "cell", "status", "preset", "seed", "iterations", "env_steps", "wall_seconds",
           "final_batch_mean", "paper_rl2", "initialized_from"]


def _cell_order(task: str, cell: str) -> tuple:
    """n10-k5 < n10-k10 < n100-k5 ...: numbers compare as numbers."""
    parts = [int(p[1:]) if p[1:].isdigit() else p for p in cell.split("-")]
    return (task, *[(0, p) if isinstance(p, int) else (1, p) for p in parts])


def zoo_table(root: Path) -> pd.DataFrame:
    """One row per cell folder with a meta.json, in task then cell order."""
    if not root.is_dir():
        raise UserError(f"no policy zoo at {root} (set RL2BENCH_ZOO or train a policy first)")
    rows = []
    for meta_path in sorted(root.glob("*/*/meta.json")):
        meta = json.loads(meta_path.read_text())
        start = meta.get("initialized_from") or {}
        rows.append({
            "task": meta["task"], "cell": meta["cell"], "status": meta.get("status", "?"),
            "preset": meta.get("preset"), "seed": meta.get("seed"), "iterations": meta.get("iterations"),
            "env_steps": meta.get("env_steps"), "wall_seconds": meta.get("wall_seconds"),
            "final_batch_mean": meta.get("final_mean_return"),
            "paper_rl2": (meta.get("paper") or {}).get("rl2"),
            "initialized_from": f"{start['task']} {start['cell']}" if start else "",
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    if table.empty:
        return table
    order = sorted(range(len(table)), key=lambda i: _cell_order(table.task[i], table.cell[i]))
    return table.iloc[order].reset_index(drop=True)


def plot_curves(root: Path, path: Path, smooth: int = 25) -> None:
    """Normalized training curves of every bandit and MDP cell (moving average over ``smooth``
    iterations), one panel per task, the paper's RL^2 level of each cell marked at the right edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = ("mab", "mdp")
    fig, axes = plt.subplots(1, len(tasks), figsize=(11, 4), sharey=True)
    for ax, task in zip(axes, tasks, strict=True):
        for folder in sorted((root / task).glob("*/"), key=lambda f: _cell_order(task, f.name)):
            curve_path, meta_path = folder / "curve.csv", folder / "meta.json"
            if not curve_path.exists() or not meta_path.exists():
                continue
            curve = pd.read_csv(curve_path)
            if curve["normalized"].isna().all():
                continue
            line = ax.plot(curve["env_steps"] / 1e6, curve["normalized"].rolling(smooth, min_periods=1).mean(),
                           lw=1.1, label=folder.name)[0]
            paper = json.loads(meta_path.read_text()).get("paper") or {}
            if {"random", "reference", "rl2"} <= paper.keys():
                level = (paper["rl2"] - paper["random"]) / (paper["reference"] - paper["random"])
                if math.isfinite(level):
                    ax.plot([curve["env_steps"].iloc[-1] / 1e6], [level], marker="<", color=line.get_color())
        ax.axhline(1.0, color="k", ls="--", lw=0.7)
        ax.axhline(0.0, color="grey", ls=":", lw=0.7)
        ax.set_title(f"{task}: RL$^2$ training batch, normalized (reference = 1, random = 0)", fontsize=9)
        ax.set_xlabel("environment steps (millions)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2, loc="lower right")
    axes[0].set_ylabel("normalized return (markers: paper RL$^2$)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
