"""Each bandit baseline on cases whose right answer can be worked out by hand."""

import functools

import numpy as np
import pytest

from rl2bench.algorithms.gittins import compute_calibrated_index_table, whittle_index
from rl2bench.registry import algorithms, get_family

FAM = get_family("mab")
ALGOS = algorithms("mab")


def make(name, cell="n10-k3", batch=4, seed=0, **setting):
    spec = FAM.spec(FAM.parse_cell(cell))
    return ALGOS[name](spec, batch, np.random.default_rng(seed), **setting)


def feed(agent, arm, reward):
    b = agent.batch_size
    agent.observe(np.full(b, arm), np.full(b, float(reward)), np.zeros(b, int), np.ones(b, bool))


def test_pseudo_counts_start_at_beta_1_1_and_update():
    agent = make("greedy")
    assert (agent.successes == 1).all() and (agent.failures == 1).all()
    feed(agent, 2, 1)
    feed(agent, 2, 0)
    feed(agent, 0, 1)
    np.testing.assert_array_equal(agent.successes[0], [2, 1, 2])
    np.testing.assert_array_equal(agent.failures[0], [1, 1, 2])


def test_greedy_breaks_ties_by_first_index_and_follows_the_mean():
    agent = make("greedy")
    assert (agent.act(None) == 0).all()  # all means 1/2: first index
    feed(agent, 1, 1)  # arm 1: 2/3
    assert (agent.act(None) == 1).all()
    feed(agent, 1, 0)
    feed(agent, 1, 0)  # arm 1: 2/5 < 1/2
    assert (agent.act(None) == 0).all()


def test_eps_greedy_explores_at_rate_eps():
    agent = make("eps-greedy", cell="n10-k4", batch=20000, eps=0.4)
    feed(agent, 3, 1)  # arm 3 is greedy
    acts = agent.act(None)
    # greedy with prob 0.6 + 0.4/4 random hits arm 3
    assert abs((acts == 3).mean() - 0.7) < 0.015
    assert abs((acts == 0).mean() - 0.1) < 0.01


def test_ucb1_index_by_hand():
    agent = make("ucb1", c=0.5)
    assert (agent.act(None) == 0).all()  # t = 0: arm 0
    feed(agent, 0, 1)  # arm0: s=2, m=3
    feed(agent, 1, 0)  # arm1: s=1, m=3 ; arm2: s=1, m=2 ; t=2
    t = 2
    index = np.array([2 / 3, 1 / 3, 1 / 2]) + 0.5 * np.sqrt(2 * np.log(t) / np.array([3, 3, 2]))
    assert (agent.act(None) == np.argmax(index)).all()
    agent0 = make("ucb1", c=0.0)
    feed(agent0, 0, 1)
    feed(agent0, 1, 0)
    assert (agent0.act(None) == 0).all()  # c = 0 is greedy


def test_ts_prefers_the_arm_with_strong_evidence():
    agent = make("ts", batch=5000)
    for _ in range(30):
        feed(agent, 1, 1)
    for _ in range(30):
        feed(agent, 2, 0)
    acts = agent.act(None)
    # arm 1 ~ Beta(31, 1) beats arm 0 ~ Beta(1, 1) w.p. 31/32, arm 2 ~ Beta(1, 31) almost never wins
    assert abs((acts == 1).mean() - 31 / 32) < 0.01
    assert (acts == 2).mean() < 0.002


def test_ots_keeps_the_most_probable_sample():
    # Arm 0 is certain to be ~0.5 (huge counts); arm 1 is Beta(1, 1). The most probable of many
    # vectors has arm 1 near its mode-free flat density: with flat Beta(1,1) every theta_1 is equally
    # likely, so selection is driven by arm 0 alone and arm 1 wins half the time, as for TS.
    agent = make("ots", cell="n10-k2", batch=20000, samples=10)
    agent.successes[:, 0] = 5000
    agent.failures[:, 0] = 5000
    acts = agent.act(None)
    assert abs((acts == 1).mean() - 0.5) < 0.02
    # With arm 1 at Beta(3, 1) (density 3 theta^2: the most probable samples are near 1), OTS picks
    # arm 1 more often than TS does (TS: P(theta_1 > 1/2) = 7/8).
    agent.successes[:, 1] = 3
    many = agent.act(None)
    assert (many == 1).mean() > 0.95


@pytest.mark.heavy
def test_calibrated_gittins_matches_published_values():
    table = compute_calibrated_index_table(0.9, lattice=400)
    assert abs(table[1, 1] - 0.7029) < 5e-4
    table = compute_calibrated_index_table(0.99, lattice=1000)
    assert abs(table[1, 1] - 0.8699) < 5e-4
    # index exceeds the posterior mean (the value of information) and grows with successes
    assert table[3, 5] > 3 / 8 and table[4, 5] > table[3, 5] > table[3, 6]


def test_whittle_approximation_by_hand():
    a, b = np.array([1.0, 3.0]), np.array([1.0, 1.0])
    mu = a / (a + b)
    expected = mu + mu * (1 - mu) / (np.sqrt((a + b) * mu * (1 - mu)) + mu - 0.5)
    np.testing.assert_allclose(whittle_index(a, b), expected)


@pytest.mark.parametrize("name", sorted(set(ALGOS) - {"rl2"}))  # rl2 needs a trained policy: test_rl2_*
def test_every_algorithm_beats_random_on_an_easy_cell(name):
    from rl2bench.protocol import play_trials

    cell = FAM.parse_cell("n50-k2")
    setting = {"method": "whittle"} if name == "gittins" else {}  # class defaults; no 10 s table build
    out = play_trials(FAM, cell, ALGOS[name], setting, 250, 0, "tune")
    rand = play_trials(FAM, cell, ALGOS["random"], {}, 250, 0, "tune")
    if name == "random":
        assert abs(out.returns.mean() - 25) < 1.5
    else:
        assert out.returns.mean() > rand.returns.mean() + 2


def _fh_index_brute_force(a, b, m):
    """Bisection on lambda of the forced-first-pull stopping value, by plain recursion."""

    def value(lam):
        @functools.cache
        def v(a, b, m):
            mu = a / (a + b)
            if m == 1:
                return mu - lam
            return mu - lam + mu * max(0.0, v(a + 1, b, m - 1)) + (1 - mu) * max(0.0, v(a, b + 1, m - 1))
        return v(a, b, m)

    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if value(mid) > 0 else (lo, mid)
    return lo


def test_finite_horizon_gittins_matches_brute_force():
    from rl2bench.algorithms.gittins import compute_finite_horizon_table, finite_horizon_offsets, lattice_position

    horizon = 12
    table = compute_finite_horizon_table(horizon)
    offsets = finite_horizon_offsets(horizon)
    for m in range(1, horizon + 1):
        for a, b in [(1, 1), (2, 1), (1, 3), (4, 2)]:
            if a + b - 2 <= horizon - m:
                got = table[offsets[m - 1] + lattice_position(a, b)]
                assert abs(got - _fh_index_brute_force(a, b, m)) < 2e-3, (a, b, m)
    # hand-checked: one pull left -> the posterior mean; Beta(1,1) with two left -> 5/9
    assert abs(table[lattice_position(3, 2)] - 0.6) < 1e-6
    assert abs(table[offsets[1] + lattice_position(1, 1)] - 5 / 9) < 1e-3


def test_finite_horizon_agent_is_at_least_as_good_as_greedy_on_n20_k3():
    from rl2bench.protocol import play_trials

    cell = FAM.parse_cell("n20-k3")
    fh = play_trials(FAM, cell, ALGOS["gittins-fh"], {}, 250, 1, "tune").returns
    greedy = play_trials(FAM, cell, ALGOS["greedy"], {}, 250, 1, "tune").returns
    assert fh.mean() >= greedy.mean() - 0.1


def test_textbook_ucb1_pulls_every_arm_once_first():
    agent = make("ucb1-textbook", cell="n10-k3", batch=2)
    seen = []
    for _ in range(3):
        arm = agent.act(None)
        seen.append(int(arm[0]))
        feed(agent, arm[0], 0)
    assert seen == [0, 1, 2]
    feed(agent, 1, 1)  # arm 1: 1 success in 2 pulls; others 0 in 1
    # index_1 = 0.5 + sqrt(2 ln 4 / 2) = 1.677 ; index_0 = 0 + sqrt(2 ln 4) = 1.665
    assert (agent.act(None) == 1).all()


def test_random_ties_spread_over_tied_arms():
    agent = make("greedy-random-ties", cell="n10-k4", batch=8000)
    acts = agent.act(None)
    np.testing.assert_allclose(np.bincount(acts, minlength=4) / 8000, 0.25, atol=0.02)


def test_variants_are_not_in_all():
    from rl2bench.registry import resolve_algorithms

    names = {a.name for a in resolve_algorithms("all", "mab")}
    assert {"ucb1-textbook", "greedy-random-ties", "ots-max"}.isdisjoint(names)
    assert {"random", "gittins", "gittins-fh", "ts", "ots", "ucb1", "eps-greedy", "greedy"} <= names


@pytest.mark.parametrize("a, b", [(1, 1), (1, 4), (5, 1), (3, 7), (40, 2)])
def test_sample_beta_is_beta_and_its_density_is_right(a, b):
    """Both paths (closed-form inverse CDF where a or b is 1, Gamma ratio elsewhere) against scipy."""
    from scipy import stats

    from rl2bench.algorithms.thompson import sample_beta

    rng = np.random.default_rng(5)
    counts_a, counts_b = np.full((2, 3), float(a)), np.full((2, 3), float(b))
    theta, density = sample_beta(rng, counts_a, counts_b, 20000, with_log_density=True)
    assert theta.shape == density.shape == (20000, 2, 3)
    sample = theta[:, 1, 2].astype(np.float64)
    assert stats.kstest(sample, stats.beta(a, b).cdf).pvalue > 1e-3
    ref = stats.beta.logpdf(np.clip(sample, 1e-7, 1 - 1e-7), a, b)
    got = density[:, 1, 2].astype(np.float64)
    ok = (sample > 1e-4) & (sample < 1 - 1e-4)
    np.testing.assert_allclose((got - ref)[ok], np.median((got - ref)[ok]), atol=5e-3)



@pytest.mark.parametrize("k", [1.0, 2.0, 3.0, 4.0, 5.0, 30.0])
def test_integer_gamma_sampler(k):
    from scipy import stats

    from rl2bench.algorithms.thompson import sample_gamma_integer

    x = sample_gamma_integer(np.random.default_rng(6), np.array([k, 1.0, 3.0], dtype=np.float32), 20000)
    assert x.shape == (20000, 3) and x.dtype == np.float32
    assert stats.kstest(x[:, 0].astype(np.float64), stats.gamma(k).cdf).pvalue > 1e-3


def test_most_probable_draw_picks_the_draw_sample_beta_would_pick():
    """Same generator state -> the same draws: the winner must be the max-density draw of each row."""
    from rl2bench.algorithms.thompson import most_probable_draw, sample_beta

    rng_counts = np.random.default_rng(8)
    a = rng_counts.integers(1, 6, size=(40, 7)).astype(float)
    b = rng_counts.integers(1, 6, size=(40, 7)).astype(float)
    theta, density = sample_beta(np.random.default_rng(9), a, b, 12, with_log_density=True)
    best = np.argmax(density.sum(axis=-1), axis=0)
    expected = theta[best, np.arange(40)]
    got = most_probable_draw(np.random.default_rng(9), a, b, 12)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
