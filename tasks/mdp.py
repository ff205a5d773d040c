"""Random tabular MDPs (paper Section 3.2, Appendix A.2): the family ``mdp``.

An instance has mean rewards R(s, a) ~ N(1, 1) and transition rows P(s, a, .) ~ Dirichlet(1, ..., 1);
an observed reward is R(s, a) + N(0, 1) noise. Every episode starts in state 0 and lasts exactly
``t`` steps; a trial is ``n`` episodes. Paper cells: S = 10 states, A = 5 actions, horizon 10 and
n in {10, 25, 50, 75, 100} episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rl2bench.registry import register_family

from .base import Cell, CellOutOfRange, EnvSpec, StepResult, TaskFamily, VecEnv


@dataclass(frozen=True)
class MDPCell(Cell):
    n: int  # episodes per trial
    s: int = 10  # states
    a: int = 5  # actions
    t: int = 10  # steps per episode
    _prefixes: ClassVar[dict[str, str]] = {"n": "n", "s": "s", "a": "a", "t": "t"}

    def validate(self) -> None:
        super().validate()
        if self.a < 2:
            raise CellOutOfRange(f"a{self.a}: an MDP needs at least 2 actions to choose between")


class MDPEnv(VecEnv):
    """A batch of tabular MDPs stepping together; the observation is the state index.

    Noise is drawn as one uniform (next state, by inverse CDF) and one standard normal (reward noise)
    per instance and step, whatever the actions: agents run on the same seed see the same noise stream
    (common random numbers). At the last step of an episode ``episode_done`` is True and the returned
    observation is already the next episode's start state 0.
    """

    def __init__(self, spec: EnvSpec, reward_means: np.ndarray, transitions: np.ndarray,
                 rng: np.random.Generator):
        self.spec = spec
        self.reward_means = np.asarray(reward_means, dtype=np.float64)  # (B, S, A)
        self.transitions = np.asarray(transitions, dtype=np.float64)  # (B, S, A, S)
        self.batch_size, n_s, n_a = self.reward_means.shape
        # Tables are read at flat (b, s, a) indices; the inverse CDF, without its last column and next
        # state first, gives next state = number of cumulative masses <= u as a sum over the first axis.
        self._flat_rewards = self.reward_means.reshape(-1)
        cdf = np.cumsum(self.transitions, axis=-1)[..., :-1]
        self._cdf_t = np.ascontiguousarray(np.moveaxis(cdf, -1, 0)).reshape(n_s - 1, -1)
        self._row_offset = np.arange(self.batch_size) * (n_s * n_a)
        self._rng = rng
        self._state = np.zeros(self.batch_size, dtype=np.int64)
        self._h = 0
        self._episode = 0

    def privileged_info(self) -> dict[str, np.ndarray]:
        """The hidden MDPs, for the oracle reference only (see Agent.privileged)."""
        return {"reward_means": self.reward_means, "transitions": self.transitions}

    def reset(self) -> np.ndarray:
        self._h = 0
        self._episode = 0
        self._state = np.zeros(self.batch_size, dtype=np.int64)
        return self._state

    def step(self, actions: np.ndarray) -> StepResult:
        if self._episode >= self.spec.n_episodes:
            raise RuntimeError("trial is over; call reset()")
        u = self._rng.random(self.batch_size)
        noise = self._rng.standard_normal(self.batch_size)
        sa = self._row_offset + self._state * self.spec.n_actions + np.asarray(actions)
        reward = self._flat_rewards[sa] + noise
        next_state = (self._cdf_t[:, sa] <= u).sum(axis=0)
        self._h += 1
        episode_over = self._h >= self.spec.horizon
        if episode_over:
            self._h = 0
            self._episode += 1
            next_state = np.zeros(self.batch_size, dtype=np.int64)
        self._state = next_state
        done = np.full(self.batch_size, episode_over)
        trial_done = np.full(self.batch_size, self._episode >= self.spec.n_episodes)
        return StepResult(next_state, reward, done, trial_done)


@register_family
class MDPFamily(TaskFamily[MDPCell]):
    name = "mdp"
    cell_type = MDPCell
    default_cells = ("n10", "n25", "n50", "n75", "n100")
    cell_help = "n<episodes>[-s<states>][-a<actions>][-t<horizon>] (defaults s10, a5, t10), e.g. n20-s5-a3-t5"
    normalize_by = ("random", "opsrl")
    column_order = ("random", "psrl", "opsrl", "ucrl2", "beb", "eps-greedy", "greedy", "rl2")
    # Tuning instances per setting (evaluation keeps 1000): stable choices shown by
    # benchmarks/mdp_tune_stability.py, recorded in leaderboard/NOTES.md.
    tune_instances: ClassVar[int] = 100

    def spec(self, cell: MDPCell) -> EnvSpec:
        return EnvSpec(family=self.name, n_states=cell.s, n_actions=cell.a, horizon=cell.t, n_episodes=cell.n)

    def sample(self, cell: MDPCell, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
        """Reward means N(1, 1); flat-Dirichlet rows as normalized Exp(1) draws (exact, vectorized)."""
        reward_means = rng.normal(1.0, 1.0, size=(count, cell.s, cell.a))
        gammas = rng.standard_exponential(size=(count, cell.s, cell.a, cell.s))
        transitions = gammas / gammas.sum(axis=-1, keepdims=True)
        return {"reward_means": reward_means, "transitions": transitions}

    def make_env(self, cell: MDPCell, instances: dict[str, np.ndarray], rng: np.random.Generator) -> MDPEnv:
        return MDPEnv(self.spec(cell), instances["reward_means"], instances["transitions"], rng)
