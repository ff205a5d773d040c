"""rl2bench.aggregate: every statistic on small arrays worked out by hand, and reproducible bootstraps."""

from __future__ import annotations

import numpy as np
import pytest

from rl2bench import aggregate as agg


def test_scores_are_cells_by_instances():
    assert agg.as_matrix([1, 2, 3]).shape == (1, 3)  # one cell
    assert agg.as_matrix([[1, 2], [3, 4], [5, 6]]).shape == (3, 2)
    with pytest.raises(ValueError, match="same instances per cell"):
        agg.as_matrix([[1, 2], [3]])
    with pytest.raises(ValueError, match="non-empty"):
        agg.as_matrix([])


def test_normalized_by_hand():
    # cell 0: random 5, reference 7 -> 5 is 0, 7 is 1; cell 1: random 50, reference 90 -> 80 is 30/40
    got = agg.normalized([[5, 7], [50, 80]], lower=[5, 50], upper=[7, 90])
    np.testing.assert_allclose(got, [[0.0, 1.0], [0.0, 0.75]])
    with pytest.raises(ValueError, match="coincide"):
        agg.normalized([[1, 2]], lower=[3], upper=[3])


def test_mean_by_hand():
    # (1 + 2 + 3 + 6) / 4 = 3 = mean of the cell means (1.5 + 4.5) / 2
    assert agg.mean_score([[1, 2], [3, 6]]) == 3.0


def test_iqm_by_hand():
    # 8 runs sorted 1 2 | 3 4 5 6 | 7 100: int(8/4) = 2 cut at each end, (3+4+5+6)/4 = 4.5 (the mean is 16)
    assert agg.iqm([[1, 2, 3, 4], [5, 6, 7, 100]]) == 4.5
    # 6 runs 0 | 1 2 3 4 | 100: int(6/4) = 1 cut at each end, (1+2+3+4)/4 = 2.5
    assert agg.iqm([[100, 0, 3], [2, 4, 1]]) == 2.5
    # pooled over cells, not per cell: cell means of the middle would differ
    assert agg.iqm([[0, 0, 0, 0], [10, 10, 10, 10]]) == 5.0  # middle four: 0 0 10 10


def test_performance_profile_by_hand():
    scores = [[0.1, 0.5], [0.9, 1.2]]
    # runs above 0: all 4; above 0.5 (strictly): 0.9, 1.2 -> 2/4; above 1.0: 1.2 -> 1/4; above 1.2: none
    np.testing.assert_allclose(agg.performance_profile(scores, [0.0, 0.5, 1.0, 1.2]), [1.0, 0.5, 0.25, 0.0])
    # cell means 0.3 and 1.05: above 0 both, above 0.5 one, above 1.0 one, above 1.1 none
    np.testing.assert_allclose(agg.performance_profile(scores, [0.0, 0.5, 1.0, 1.1], by="cell"),
                               [1.0, 0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="by must be"):
        agg.performance_profile(scores, [0.0], by="run")  # type: ignore[arg-type]


def test_probability_of_improvement_by_hand():
    x, y = [[3, 1]], [[2, 4]]
    # unpaired, all 4 pairs: 3>2 yes, 3>4 no, 1>2 no, 1>4 no -> 1/4
    assert agg.probability_of_improvement(x, y) == 0.25
    # paired: 3>2 yes, 1>4 no -> 1/2
    assert agg.probability_of_improvement(x, y, paired=True) == 0.5
    # ties count half: every pair equal -> 1/2
    assert agg.probability_of_improvement([[2, 2]], [[2, 2]]) == 0.5
    # two cells averaged: cell 0 as above (1/4), cell 1 all ties (1/2) -> 3/8; paired: (1/2 + 1/2) / 2
    x2, y2 = [[3, 1], [2, 2]], [[2, 4], [2, 2]]
    assert agg.probability_of_improvement(x2, y2) == 0.375
    assert agg.probability_of_improvement(x2, y2, paired=True) == 0.5
    # unequal instance counts, unpaired: x = 2 against y = 1, 2, 3 -> (1 + 0.5 + 0) / 3
    assert agg.probability_of_improvement([[2]], [[1, 2, 3]]) == pytest.approx(0.5)
    # P(X > Y) + P(Y > X) = 1
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, (3, 40)), rng.integers(0, 5, (3, 40))
    assert agg.probability_of_improvement(a, b) + agg.probability_of_improvement(b, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        agg.probability_of_improvement([[1, 2]], [[1]], paired=True)


def test_bootstrap_distribution_of_a_two_point_cell_by_hand():
    # one cell [0, 1]: a resample is two draws, its mean 0 (p 1/4), 1/2 (p 1/2) or 1 (p 1/4)
    values = agg.stratified_bootstrap(agg.mean_score, [[0.0, 1.0]], n_resamples=4000, seed=3)
    assert set(np.unique(values)) == {0.0, 0.5, 1.0}
    freq = [np.mean(values == v) for v in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(freq, [0.25, 0.5, 0.25], atol=0.03)
    # 2.5% and 97.5% quantiles fall inside the ~25% masses at 0 and 1
    assert agg.bootstrap_ci(agg.mean_score, [[0.0, 1.0]], n_resamples=4000, seed=3) == (0.5, 0.0, 1.0)


def test_bootstrap_is_stratified_by_cell():
    # cells constant inside: any within-cell resample is the same matrix, so every value is 0.5; pooling
    # the six runs would give means anywhere from 0 to 1
    scores = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    values = agg.stratified_bootstrap(agg.mean_score, scores, n_resamples=200, seed=0)
    assert (values == 0.5).all()
    assert agg.bootstrap_ci(agg.iqm, scores, n_resamples=200) == (0.5, 0.5, 0.5)


def test_paired_bootstrap_resamples_algorithms_together():
    # Y = X + 1 instance by instance: every paired resample's difference of means is exactly 1
    x = np.array([[0.0, 3.0, 7.0], [2.0, 9.0, 4.0]])

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return agg.mean_score(b) - agg.mean_score(a)

    paired = agg.stratified_bootstrap(gap, x, x + 1, n_resamples=300, seed=0)
    np.testing.assert_allclose(paired, 1.0)
    unpaired = agg.stratified_bootstrap(gap, x, x + 1, n_resamples=300, seed=0, paired=False)
    assert unpaired.std() > 0.5
    # the probability of improvement's interval: paired, Y beats X on every instance
    assert agg.bootstrap_ci(lambda a, b: agg.probability_of_improvement(b, a, paired=True), x, x + 1) == (1, 1, 1)
    with pytest.raises(ValueError, match="one shape"):
        agg.stratified_bootstrap(gap, x, x[:, :2])


def test_bootstrap_ci_is_reproducible_for_a_seed_and_contains_the_estimate():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(3, 50)) + np.array([[0.0], [1.0], [2.0]])
    one = agg.bootstrap_ci(agg.iqm, scores, seed=11, n_resamples=500)
    two = agg.bootstrap_ci(agg.iqm, scores, seed=11, n_resamples=500)
    other = agg.bootstrap_ci(agg.iqm, scores, seed=12, n_resamples=500)
    assert one == two and one != other
    assert one.estimate == agg.iqm(scores) and one.low < one.estimate < one.high
    # a wider confidence is a wider interval on the same draws
    wide = agg.bootstrap_ci(agg.iqm, scores, seed=11, n_resamples=500, confidence=0.99)
    assert wide.low <= one.low and wide.high >= one.high
    np.testing.assert_array_equal(agg.stratified_bootstrap(agg.mean_score, scores, n_resamples=50, seed=5),
                                  agg.stratified_bootstrap(agg.mean_score, scores, n_resamples=50, seed=5))
