"""Posterior bookkeeping of the tabular-MDP agents, checked on hand-made steps, and the Dirichlet sampler."""

from __future__ import annotations

import numpy as np
import pytest

from rl2bench.algorithms.mdp_beb import BEB
from rl2bench.algorithms.mdp_common import SMALL_COUNT, sample_dirichlet
from rl2bench.algorithms.mdp_psrl import OPSRL, PSRL
from rl2bench.algorithms.mdp_simple import EpsGreedyMDP, GreedyMDP, RandomMDP
from rl2bench.algorithms.mdp_ucrl2 import UCRL2, UCRL2TabulaRL
from rl2bench.registry import algorithms
from rl2bench.tasks.base import EnvSpec

SPEC = EnvSpec(family="mdp", n_states=2, n_actions=2, horizon=2, n_episodes=3)


def play_one_episode(agent):
    """Episode: (s0, a1) -> r 2, next s1 (counted); (s1, a0) -> r -1, episode ends (not counted)."""
    agent.act(np.array([0]))
    agent.observe(np.array([1]), np.array([2.0]), np.array([1]), np.array([False]))
    agent.act(np.array([1]))
    agent.observe(np.array([0]), np.array([-1.0]), np.array([0]), np.array([True]))


def test_counts_skip_the_last_transition_of_an_episode():
    agent = PSRL(SPEC, 1, np.random.default_rng(0))
    play_one_episode(agent)
    assert agent.visits[0].tolist() == [[0, 1], [1, 0]]
    assert agent.reward_sums[0].tolist() == [[0, 2.0], [-1.0, 0]]
    expected = np.zeros((2, 2, 2))  # next_counts[b, s', s, a]
    expected[1, 0, 1] = 1.0
    np.testing.assert_array_equal(agent.next_counts[0], expected)
    assert agent.trans_totals[0].tolist() == [[0, 1], [0, 0]]
    assert agent.h == 0 and agent.episode == 1


def test_normal_posterior_with_known_precision():
    agent = PSRL(SPEC, 1, np.random.default_rng(0))
    play_one_episode(agent)
    play_one_episode(agent)  # (0, 1) seen twice with reward 2: precision 1 + 2, mean (0 + 4) / 3
    mean, precision = agent.reward_posterior()
    assert precision[0].tolist() == [[1, 3], [3, 1]]
    np.testing.assert_allclose(mean[0], [[0, 4 / 3], [-2 / 3, 0]])
    # Dirichlet(1) posterior: row (0, 1) saw s1 twice -> mean (1, 3) / 4; unseen rows uniform.
    _, trans_t = agent.map_mdp()
    np.testing.assert_allclose(trans_t[0, :, 0, 1], [0.25, 0.75])
    np.testing.assert_allclose(trans_t[0, :, 1, 0], [0.5, 0.5])


def test_near_empirical_priors_of_eps_greedy_and_ucrl2():
    for cls, alpha0, tau0 in [(EpsGreedyMDP, 1e-4, 1e-4), (UCRL2, 1e-5, 1e-4)]:
        agent = cls(SPEC, 1, np.random.default_rng(0))
        play_one_episode(agent)
        mean, trans_t = agent.map_mdp()
        assert mean[0, 0, 1] == pytest.approx(2.0 / (tau0 + 1.0))
        assert mean[0, 1, 1] == 0.0  # untried: reward 0
        np.testing.assert_allclose(trans_t[0, :, 0, 1], np.array([alpha0, alpha0 + 1]) / (2 * alpha0 + 1),
                                   rtol=1e-6)


def test_beb_bonuses():
    agent = BEB(SPEC, 1, np.random.default_rng(0), scaling=0.5)
    play_one_episode(agent)
    q = agent.plan()  # H = 2: Q_1 = mean + 1 / (precision + 1); Q_0 adds beta H / (1 + sum alpha) once
    mean, precision = agent.reward_posterior()
    beta = 2 * 2**2 * 0.5
    np.testing.assert_allclose(q[1, 0], mean[0] + 1 / (precision[0] + 1), rtol=1e-6)
    alpha_sum = np.array([[2.0, 3.0], [2.0, 2.0]])
    bonus = beta * 2 / (1 + alpha_sum)
    _, trans_t = agent.map_mdp()
    expected_v = (q[1, 0].max(axis=-1)[:, None, None] * trans_t[0]).sum(axis=0)
    np.testing.assert_allclose(q[0, 0], q[1, 0] + bonus + expected_v, rtol=1e-6)


def test_ucrl2_slacks_at_a_known_count():
    # Episode 2, (s0, a1) seen once: reward slack sqrt(4 ln(2 S A 3 / 0.05)) and so on; with scaling 1e-9
    # the slacks vanish and UCRL2 plans on the empirical MDP.
    agent = UCRL2(SPEC, 1, np.random.default_rng(0), scaling=1e-9)
    play_one_episode(agent)
    agent.episode = 2
    q = agent.plan()
    mean, _ = agent.map_mdp()
    np.testing.assert_allclose(q[1, 0], mean[0], atol=1e-6)
    agent.scaling = 1.0
    q = agent.plan()
    slack = np.sqrt(4 * np.log(2 * 2 * 2 * 3 / 0.05))
    np.testing.assert_allclose(q[1, 0], mean[0] + slack, rtol=1e-6)  # n = max(count, 1) = 1 everywhere


def test_every_mdp_algorithm_is_registered_and_only_the_oracle_sees_hidden_parameters():
    registered = algorithms("mdp")
    names = ["random", "psrl", "opsrl", "ucrl2", "beb", "eps-greedy", "greedy", "oracle", "ucrl2-tabularl"]
    assert set(names) <= set(registered)
    assert [n for n, c in registered.items() if c.privileged] == ["oracle"]
    for cls in (RandomMDP, GreedyMDP, PSRL, OPSRL, UCRL2TabulaRL):
        assert "mdp" in cls.families


@pytest.mark.parametrize("counts_scale", [0.0, 1.0, 30.0])
def test_dirichlet_sampler_moments(counts_scale):
    rng = np.random.default_rng(5)
    counts = np.floor(rng.exponential(counts_scale, size=(3, 4)) if counts_scale else np.zeros((3, 4)))
    if counts_scale > 1:
        assert counts.max() > SMALL_COUNT  # both sampler paths are exercised
    x = sample_dirichlet(rng, 1.0, counts.astype(np.float32), 40000, axis=-1)
    assert x.dtype == np.float32 and x.shape == (40000, 3, 4)
    np.testing.assert_allclose(x.sum(axis=-1), 1.0, atol=1e-5)
    alpha = 1.0 + counts
    mean = alpha / alpha.sum(axis=-1, keepdims=True)
    var = mean * (1 - mean) / (alpha.sum(axis=-1, keepdims=True) + 1)
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=5 * np.sqrt(var.max() / 40000))
    np.testing.assert_allclose(x.var(axis=0), var, rtol=0.06)


def test_dirichlet_sampler_other_prior_weight():
    rng = np.random.default_rng(6)
    counts = np.array([[0.0, 2.0, 5.0]], dtype=np.float32)
    x = sample_dirichlet(rng, 0.5, counts, 40000)
    np.testing.assert_allclose(x.mean(axis=0), (0.5 + counts) / 8.5, atol=0.005)
