"""From a trained model to a leaderboard row: sb3-contrib's RecurrentPPO (an LSTM policy) trained on the gym
environment ``rl2bench/mab-n10-k5`` for a few minutes on the CPU, then evaluated under the protocol on the
same 1000 evaluation instances as ``gittins`` and ``rl2``:

    pip install -e ".[gym,sb3]"
    OMP_NUM_THREADS=1 python examples/sb3_recurrent_ppo.py --minutes 5 --work runs/sb3-ppo

It trains on instances of the training stream only (``rl2bench.gym``), saves ``<work>/model.zip`` and runs

    python -m rl2bench run --task mab --cells n10-k5 \\
        --algos 'gittins,rl2,sb3_recurrent_ppo:RecurrentPPOBandit(model="<work>/model.zip")' --out <work>/run

with this folder on PYTHONPATH: the agent below plays sealed, in a process of its own that loads the zip.
The result of a 5-minute run is in docs/gym.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rl2bench.algorithms.external import RecurrentPPOAgent

HERE = Path(__file__).resolve().parent
ENV_ID, TASK, CELL = "rl2bench/mab-n10-k5", "mab", "n10-k5"


class RecurrentPPOBandit(RecurrentPPOAgent):
    """A RecurrentPPO zip trained on rl2bench.gym, on the bandits (setting model=PATH)."""

    name = "recurrent-ppo"
    families = ("mab",)


def train(minutes: float, path: Path, seed: int, n_envs: int = 16) -> int:
    """RecurrentPPO on ``n_envs`` training environments until ``minutes`` have passed; returns its steps."""
    import gymnasium
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    import rl2bench.gym  # noqa: F401  (registers the ids)

    torch.set_num_threads(1)
    deadline = time.monotonic() + 60 * minutes

    class Deadline(BaseCallback):
        def _on_step(self) -> bool:
            return time.monotonic() < deadline

    # Environment i trains on the training stream of seed + i. (Built by a function: given the id, SB3 asks for a
    # render mode that these environments do not have.)
    envs = make_vec_env(lambda: gymnasium.make(ENV_ID), n_envs=n_envs, seed=seed)
    model = RecurrentPPO("MultiInputLstmPolicy", envs, n_steps=50, batch_size=400, n_epochs=4, learning_rate=1e-3,
                         gamma=1.0, gae_lambda=0.9, ent_coef=0.01, seed=seed, device="cpu",
                         policy_kwargs={"lstm_hidden_size": 64, "net_arch": [64]})
    model.learn(total_timesteps=10**9, callback=Deadline())
    model.save(path)
    return int(model.num_timesteps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time on the CPU (default 5)")
    parser.add_argument("--work", type=Path, default=Path("runs/sb3-recurrent-ppo"),
                        help="folder for model.zip and the run folder run/")
    parser.add_argument("--instances", type=int, default=1000, help="evaluation (and tuning) instances")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    model = (args.work / "model.zip").resolve()
    started = time.perf_counter()
    steps = train(args.minutes, model, args.seed)
    print(f"trained {steps:,} steps in {time.perf_counter() - started:.0f} s: {model}", flush=True)
    algos = f"gittins,rl2,sb3_recurrent_ppo:RecurrentPPOBandit(model={json.dumps(str(model))})"
    command = [sys.executable, "-m", "rl2bench", "run", "--task", TASK, "--cells", CELL, "--algos", algos,
               "--instances", str(args.instances), "--tune-instances", str(args.instances),
               "--out", str(args.work / "run"), "--no-progress"]
    print(" ".join(command), flush=True)
    path = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": path}).returncode


if __name__ == "__main__":
    sys.exit(main())
