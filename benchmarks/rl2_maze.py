"""RL^2 maze training cost: seconds per iteration (rollout vs TRPO update), rollout steps per second, and
the projected wall time of the paper's budget (Appendix A.3: up to 5000 iterations x 50,000 steps).

    OMP_NUM_THREADS=1 python benchmarks/rl2_maze.py [--iters 2] [--preset maze-fast] [--cell small-e2]

Runs ``--iters`` iterations of the maze trainer in a temporary folder (engine start-up excluded from the
timings), prints a table and writes benchmarks/results/rl2_maze.json. The update's cost grows with the
steps in the batch, the rollout's with steps / (engine + network throughput), so the projection scales
both per environment step. Timings depend on the machine's load: note what else ran when you record them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from rl2bench.algorithms.rl2.maze_config import preset_config
from rl2bench.algorithms.rl2.maze_ppo import maze_trainer_class

PAPER_ITERS, PAPER_STEPS = 5000, 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--preset", default="maze-fast")
    parser.add_argument("--cell", default="small-e2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = preset_config(args.preset)
        trainer = maze_trainer_class(cfg)(args.cell, args.preset, 0, Path(tmp), cfg)
        t0 = time.perf_counter()
        trainer.open_env()
        startup = time.perf_counter() - t0
        try:
            rows = [trainer.iterate() for _ in range(args.iters)]
        finally:
            trainer.close()
    steps = rows[-1]["env_steps"]  # cumulative, from 0
    rollout = sum(r["rollout_seconds"] for r in rows)
    update = sum(r["seconds"] - r["rollout_seconds"] for r in rows)
    per_step = (rollout + update) / steps
    result = {
        "cell": args.cell, "preset": args.preset, "iterations": args.iters, "env_steps": steps,
        "engine_startup_seconds": round(startup, 2),
        "seconds_per_iteration": round((rollout + update) / args.iters, 2),
        "rollout_steps_per_second": round(steps / rollout, 1),
        "update_seconds_per_1000_steps": round(1000 * update / steps, 2),
        "projected_paper_seconds_per_iteration": round(per_step * PAPER_STEPS, 1),
        "projected_paper_days": round(per_step * PAPER_STEPS * PAPER_ITERS / 86400, 1),
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for key, value in result.items():
        print(f"{key:40s} {value}")
    out = Path(__file__).parent / "results" / "rl2_maze.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
