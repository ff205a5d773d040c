"""Bernoulli multi-armed bandits (paper Section 3.1): arm means p_i ~ U[0, 1], a trial is n pulls.

A bandit is the degenerate tabular MDP: one state (observation 0), episodes of length 1, n episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rl2bench.registry import register_family

from .base import Cell, CellOutOfRange, EnvSpec, StepResult, TaskFamily, VecEnv


@dataclass(frozen=True)
class BanditCell(Cell):
    n: int  # pulls per trial
    k: int  # arms
    _prefixes: ClassVar[dict[str, str]] = {"n": "n", "k": "k"}

    def validate(self) -> None:
        super().validate()
        if self.k < 2:
            raise CellOutOfRange(f"k{self.k}: a bandit needs at least 2 arms")


class BanditEnv(VecEnv):
    """Every instance pulls one arm per step; reward = [u_t < p_arm] with one shared uniform per
    (instance, step), so algorithms run on the same seed see common random numbers."""

    def __init__(self, spec: EnvSpec, arm_means: np.ndarray, rng: np.random.Generator):
        self.spec = spec
        self.arm_means = np.asarray(arm_means, dtype=np.float64)
        self.batch_size = self.arm_means.shape[0]
        self._rng = rng
        self._t = 0
        self._rows = np.arange(self.batch_size)
        self._obs = np.zeros(self.batch_size, dtype=np.int64)

    def reset(self) -> np.ndarray:
        self._t = 0
        return self._obs

    def step(self, actions: np.ndarray) -> StepResult:
        if self._t >= self.spec.n_episodes:
            raise RuntimeError("trial is over; call reset()")
        u = self._rng.random(self.batch_size)
        reward = (u < self.arm_means[self._rows, actions]).astype(np.float64)
        self._t += 1
        done = np.ones(self.batch_size, dtype=bool)
        trial_done = np.full(self.batch_size, self._t >= self.spec.n_episodes)
        return StepResult(self._obs, reward, done, trial_done)


@register_family
class BanditFamily(TaskFamily[BanditCell]):
    name = "mab"
    cell_type = BanditCell
    default_cells = (
        "n10-k5", "n10-k10", "n10-k50",
        "n100-k5", "n100-k10", "n100-k50",
        "n500-k5", "n500-k10", "n500-k50",
    )
    cell_help = "n<pulls>-k<arms>, e.g. n100-k10"
    normalize_by = ("random", "gittins")
    column_order = ("random", "gittins", "ts", "ots", "ucb1", "eps-greedy", "greedy", "rl2")

    def spec(self, cell: BanditCell) -> EnvSpec:
        return EnvSpec(family=self.name, n_states=1, n_actions=cell.k, horizon=1, n_episodes=cell.n)

    def sample(self, cell: BanditCell, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
        return {"arm_means": rng.random((count, cell.k))}

    def make_env(self, cell: BanditCell, instances: dict[str, np.ndarray], rng: np.random.Generator) -> BanditEnv:
        return BanditEnv(self.spec(cell), instances["arm_means"], rng)
