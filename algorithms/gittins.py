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

from rl2bench.cache import cache_dir, load_or_rebuild, save_array_atomic
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
    cached = load_or_rebuild(path, np.load)
    if cached is not None:
        return cached
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


FH_LAMBDAS = 256  # lambda grid of the finite-horizon table; the break-even is interpolated between points
FH_BLOCK = 32  # lambdas per pass (bounds memory: block x states float32)


def lattice_position(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Position of state (a, b) in the lattice flattened diagonal by diagonal (s = a + b - 2, then a).

    Diagonals are stored in order, so the states with a + b - 2 <= K are a prefix of every longer
    flattening, and the successors of (a, b) sit at fixed offsets on the next diagonal.
    """
    s = a + b - 2
    return s * (s + 1) // 2 + (a - 1)


def _lattice(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the first ``size`` diagonals, flattened."""
    s = np.repeat(np.arange(size), np.arange(1, size + 1))
    a = np.arange(len(s)) - s * (s + 1) // 2 + 1
    return a, s + 2 - a


def compute_finite_horizon_table(horizon: int) -> np.ndarray:
    """Exact finite-horizon Gittins indices of Beta(a, b) arms for every m = 1..horizon pulls left.

    With a retirement reward lambda and the first pull forced, the value of m pulls left is
    V_1 = mu - lambda, V_m(a, b) = mu - lambda + mu max(0, V_{m-1}(a+1, b)) + (1-mu) max(0, V_{m-1}(a, b+1));
    the index is the lambda where V_m(a, b) = 0 (it is decreasing in lambda). One pass over m per lambda
    block covers every state. States with a + b - 2 > horizon - m cannot occur in a trial of that
    horizon and are not stored: the table for m holds the first horizon - m + 1 diagonals, and the
    tables for m = 1..horizon are concatenated (see ``finite_horizon_offsets``).
    """
    n = horizon
    lambdas = (np.arange(FH_LAMBDAS, dtype=np.float32) + 0.5) / FH_LAMBDAS
    a, b = _lattice(n)
    mu = (a / (a + b)).astype(np.float32)
    here = lattice_position(a, b)
    succ, fail = here + (a + b - 2) + 2, here + (a + b - 2) + 1  # (a+1, b) and (a, b+1)
    sizes = [(n - m + 1) * (n - m + 2) // 2 for m in range(1, n + 1)]
    index = [np.full(size, np.nan, dtype=np.float32) for size in sizes]
    carry: list[np.ndarray | None] = [None] * n  # V at the previous block's last lambda, per m
    for start in range(0, FH_LAMBDAS, FH_BLOCK):
        lam = lambdas[start:start + FH_BLOCK, None]
        positive = None  # max(0, V_{m-1})
        for m in range(1, n + 1):
            size = sizes[m - 1]
            v = mu[:size] - lam
            if positive is not None:
                v += mu[:size] * positive[:, succ[:size]] + (1 - mu[:size]) * positive[:, fail[:size]]
            previous = carry[m - 1]
            if previous is None:
                grid, vals = lambdas[start:start + FH_BLOCK], v
            else:
                grid, vals = lambdas[start - 1:start + FH_BLOCK], np.concatenate([previous[None], v])
            above = (vals > 0).sum(axis=0)
            crossing = (above > 0) & (above < len(grid))
            if crossing.any():
                j = np.clip(above - 1, 0, len(grid) - 2)
                lo = np.take_along_axis(vals, j[None], 0)[0]
                hi = np.take_along_axis(vals, j[None] + 1, 0)[0]
                est = grid[j] + lo / (lo - hi) * (grid[j + 1] - grid[j])
                index[m - 1][crossing] = est[crossing]
            carry[m - 1] = v[-1].copy()  # a view would keep the whole block alive
            positive = np.maximum(v, 0)
    for table in index:
        table[np.isnan(table)] = lambdas[0] / 2  # below the first grid point (never above the last)
    return np.concatenate(index)


def finite_horizon_offsets(table_horizon: int) -> np.ndarray:
    """Start of the table for m pulls left (entry m - 1) inside the concatenated table."""
    sizes = np.array([(table_horizon - m + 1) * (table_horizon - m + 2) // 2 for m in range(1, table_horizon + 1)])
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def finite_horizon_table(horizon: int) -> tuple[int, np.ndarray]:
    """A cached table covering ``horizon`` (any cached table of a longer horizon also covers it)."""
    folder = cache_dir() / "gittins"
    cached = sorted(folder.glob("finite_horizon_v2_n*.npy"), key=lambda p: int(p.stem.split("_n")[1]))
    for path in cached:
        built_for = int(path.stem.split("_n")[1])
        if built_for >= horizon:
            table = load_or_rebuild(path, lambda p: np.load(p, mmap_mode="r"))
            if table is not None:
                return built_for, table
    built = compute_finite_horizon_table(horizon)
    save_array_atomic(folder / f"finite_horizon_v2_n{horizon}.npy", built)
    return horizon, built


@register_algorithm
class FiniteHorizonGittins(BetaCountsAgent):
    """The exact finite-horizon Gittins index (Kaufmann 2016): the Bayesian index policy for a known
    number of pulls. Not in the paper; the strongest classical Bayesian baseline here."""

    name = "gittins-fh"
    cost = 2.0

    @classmethod
    def prepare(cls, cell, spec, settings):
        finite_horizon_table(spec.n_episodes)

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng)
        self.table_horizon, self.table = finite_horizon_table(spec.n_episodes)
        self.offsets = finite_horizon_offsets(self.table_horizon)

    def act(self, obs):
        pulls_left = self.spec.n_episodes - self.t
        # a + b - 2 <= t = n - m <= table_horizon - m: always inside the table for m
        where = self.offsets[pulls_left - 1] + lattice_position(self.successes.astype(np.int64),
                                                                self.failures.astype(np.int64))
        return np.argmax(self.table[where], axis=1)
