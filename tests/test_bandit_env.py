import numpy as np
import pytest

from rl2bench.errors import UserError
from rl2bench.registry import get_family


def test_cell_names_round_trip_and_any_cell_works():
    fam = get_family("mab")
    cell = fam.parse_cell("n200-k20")
    assert (cell.n, cell.k, cell.name) == (200, 20, "n200-k20")
    spec = fam.spec(cell)
    assert (spec.n_actions, spec.n_episodes, spec.horizon, spec.n_states) == (20, 200, 1, 1)


@pytest.mark.parametrize("bad", ["n10", "k5", "n10-k1", "n0-k5", "n10-k5-k6", "x10-k5", "n10k5", ""])
def test_bad_cell_names_are_user_errors(bad):
    with pytest.raises(UserError, match="n<pulls>-k<arms>"):
        get_family("mab").parse_cell(bad)


def test_arm_means_are_uniform():
    fam = get_family("mab")
    p = fam.sample(fam.parse_cell("n10-k5"), np.random.default_rng(1), 20000)["arm_means"]
    assert p.shape == (20000, 5)
    assert p.min() >= 0 and p.max() <= 1
    assert abs(p.mean() - 0.5) < 0.005 and abs(p.var() - 1 / 12) < 0.002


def test_rewards_are_bernoulli_with_the_arm_means():
    fam = get_family("mab")
    cell = fam.parse_cell("n2000-k3")
    means = np.array([[0.1, 0.5, 0.9]] * 200)
    env = fam.make_env(cell, {"arm_means": means}, np.random.default_rng(2))
    env.reset()
    totals = np.zeros((200, 3))
    for t in range(1500):
        arm = np.full(200, t % 3)
        step = env.step(arm)
        assert set(np.unique(step.reward)) <= {0.0, 1.0}
        assert step.episode_done.all()
        totals[:, t % 3] += step.reward
    freq = totals.sum(0) / (200 * 500)
    np.testing.assert_allclose(freq, [0.1, 0.5, 0.9], atol=0.01)


def test_trial_ends_after_n_pulls():
    fam = get_family("mab")
    cell = fam.parse_cell("n4-k2")
    env = fam.make_env(cell, fam.sample(cell, np.random.default_rng(0), 3), np.random.default_rng(0))
    env.reset()
    flags = [env.step(np.zeros(3, dtype=int)).trial_done.all() for _ in range(4)]
    assert flags == [False, False, False, True]
    with pytest.raises(RuntimeError):
        env.step(np.zeros(3, dtype=int))
