"""Training curves of any runs, side by side: the picture that goes with a run kept or abandoned.

    python experiments/plot_curves.py RUN[=LABEL] ... --column success_ep1 [--column success_ep2]
        [--smooth 10] [--line 0.60=rule] [--title T] --out curves.png

Each RUN is a run folder (its ``curve.csv``; ``meta.json``'s inherited steps are added, so a run started
by ``--init-from`` continues its parent's x-axis) or a ``curve.csv`` itself. One panel per ``--column``
against environment steps (millions), each curve a moving average over ``--smooth`` iterations;
``--line`` marks a level (a plan's deciding rule, a baseline). ``rl2_compare_runs.py`` is the tool for
two runs of one cell at equal iterations; this one draws whatever a plan's record needs, mazes included.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import pandas as pd

from rl2bench.algorithms.rl2.zoo import inherited


def load(spec: str) -> tuple[str, pd.DataFrame, float]:
    """``RUN[=LABEL]`` -> (label, curve, steps before this run's first iteration)."""
    path_text, _, label = spec.partition("=")
    path = Path(path_text)
    csv = path if path.suffix == ".csv" else path / "curve.csv"
    if not csv.exists():
        raise SystemExit(f"plot_curves: no curve.csv at {csv}")
    offset = 0.0
    meta = csv.parent / "meta.json"
    if meta.exists():
        offset = float(inherited(json.loads(meta.read_text()))[0])
    return label or (csv.stem if path.suffix == ".csv" else csv.parent.name), pd.read_csv(csv), offset


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_line(text: str) -> tuple[float, str]:
    value, _, label = text.partition("=")
    return float(value), label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--column", action="append", required=True)
    parser.add_argument("--smooth", type=positive_int, default=10)
    parser.add_argument("--line", action="append", default=[], type=parse_line)
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [load(spec) for spec in args.runs]
    fig, axes = plt.subplots(1, len(args.column), figsize=(5.5 * len(args.column), 3.8), squeeze=False)
    for ax, column in zip(axes[0], args.column, strict=True):
        for label, curve, offset in curves:
            if column not in curve:
                raise SystemExit(f"plot_curves: {label} has no column {column!r}")
            steps = (curve["env_steps"] + offset) / 1e6
            ax.plot(steps, curve[column].rolling(args.smooth, min_periods=1).mean(), lw=1.2, label=label)
        for value, label in args.line:
            ax.axhline(value, color="k", ls="--", lw=0.7)
            if label:
                ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
        ax.set_xlabel("environment steps (millions)")
        ax.set_ylabel(f"{column} ({args.smooth}-iteration mean)")
        ax.legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The caption a leaderboard page shows under a run folder's picture (rl2bench.leaderboard.figure_caption).
    command = "python experiments/plot_curves.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    caption = f"{args.title or 'Training curves'}. Drawn by: `{command}`"
    fig.savefig(args.out, dpi=110, metadata={"Description": caption})
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
