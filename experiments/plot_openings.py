"""What maze policies do on arriving in a cell, side by side: the picture of ``rl2_maze_openings_probe.py``.

    python experiments/plot_openings.py PROBE.jsonl[=LABEL] ... --out openings.png

Each file is the probe's output (one JSON line per probe target and per kind of arrival). One panel per
kind of arrival that every file has, commonest first (``--kinds`` of them) or as chosen (``--kind``): the
mean probability of forward, left and right on arriving there, one stacked bar per policy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ACTIONS = (("forward", "#4c72b0"), ("left", "#dd8452"), ("right", "#55a868"))


def arrivals(path: Path) -> dict[str, dict]:
    """The probe's arrival rows of one file, by kind."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["arrival"]: r for r in rows if "arrival" in r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="PROBE.jsonl[=LABEL]")
    parser.add_argument("--kinds", type=int, default=8, help="how many of the commonest kinds to draw")
    parser.add_argument("--kind", action="append", default=[],
                        help="draw this kind (as the probe names it, e.g. 'ahead old, left new, right wall'), "
                             "repeatable; instead of the commonest")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = []
    for spec in args.files:
        path_text, _, label = spec.partition("=")
        path = Path(path_text)
        if not path.is_file():
            raise SystemExit(f"no probe output at {path}")
        policies.append((label or path.stem, arrivals(path)))
    common = set.intersection(*(set(rows) for _, rows in policies))
    kinds = [k for k in args.kind if k in common] or sorted(common, key=lambda k: -policies[0][1][k]["n"])[: args.kinds]
    if not kinds:
        raise SystemExit("the files share no kind of arrival")
    cols = 4
    rows = (len(kinds) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False, sharey=True)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        bottom = [0.0] * len(policies)
        for action, colour in ACTIONS:
            heights = [rows[kind][action] for _, rows in policies]
            ax.bar(range(len(policies)), heights, bottom=bottom, color=colour,
                   label=action if kind == kinds[0] else None)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_title(kind.replace(", ", "\n"), fontsize=8)
        ax.set_xticks(range(len(policies)), [label for label, _ in policies], rotation=20, fontsize=7, ha="right")
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(kinds):]:
        ax.axis("off")
    fig.legend(loc="upper right", fontsize=8)
    fig.suptitle("On arriving in a cell: P(action) by what lies ahead / left / right (wall, crossed before, new)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
