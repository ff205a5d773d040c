"""Memory or outer loop? A policy trained by RL^2's PPO on the trial's exact posterior statistics instead of a
GRU's memory (``--set network=posterior``), played on the evaluation instances beside the zoo's GRU policy.

    OMP_NUM_THREADS=1 python benchmarks/rl2_posterior_diagnostic.py RUN_DIR [--reference CURVE_CSV]
        [--instances 1000] [--window 200]

RUN_DIR is a finished (or stopped) ``train --task mdp --set network=posterior`` run. The script puts its
policy in a scratch zoo and runs the protocol on it (``run --algos rl2``: play mode tuned on the tuning
instances, then the evaluation instances), and records beside it the run's training means (its last
``--window`` iterations, and, with ``--reference``, a GRU run's curve at the same iterations), the zoo's
``rl2`` and the paper's numbers for the cell. Writes benchmarks/results/rl2_posterior_diagnostic.json (one
record per cell). If it reaches the paper's RL^2, memory is what the GRU lacks; if it stalls where the GRU
policy does, the outer loop is the limit (the plan: experiments/results/2026-12-06-mdp-n25-posterior-features).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from rl2bench.cli import main as rl2bench_main

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def training_mean(curve: pd.DataFrame, lo: int, hi: int) -> float:
    rows = curve[(curve["iteration"] >= lo) & (curve["iteration"] <= hi)]
    return round(float(rows["mean_return"].mean()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--reference", type=Path, default=None, help="a GRU run's curve.csv, same cell and seed")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    meta = json.loads((args.run / "meta.json").read_text())
    if meta["config"].get("network") != "posterior":
        raise SystemExit(f"{args.run} is not a network=posterior run")
    cell, curve = meta["cell"], pd.read_csv(args.run / "curve.csv")
    last = int(curve["iteration"].iloc[-1])
    lo = max(1, last - args.window + 1)
    with tempfile.TemporaryDirectory() as tmp:
        zoo = Path(tmp) / "zoo" / "mdp" / cell
        zoo.mkdir(parents=True)
        shutil.copy2(args.run / "policy.pt", zoo / "policy.pt")
        os.environ["RL2BENCH_ZOO"] = str(Path(tmp) / "zoo")
        out = Path(tmp) / "run"
        code = rl2bench_main(["run", "--task", "mdp", "--cells", cell, "--algos", "rl2", "--instances",
                              str(args.instances), "--out", str(out), "--no-progress"])
        if code:
            raise SystemExit(code)
        played = pd.read_csv(out / "leaderboard.csv").iloc[0]
    board = pd.read_csv(ROOT / "leaderboard" / "runs" / "mdp" / "leaderboard.csv")
    ours = board[board["cell"] == cell].set_index("algorithm")
    paper = pd.read_csv(ROOT / "leaderboard" / "paper" / "table2_mdp.csv")
    paper = paper[paper["cell"] == cell].set_index("algorithm")
    record = {
        "cell": cell, "run": str(args.run), "iterations": last, "env_steps": int(meta["env_steps"]),
        "hidden": meta["config"]["hidden"], "command": meta.get("command", ""),
        "training_mean_last": training_mean(curve, lo, last), "window": [lo, last],
        "evaluation_mean": round(float(played["mean"]), 1), "evaluation_se": round(float(played["se"]), 2),
        "evaluation_instances": int(played["n"]),
        "zoo_rl2": round(float(ours.loc["rl2", "mean"]), 1) if "rl2" in ours.index else None,
        "leaderboard_opsrl": round(float(ours.loc["opsrl", "mean"]), 1) if "opsrl" in ours.index else None,
        "paper_rl2": float(paper.iloc[:, -1].get("rl2", float("nan"))),
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.reference is not None:
        reference = pd.read_csv(args.reference)
        record["reference"] = str(args.reference)
        record["reference_training_mean_same_window"] = training_mean(reference, lo, last)
    for key, value in record.items():
        print(f"{key:40s} {value}")
    path = HERE / "results" / "rl2_posterior_diagnostic.json"
    records = json.loads(path.read_text()) if path.exists() else {}
    records[cell] = record
    path.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
