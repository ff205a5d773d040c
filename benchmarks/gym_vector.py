"""The Gymnasium VectorEnv (rl2bench.gym) against the harness's own environment on the same work: 1000 bandit
instances of n100-k10, random actions, whole trials (new instances, the family's env built and reset, 100
steps). The VectorEnv adds the RL^2 inputs, the info dict, action checks and its autoreset step.

    OMP_NUM_THREADS=1 python benchmarks/gym_vector.py [--trials 20] [--rounds 5]

Counts instance-steps per second (1000 per step), the best of ``--rounds`` interleaved rounds for each
(the best is the least disturbed by other work on the machine), and writes benchmarks/results/gym_vector.json.
The bar: the VectorEnv at least 50% of the harness's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from rl2bench import seeding
from rl2bench.gym import RL2BenchVectorEnv
from rl2bench.registry import get_family

RESULTS = Path(__file__).parent / "results" / "gym_vector.json"
TASK, CELL, INSTANCES = "mab", "n100-k10", 1000


def harness(trials: int) -> float:
    """Instance-steps per second of the family's own env, trial by trial as the protocol plays them."""
    family = get_family(TASK)
    cell = family.parse_cell(CELL)
    spec = family.spec(cell)
    stream, noise = seeding.instance_rng(0, "train", TASK, CELL), seeding.env_rng(0, "train", TASK, CELL)
    acting = np.random.default_rng(1)
    started = time.perf_counter()
    for _ in range(trials):
        env = family.make_env(cell, family.sample(cell, stream, INSTANCES), noise)
        env.reset()
        for _ in range(spec.max_steps):
            env.step(acting.integers(spec.n_actions, size=INSTANCES))
    return trials * spec.max_steps * INSTANCES / (time.perf_counter() - started)


def vector(trials: int) -> float:
    """Instance-steps per second of the VectorEnv, autoreset steps included in the time, not in the count."""
    envs = RL2BenchVectorEnv(TASK, CELL, num_envs=INSTANCES)
    n_actions, steps = envs.task_spec.n_actions, envs.task_spec.max_steps
    acting = np.random.default_rng(1)
    started = time.perf_counter()
    envs.reset(seed=0)
    for _ in range(trials * (steps + 1) - 1):  # each trial's steps, then the autoreset step into the next
        envs.step(acting.integers(n_actions, size=INSTANCES))
    elapsed = time.perf_counter() - started
    envs.close()
    return trials * steps * INSTANCES / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of 1000 instances per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = []
    for r in range(args.rounds):
        h, v = harness(args.trials), vector(args.trials)
        rounds.append({"harness": round(h), "vector_env": round(v)})
        print(f"round {r + 1}: harness {h:,.0f} instance-steps/s, VectorEnv {v:,.0f} ({v / h:.0%})", flush=True)
    best_h = max(r["harness"] for r in rounds)
    best_v = max(r["vector_env"] for r in rounds)
    ratio = best_v / best_h
    print(f"best: harness {best_h:,} instance-steps/s, VectorEnv {best_v:,} ({ratio:.0%}; bar 50%)")
    record = {"when": time.strftime("%Y-%m-%d %H:%M"), "task": TASK, "cell": CELL, "instances": INSTANCES,
              "trials": args.trials, "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
              "harness_steps_per_s": best_h, "vector_env_steps_per_s": best_v, "ratio": round(ratio, 3),
              "rounds": rounds}
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
