"""PSRL and the paper's optimistic PSRL (OPSRL) on tabular MDPs.

PSRL draws one MDP from the posterior per episode (Dirichlet(1 + counts) transitions, Normal mean rewards
with prior N(0, 1) and known noise precision 1) and follows its optimal policy. OPSRL draws ``samples``
MDPs, solves each, and acts on the elementwise maximum of their Q_h tables (TabulaRL's OptimisticPSRL).

Sampling and planning dominate Table 2, so all samples of a block of instances are drawn at once, in
the next-state-first layout the batched planner wants, and solved in one backward induction.
"""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .base import grid_product
from .mdp_common import TabularAgent, backward_induction_next_first, sample_dirichlet

# Samples x instances x S x A x S per planning block: small enough to stay in cache.
BLOCK_ELEMENTS = 1 << 18


@register_algorithm
class PSRL(TabularAgent):
    """Posterior sampling: one posterior MDP per episode, act optimally for it."""

    name = "psrl"
    cost = 2.0
    samples = 1

    def plan(self):
        mean, precision = self.reward_posterior()
        std = (1.0 / np.sqrt(precision)).astype(np.float32)
        mean = mean.astype(np.float32)
        counts_t = self.next_counts  # (B, S', S, A)
        n_s, n_a, horizon, k = self.spec.n_states, self.spec.n_actions, self.spec.horizon, self.samples
        block = max(1, BLOCK_ELEMENTS // (k * n_s * n_a * n_s))
        q = np.empty((horizon, self.batch_size, n_s, n_a), dtype=np.float32)
        for start in range(0, self.batch_size, block):
            part = slice(start, start + block)
            noise = self.rng.standard_normal((k, *mean[part].shape), dtype=np.float32)
            reward = mean[part] + std[part] * noise
            trans_t = sample_dirichlet(self.rng, self.alpha0, counts_t[part], k, axis=-3)
            q[:, part] = backward_induction_next_first(reward, trans_t, horizon, envelope=True)
        return q


@register_algorithm
class OPSRL(PSRL):
    """Optimistic PSRL: Q_h = max over ``samples`` posterior MDPs' Q_h (the paper's OPSRL, nSamp 1..20)."""

    name = "opsrl"

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(samples=list(range(1, 21)))

    def __init__(self, spec, batch_size, rng, *, samples: int = 20):
        super().__init__(spec, batch_size, rng)
        self.samples = int(samples)
