"""Aggregate statistics over a benchmark's cells, rliable-style (Agarwal et al. 2021), as small pure functions.

Scores are one algorithm's per-instance results as a 2-D array, cells x instances (a 1-D array is one
cell): usually normalized scores (``normalized``: random = 0, the reference = 1, per cell). Every cell
must hold the same number of instances, as in every rl2bench run (each algorithm of a cell plays the same
``--instances`` instances), so a run counts once whichever cell it is in. The statistics:

* ``mean_score``: the mean over all (cell, instance) runs.
* ``iqm``: the interquartile mean, the mean of the middle 50% of all runs pooled over cells:
  ``scipy.stats.trim_mean(0.25)`` as rliable computes it (int(0.25 * N) runs cut at each end).
* ``performance_profile``: for each threshold tau, the fraction of runs scoring above tau (strictly, as
  rliable), or of cells whose mean scores above it.
* ``probability_of_improvement``: P(X > Y) + P(X = Y) / 2 per cell, averaged over cells. Unpaired (rliable:
  the Mann-Whitney U statistic over all pairs of X's and Y's runs of a cell) or paired (instance i of X
  against instance i of Y, as rl2bench plays every algorithm of a cell on the same instances).
* ``stratified_bootstrap`` / ``bootstrap_ci``: the statistic's bootstrap distribution, resampling
  instances with replacement within each cell (cells are strata: never resampled), and its percentile
  interval (rliable's default). Several score arrays (e.g. X and Y for a probability of improvement) are
  resampled with the same instance draws when ``paired`` (the default: the same instances across
  algorithms), or each with its own. Reproducible: a fixed ``seed`` gives the same interval.

Why not the ``rliable`` package: rliable 1.2.0 (the latest; an sdist only) requires ``arch>=5.3.1,<8``
(with it statsmodels and patsy), ``absl-py`` and ``seaborn``. It pulls no jax, tensorflow or torch, and
none of those pins numpy or torch below ours, but it would add five packages to the pinned environment
for a handful of functions, and its intervals go through arch's bootstrap classes (a separate seeding
scheme). So the definitions are reproduced here on numpy and scipy. Not ``scipy.stats.bootstrap`` either:
given several samples it resamples them independently (stratification, but then two algorithms' scores
are never resampled together) or, with ``paired=True``, with one shared draw over all of them (pairing,
but no strata); rl2bench needs both at once, which is the ten lines of ``stratified_bootstrap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: The statistic a bootstrap resamples: score matrices (cells x instances) in, one number out.
Statistic = Callable[..., float]


class Interval(NamedTuple):
    """A point estimate and its confidence interval."""

    estimate: float
    low: float
    high: float


def as_matrix(scores: ArrayLike) -> np.ndarray:
    """Scores as a float array cells x instances (a 1-D array is one cell); empty or ragged is an error."""
    try:
        matrix = np.asarray(scores, dtype=float)
    except ValueError as exc:  # a ragged list of cells
        raise ValueError(f"scores must be cells x instances with the same instances per cell: {exc}") from None
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"scores must be a non-empty cells x instances array, not shape {matrix.shape}")
    return matrix


def normalized(returns: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> np.ndarray:
    """(returns - lower) / (upper - lower) per cell: the paper's normalized score (random = 0, the reference
    algorithm = 1). ``lower`` and ``upper`` are one number per cell (or one for all)."""
    matrix = as_matrix(returns)
    lo = np.asarray(lower, dtype=float).reshape(-1, 1)
    hi = np.asarray(upper, dtype=float).reshape(-1, 1)
    if np.any(hi == lo):
        raise ValueError("normalized: lower and upper coincide in a cell")
    return (matrix - lo) / (hi - lo)


def mean_score(scores: ArrayLike) -> float:
    """The mean over every (cell, instance) run (= the mean of the cell means: cells hold equal counts)."""
    return float(as_matrix(scores).mean())


def iqm(scores: ArrayLike) -> float:
    """The interquartile mean of all runs pooled over cells: int(N / 4) runs cut at each end (N runs),
    the mean of the rest (``scipy.stats.trim_mean(x, 0.25)``, as rliable)."""
    return float(stats.trim_mean(as_matrix(scores).ravel(), 0.25))


def performance_profile(scores: ArrayLike, taus: ArrayLike, by: Literal["instance", "cell"] = "instance"
                        ) -> np.ndarray:
    """For each tau, the fraction of runs with a score above tau (``by="instance"``, rliable's run-score
    distribution) or of cells whose mean score is above it (``by="cell"``)."""
    if by not in ("instance", "cell"):
        raise ValueError(f"by must be 'instance' or 'cell', not {by!r}")
    matrix = as_matrix(scores)
    values = matrix.ravel() if by == "instance" else matrix.mean(axis=1)
    thresholds = np.asarray(taus, dtype=float).reshape(-1)
    return (values[None, :] > thresholds[:, None]).mean(axis=1)


def probability_of_improvement(x: ArrayLike, y: ArrayLike, paired: bool = False) -> float:
    """P(X > Y) + P(X = Y) / 2 within each cell, averaged over cells (X and Y: two algorithms' scores on
    the same cells). Unpaired: over all pairs of an X run and a Y run of the cell (the Mann-Whitney U
    statistic over m * n, as rliable). Paired: X's instance i against Y's instance i."""
    a, b = as_matrix(x), as_matrix(y)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"X and Y need the same cells: {a.shape[0]} vs {b.shape[0]}")
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired scores need the same shape: {a.shape} vs {b.shape}")
        return float(((a > b) + 0.5 * (a == b)).mean())
    per_cell = []
    for row_x, row_y in zip(a, b, strict=True):
        sorted_y = np.sort(row_y)
        below = np.searchsorted(sorted_y, row_x, side="left")
        ties = np.searchsorted(sorted_y, row_x, side="right") - below
        per_cell.append((below.sum() + 0.5 * ties.sum()) / (len(row_x) * len(row_y)))
    return float(np.mean(per_cell))


def stratified_bootstrap(statistic: Statistic, *scores: ArrayLike, n_resamples: int = 2000, seed: int = 0,
                         paired: bool = True) -> np.ndarray:
    """The bootstrap distribution of ``statistic(*scores)``: ``n_resamples`` values, each on every score
    matrix resampled with replacement within each cell (instances drawn per cell; the cells stay). With
    ``paired`` (all matrices of one shape: the same instances) every matrix takes the same draws; else
    each its own. ``np.random.default_rng(seed)``: the same seed gives the same values."""
    matrices = [as_matrix(s) for s in scores]
    if not matrices:
        raise ValueError("stratified_bootstrap needs at least one score array")
    if paired and any(m.shape != matrices[0].shape for m in matrices):
        raise ValueError(f"paired resampling needs one shape: {[m.shape for m in matrices]}")
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for r in range(n_resamples):
        resampled, draw = [], None
        for m in matrices:
            if draw is None or not paired:
                draw = rng.integers(0, m.shape[1], size=m.shape)
            resampled.append(np.take_along_axis(m, draw, axis=1))
        out[r] = statistic(*resampled)
    return out


def bootstrap_ci(statistic: Statistic, *scores: ArrayLike, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0, paired: bool = True) -> Interval:
    """``statistic(*scores)`` and its stratified-bootstrap percentile interval at ``confidence``: the
    (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of ``stratified_bootstrap``'s values
    (numpy's linear interpolation). Reproducible for a fixed ``seed``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    values = stratified_bootstrap(statistic, *scores, n_resamples=n_resamples, seed=seed, paired=paired)
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(statistic(*(as_matrix(s) for s in scores))), float(low), float(high))
