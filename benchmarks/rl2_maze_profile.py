"""Where a maze training step's milliseconds go: the maze network's parts, forward and backward, per 1000
environment steps, on one torch thread, beside the engines' own rate (``maze_env.json``).

    OMP_NUM_THREADS=1 python benchmarks/rl2_maze_profile.py [--hidden 256 64] [--trials 16] [--steps 250]

For each GRU width: the two convolutions (forward; forward + backward), the fully connected layer, GRU and
heads on precomputed conv features (forward + backward), the whole network (forward + backward), and the
rollout's per-step forward for a batch of ``--trials`` games. A TRPO iteration runs the whole network 15-20
times per step (gradient, conjugate-gradient Fisher products, line search, value fit); an update that
runs it a few times, or that reads conv features computed once in the rollout, costs that much less.
Writes benchmarks/results/rl2_maze_profile.json. Timings depend on the machine's load: the record notes it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rl2bench.algorithms.rl2.conv_policy import ConvPolicy


def per_call(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def profile(hidden: int, trials: int, steps: int, n_actions: int = 4) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    net = ConvPolicy(n_actions, hidden, activation="relu", generator=gen)
    obs = torch.rand(steps, trials, 3, 30, 40, generator=gen) * 2 - 1
    actions = torch.randint(0, n_actions, (steps, trials), generator=gen)
    rewards, dones = torch.zeros(steps, trials), torch.zeros(steps, trials)
    frames = obs.reshape(-1, 3, 30, 40)

    def conv_backward() -> None:
        net.conv(frames).sum().backward()

    def trunk_on_features() -> None:  # fc, GRU and heads, the conv's output given
        with torch.no_grad():
            pixels = net.conv(frames).flatten(1).reshape(steps, trials, -1)
        a = net.action_embed(actions)
        x = torch.relu(net.fc(torch.cat([pixels, a, rewards.unsqueeze(-1), dones.unsqueeze(-1)], -1)))
        h0 = net.initial_state(trials)
        from rl2bench.algorithms.rl2.fused_gru import gru_sequence
        from rl2bench.algorithms.rl2.tensors import gru_tensors

        g = gru_tensors(net.gru)
        out, _ = gru_sequence(x, h0, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0, "relu")
        (net.pi(out).sum() + net.v(out).sum()).backward()

    def whole_backward() -> None:
        logits, values, _ = net(obs, actions, rewards, dones)
        (logits.sum() + values.sum()).backward()

    def rollout_steps() -> None:
        h = net.initial_state(trials)
        with torch.no_grad():
            for t in range(50):
                _, _, h = net.step(obs[t], actions[t], rewards[t], dones[t], h)

    with torch.no_grad():
        conv_forward = per_call(lambda: net.conv(frames))
    trunk_only = per_call(trunk_on_features) - conv_forward  # minus the no-grad conv inside it
    per_1000 = 1000.0 / (steps * trials)
    return {
        "hidden": hidden,
        "conv_forward_ms": round(1000 * conv_forward * per_1000, 1),
        "conv_forward_backward_ms": round(1000 * per_call(conv_backward) * per_1000, 1),
        "fc_gru_heads_forward_backward_ms": round(1000 * trunk_only * per_1000, 1),
        "whole_forward_backward_ms": round(1000 * per_call(whole_backward) * per_1000, 1),
        "rollout_forward_ms": round(1000 * per_call(rollout_steps) / (50 * trials) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [profile(h, args.trials, args.steps) for h in args.hidden]
    print("milliseconds per 1000 environment steps, one torch thread:")
    for row in rows:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    engines = Path(__file__).parent / "results" / "maze_env.json"
    record = {
        "rows": rows, "trials": args.trials, "steps": args.steps,
        "engine_rows": json.loads(engines.read_text())["rows"] if engines.exists() else [],
        "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(__file__).parent / "results" / "rl2_maze_profile.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
