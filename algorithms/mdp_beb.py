"""Bayesian Exploration Bonus (BEB, Kolter & Ng 2009) as TabulaRL ran it for the paper.

Plan on the posterior-mean MDP (Dirichlet(1), reward prior N(0, 1)) with bonuses: reward bonus
1 / (tau_posterior + 1) and transition bonus beta H / (1 + sum alpha) with beta = 2 H^2 scaling, the
latter counted once per remaining step (times H - 1 - h at step h). ``scaling`` is tuned on
exp(linspace(ln 1e-4, 0, 21)), the paper's grid.
"""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .base import grid_product
from .mdp_common import TabularAgent, backward_induction_next_first

SCALINGS = [float(x) for x in np.exp(np.linspace(np.log(1e-4), 0.0, 21))]


@register_algorithm
class BEB(TabularAgent):
    """Posterior-mean MDP plus count-based reward and transition bonuses (scaling tuned)."""

    name = "beb"

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(scaling=SCALINGS)

    def __init__(self, spec, batch_size, rng, *, scaling: float = 1.0):
        super().__init__(spec, batch_size, rng)
        self.beta = 2.0 * spec.horizon**2 * float(scaling)

    def plan(self):
        reward, trans_t = self.map_mdp()
        _, precision = self.reward_posterior()
        reward_bonus = 1.0 / (precision + 1.0)
        trans_bonus = self.beta * self.spec.horizon / (1.0 + self.dirichlet_alpha_sum())
        reward = (reward + reward_bonus).astype(np.float32)
        return backward_induction_next_first(reward, trans_t, self.spec.horizon,
                                             step_bonus=trans_bonus.astype(np.float32))
