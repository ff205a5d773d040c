"""Does a maze policy walk episode 2 shorter than episode 1? A quick check of a training run's policy.

The leaderboard's maze rows need 1000 held-out mazes; while a run trains, this plays its current
``policy.pt`` (or any maze policy file) on ``--instances`` tuning mazes of ``--seed`` (7: not the
leaderboard's root seed 0, so none are its evaluation mazes) through the harness's ``play_trials``, and
prints per play mode (sampling as trained, and argmax) the mean return, each episode's success, % improved
(the paper's: episode 2 successful and no longer than episode 1) and % strictly shorter. ``--record``
appends the lines to ``--results``.

    python experiments/rl2_maze_improved.py RUN_OR_POLICY [--cell small-turn90-move] [--instances 400]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl2bench.algorithms.rl2.agent import RL2Maze
from rl2bench.algorithms.rl2.zoo import POLICY_FILE, policy_version
from rl2bench.protocol import chunks, play_trials
from rl2bench.registry import get_family
from rl2bench.results import append_jsonl


class RL2MazeFile(RL2Maze):
    """``rl2`` on the mazes, its network read from a given policy file, played by sampling or argmax."""

    name = "rl2-file"

    def __init__(self, spec, batch_size, rng, *, path: str, version: str, play: str = "sample"):
        super(RL2Maze, self).__init__(spec, batch_size, rng)  # not RL2Maze's: no zoo lookup
        self._load(path, version)
        self.play = play

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._logits(obs).argmax(-1).numpy() if self.play == "argmax" else super().act(obs)


def summary(metrics: dict[str, np.ndarray], returns: np.ndarray) -> dict[str, Any]:
    """Mean return, success per episode, % improved and % strictly shorter (episode 2 against 1)."""
    episodes = sorted(int(k[len("success_ep"):]) for k in metrics if k.startswith("success_ep"))
    ok2 = metrics["success_ep2"] == 1
    return {"mean_return": round(float(returns.mean()), 3),
            "success": [round(100 * float(metrics[f"success_ep{e}"].mean()), 1) for e in episodes],
            "improved_pct": round(100 * float((ok2 & (metrics["len_ep2"] <= metrics["len_ep1"])).mean()), 1),
            "shorter_pct": round(100 * float((ok2 & (metrics["len_ep2"] < metrics["len_ep1"])).mean()), 1)}


def evaluate(policy: Path, cell_name: str, instances: int, seed: int, play: str) -> dict[str, Any]:
    family = get_family("maze")
    cell = family.parse_cell(cell_name)
    setting = {"path": str(policy), "version": policy_version(policy), "play": play}
    start = time.perf_counter()
    outs = [play_trials(family, cell, RL2MazeFile, setting, instances, seed, "tune", chunk, sealed=False)
            for chunk in range(len(chunks(instances, family.chunk_size)))]
    metrics = {k: np.concatenate([o.metrics[k] for o in outs]) for k in outs[0].metrics}
    return {"policy": str(policy), "version": setting["version"], "cell": cell_name, "instances": instances,
            "seed": seed, "play": play, **summary(metrics, np.concatenate([o.returns for o in outs])),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path, help="a maze training run's folder or a policy file")
    parser.add_argument("--cell", default="small-turn90-move")
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--play", default="sample,argmax")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "rl2_maze_improved.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = args.policy / POLICY_FILE if args.policy.is_dir() else args.policy
    for play in args.play.split(","):
        line = evaluate(policy, args.cell, args.instances, args.seed, play)
        print(json.dumps(line), flush=True)
        if args.record:
            append_jsonl(args.results, line)


if __name__ == "__main__":
    main()
