"""Pieces shared by the bandit baselines: Beta(1, 1) pseudo-counts and first-index tie-breaking.

The paper's baselines all start every arm at one success and one failure and break ties by the
first index (numpy argmax); both conventions move Table 1 (see shared notes / leaderboard/NOTES.md).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Agent


class BetaCountsAgent(Agent):
    """Keeps per-arm Beta pseudo-counts ``successes`` (a) and ``failures`` (b) over the batch."""

    families: ClassVar[tuple[str, ...]] = ("mab",)

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng)
        k = spec.n_actions
        self.successes = np.ones((batch_size, k))
        self.failures = np.ones((batch_size, k))
        self.t = 0  # pulls so far
        self._rows = np.arange(batch_size)

    @property
    def pulls(self) -> np.ndarray:
        return self.successes + self.failures

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        self.successes[self._rows, actions] += rewards
        self.failures[self._rows, actions] += 1.0 - rewards
        self.t += 1

    def random_actions(self) -> np.ndarray:
        return self.rng.integers(self.spec.n_actions, size=self.batch_size)
