"""Does playing an RL^2 policy at a lower softmax temperature (between sampling and argmax) pay?

    python experiments/rl2_play_temperature.py [--task mdp] [--cell n25] [--seed 7] [--instances 1000] [--record]

The zoo policy of the cell, played at temperatures 1 (sampling, as trained), 0.7, 0.5, 0.3, 0.15 and by
argmax, each on the same ``--instances`` tuning instances of ``--seed`` (7: not the leaderboards' root seed
0, so none are its evaluation instances). It goes through the harness as a user's algorithm would: a
``module:Class`` subclass of ``rl2`` whose grid is the temperatures, run by ``python -m rl2bench run``; the
tuning means of ``run.json`` are the result. ``--record`` appends them to
experiments/results/rl2_play_temperature.jsonl. On 2026-11-27: nothing to gain on MDP n25 (leaderboard/HISTORY.md),
so ``rl2``'s grid stays sampling / argmax.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tabulate import tabulate

from rl2bench.algorithms.rl2.agent import RL2
from rl2bench.results import append_jsonl

RESULTS = Path(__file__).parent / "results" / "rl2_play_temperature.jsonl"
TEMPERATURES = (1.0, 0.7, 0.5, 0.3, 0.15)


class RL2Temperature(RL2):
    """``rl2`` with a softmax temperature: logits / T before sampling (argmax kept as the grid's last point)."""

    name = "rl2-temperature"

    @classmethod
    def grid(cls, cell, spec):
        setting = RL2.grid(cell, spec)[0]
        return [{**setting, "temperature": t} for t in TEMPERATURES] + [{**setting, "play": "argmax"}]

    def __init__(self, spec, batch_size, rng, *, temperature: float = 1.0, **setting):
        super().__init__(spec, batch_size, rng, **setting)
        self.temperature = temperature

    def act(self, obs: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = self._embed(torch.as_tensor(np.asarray(obs), dtype=torch.long), self.prev_action, self.prev_reward,
                        self.prev_done, self.spec.n_states, self.spec.n_actions)
        with torch.no_grad(), self._cached():
            logits, self.h = self.net.step(x, self.h)
        if self.play == "argmax":
            return logits.argmax(-1).numpy()
        return self._sample(logits / self.temperature, self.gen).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mdp")
    parser.add_argument("--cell", default="n25")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--record", action="store_true", help=f"append the result to {RESULTS}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "rl2bench", "run", "--task", args.task, "--cells", args.cell,
                   "--algos", f"{Path(__file__).stem}:{RL2Temperature.__name__}", "--seed", str(args.seed),
                   "--tune-instances", str(args.instances), "--instances", "100", "--out", f"{tmp}/run",
                   "--no-progress"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                          os.environ.get("PYTHONPATH")]))}
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        run = json.loads(Path(f"{tmp}/run/run.json").read_text())
    key = f"{args.cell}/{RL2Temperature.name}"
    rows = [{"play": t["setting"].get("play", f"T = {t['setting'].get('temperature')}"), "mean": t["mean"],
             "se": t["se"], "instances": t["instances"]} for t in run["tuning"][key]]
    rows.sort(key=lambda r: str(r["play"]))
    print(f"{args.task} {args.cell}, zoo policy played on {args.instances} tuning instances of seed {args.seed}")
    print(tabulate(rows, headers="keys", floatfmt=".1f"))
    if args.record:
        append_jsonl(RESULTS, {"task": args.task, "cell": args.cell, "seed": args.seed,
                               "policy_version": run["chosen_settings"][key].get("version"),
                               "rows": rows})
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
