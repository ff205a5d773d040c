"""Can the RL^2 network represent a classical agent's strategy? Behaviour cloning as a diagnostic.

    OMP_NUM_THREADS=1 python experiments/rl2_imitation.py --task mdp --cell n10 --teacher beb [--hidden 256]

Plays the teacher (any registered algorithm, with the setting chosen in a committed leaderboard run)
on training-stream instances (never the evaluation stream; root seed ``--seed`` to clone, ``--seed`` +
100 to compare), trains the RL^2 policy network (``algorithms/rl2/policy.py``: same
inputs, same GRU) by cross-entropy on the teacher's actions, then plays the cloned policy on other
instances and compares its mean trial return with the teacher's (the RL-trained policy's is in the
leaderboard). If the
clone gets close to the teacher, the network and its inputs can hold that strategy and the gap of the
RL-trained policy is one of optimisation (the paper makes the same point for bandits with Gittins).
Results are printed and appended to experiments/results/rl2_imitation.jsonl. ``--save RUN_DIR`` also
writes the clone as a trainer run (iteration 0, the ``ppo`` preset's sizes), so that
``train --init-from RUN_DIR`` can ask whether RL keeps or improves a strategy it did not find itself;
such a run is a diagnostic, never a zoo policy (its meta.json names the clone it started from).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.policy import Policy, embed
from rl2bench.algorithms.rl2.rollout import collect, task_shape
from rl2bench.algorithms.rl2.trainer import Trainer
from rl2bench.protocol import prepare_agent
from rl2bench.registry import algorithms, get_family
from rl2bench.results import append_jsonl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "rl2_imitation.jsonl"


def teacher_setting(task: str, cell: str, teacher: str) -> dict:
    """The setting the committed leaderboard run chose for the teacher (its first grid entry otherwise)."""
    return prepare_agent(task, cell, teacher, run_dir=ROOT / "leaderboard" / "runs" / task).setting


def play_teacher(task: str, cell: str, teacher: str, setting: dict, n: int, seed: int) -> dict[str, np.ndarray]:
    """Time-major (steps, trials) observations, actions, rewards and episode-done flags of the teacher,
    and the instances it played."""
    family = get_family(task)
    parsed = family.parse_cell(cell)
    spec = family.spec(parsed)
    instances = family.sample_instances(parsed, seed, "train", n)
    env = family.make_env(parsed, instances, np.random.default_rng(seed + 1))
    agent = algorithms(task)[teacher](spec, n, np.random.default_rng(seed + 2), **setting)
    obs = env.reset()
    rows = {"obs": [], "actions": [], "rewards": [], "dones": []}
    while True:
        actions = np.asarray(agent.act(obs))
        step = env.step(actions)
        agent.observe(actions, step.reward, step.obs, step.episode_done)
        for key, value in (("obs", obs), ("actions", actions), ("rewards", step.reward), ("dones", step.episode_done)):
            rows[key].append(np.asarray(value))
        obs = step.obs
        if step.trial_done.all():
            break
    return {k: np.stack(v) for k, v in rows.items()}


def inputs(play: dict[str, np.ndarray], n_states: int, n_actions: int) -> torch.Tensor:
    def shifted(x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(x)
        return torch.cat([torch.zeros_like(t[:1]), t[:-1]], 0)

    return embed(torch.as_tensor(play["obs"]), shifted(play["actions"]).long(), shifted(play["rewards"]).float(),
                 shifted(play["dones"].astype(np.float32)), n_states, n_actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mdp")
    parser.add_argument("--cell", default="n10")
    parser.add_argument("--teacher", default="beb")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--trials", type=int, default=20_000, help="teacher trials to clone")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--minibatch", type=int, default=250, help="trials per Adam step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-trials", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None, metavar="RUN_DIR",
                        help="also write the clone as a trainer run, for train --init-from")
    args = parser.parse_args()

    start = time.perf_counter()
    shape = task_shape(args.task, args.cell)
    setting = teacher_setting(args.task, shape.cell, args.teacher)
    play = play_teacher(args.task, shape.cell, args.teacher, setting, args.trials, args.seed)
    teacher_return = float(play["rewards"].sum(0).mean())
    x = inputs(play, shape.n_states, shape.n_actions)
    y = torch.as_tensor(play["actions"]).long()
    gen = torch.Generator().manual_seed(args.seed)
    policy = Policy(shape.n_states, shape.n_actions, args.hidden, gen)
    opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
    n = x.shape[1]
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=gen)
        losses = []
        for idx in order.split(args.minibatch):
            logits = policy(x[:, idx])[0]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, shape.n_actions), y[:, idx].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}: cross-entropy {np.mean(losses):.4f}", flush=True)

    # The clone and the teacher on the same fresh instances (the trainer's torch environment).
    family = get_family(args.task)
    eval_inst = family.sample_instances(family.parse_cell(shape.cell), args.seed + 100, "train", args.eval_trials)
    clone = float(collect(policy, shape, eval_inst, torch.Generator().manual_seed(1),
                          torch.Generator().manual_seed(2)).trial_returns().mean())
    teacher_eval = float(play_teacher(args.task, shape.cell, args.teacher, setting, args.eval_trials,
                                      args.seed + 100)["rewards"].sum(0).mean())
    row = {"task": args.task, "cell": shape.cell, "teacher": args.teacher, "setting": setting,
           "hidden": args.hidden, "trials": args.trials, "epochs": args.epochs,
           "final_cross_entropy": round(float(np.mean(losses)), 4),
           "teacher_return_train": round(teacher_return, 2), "teacher_return_eval": round(teacher_eval, 2),
           "clone_return_eval": round(clone, 2), "eval_trials": args.eval_trials,
           "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}
    print(json.dumps(row))
    if args.save:
        config = dataclasses.replace(preset_config("ppo", shape), hidden=args.hidden)
        run = Trainer(args.task, shape.cell, "ppo", args.seed, args.save, config,
                      command=f"experiments/rl2_imitation.py: behaviour clone of {args.teacher} {setting}")
        run.policy.load_state_dict(policy.state_dict())
        run.save(finished=False)
        row["saved"] = str(args.save)
    append_jsonl(RESULTS, row)


if __name__ == "__main__":
    main()
