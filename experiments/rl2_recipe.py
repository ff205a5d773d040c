"""Continue an RL^2 checkpoint under changed training settings and compare the learning that follows.

    OMP_NUM_THREADS=1 python experiments/rl2_recipe.py CHECKPOINT_DIR --iters 400 --set ent_coef=0 \
        --out /tmp/variant-a

Copies the run in CHECKPOINT_DIR (left untouched) to --out, replaces the listed ``TrainConfig`` fields
(``--set`` as in ``rl2bench train``), trains ``--iters`` more iterations and prints the training-batch mean
return averaged over the last 50 iterations before and after. A cheap way to test a recipe change on a
plateaued policy without paying for a run from scratch; the control is the checkpoint's own curve (or a
variant with no ``--set``). Results are appended to experiments/results/rl2_recipe.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from rl2bench.algorithms.rl2.runfolder import CHECKPOINT
from rl2bench.algorithms.rl2.trainer import Trainer
from rl2bench.results import append_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint_dir", type=Path)
    parser.add_argument("--iters", type=int, default=400, help="iterations to add (at most)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--record", type=Path,
                        default=Path(__file__).parent / "results" / "rl2_recipe.jsonl")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.checkpoint_dir / CHECKPOINT, args.out / CHECKPOINT)
    trainer = Trainer.from_checkpoint(args.out)
    start_iter = trainer.iteration
    before = np.mean([r["mean_return"] for r in trainer.curve[-50:]])
    trainer.change_config(args.set, by="experiments/rl2_recipe.py")
    trainer.cfg = dataclasses.replace(trainer.cfg, iters=start_iter + args.iters)
    t0 = time.perf_counter()
    trainer.run(progress=False, seconds=None if args.minutes is None else 60 * args.minutes)
    wall = time.perf_counter() - t0
    after = np.mean([r["mean_return"] for r in trainer.curve[-50:]])
    entropy = np.mean([r["entropy"] for r in trainer.curve[-50:]])
    record = {
        "checkpoint": str(args.checkpoint_dir), "task": trainer.shape.task, "cell": trainer.shape.cell,
        "from_iteration": start_iter, "iters": trainer.iteration - start_iter, "set": args.set,
        "mean_return_last50_before": round(float(before), 3), "mean_return_last50_after": round(float(after), 3),
        "entropy_last50_after": round(float(entropy), 3), "wall_seconds": round(wall, 1),
        "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
    }
    print(json.dumps(record))
    append_jsonl(args.record, record)


if __name__ == "__main__":
    main()
