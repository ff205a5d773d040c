"""Seconds per training iteration with the hand-written GRU backward (``fused_gru``) and with nn.GRU's.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/rl2_fused_backward.py [--iters 4] [--activation relu]

Times the ``ppo-sgd`` recipe at the CPU size the zoo trains with (GRU 64, 25,000-step batches, 16-trial
minibatches for policy and baseline: ~160 small Adam steps per iteration), from the same seed with the
switch off and on, interleaved so that other load on the machine hits both alike. Also checks that both
runs reach the same mean return. Appends a row to benchmarks/results/rl2_fused_backward.jsonl.
``--activation``: the GRU's candidate activation (tanh, nn.GRU's, the default and what rows without the field
timed; relu, the paper's, whose "switch off" arm is the plain-autograd loop ``gru_sequence``, not nn.GRU).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.rollout import task_shape
from rl2bench.algorithms.rl2.trainer import Trainer
from rl2bench.results import append_jsonl

CPU_SIZE = dict(hidden=64, batch_steps=25_000, ppo_minibatch_trials=16, baseline_minibatch_trials=16)
CELLS = (("mdp", "n10"), ("mab", "n100-k10"))


def time_iterations(task: str, cell: str, fused: bool, iters: int,
                    activation: str = "tanh") -> tuple[list[float], float]:
    """Per-iteration seconds (update and rollout) and the last iteration's mean return."""
    cfg = dataclasses.replace(preset_config("ppo-sgd", task_shape(task, cell)), **CPU_SIZE, fused_backward=fused,
                              gru_activation=activation)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(task, cell, "ppo-sgd", 0, Path(out), cfg)
        rows = [trainer.iterate() for _ in range(iters)]
    return [row["seconds"] for row in rows], rows[-1]["mean_return"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs per cell, interleaved")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--activation", default="tanh", choices=("tanh", "relu"), help="the GRU's candidate activation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task, cell in CELLS:
        seconds: dict[bool, list[float]] = {False: [], True: []}
        returns: dict[bool, float] = {}
        for _ in range(args.rounds):
            for fused in (False, True):
                secs, returns[fused] = time_iterations(task, cell, fused, args.iters, args.activation)
                seconds[fused] += secs
        plain, fused = statistics.median(seconds[False]), statistics.median(seconds[True])
        rows.append({"task": task, "cell": cell, "activation": args.activation, "nn_gru_s_per_iter": round(plain, 3),
                     "fused_s_per_iter": round(fused, 3), "speedup": round(plain / fused, 2),
                     "mean_return_nn_gru": round(returns[False], 3), "mean_return_fused": round(returns[True], 3)})
    print(tabulate(rows, headers="keys"))
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "iters": args.iters,
              "rounds": args.rounds, "note": args.note, "rows": rows}
    append_jsonl(Path(__file__).parent / "results" / "rl2_fused_backward.jsonl", record)


if __name__ == "__main__":
    main()
