"""UCRL2 (Jaksch et al. 2010) as TabulaRL ran it for the paper: extended value iteration (EVI) over
L1 confidence sets around the empirical MDP, re-planned at the start of every episode.

Priors are switched off (alpha0 = 1e-5, tau0 = 1e-4, mu0 = 0). With n = max(count, 1), t the episode
number (from 1) and delta = 0.05, the reward slack is scaling sqrt(4 ln(2 S A (t + 1) / delta) / n) and
the transition L1 radius scaling sqrt(4 S ln(2 S A (t + 1) / delta) / n); ``scaling`` is tuned on the
paper's grid exp(linspace(ln 1e-4, 0, 21)).

EVI step: for next-state values V sorted ascending, the optimistic row moves d = min(radius / 2,
1 - p_best) of probability onto the best state and takes it from the lowest-value states first. With
C_j the estimated mass on the j + 1 lowest states, its expectation is
V_max - sum_{j < S-1} max(C_j - d, 0) (V_(j+1) - V_(j)) (summation by parts), which vectorizes over
instances, states and actions with one sort of V per backup.

TabulaRL edits the estimated transition rows in place during EVI, so each backup starts from the
previous backup's optimistic rows (the shift accumulates over the horizon; rows whose best state would
exceed probability 1 are left untouched). ``inplace=True`` (the ``ucrl2-tabularl`` entry) reproduces that
behaviour; the default is the textbook EVI.
"""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .base import grid_product
from .mdp_beb import SCALINGS
from .mdp_common import TabularAgent, max_over_actions

DELTA = 0.05


def extended_backward_induction(
    reward: np.ndarray, trans_t: np.ndarray, radius: np.ndarray, horizon: int, inplace: bool = False
) -> np.ndarray:
    """Optimistic Q tables (H, B, S, A) over L1 balls: reward (B, S, A) already optimistic, trans_t
    (B, S', S, A) the estimated rows next state first, radius (B, S, A) their L1 radii.

    In that layout walking up the sorted next states is a loop over S' of whole (B, S*A) slabs.
    """
    n_batch, n_states, n_actions = reward.shape
    p = trans_t.reshape(n_batch, n_states, n_states * n_actions).astype(np.float32, copy=inplace)
    half = (0.5 * radius).reshape(n_batch, -1).astype(np.float32)
    rows = np.arange(n_batch)[:, None]
    q = np.empty((horizon, n_batch, n_states, n_actions), dtype=np.float32)
    v = np.zeros((n_batch, n_states), dtype=np.float32)
    for h in reversed(range(horizon)):
        order = np.argsort(v, axis=1, kind="stable")  # ascending; ties by index, as numpy's argsort
        v_sorted = np.take_along_axis(v, order, axis=1)
        best = order[:, -1:]
        p_best = p[rows, best][:, 0]  # (B, S*A)
        moved = np.minimum(half, 1.0 - p_best)  # probability moved onto the best state
        expected = np.repeat(v_sorted[:, -1:], n_states * n_actions, axis=1)
        below = np.zeros_like(p_best)  # estimated mass on the lowest states so far
        kept_prev = np.zeros_like(p_best)
        new_rows = []
        for j in range(n_states - 1):
            p_j = p[rows, order[:, j : j + 1]][:, 0]
            below += p_j
            kept = np.maximum(below - moved, 0.0)  # mass left on the j + 1 lowest states
            expected -= kept * (v_sorted[:, j + 1 : j + 2] - v_sorted[:, j : j + 1])
            if inplace:
                new_rows.append(kept - kept_prev)
                kept_prev = kept
        q[h] = reward + expected.reshape(n_batch, n_states, n_actions)
        v = max_over_actions(q[h])
        if inplace:
            # TabulaRL edits its estimate unless the best state would pass 1 (then it builds a fresh row).
            edit = half <= 1.0 - p_best
            new_rows.append(p_best + moved)
            for j, row in enumerate(new_rows):
                target = order[:, j : j + 1]
                p[rows, target] = np.where(edit, row, p[rows, target][:, 0])[:, None]
    return q


@register_algorithm
class UCRL2(TabularAgent):
    """Optimism in the face of uncertainty: EVI over L1 confidence sets (scaling tuned)."""

    name = "ucrl2"
    alpha0 = 1e-5
    tau0 = 1e-4
    cost = 8.0
    inplace = False

    @classmethod
    def grid(cls, cell, spec):
        return grid_product(scaling=SCALINGS)

    def __init__(self, spec, batch_size, rng, *, scaling: float = 1.0):
        super().__init__(spec, batch_size, rng)
        self.scaling = float(scaling)

    def plan(self):
        reward, trans_t = self.map_mdp()
        n_s, n_a = self.spec.n_states, self.spec.n_actions
        log_term = np.log(2.0 * n_s * n_a * (self.episode + 1) / DELTA)
        n_reward = np.maximum(self.visits, 1.0)
        n_trans = np.maximum(self.trans_totals, 1.0)
        reward_slack = self.scaling * np.sqrt(4.0 * log_term / n_reward)
        radius = self.scaling * np.sqrt(4.0 * n_s * log_term / n_trans)
        return extended_backward_induction((reward + reward_slack).astype(np.float32), trans_t, radius,
                                           self.spec.horizon, inplace=self.inplace)


@register_algorithm
class UCRL2TabulaRL(UCRL2):
    """UCRL2 with TabulaRL's in-place EVI edits (the code behind the paper's column); see module doc."""

    name = "ucrl2-tabularl"
    exclude_from_all = True
    inplace = True
