"""bayes-optimal: the dynamic program against brute force, the agent under the harness, and its reach."""

from __future__ import annotations

import functools
import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rl2bench import cli
from rl2bench.algorithms import bayes_optimal as bo
from rl2bench.protocol import play_trials
from rl2bench.registry import algorithms, get_family

FAM = get_family("mab")
ALGOS = algorithms("mab")
LEADERBOARD_RUN = Path(__file__).resolve().parents[1] / "leaderboard" / "runs" / "mab" / "results.csv"

Arms = tuple[tuple[int, int], ...]  # per arm, in arm order: (successes, failures) observed


@functools.cache
def brute_value(arms: Arms, left: int) -> Fraction:
    """Exhaustive expectimax over the full per-arm history, exact: no exchangeability, no canonical form."""
    if left == 0:
        return Fraction(0)
    return max(brute_q(arms, a, left) for a in range(len(arms)))


@functools.cache
def brute_q(arms: Arms, a: int, left: int) -> Fraction:
    s, f = arms[a]
    p = Fraction(s + 1, s + f + 2)
    won = arms[:a] + ((s + 1, f),) + arms[a + 1:]
    lost = arms[:a] + ((s, f + 1),) + arms[a + 1:]
    return p * (1 + brute_value(won, left - 1)) + (1 - p) * brute_value(lost, left - 1)


def histories(k: int, t: int) -> np.ndarray:
    """Every sequence of t (arm, reward) pairs, as an array (count, t, 2)."""
    steps = list(itertools.product(range(k), (0, 1)))
    every = list(itertools.product(steps, repeat=t))
    return np.array(every, dtype=np.int64).reshape(len(every), t, 2)


@pytest.mark.parametrize("n, k", [(3, 2), (4, 3), (6, 2)])
def test_dp_value_matches_brute_force(n, k):
    exact = brute_value(((0, 0),) * k, n)
    assert bo.bayes_optimal_value(n, k) == pytest.approx(float(exact), abs=1e-12)
    if (n, k) == (3, 2):
        assert exact == Fraction(5, 3)  # worked by hand: 1/2 + 7/12 + 7/12


@pytest.mark.parametrize("n, k", [(3, 2), (4, 3), (6, 2)])
def test_agent_pulls_the_first_exactly_optimal_arm_after_every_history(n, k):
    """Every reachable history of every length: the agent's arm is the lowest-index arm whose exact
    (rational) Q-value is the maximum, i.e. the DP's ties are exactly the true ties."""
    spec = FAM.spec(FAM.parse_cell(f"n{n}-k{k}"))
    checked = 0
    for t in range(n):
        plays = histories(k, t)
        agent = ALGOS["bayes-optimal"](spec, len(plays), np.random.default_rng(0))
        for step in range(t):
            agent.observe(plays[:, step, 0], plays[:, step, 1].astype(float), np.zeros(len(plays), int),
                          np.ones(len(plays), bool))
        chosen = agent.act(np.zeros(len(plays), int))
        for row, arm in zip(plays, chosen, strict=True):
            arms = [[0, 0] for _ in range(k)]
            for a, r in row:
                arms[a][1 - r] += 1
            state = tuple((s, f) for s, f in arms)
            q = [brute_q(state, a, n - t) for a in range(k)]
            assert arm == q.index(max(q)), (row.tolist(), q)
            checked += 1
    assert checked == sum((2 * k) ** t for t in range(n))


def test_n10_k5_value_and_the_k_at_least_n_identity():
    value = bo.bayes_optimal_value(10, 5)
    assert value == pytest.approx(6.66, abs=0.005)  # the paper's RL^2: 6.7
    # with n pulls an unpulled arm is always left before the last one: k >= n is the k = n problem
    assert bo.bayes_optimal_value(10, 50) == bo.bayes_optimal_value(10, 10)
    assert bo.bayes_optimal_value(10, 10) > value > bo.bayes_optimal_value(10, 2)


@pytest.mark.parametrize("n, k, states", [(3, 2, 9), (10, 5, 1951), (10, 10, 2296), (10, 50, 2296), (20, 3, 30846)])
def test_state_count_matches_the_enumerated_table(n, k, states):
    assert bo.count_states(n, k) == states
    assert bo.compute_policy_table(n, k).n_states == states


def test_canonical_state_sorts_pulled_arms_and_counts_the_rest():
    assert bo.canonical_state([2, 0, 0, 1], [1, 0, 3, 0]) == (((0, 3), (1, 0), (2, 1)), 1)
    assert bo.arm_code(0, 0) == 0 and bo.arm_code(0, 1) == 1 and bo.arm_code(1, 0) == 2 and bo.arm_code(2, 1) == 8


def test_unavailable_names_the_state_count_out_of_reach():
    def reason(name):
        cell = FAM.parse_cell(name)
        return ALGOS["bayes-optimal"].unavailable(cell, FAM.spec(cell))

    assert reason("n10-k50") is None and reason("n10-k5") is None and reason("n20-k3") is None
    far = reason("n500-k50")
    assert far is not None and "2.2e+55 posterior states" in far and "\n" not in far
    assert "3.6e+11 posterior states" in str(reason("n100-k5"))
    assert "more than" in str(reason("n100000-k100000"))  # answered without the full count
    with pytest.raises(ValueError, match="posterior states"):
        bo.policy_table(100, 5)


def test_large_tables_are_cached_on_disk_and_reload_identically(monkeypatch):
    monkeypatch.setattr(bo, "DISK_CACHE_MIN_STATES", 0)
    bo.policy_table.cache_clear()
    try:
        built = bo.policy_table(6, 3)
        path = bo._cache_path(6, 3)
        assert path.exists()
        bo.policy_table.cache_clear()
        loaded = bo.policy_table(6, 3)
    finally:
        bo.policy_table.cache_clear()
    assert loaded.value == built.value and loaded.n_states == built.n_states
    for name in ("keys", "q", "optimal", "successor"):
        for a, b in zip(getattr(built, name), getattr(loaded, name), strict=True):
            np.testing.assert_array_equal(a, b)


def test_harness_run_of_bayes_optimal_averages_the_dp_value(tmp_path):
    """2000 instances of n10-k5 through the CLI: the agent's mean within 3 standard errors of V(start)."""
    out = tmp_path / "run"
    assert cli.main(["run", "--task", "mab", "--algos", "bayes-optimal,gittins-fh,ts", "--cells", "n10-k5",
                     "--instances", "2000", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    results = pd.read_csv(out / "results.csv")
    returns = results[results["algorithm"] == "bayes-optimal"]["return"].to_numpy()
    assert len(returns) == 2000
    value = bo.bayes_optimal_value(10, 5)
    assert abs(returns.mean() - value) < 3 * returns.std(ddof=1) / np.sqrt(len(returns))


def _settings(name, cell, spec):
    if name == "gittins":  # the calibrated tables take ~10 s each: their tuned runs are checked below
        return [{"method": "whittle"}]
    return ALGOS[name].grid(cell, spec)


@pytest.mark.heavy
def test_no_algorithm_beats_the_dp_value_on_n10_k5():
    """Every other algorithm, every setting of its grid, on the same 2000 instances: its mean at most the
    exact value plus 3 standard errors, and at most bayes-optimal's mean on the same instances plus 3
    standard errors of the paired difference (common random numbers: the same instances and rewards)."""
    cell = FAM.parse_cell("n10-k5")
    spec = FAM.spec(cell)
    value = bo.bayes_optimal_value(10, 5)

    def returns(name, setting):
        return np.concatenate([play_trials(FAM, cell, ALGOS[name], setting, 2000, 0, "eval", chunk=i).returns
                               for i in range(8)])

    best = returns("bayes-optimal", {})
    checked = 0
    for name in sorted(set(ALGOS) - {"bayes-optimal"}):
        if ALGOS[name].unavailable(cell, spec) is not None:  # rl2 without a policy for the cell
            continue
        for setting in _settings(name, cell, spec):
            other = returns(name, setting)
            se = other.std(ddof=1) / np.sqrt(len(other))
            assert other.mean() <= value + 3 * se, (name, setting, other.mean(), value)
            diff = other - best
            se_diff = diff.std(ddof=1) / np.sqrt(len(diff))
            assert diff.mean() <= 3 * se_diff, (name, setting, diff.mean(), se_diff)
            checked += 1
    assert checked >= 40


@pytest.mark.skipif(not LEADERBOARD_RUN.exists(), reason="no committed mab leaderboard run")
def test_committed_leaderboard_n10_cells_lie_below_the_dp_value():
    """The published n10 columns (tuned settings, calibrated Gittins, RL^2) at most V + 3 standard errors."""
    results = pd.read_csv(LEADERBOARD_RUN)
    checked = 0
    for (cell, algo), group in results[results["cell"].str.startswith("n10-")].groupby(["cell", "algorithm"]):
        parsed = FAM.parse_cell(cell)
        x = group["return"].to_numpy()
        value = bo.bayes_optimal_value(parsed.n, parsed.k)
        assert x.mean() <= value + 3 * x.std(ddof=1) / np.sqrt(len(x)), (cell, algo, x.mean(), value)
        checked += 1
    assert checked >= 3 * 8


def test_algos_all_runs_it_where_it_fits_and_skips_it_with_a_notice_elsewhere(tmp_path, capsys):
    from rl2bench.protocol import RunConfig, run_benchmark
    from rl2bench.results import RunStore

    config = RunConfig(task="mab", cells=["n10-k5", "n100-k5"], algorithms=[ALGOS["bayes-optimal"], ALGOS["greedy"]],
                       instances=50, tune_instances=50, seed=0, n_jobs=1, skip_unavailable=True)
    store = RunStore(tmp_path / "run")
    store.open(config.identity(), resume=False)
    run_benchmark(config, store, progress=False)
    stderr = capsys.readouterr().err
    assert "skipping bayes-optimal on n100-k5: 3.6e+11 posterior states" in stderr
    assert "bayes-optimal on n10-k5" not in stderr
    assert store.has_eval("n10-k5", "bayes-optimal") and not store.has_eval("n100-k5", "bayes-optimal")
    assert store.has_eval("n100-k5", "greedy")
    from rl2bench.registry import resolve_algorithms

    assert "bayes-optimal" in {a.name for a in resolve_algorithms("all", "mab")}


def _ordered_states(k: int, t: int) -> list[Arms]:
    """Every per-arm (s, f) assignment with t pulls in all, arms in order (not canonicalised)."""
    out = []
    for cut in itertools.combinations(range(t + 2 * k - 1), 2 * k - 1):  # stars and bars over 2k counts
        bounds = (-1, *cut, t + 2 * k - 1)
        counts = [bounds[i + 1] - bounds[i] - 1 for i in range(2 * k)]
        out.append(tuple((counts[2 * a], counts[2 * a + 1]) for a in range(k)))
    return out


@pytest.mark.parametrize("n, k", [(10, 3), (8, 4)])
def test_agent_matches_exact_first_optimal_arm_in_every_ordered_state(n, k):
    """Larger cells than the every-history test: each per-arm state reached by one history (arm by arm),
    the agent's arm against the exact rational Q-values."""
    spec = FAM.spec(FAM.parse_cell(f"n{n}-k{k}"))
    for t in range(n):
        states = _ordered_states(k, t)
        plays = np.array([[(a, r) for a, (s, f) in enumerate(st) for r in [1] * s + [0] * f] for st in states],
                         dtype=np.int64).reshape(len(states), t, 2)
        agent = ALGOS["bayes-optimal"](spec, len(states), np.random.default_rng(0))
        for step in range(t):
            agent.observe(plays[:, step, 0], plays[:, step, 1].astype(float), np.zeros(len(states), int),
                          np.ones(len(states), bool))
        chosen = agent.act(np.zeros(len(states), int))
        for state, arm in zip(states, chosen, strict=True):
            q = [brute_q(state, a, n - t) for a in range(k)]
            assert arm == q.index(max(q)), (state, q)


def test_the_leaderboard_prints_the_exact_value_beside_the_simulated_mean():
    import pandas as pd

    from rl2bench.leaderboard import render_exact_values

    summary = pd.DataFrame([
        {"task": "mab", "cell": "n10-k10", "algorithm": "bayes-optimal", "mean": 6.70, "se": 0.07},
        {"task": "mab", "cell": "n10-k5", "algorithm": "bayes-optimal", "mean": 6.64, "se": 0.07},
        {"task": "mab", "cell": "n100-k5", "algorithm": "gittins", "mean": 78.6, "se": 0.5},
    ])
    text = render_exact_values(summary)
    assert "bayes-optimal: n10-k5 6.6600 (simulated 6.640 ± 0.070), n10-k10 6.7140" in text
    assert "gittins" not in text  # no closed form: nothing printed
