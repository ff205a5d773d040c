"""RL^2 maze training cost: seconds per iteration (rollout vs TRPO update), rollout steps per second, and
the projected wall time of the paper's budget (Appendix A.3: up to 5000 iterations x 50,000 steps).

    OMP_NUM_THREADS=1 python benchmarks/rl2_maze.py [--iters 2] [--preset maze-fast] [--cell small-e2]
        [--set key=value ...]

Runs ``--iters`` iterations of the maze trainer in a temporary folder (engine start-up, a recipe's
one-off encoder pretraining and, with ``update_lag=1``, the first iteration, which has no update beside its
rollout, excluded from the timings), from a fresh network or, with ``--init-from RUN``,
from a trained one as a recipe that continues it starts. Prints a table beside the engines' own rate
(``maze_env.json``) and writes benchmarks/results/rl2_maze.json (one record per preset, and per GRU width
given by ``--set hidden=H``; another recipe, cell or starting network is another record). On a ``-move``
cell the trainer's steps are decisions, a forward one walking up to 4 strides:
``all_in_low_level_actions_per_second`` counts the strides, the environment's own steps (the curve's
``low_level_steps``). The update's cost
grows with the steps in the batch, the rollout's with steps / (engine + network throughput), so the projection scales
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

from rl2bench.algorithms.rl2.config import apply_overrides
from rl2bench.algorithms.rl2.maze_config import preset_config
from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer, maze_trainer_class
from rl2bench.algorithms.rl2.maze_trainer import subnormals_flushed

PAPER_ITERS, PAPER_STEPS = 5000, 50_000


def engine_rate(cell: str) -> float | None:
    """The engines' own steps per second on this cell's size with 2 workers (maze_env.json), if recorded."""
    path = Path(__file__).parent / "results" / "maze_env.json"
    if not path.exists():
        return None
    rows = [r for r in json.loads(path.read_text())["rows"] if cell.startswith(r["cell"]) and r["workers"] == 2]
    return rows[0]["steps_per_s"] if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--preset", default="maze-fast")
    parser.add_argument("--cell", default="small-e2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    parser.add_argument("--init-from", type=Path, metavar="RUN",
                        help="start from this run's network, as a recipe continuing it does (a trained policy plays "
                             "shorter trials than a fresh one, so the cost per step differs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(preset_config(args.preset), args.set)
        trainer = maze_trainer_class(cfg)(args.cell, args.preset, 0, Path(tmp), cfg)
        if args.init_from:
            trainer.init_from(args.init_from)
        t0 = time.perf_counter()
        trainer.open_env()
        startup = time.perf_counter() - t0
        if isinstance(trainer, MazePPOTrainer):
            trainer.prepare_encoder()  # once per run, before the first iteration
        # With update_lag=1 a run's first iteration has no update beside its rollout: played, not timed.
        warmup = 1 if getattr(cfg, "update_lag", 0) else 0
        try:
            with subnormals_flushed():  # as the trainer's run() trains
                rows = [trainer.iterate() for _ in range(warmup)]
                steps_before = trainer.env_steps
                rows = [trainer.iterate() for _ in range(args.iters)]
        finally:
            trainer.close()
    steps = rows[-1]["env_steps"] - steps_before
    low_level = sum(r.get("low_level_steps", 0) for r in rows) or steps  # strides: one per step off -move cells
    rollout = sum(r["rollout_seconds"] for r in rows)
    update = sum(r["seconds"] - r["rollout_seconds"] for r in rows)
    per_step = (rollout + update) / steps
    result = {
        "cell": args.cell, "preset": args.preset, "overrides": args.set,
        **({"init_from": str(args.init_from)} if args.init_from else {}), "iterations": args.iters,
        "env_steps": steps, "engine_startup_seconds": round(startup, 2),
        "seconds_per_iteration": round((rollout + update) / args.iters, 2),
        "all_in_steps_per_second": round(steps / (rollout + update), 1),
        "low_level_actions": low_level,
        "all_in_low_level_actions_per_second": round(low_level / (rollout + update), 1),
        "rollout_steps_per_second": round(steps / rollout, 1),
        "engine_only_steps_per_second": engine_rate(args.cell),
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
    records = json.loads(out.read_text()) if out.exists() else {}
    if "preset" in records:  # the single record written before one was kept per preset
        records = {records["preset"]: records}
    # another network, recipe or cell is another record; the encoder's shortened pretraining is not
    recipe = [o for o in args.set if not o.startswith(("encoder_frames=", "encoder_epochs="))]
    cell = [] if args.cell == parser.get_default("cell") else [args.cell]
    start = [f"from {args.init_from}"] if args.init_from else []
    records[" ".join([args.preset, *recipe, *cell, *start])] = result
    out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
