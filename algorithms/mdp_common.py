"""Pieces shared by the tabular-MDP baselines, defined as TabulaRL (the paper's baselines) defined them.

- Posterior: a Dirichlet(alpha0 + counts) per (s, a) over next states and a Normal posterior on the mean
  reward with KNOWN noise precision tau = 1: precision tau0 + tau n, mean (mu0 tau0 + tau sum r) / that.
  The transition taken at the last step of an episode is not counted (TabulaRL's pContinue = 0).
- Planning: once at the start of every episode, finite-horizon backward induction gives time-indexed
  tables Q_h (h = 0..H-1), fixed for the episode; actions are argmax_a Q_h(s, a), ties uniformly at random.

Every array is batched over instances (and over posterior samples where an agent draws several).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Agent


def max_over_actions(q: np.ndarray) -> np.ndarray:
    """max over the last (small) axis as a chain of elementwise maxima: numpy's own reduction over a short
    last axis costs ~30x more per element, and this is the inner step of every planner."""
    v = q[..., 0].copy()
    for a in range(1, q.shape[-1]):
        np.maximum(v, q[..., a], out=v)
    return v


def backward_induction(
    reward: np.ndarray,
    trans: np.ndarray,
    horizon: int,
    step_bonus: np.ndarray | None = None,
    envelope: bool = False,
) -> np.ndarray:
    """Finite-horizon Q tables, batched over every leading axis.

    reward (..., S, A) and trans (..., S, A, S) (rows summing to 1) give
    Q_h = reward + step_bonus * (H - 1 - h) + trans @ V_{h+1}, V_H = 0, V_h = max_a Q_h. Returns
    (H, ..., S, A). With ``envelope`` the first batch axis indexes posterior samples: each sample is
    solved on its own and the returned Q_h is their elementwise maximum (OPSRL), shape (H, ..., S, A)
    without that axis.
    """
    return backward_induction_next_first(reward, np.moveaxis(trans, -1, -3), horizon, step_bonus, envelope)


def backward_induction_next_first(
    reward: np.ndarray,
    trans_t: np.ndarray,
    horizon: int,
    step_bonus: np.ndarray | None = None,
    envelope: bool = False,
) -> np.ndarray:
    """``backward_induction`` with transitions laid out next state first, trans_t (..., S', S, A).

    Each backup is V (1 x S') times P (S' x SA), summed next state by next state in a fixed order with
    separate multiplies and adds (``expected_next_value``): not a BLAS product, whose kernel (chosen per
    CPU by OpenBLAS) rounds float32 sums differently and so flips the exact ties the greedy planners break
    at random: the same seed must give the same numbers on every machine.
    """
    *batch, n_states, n_actions = reward.shape
    flat = np.ascontiguousarray(trans_t).reshape(*batch, n_states, n_states * n_actions)
    out_batch = batch[1:] if envelope else batch
    q = np.empty((horizon, *out_batch, n_states, n_actions), dtype=reward.dtype)
    v = None
    for h in reversed(range(horizon)):
        qh = reward if v is None else reward + expected_next_value(v, flat).reshape(reward.shape)
        if step_bonus is not None and h < horizon - 1:
            qh = qh + step_bonus * (horizon - 1 - h)
        q[h] = qh.max(axis=0) if envelope else qh
        v = max_over_actions(qh)
    return q


def expected_next_value(v: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """sum over s' of v[..., s'] * flat[..., s', :], accumulated s' = 0, 1, ... in order: elementwise IEEE
    operations only, so every CPU and SIMD width gives the same bits."""
    total = v[..., 0, None] * flat[..., 0, :]
    for s in range(1, flat.shape[-2]):
        total += v[..., s, None] * flat[..., s, :]
    return total


# Counts up to this are drawn as sums of exponentials, larger ones with numpy's Gamma sampler.
SMALL_COUNT = 8


def _negative_exponentials(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """-Exp(1) variates as log(1 - U), float32: cheaper than numpy's float32 exponential ziggurat."""
    g = rng.random(size, dtype=np.float32)
    np.subtract(1.0, g, out=g)
    return np.log(g, out=g)


def sample_dirichlet(
    rng: np.random.Generator, alpha0: float, counts: np.ndarray, samples: int, axis: int = -1
) -> np.ndarray:
    """``samples`` draws of Dirichlet(alpha0 + counts) over ``axis`` of counts, float32, shape
    (samples, *counts.shape). ``counts`` must hold whole numbers (observed transitions).

    Drawn exactly as normalized Gamma variates, using Gamma(a + b) = Gamma(a) + Gamma(b) for independent
    unit-scale draws: Gamma(alpha0) everywhere (Exp(1) when alpha0 = 1), plus Gamma(c) only where the count
    c is non-zero (a small part of the table), as a sum of c exponentials for small c. Numpy's Gamma
    sampler costs ~10 exponentials per draw, so this is several times cheaper than Gamma(alpha0 + c).
    The variates are kept negated (the normalization cancels the sign), which saves a pass.
    """
    size = (samples, *counts.shape)
    g = _negative_exponentials(rng, size) if alpha0 == 1.0 else -rng.standard_gamma(alpha0, size, np.float32)
    flat_g = g.reshape(samples, -1)
    flat_counts = counts.reshape(-1)
    nonzero = np.flatnonzero(flat_counts)
    c = flat_counts[nonzero]
    for value in range(1, SMALL_COUNT + 1):
        cells = nonzero[c == value]
        if cells.size:
            flat_g[:, cells] += _negative_exponentials(rng, (value, samples, cells.size)).sum(axis=0)
    large = nonzero[c > SMALL_COUNT]
    if large.size:
        shapes = np.tile(flat_counts[large], (samples, 1))
        flat_g[:, large] -= rng.standard_gamma(shapes, dtype=np.float32)
    g /= g.sum(axis=axis, keepdims=True)
    return g


def greedy_actions(rng: np.random.Generator, q: np.ndarray) -> np.ndarray:
    """argmax over the last axis with ties broken uniformly at random (TabulaRL's convention)."""
    is_max = q >= max_over_actions(q)[..., None]
    keys = rng.random(q.shape, dtype=np.float32)
    return np.argmax(np.where(is_max, keys, -1.0), axis=-1)


class TabularAgent(Agent):
    """Keeps the posterior statistics over the batch and re-plans at the start of every episode.

    Subclasses set the prior (class attributes) and implement ``plan`` -> Q tables (H, B, S, A).
    Transition counts are stored next state first, ``next_counts[b, s', s, a]``, the layout the planners
    use, with their row totals ``trans_totals[b, s, a]`` kept alongside (no reductions over short axes).
    """

    families: ClassVar[tuple[str, ...]] = ("mdp",)
    alpha0: ClassVar[float] = 1.0  # Dirichlet prior weight per next state
    mu0: ClassVar[float] = 0.0  # prior mean of the mean reward (the true mean is 1; TabulaRL's default)
    tau0: ClassVar[float] = 1.0  # prior precision of the mean reward
    tau: ClassVar[float] = 1.0  # known precision of the reward noise

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng)
        n_s, n_a = spec.n_states, spec.n_actions
        self.next_counts = np.zeros((batch_size, n_s, n_s, n_a), dtype=np.float32)  # counted transitions
        self.trans_totals = np.zeros((batch_size, n_s, n_a), dtype=np.float32)
        self.visits = np.zeros((batch_size, n_s, n_a))  # reward observations per (s, a)
        self.reward_sums = np.zeros((batch_size, n_s, n_a))
        self.episode = 0  # episodes started so far (1 during the first episode)
        self.h = 0  # step within the episode
        self.q: np.ndarray | None = None
        self._rows = np.arange(batch_size)
        self._row_offset = self._rows * (n_s * n_a)  # flat index of (b, 0, 0) in (B, S, A) tables
        self._state = np.zeros(batch_size, dtype=np.int64)

    # -- posterior statistics ------------------------------------------------------------------
    def reward_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, precision) of the Normal posterior on each mean reward, (B, S, A)."""
        precision = self.tau0 + self.tau * self.visits
        mean = (self.mu0 * self.tau0 + self.tau * self.reward_sums) / precision
        return mean, precision

    def dirichlet_alpha_sum(self) -> np.ndarray:
        """Sum over next states of the posterior Dirichlet parameters, (B, S, A)."""
        return self.spec.n_states * self.alpha0 + self.trans_totals

    def map_mdp(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean reward (B, S, A) and mean transitions, next state first (B, S', S, A), float32
        (TabulaRL's 'MAP' MDP)."""
        mean, _ = self.reward_posterior()
        trans_t = (self.alpha0 + self.next_counts) / self.dirichlet_alpha_sum()[:, None]
        return mean.astype(np.float32), trans_t

    # -- acting ----------------------------------------------------------------------------------
    def plan(self) -> np.ndarray:
        """Q tables (H, B, S, A) for the episode about to start."""
        raise NotImplementedError

    def act(self, obs):
        if self.h == 0:
            self.episode += 1
            self.q = self.plan()
        assert self.q is not None  # planned at every episode's first step (h == 0)
        self._state = np.asarray(obs)
        return self.choose(self.q[self.h, self._rows, self._state])

    def choose(self, q: np.ndarray) -> np.ndarray:
        return greedy_actions(self.rng, q)

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        n_s, n_a = self.spec.n_states, self.spec.n_actions
        sa = self._row_offset + self._state * n_a + actions  # flat (b, s, a), one per row: no duplicates
        self.visits.reshape(-1)[sa] += 1.0
        self.reward_sums.reshape(-1)[sa] += rewards
        if np.all(episode_done):  # every instance ends its episode at the same step
            # The last transition of an episode is not counted (its next state is the reset state).
            self.h = 0
            return
        self.trans_totals.reshape(-1)[sa] += 1.0
        self.next_counts.reshape(-1)[sa + self._row_offset * (n_s - 1) + next_obs * (n_s * n_a)] += 1.0
        self.h += 1
