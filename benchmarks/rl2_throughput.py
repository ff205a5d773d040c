"""RL^2 training throughput: rollout steps/s, seconds per TRPO iteration, and a plain GRU forward/backward
of the same size as the machine's practical limit.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/rl2_throughput.py [--paper-batch] [--device cuda]

By default iterations are timed at 25,000 steps and the paper's 250,000-step batch is extrapolated
linearly (the update is linear in the batch); ``--paper-batch`` times it directly (about a minute per
iteration at GRU 256 on 2 cores). Results are printed and written to benchmarks/results/rl2_throughput.json.
Timings on a shared machine are inflated by the other load: rerun on an idle machine for clean numbers.
``--activation`` picks the GRU's candidate activation (default relu, the ``paper`` preset's since 2026-11-27;
records without the field timed tanh, nn.GRU's).
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

from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.devices import resolve_device
from rl2bench.algorithms.rl2.policy import Policy, input_size
from rl2bench.algorithms.rl2.rollout import collect, sample_instances, task_shape
from rl2bench.algorithms.rl2.trainer import Trainer

PAPER_BATCH = 250_000


DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":  # GPU work is asynchronous: time it to completion
        torch.cuda.synchronize(DEVICE)


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return min(times)


def rollout_rate(task: str, cell: str, hidden: int, steps: int, activation: str = "relu") -> float:
    shape = task_shape(task, cell)
    policy = Policy(shape.n_states, shape.n_actions, hidden, torch.Generator().manual_seed(0), activation).to(DEVICE)
    inst = sample_instances(shape, np.random.default_rng(0), max(1, steps // shape.trial_len))
    n = max(1, steps // shape.trial_len) * shape.trial_len
    secs = _best_of(lambda: collect(policy, shape, inst, torch.Generator().manual_seed(1),
                                    torch.Generator().manual_seed(2)), 2)
    return n / secs


def gru_fwd_bwd(task: str, cell: str, hidden: int, steps: int) -> float:
    """Seconds for one forward + backward of a plain nn.GRU (no weight norm) over the whole batch."""
    shape = task_shape(task, cell)
    gru = torch.nn.GRU(input_size(shape.n_states, shape.n_actions), hidden).to(DEVICE)
    x = torch.randn(shape.trial_len, max(1, steps // shape.trial_len), gru.input_size, device=DEVICE)

    def once():
        with torch.backends.cudnn.flags(enabled=True):  # the fastest GRU there is (the trainer can't use cuDNN)
            out, _ = gru(x)
            out.sum().backward()

    return _best_of(once, 2)


def iteration_seconds(task: str, cell: str, hidden: int, steps: int, fvp_fraction: float,
                      update: str = "trpo", activation: str = "relu") -> float:
    shape = task_shape(task, cell)
    cfg = dataclasses.replace(preset_config("paper", shape), hidden=hidden, batch_steps=steps,
                              fvp_fraction=fvp_fraction, update=update, gru_activation=activation)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, cell, "paper", 0, Path(tmp), cfg, device=DEVICE)
        trainer.iterate()  # warm-up
        return _best_of(trainer.iterate, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-batch", action="store_true", help="time 250,000-step iterations directly")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--update", default="trpo", choices=("trpo", "ppo"), help="the policy step timed")
    parser.add_argument("--activation", default="relu", choices=("relu", "tanh"), help="the GRU's candidate activation")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/rl2_throughput[-<device>][-<update>].json")
    args = parser.parse_args()
    global DEVICE
    DEVICE = resolve_device(args.device)
    if args.out is None:
        tag = "".join(f"-{t}" for t in (DEVICE.type if DEVICE.type != "cpu" else "", args.update
                                         if args.update != "trpo" else "") if t)
        args.out = Path(__file__).parent / "results" / f"rl2_throughput{tag}.json"
    steps = PAPER_BATCH if args.paper_batch else 25_000
    scale = PAPER_BATCH / steps
    rows, records = [], []
    for task, cell in (("mab", "n10-k5"), ("mab", "n100-k10"), ("mdp", "n10")):
        for hidden, fvp in ((64, 0.2), (256, 1.0)):
            rate = rollout_rate(task, cell, hidden, steps, args.activation)
            fb = gru_fwd_bwd(task, cell, hidden, steps)
            it = iteration_seconds(task, cell, hidden, steps, fvp, args.update, args.activation)
            rec = {"task": task, "cell": cell, "hidden": hidden, "fvp_fraction": fvp, "timed_batch": steps,
                   "update": args.update, "activation": args.activation,
                   "rollout_steps_per_s": rate, "gru_fwd_bwd_s": fb, "iteration_s": it,
                   "iteration_s_at_paper_batch": it * scale, "extrapolated": scale != 1.0,
                   "iteration_over_fwd_bwd": it / fb}
            records.append(rec)
            rows.append([task, cell, hidden, fvp, f"{rate / 1e6:.2f}", f"{fb:.3f}", f"{it:.2f}",
                         f"{it * scale:.1f}" + (f" (x{scale:g})" if scale != 1 else ""), f"{it / fb:.1f}"])
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu}, device {device}")
    print(tabulate(rows, ["task", "cell", "GRU", "FVP share", "rollout Msteps/s", "GRU fwd+bwd s",
                          f"{args.update.upper()} iter s @{steps}", "s/iter @250k", "iter / fwd+bwd"],
                   tablefmt="simple"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                    "machine": platform.machine(), "device": device, "results": records},
                                   indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
