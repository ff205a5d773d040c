"""Random, eps-Greedy and Greedy on tabular MDPs, as the paper's scripts ran them (TabulaRL's
EpsilonGreedy: plan on the near-empirical posterior-mean MDP once per episode, act randomly w.p. eps)."""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .base import Agent, grid_product
from .mdp_common import TabularAgent, backward_induction_next_first

EPSILONS = [round(0.1 * i, 1) for i in range(1, 11)]


@register_algorithm
class RandomMDP(Agent):
    """Uniformly random actions: the 0 of normalized scores (the paper ran eps-Greedy with eps = 1)."""

    name = "random"
    families = ("mdp",)
    cost = 0.1

    def act(self, obs):
        return self.rng.integers(self.spec.n_actions, size=self.batch_size)


@register_algorithm
class EpsGreedyMDP(TabularAgent):
    """Optimal policy of the posterior-mean MDP (near-empirical: alpha0 = tau0 = 1e-4, mu0 = 0, so untried
    actions look like reward 0) w.p. 1 - eps, a uniformly random action otherwise."""

    name = "eps-greedy"
    alpha0 = 1e-4
    tau0 = 1e-4

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(eps=EPSILONS)

    def __init__(self, spec, batch_size, rng, *, eps: float = 0.1):
        super().__init__(spec, batch_size, rng)
        self.eps = float(eps)

    def plan(self):
        reward, trans_t = self.map_mdp()
        return backward_induction_next_first(reward, trans_t, self.spec.horizon)

    def choose(self, q):
        greedy = super().choose(q)
        if self.eps <= 0:
            return greedy
        explore = self.rng.random(self.batch_size) < self.eps
        return np.where(explore, self.rng.integers(self.spec.n_actions, size=self.batch_size), greedy)


@register_algorithm
class GreedyMDP(EpsGreedyMDP):
    """eps-Greedy with eps = 0."""

    name = "greedy"

    @classmethod
    def grid(cls, cell, spec):
        return [{}]

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng, eps=0.0)
