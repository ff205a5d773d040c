"""Principled variants of the paper's bandit baselines, under their own names.

The paper's conventions (Beta(1,1) pseudo-counts everywhere, first-index ties, its own OTS) are kept as
the defaults because they reproduce Table 1. These are the textbook forms, for users who want them;
they are left out of ``--algos all`` and run by name. leaderboard/NOTES.md records what each convention
is worth.
"""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .bandit_common import BetaCountsAgent
from .base import grid_product
from .thompson import sample_beta


@register_algorithm
class TextbookUCB1(BetaCountsAgent):
    """Auer et al.'s UCB1: pull each arm once, then mean + sqrt(2 ln t / n_i) on real counts (c = 1)."""

    name = "ucb1-textbook"
    exclude_from_all = True

    def act(self, obs):
        real_pulls = self.pulls - 2.0  # the pseudo-counts are not used
        safe = np.maximum(real_pulls, 1.0)
        index = (self.successes - 1.0) / safe + np.sqrt(2.0 * np.log(max(self.t, 1)) / safe)
        index[real_pulls == 0] = np.inf  # every arm once first, in index order
        return np.argmax(index, axis=1)


@register_algorithm
class GreedyRandomTies(BetaCountsAgent):
    """Greedy on posterior means with ties broken uniformly at random (the paper: first index)."""

    name = "greedy-random-ties"
    exclude_from_all = True

    def act(self, obs):
        means = self.successes / self.pulls
        is_max = means >= means.max(axis=1, keepdims=True)
        return np.argmax(is_max * self.rng.random(means.shape), axis=1)


@register_algorithm
class MaxOfSamplesOTS(BetaCountsAgent):
    """Optimistic TS as in May et al. (2012)-style max-of-samples: each arm's index is the largest of
    ``samples`` posterior draws. (The paper's "OTS" column is a different rule; see ``ots``.)"""

    name = "ots-max"
    exclude_from_all = True
    cost = 40.0

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(samples=list(range(1, 21)))

    @classmethod
    def job_cost(cls, setting):
        return cls.cost * setting.get("samples", 20)

    def __init__(self, spec, batch_size, rng, *, samples: int = 5):
        super().__init__(spec, batch_size, rng)
        self.samples = int(samples)

    def act(self, obs):
        theta, _ = sample_beta(self.rng, self.successes, self.failures, self.samples)
        return np.argmax(theta.max(axis=0), axis=1)
