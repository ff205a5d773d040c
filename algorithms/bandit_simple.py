"""Random, Greedy, eps-Greedy and UCB1 on Bernoulli bandits, as the paper defined them."""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .bandit_common import BetaCountsAgent
from .base import grid_product

TENTHS = [round(0.1 * i, 1) for i in range(11)]


@register_algorithm
class RandomBandit(BetaCountsAgent):
    """Pulls a uniformly random arm: the 0 of normalized scores."""

    name = "random"

    def act(self, obs):
        return self.random_actions()


@register_algorithm
class EpsGreedy(BetaCountsAgent):
    """Best posterior mean (Beta(1,1) pseudo-counts) with prob. 1 - eps, a random arm otherwise."""

    name = "eps-greedy"

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(eps=TENTHS)

    def __init__(self, spec, batch_size, rng, *, eps: float = 0.1):
        super().__init__(spec, batch_size, rng)
        self.eps = eps

    def act(self, obs):
        greedy = np.argmax(self.successes / self.pulls, axis=1)
        if self.eps <= 0:
            return greedy
        explore = self.rng.random(self.batch_size) < self.eps
        return np.where(explore, self.random_actions(), greedy)


@register_algorithm
class Greedy(EpsGreedy):
    """eps-Greedy with eps = 0."""

    name = "greedy"

    @classmethod
    def grid(cls, cell, spec):
        return [{}]

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng, eps=0.0)


@register_algorithm
class UCB1(BetaCountsAgent):
    """index = s/m + c sqrt(2 ln t / m) on pseudo-counts (s, m), t = pulls so far (from 0).

    At t = 0 every index is undefined and arm 0 is pulled, as in the paper's scripts. Textbook UCB1
    (c = 1, each arm once first) is much worse with many arms: that is why c is tuned.
    """

    name = "ucb1"

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(c=TENTHS)

    def __init__(self, spec, batch_size, rng, *, c: float = 0.2):
        super().__init__(spec, batch_size, rng)
        self.c = c

    def act(self, obs):
        if self.t == 0:
            return np.zeros(self.batch_size, dtype=np.int64)
        m = self.pulls
        index = self.successes / m + self.c * np.sqrt(2.0 * np.log(self.t) / m)
        return np.argmax(index, axis=1)
