"""Training speed of a real RL^2 run, read from its learning curve: seconds per iteration (rollout /
policy step / rest), environment steps per second, over a range of iterations.

    python benchmarks/rl2_training_speed.py RUN_DIR --iterations 143-306 --where "H200, alone" [--record]

Use it for runs made where this machine cannot time them (an H200 GPU machine): the curve's per-
iteration timings are the measurement. ``--record`` appends the row to
benchmarks/results/rl2_training_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from rl2bench.results import append_jsonl

RESULTS = Path(__file__).parent / "results" / "rl2_training_speed.jsonl"


def speed(run: Path, first: int, last: int) -> dict:
    """Mean timings of iterations ``first..last`` (inclusive) of the run in ``run``."""
    curve = pd.read_csv(run / "curve.csv")
    part = curve[(curve.iteration >= first) & (curve.iteration <= last)]
    if part.empty:
        raise SystemExit(f"{run}: no iterations in {first}-{last} (the curve has "
                         f"{int(curve.iteration.min())}-{int(curve.iteration.max())})")
    meta = json.loads((run / "meta.json").read_text())
    steps = part.env_steps.diff().dropna()
    batch = int(steps.median()) if len(steps) else int(part.env_steps.iloc[0])
    seconds = float(part.seconds.mean())
    return {"run": str(run), "task": meta["task"], "cell": meta["cell"], "iterations": f"{first}-{last}",
            "n": len(part), "hidden": meta["config"]["hidden"], "update": meta["config"].get("update", "trpo"),
            "batch_steps": batch, "s_per_iteration": round(seconds, 3),
            "rollout_s": round(float(part.rollout_seconds.mean()), 3),
            "policy_step_s": round(float(part.policy_seconds.mean()), 3),
            "env_steps_per_s": round(batch / seconds), "mean_return": round(float(part.mean_return.mean()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder (curve.csv, meta.json)")
    parser.add_argument("--iterations", required=True, help="FIRST-LAST, inclusive")
    parser.add_argument("--where", required=True, help="the machine and its load, e.g. 'H200, 6 runs sharing it'")
    parser.add_argument("--record", action="store_true", help=f"append to {RESULTS}")
    args = parser.parse_args()
    first, _, last = args.iterations.partition("-")
    row = {"where": args.where, **speed(args.run, int(first), int(last or first))}
    print(tabulate([row], headers="keys", tablefmt="simple"))
    if args.record:
        append_jsonl(RESULTS, row)


if __name__ == "__main__":
    main()
