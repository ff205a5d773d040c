"""The ``rl2`` algorithm: a trained RL^2 policy from the zoo, played under the common protocol.

The policy for a cell lives in ``leaderboard/zoo/<task>/<cell>/policy.pt`` (``$RL2BENCH_ZOO`` overrides
the zoo folder), with the training command, preset, seed, wall time and learning curve beside it. The
agent keeps one GRU hidden state per instance, zeroed when the trial starts and carried across its
episodes, and samples actions from the policy with its own seeded generator. torch is imported only
when an rl2 agent is actually used, so listing algorithms stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rl2bench.agent import Agent
from rl2bench.errors import UserError
from rl2bench.registry import register_algorithm
from rl2bench.tasks.maze.env import MazeCell

from .zoo import POLICY_FILE, policy_path, policy_provenance, policy_version, train_hint, zoo_dir


def _checked_version(path: Path, version: str | None) -> str:
    """The file's current version, which must be the one the run chose (if it chose one)."""
    current = policy_version(path)
    if version is not None and current != version:
        raise UserError(f"{path} changed while this run was using it (a training run writing into the zoo?); "
                        f"run again once it is final, with --resume to keep the finished results")
    return current


@lru_cache(maxsize=16)
def load_policy(path: str, version: str = "") -> tuple[Any, dict[str, Any]]:
    """The policy network of a zoo file (cached per process and file version) and the file's metadata."""
    from .fused_gru import UNRECORDED_ACTIVATION
    from .policy import Policy
    from .posterior_net import PosteriorPolicy

    def build(data: dict[str, Any]) -> Any:
        if data.get("network") == "posterior":  # the diagnostic network (posterior_net.py)
            return PosteriorPolicy(data["n_states"], data["n_actions"], data["hidden"], data["horizon"],
                                   data["n_episodes"])
        return Policy(data["n_states"], data["n_actions"], data["hidden"],
                      activation=data.get("activation", UNRECORDED_ACTIVATION))

    return _load_network(path, build)


def _load_network(path: str, build: Callable[[dict[str, Any]], Any]) -> tuple[Any, dict[str, Any]]:
    """``build(metadata)`` makes the network; the file's weights go into it, in eval mode. The file is
    checked first (its recorded sha256, its CRCs, its kind: ``runfolder.load_policy_file``); a damaged file
    or one holding another network is one line naming it."""
    from rl2bench.results import DamagedRun

    from .runfolder import load_policy_file

    data = load_policy_file(path)
    try:
        net = build(data)
        net.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DamagedRun(f"{path} holds a policy this agent cannot play ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None
    net.eval()
    return net, {k: v for k, v in data.items() if k != "state_dict"}


class _RecurrentPolicyAgent(Agent):
    """What both rl2 agents share: one torch thread, a seeded sampling generator,
    and the previous (action, reward, done) each policy step takes as input. Subclasses load ``self.net``
    and set ``self.h`` and ``self.prev_action`` (each network has its own "no action yet" code)."""

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng)
        import torch

        # One torch thread, always: a job's numbers must not depend on the worker it lands in (loky gives
        # each worker cpu_count // jobs threads, --jobs 1 and Dask give others), and the parallelism is the
        # jobs'. Spinning OpenMP threads also collapse throughput on a shared machine.
        torch.set_num_threads(1)
        from .rollout import sample_actions

        self._torch, self._sample = torch, sample_actions
        self.gen = torch.Generator()
        self.gen.manual_seed(int(rng.integers(2**63 - 1)))
        self.prev_reward = torch.zeros(batch_size)
        self.prev_done = torch.zeros(batch_size)

    @classmethod
    def provenance(cls, setting):
        return policy_provenance(setting)

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        torch = self._torch
        self.prev_action = torch.as_tensor(np.asarray(actions), dtype=torch.long)
        self.prev_reward = torch.as_tensor(np.asarray(rewards), dtype=torch.float32)
        self.prev_done = torch.as_tensor(np.asarray(episode_done), dtype=torch.float32)


@register_algorithm
class RL2(_RecurrentPolicyAgent):
    """RL^2: a GRU policy trained by TRPO across trials (loads leaderboard/zoo/<task>/<cell>/policy.pt)."""

    name = "rl2"
    families: ClassVar[tuple[str, ...]] = ("mab", "mdp")
    cost = 30.0

    @classmethod
    def grid(cls, cell, spec):
        """The zoo entry (agents are built from the spec alone, which lacks the cell) and the version of
        its file, played two ways: sampling, as trained, or taking the most probable action. Like every
        algorithm's hyperparameters, the protocol picks one per cell on the tuning instances."""
        path = policy_path(cls.zoo_folder(spec), cell.name)
        version = {"version": policy_version(path)} if path.exists() else {}
        setting = {"policy": f"{cls.zoo_folder(spec)}/{cell.name}", **version}
        return [setting, {**setting, "play": "argmax"}]

    @classmethod
    def zoo_folder(cls, spec) -> str:
        """Where this algorithm's policies live in the zoo: ``<zoo>/<folder>/<cell>/policy.pt``."""
        return str(spec.family)

    @classmethod
    def train_hint(cls, spec, cell: str) -> str:
        return train_hint(spec.family, cell)

    @classmethod
    def unavailable(cls, cell, spec) -> str | None:
        path = policy_path(cls.zoo_folder(spec), cell.name)
        if not path.exists():
            return (f"{cls.name} has no trained policy for {spec.family} {cell.name} ({path} is missing); "
                    f"train one with: {cls.train_hint(spec, cell.name)}")
        _, meta = load_policy(str(path), policy_version(path))
        if (meta["n_states"], meta["n_actions"]) != (spec.n_states, spec.n_actions):
            return (f"{path} was trained for {meta['n_states']} states x {meta['n_actions']} actions, not "
                    f"{spec.n_states} x {spec.n_actions}; retrain with: {cls.train_hint(spec, cell.name)}")
        return None

    PLAY = ("sample", "argmax")

    def __init__(self, spec, batch_size, rng, *, policy: str, version: str | None = None, play: str = "sample"):
        """``play="argmax"``: take the most probable action instead of sampling as in training; the
        protocol tunes this per cell like any setting (``grid``)."""
        super().__init__(spec, batch_size, rng)
        from .policy import cached_weights, embed

        if play not in self.PLAY:
            raise UserError(f"rl2: play={play!r} is not one of {', '.join(self.PLAY)}")
        self.play = play

        path = zoo_dir() / policy / POLICY_FILE
        self.net, _ = load_policy(str(path), _checked_version(path, version))
        self._embed, self._cached = embed, cached_weights
        self.h = self.net.initial_state(batch_size)  # zero at the trial's start, then carried
        self.prev_action = self._torch.zeros(batch_size, dtype=self._torch.long)

    def act(self, obs: np.ndarray) -> np.ndarray:
        torch = self._torch
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.long)
        x = self._embed(obs_t, self.prev_action, self.prev_reward, self.prev_done, self.spec.n_states,
                        self.spec.n_actions)
        with torch.no_grad(), self._cached():
            logits, self.h = self.net.step(x, self.h)
        if self.play == "argmax":
            return logits.argmax(-1).numpy()
        return self._sample(logits, self.gen).numpy()


@register_algorithm
class RL2Belief(RL2):
    """RL^2 trained with the hidden MDP in view (``belief.py``): an auxiliary head that predicts the current
    state's rewards and transitions from the GRU's memory, and a critic that sees them. It acts as ``rl2``
    does, on its own history only; its policies live in ``<zoo>/mdp-belief/<cell>/`` (``zoo --promote`` puts
    a run trained with ``critic_mdp`` or ``aux_coef`` there, never in ``rl2``'s folder)."""

    name = "rl2-belief"
    families = ("mdp",)

    @classmethod
    def zoo_folder(cls, spec) -> str:
        return f"{spec.family}-belief"

    @classmethod
    def train_hint(cls, spec, cell: str) -> str:
        run = f"runs/rl2/{spec.family}-{cell}-belief"
        return (f"python -m rl2bench train --task {spec.family} --cell {cell} --preset ppo-sgd --set critic_mdp=true "
                f"--set aux_coef=0.1 --init-from <an rl2 run of {cell}> --out {run}, then "
                f"python -m rl2bench zoo --promote {run}")


@lru_cache(maxsize=4)
def load_maze_policy(path: str, version: str = "") -> tuple[Any, dict[str, Any]]:
    """The maze network of a zoo file written by ``maze_trainer`` (cached per process) and its metadata."""
    from .conv_policy import ConvPolicy
    from .fused_gru import UNRECORDED_ACTIVATION

    return _load_network(path, lambda data: ConvPolicy(data["n_actions"], data["hidden"], tuple(data["obs_shape"]),
                                                       activation=data.get("activation", UNRECORDED_ACTIVATION),
                                                       aux_outputs=data.get("aux_outputs", 0)))


PAPER_MAZE_TRAINING_CELL = MazeCell(size=5, episodes=2)  # Section 3.3: 5x5 mazes, 2 episodes of up to 250 steps


@register_algorithm
class RL2Maze(_RecurrentPolicyAgent):
    """RL^2 on the mazes: the conv + GRU policy of leaderboard/zoo/maze/<cell>/policy.pt, played from pixels.

    The policy is looked up under the evaluated cell's name, then under the 2-episode cell of the same
    maze size, then under ``small-e2`` (with the cell's action scheme: ``small-e2-turn90`` for a
    ``-turn90`` cell, ``small-e2-turn90-move`` for a ``-turn90-move`` one): the paper trains one policy
    on small mazes with 2 episodes and evaluates it on up to 5 episodes of small and of large mazes
    (Section 3.3, extrapolation), so the large columns use the small-maze policy unless a large-maze one
    is in the zoo. A policy never plays another action scheme
    than the one it was trained with."""

    name = "rl2"
    families = ("maze",)
    cost = 30.0

    @classmethod
    def _policy_name(cls, cell) -> str | None:
        for name in cls._candidates(cell):
            if policy_path("maze", name).exists():
                return f"maze/{name}"
        return None

    @staticmethod
    def _candidates(cell) -> tuple[str, str, str]:
        paper_cell = PAPER_MAZE_TRAINING_CELL
        paper = dataclasses.replace(cell, size=paper_cell.size, episodes=paper_cell.episodes, horizon=0)
        return cell.name, dataclasses.replace(cell, episodes=2).name, paper.name

    @classmethod
    def grid(cls, cell, spec):
        name = cls._policy_name(cell)
        if name is None:
            return [{"policy": f"maze/{cell.name}"}]
        return [{"policy": name, "version": policy_version(zoo_dir() / name / POLICY_FILE)}]

    @classmethod
    def unavailable(cls, cell, spec) -> str | None:
        if cls._policy_name(cell) is None:
            _, two, paper = cls._candidates(cell)
            return (f"rl2 has no trained maze policy for {cell.name} (nor {two}, nor {paper}) "
                    f"in {zoo_dir()}; "
                    f"train one with: {train_hint('maze', two, 'maze-fast')}")
        return None

    def __init__(self, spec, batch_size, rng, *, policy: str, version: str | None = None):
        super().__init__(spec, batch_size, rng)
        path = zoo_dir() / policy / POLICY_FILE
        self._load(str(path), _checked_version(path, version))

    def _load(self, path: str, version: str) -> None:
        """The network of a maze policy file, and a fresh trial's memory for every instance."""
        self.net, _ = load_maze_policy(path, version)
        self.h = self.net.initial_state(self.batch_size)  # zero at the trial's start, then carried
        self.prev_action = self._torch.full((self.batch_size,), self.net.no_action, dtype=self._torch.long)

    def _logits(self, obs: np.ndarray):
        """One step of the network on this step's frames: the action logits; the memory moves on."""
        torch = self._torch
        with torch.no_grad():
            logits, _, self.h = self.net.step(torch.as_tensor(np.asarray(obs), dtype=torch.float32),
                                              self.prev_action, self.prev_reward, self.prev_done, self.h)
        return logits

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._sample(self._logits(obs), self.gen).numpy()
