"""RL^2 training throughput: rollout steps/s, seconds per TRPO iteration, and a plain GRU forward/backward
of the same size as the machine's practical limit.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/rl2_throughput.py [--paper-batch]

By default iterations are timed at 25,000 steps and the paper's 250,000-step batch is extrapolated
linearly (the update is linear in the batch); ``--paper-batch`` times it directly (about a minute per
iteration at GRU 256 on 2 cores). Results are printed and written to benchmarks/results/rl2_throughput.json.
Timings on a shared machine are inflated by the other load: rerun on an idle machine for clean numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from rl2bench.algorithms.rl2.policy import Policy, input_size
from rl2bench.algorithms.rl2.rollout import collect, sample_instances, task_shape
from rl2bench.algorithms.rl2.trainer import Trainer, preset_config

PAPER_BATCH = 250_000


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rollout_rate(task: str, cell: str, hidden: int, steps: int) -> float:
    shape = task_shape(task, cell)
    policy = Policy(shape.n_states, shape.n_actions, hidden, torch.Generator().manual_seed(0))
    inst = sample_instances(shape, np.random.default_rng(0), max(1, steps // shape.trial_len))
    n = max(1, steps // shape.trial_len) * shape.trial_len
    secs = _best_of(lambda: collect(policy, shape, inst, torch.Generator().manual_seed(1),
                                    torch.Generator().manual_seed(2)), 2)
    return n / secs


def gru_fwd_bwd(task: str, cell: str, hidden: int, steps: int) -> float:
    """Seconds for one forward + backward of a plain nn.GRU (no weight norm) over the whole batch."""
    shape = task_shape(task, cell)
    gru = torch.nn.GRU(input_size(shape.n_states, shape.n_actions), hidden)
    x = torch.randn(shape.trial_len, max(1, steps // shape.trial_len), gru.input_size)

    def once():
        out, _ = gru(x)
        out.sum().backward()

    return _best_of(once, 2)


def iteration_seconds(task: str, cell: str, hidden: int, steps: int, fvp_fraction: float) -> float:
    shape = task_shape(task, cell)
    cfg = dataclasses.replace(preset_config("paper", shape), hidden=hidden, batch_steps=steps,
                              fvp_fraction=fvp_fraction)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, cell, "paper", 0, Path(tmp), cfg)
        trainer.iterate()  # warm-up
        return _best_of(trainer.iterate, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-batch", action="store_true", help="time 250,000-step iterations directly")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rl2_throughput.json")
    args = parser.parse_args()
    steps = PAPER_BATCH if args.paper_batch else 25_000
    scale = PAPER_BATCH / steps
    rows, records = [], []
    for task, cell in (("mab", "n10-k5"), ("mab", "n100-k10"), ("mdp", "n10")):
        for hidden, fvp in ((64, 0.2), (256, 1.0)):
            rate = rollout_rate(task, cell, hidden, steps)
            fb = gru_fwd_bwd(task, cell, hidden, steps)
            it = iteration_seconds(task, cell, hidden, steps, fvp)
            rec = {"task": task, "cell": cell, "hidden": hidden, "fvp_fraction": fvp, "timed_batch": steps,
                   "rollout_steps_per_s": rate, "gru_fwd_bwd_s": fb, "iteration_s": it,
                   "iteration_s_at_paper_batch": it * scale, "extrapolated": scale != 1.0,
                   "iteration_over_fwd_bwd": it / fb}
            records.append(rec)
            rows.append([task, cell, hidden, fvp, f"{rate / 1e6:.2f}", f"{fb:.3f}", f"{it:.2f}",
                         f"{it * scale:.1f}" + (f" (x{scale:g})" if scale != 1 else ""), f"{it / fb:.1f}"])
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu}")
    print(tabulate(rows, ["task", "cell", "GRU", "FVP share", "rollout Msteps/s", "GRU fwd+bwd s",
                          f"TRPO iter s @{steps}", "s/iter @250k", "iter / fwd+bwd"], tablefmt="simple"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                    "machine": platform.machine(), "results": records}, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
