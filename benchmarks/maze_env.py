"""Maze environment throughput: instance-steps per second of MazeVecEnv with 1 and 2 worker processes.

    OMP_NUM_THREADS=1 python benchmarks/maze_env.py [--steps 300] [--instances 16] [--cells small,large]

Random actions (forward strides are 15 engine tics, turns 1 tic), every instance active for the whole
measurement (horizon raised so no trial ends). Prints a table and writes benchmarks/results/maze_env.json.
Timings depend on the machine's load: note what else ran when you record them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from rl2bench.registry import get_family
from rl2bench.tasks.maze.env import MazeVecEnv


def measure(cell_name: str, instances: int, workers: int, steps: int) -> dict:
    family = get_family("maze")
    cell = family.parse_cell(f"{cell_name}-e1-t{steps + 10}")
    layouts = family.sample_instances(cell, 0, "eval", instances)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    env = MazeVecEnv(family.spec(cell), layouts, workers=workers, games_per_worker=-(-instances // workers))
    try:
        t1 = time.perf_counter()
        next(iter(env.batches()))
        env.reset()
        t2 = time.perf_counter()
        for _ in range(steps):
            env.step(rng.integers(3, size=env.batch_size))
        t3 = time.perf_counter()
    finally:
        env.close()
    return {"cell": cell_name, "instances": instances, "workers": workers, "steps": steps,
            "startup_s": round(t1 - t0, 2), "reset_s": round(t2 - t1, 3),
            "steps_per_s": round(instances * steps / (t3 - t2), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--cells", default="small,large")
    args = parser.parse_args()
    rows = [measure(c, args.instances, w, args.steps) for c in args.cells.split(",") for w in (1, 2)]
    for r in rows:
        print(f"{r['cell']:>6} {r['instances']:3d} instances, {r['workers']} worker(s): {r['steps_per_s']:8.1f} "
              f"instance-steps/s (startup {r['startup_s']} s, first reset {r['reset_s']} s)")
    load = os.getloadavg()
    record = {"rows": rows, "cpu_count": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in load],
              "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(__file__).parent / "results" / "maze_env.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"load average {load[0]:.2f} (other processes share the CPUs); written {out}")


if __name__ == "__main__":
    main()
