"""How an agent explores a Bernoulli bandit trial, next to Gittins on the same instances: why RL^2 misses
the paper on the k = 50 cells (is it memory, or strategy?).

    python experiments/rl2_bandit_behaviour.py --cell n100-k50 [--algos rl2,gittins,ucb1] [--instances 2000] \
        [--play argmax]

Per agent, averaged over instances (drawn with their own seed, never the evaluation instances):
- return: total reward of the trial;
- arms tried: distinct arms pulled in the trial;
- failed-arm re-pulls: pulls of an arm whose every earlier pull failed, while some arm is still untried
  (under the uniform prior an untried arm is worth more: a forgetful or sloppy explorer does this);
- switches after success: leaving an arm right after it paid off;
- best-arm share, last half: pulls of the instance's best arm in the second half of the trial.
Each agent plays with the setting the committed leaderboard run evaluated (``leaderboard/runs/mab``;
``prepare_agent``); ``--play`` says how rl2 picks its action (default: sampling, as trained).
``--record`` appends the rows to experiments/results/rl2_bandit_behaviour.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

from rl2bench import seeding
from rl2bench.protocol import prepare_agent
from rl2bench.results import append_jsonl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "rl2_bandit_behaviour.jsonl"
SEED = 777  # not the leaderboards' root seed 0: these instances are none of the evaluation instances


def behaviour(cell_name: str, algo: str, n_instances: int, play: str = "sample") -> dict:
    prepared = prepare_agent("mab", cell_name, algo, ROOT / "leaderboard" / "runs" / "mab",
                             **({"play": play} if algo == "rl2" else {}))
    family, cell, agent_cls, setting = prepared.family, prepared.cell, prepared.agent_cls, prepared.setting
    spec = family.spec(cell)
    instances = family.sample_instances(cell, SEED, "tune", n_instances)
    env = family.make_env(cell, instances, seeding.env_rng(SEED, "tune", "mab", cell.name, 0))
    agent = agent_cls(spec, n_instances, seeding.agent_rng(SEED, "tune", "mab", cell.name, algo, 0), **setting)
    k, rows = spec.n_actions, np.arange(n_instances)
    pulls, wins = np.zeros((n_instances, k), int), np.zeros((n_instances, k), int)
    best = instances["arm_means"].argmax(axis=1)
    total = np.zeros(n_instances)
    refail = switch_after_win = best_late = 0.0
    previous, previous_reward = None, None
    obs, t = env.reset(), 0
    horizon = cell.n
    while True:
        actions = np.asarray(agent.act(obs))
        untried_left = (pulls == 0).any(axis=1)
        only_failed = (pulls[rows, actions] > 0) & (wins[rows, actions] == 0)
        refail += (only_failed & untried_left).sum()
        if previous is not None:
            switch_after_win += ((previous_reward > 0) & (actions != previous)).sum()
        if t >= horizon // 2:
            best_late += (actions == best).sum()
        step = env.step(actions)
        pulls[rows, actions] += 1
        wins[rows, actions] += (step.reward > 0)
        total += step.reward
        agent.observe(actions, step.reward, step.obs, step.episode_done)
        previous, previous_reward, obs, t = actions, step.reward, step.obs, t + 1
        if step.trial_done.all():
            break
    env.close()
    return {"cell": cell.name, "algorithm": algo, "setting": json.dumps(setting, sort_keys=True),
            "instances": n_instances, "return": round(float(total.mean()), 2),
            "arms_tried": round(float((pulls > 0).sum(axis=1).mean()), 2),
            "failed_arm_repulls": round(refail / n_instances, 2),
            "switches_after_success": round(switch_after_win / n_instances, 2),
            "best_arm_share_last_half": round(best_late / (n_instances * (horizon - horizon // 2)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="n100-k50")
    parser.add_argument("--algos", default="rl2,gittins,ucb1,ts")
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--play", choices=("sample", "argmax"), default="sample", help="how rl2 picks its action")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    rows = [behaviour(args.cell, algo, args.instances, args.play) for algo in args.algos.split(",")]
    print(tabulate(rows, headers="keys", tablefmt="github"))
    if args.record:
        append_jsonl(RESULTS, rows)


if __name__ == "__main__":
    main()
