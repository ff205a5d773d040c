"""Gittins-index policies for Bernoulli arms with Beta posteriors.

The paper's Gittins column is the best, per cell, of a closed-form Whittle-type approximation and a
calibrated index table; both are here, with the discount as the tuned hyperparameter.

* ``calibrated_index_table``: the discounted Gittins index of every Beta(a, b) state with a + b <= L,
  by calibration against a retirement reward lambda: for a grid of lambdas, one backward induction over
  the (a, b) lattice gives the value of continuing; the index is where continuing and retiring break
  even (interpolated between grid points). Cached on disk per (gamma, L).
* ``finite_horizon_index_table``: the exact finite-horizon index (Kaufmann 2016 / Lattimore 2016):
  the lambda at which the best stopping time tau in 1..m (m = pulls left) breaks even. Depends on m,
  so the table is 3-D; built on demand and cached.
"""

from __future__ import annotations

import numpy as np

from rl2bench.cache import cache_dir, save_array_atomic
from rl2bench.registry import register_algorithm

from .bandit_common import BetaCountsAgent

CALIBRATION_LATTICE = 2000  # truncation a + b <= L; beyond it the arm is treated as known
CALIBRATION_LAMBDAS = 1000
GAMMAS = [0.8, 0.9, 0.95, 0.99, 0.995, 0.999]


def _break_even(lambdas: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Per column, the lambda where ``gap`` (decreasing in lambda, rows) crosses 0, linearly interpolated."""
    g = len(lambdas)
    j = np.clip((gap > 0).sum(axis=0) - 1, 0, g - 2)
    cols = np.arange(gap.shape[1])
    lo, hi = gap[j, cols], gap[j + 1, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(lo != hi, lo / (lo - hi), 0.5)
    return lambdas[j] + np.clip(frac, 0.0, 1.0) * (lambdas[j + 1] - lambdas[j])


def compute_calibrated_index_table(gamma: float, lattice: int = CALIBRATION_LATTICE,
                                   n_lambdas: int = CALIBRATION_LAMBDAS) -> np.ndarray:
    """Index[a, b] (float32, NaN outside 1 <= a, b and a + b <= lattice) for discount ``gamma``."""
    lambdas = (np.arange(n_lambdas) + 0.5) / n_lambdas
    retire = lambdas[:, None] / (1.0 - gamma)
    table = np.full((lattice + 1, lattice + 1), np.nan, dtype=np.float32)
    a = np.arange(1, lattice)
    value = np.maximum(retire, (a / lattice)[None, :] / (1.0 - gamma))  # known arm at the boundary
    for s in range(lattice - 1, 1, -1):
        a = np.arange(1, s)
        mu = a / s
        cont = mu + gamma * (mu * value[:, 1:] + (1.0 - mu) * value[:, :-1])
        table[a, s - a] = _break_even(lambdas, cont - retire)
        value = np.maximum(retire, cont)
    return table


def calibrated_index_table(gamma: float) -> np.ndarray:
    """The cached table for ``gamma`` (computed and saved on first use, ~10 s)."""
    path = cache_dir() / "gittins" / f"calibrated_g{gamma:.6f}_L{CALIBRATION_LATTICE}.npy"
    if path.exists():
        return np.load(path)
    table = compute_calibrated_index_table(gamma)
    save_array_atomic(path, table)
    return table


def whittle_index(a: np.ndarray, b: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Closed-form approximation nu = mu + mu(1-mu) / (n sqrt((2c + 1/n) mu(1-mu)) + mu - 1/2),
    n = a + b, mu = a / n, c = ln(1/gamma); the paper's scripts used it with gamma = 1."""
    n = a + b
    mu = a / n
    c = np.log(1.0 / gamma)
    var = mu * (1.0 - mu)
    return mu + var / (n * np.sqrt((2.0 * c + 1.0 / n) * var) + mu - 0.5)


@register_algorithm
class Gittins(BetaCountsAgent):
    """Pull the arm with the largest Gittins index (first index on ties).

    ``method='calibrated'`` looks up the calibrated table for ``gamma``; ``method='whittle'`` uses
    the closed-form approximation with gamma = 1, as the paper's scripts did.
    """

    name = "gittins"

    @classmethod
    def grid(cls, cell, spec):
        return [{"method": "whittle"}] + [{"method": "calibrated", "gamma": g} for g in GAMMAS]

    @classmethod
    def prepare(cls, cell, spec, settings):
        for s in settings:
            if s.get("method") == "calibrated":
                calibrated_index_table(s["gamma"])

    def __init__(self, spec, batch_size, rng, *, method: str = "calibrated", gamma: float = 0.99):
        super().__init__(spec, batch_size, rng)
        if method not in ("calibrated", "whittle"):
            raise ValueError(f"method must be 'calibrated' or 'whittle', not {method!r}")
        self.method = method
        self.gamma = gamma
        if method == "calibrated":
            if spec.n_episodes + 2 > CALIBRATION_LATTICE:
                raise ValueError(f"calibrated Gittins tables cover n <= {CALIBRATION_LATTICE - 2}")
            self.table = calibrated_index_table(gamma)

    def act(self, obs):
        if self.method == "whittle":
            index = whittle_index(self.successes, self.failures)
        else:
            index = self.table[self.successes.astype(np.int64), self.failures.astype(np.int64)]
        return np.argmax(index, axis=1)
