"""The exact Bayes-optimal policy for Bernoulli bandits: the ceiling of the ``mab`` family.

Arm means are independent Uniform(0, 1) = Beta(1, 1), a trial is n pulls, and the objective is the
expected total reward over that prior. Dynamic programming over posterior states solves it exactly:

    V(state) = max over arm kinds a of  p_a (1 + V(state after a success on a)) + (1 - p_a) V(state after a failure),
    p_a = (s_a + 1) / (s_a + f_a + 2),  V = 0 when no pulls remain.

Arms are exchangeable, so a state is the multiset of the pulled arms' (successes, failures) plus the
number of unpulled arms (all alike: an unpulled arm is the (0, 0) kind); the arms of one kind are one
choice, and the table holds one entry per (state, kind). ``canonical_state`` writes a state as the sorted
tuple of (s, f) pairs and the unpulled count; the table itself stores it as the descending sorted row of
the arms' codes (``arm_code``: (s, f) numbered diagonal by diagonal, (0, 0) = 0), so canonicalisation is
one ``np.sort`` over a batch.

Build (``compute_policy_table``): states are enumerated forward level by level (t = pulls made), each
level the ``np.unique`` of the previous level's successors, then values go backward; every step is a
numpy operation over a whole level (no Python loop over states). Per decision level the table keeps,
for each (state, kind), a sorted key state * n_codes + code, its Q-value, whether it is optimal, and the
successor state ids after a failure and a success. The agent tracks its state id per instance, looks up
every arm's (state, code) key with one ``searchsorted`` over the batch, and follows the successor ids.

Ties: a kind is optimal when its Q-value is within ``TIE_TOL`` (1e-9) of the state's best, which treats
as ties exactly the kinds whose values are mathematically equal. Exact ties are common (untouched arms,
and e.g. Q = 7/4 for every kind of one n8-k4 state) and float rounding separates them by up to ~2e-15,
so a zero tolerance would break them by rounding noise; the smallest true gap is far larger (n10-k5 and
n10-k10: 4e-3; n20-k3 and n20-k5: 2.5e-4; n50-k2: 1.3e-6; n100-k2: 1.7e-7), and the tests check the
agent's choice against exact rational arithmetic in every state of n3-k2, n4-k3, n6-k2, n8-k4 and
n10-k3. Among all arms of optimal kinds the agent pulls the first index (``np.argmax`` of the optimal
flags), as every bandit baseline here breaks ties (``bandit_common``: first index, numpy argmax;
``gittins``: "first index on ties"). Any choice among optimal kinds has the same expected return; this
one makes the agent deterministic (it never draws from its generator).

k >= n: with n pulls at most n - 1 arms are pulled before the last decision, so an unpulled arm is always
available and the table (and value) for k >= n is the k = n one: n10-k10 and n10-k50 share it.

Reach (``count_states``: the states are the multisets of at most min(k, n) pulled (s, f) pairs with
total pulls <= n - 1, counted exactly by a generating function; the build enumerates exactly these):
n10-k5 has 1,951 states, n10-k10 and n10-k50 2,296 (each built in ~0.01 s), n20-k3 30,846 (0.1 s),
n50-k2 146,575 (0.2 s), n20-k20 813,414 (7 s), n100-k2 2,211,275 (2.5 s, 0.3 GB peak), as
``benchmarks/bayes_optimal.py`` records. Exact values: n10-k5 6.659988 (the paper's RL^2: 6.7), n10-k10
and n10-k50 6.713951 (paper RL^2: 6.7 and 6.8), n20-k3 13.465831, n100-k2 64.918421. On the n10 cells
``gittins-fh`` played the same arms as this policy in all of 10,000 trials per cell (seed 5); on n20-k3
it differed in 23% of trials, 0.017 +- 0.008 worse per trial. The limit is
``MAX_STATES``, 5 million: about 2 GB at the peak of the build and under a minute on one core here
(n30-k5, 6.4 million states, took 23 s and 2.4 GB). Out of reach, skipped by ``unavailable`` with the
count and an estimate of memory and time in its reason: n100-k3 (2.7e8 states), n100-k5 (3.6e11),
n100-k10 (9.6e15), n100-k50 (9.7e18), n500-k2 (1.3e9), n500-k5 (2.5e18), n500-k10 (1.6e29), n500-k50
(2.2e55): tens of GB at the very least, and for the paper's n100 and n500 cells far beyond any memory.
Tables with more than ``DISK_CACHE_MIN_STATES`` states (300,000: those that take more than about a
second to build) are built by ``prepare`` and cached under ``$RL2BENCH_CACHE/bayes_optimal``; smaller
ones are rebuilt in each process (milliseconds).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rl2bench.cache import cache_dir, load_or_rebuild
from rl2bench.registry import register_algorithm

from .bandit_common import BetaCountsAgent

#: Largest table built (states over all decision levels); see the module docstring.
MAX_STATES = 5_000_000
#: Tables above this many states are cached on disk (they take more than about a second to build).
DISK_CACHE_MIN_STATES = 300_000
#: Q-values within this of a state's best are ties (broken by the first arm index).
TIE_TOL = 1e-9
#: Peak build memory and build speed per state, measured on this project's 2-core machine (one core
#: busy) on n30-k5 and n20-k20 (the slower end: 110,000-800,000 states/s); only for ``unavailable``'s estimate.
BUILD_BYTES_PER_STATE = 400
BUILD_STATES_PER_SECOND = 100_000
TABLE_FORMAT = 1  # part of the cache file name; bump when the stored layout changes


def arm_code(s: np.ndarray | int, f: np.ndarray | int) -> np.ndarray | int:
    """Number of the (successes, failures) pair, diagonal by diagonal: w = s + f, code = w (w + 1) / 2 + s.

    (0, 0) = 0 (an unpulled arm), (0, 1) = 1, (1, 0) = 2, ...; a success adds w + 2, a failure w + 1."""
    w = s + f
    return w * (w + 1) // 2 + s


def _code_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(s, w) of every code with w <= n."""
    w = np.repeat(np.arange(n + 1), np.arange(1, n + 2))
    s = np.arange(len(w)) - w * (w + 1) // 2
    return s, w


def canonical_state(successes: list[int], failures: list[int]) -> tuple[tuple[tuple[int, int], ...], int]:
    """The exchangeable state of one instance: the sorted (s, f) pairs of its pulled arms and how many arms
    are unpulled (observed counts, not the Beta pseudo-counts)."""
    pairs = sorted((s, f) for s, f in zip(successes, failures, strict=True) if s + f > 0)
    return tuple(pairs), len(successes) - len(pairs)


def _log10_states_lower_bound(n: int, k: int) -> float:
    """log10 of a lower bound on the states of the last decision level alone: ordered k-tuples of (s, f)
    pairs with n - 1 pulls in all, C(n - 1 + 2k - 1, 2k - 1), over the k! orders of a multiset."""
    w = n - 1
    log_tuples = math.lgamma(w + 2 * k) - math.lgamma(2 * k) - math.lgamma(w + 1)
    return (log_tuples - math.lgamma(k + 1)) / math.log(10)


def count_states(n: int, k: int) -> float:
    """The number of decision states of a cell: multisets of at most min(k, n) pulled (s, f) pairs (s + f
    >= 1) with at most n - 1 pulls in all, from the generating function prod over w >= 1 of
    (1 - z x^w)^-(w + 1) (w + 1 pairs have s + f = w). Exact below 2**53 (float arithmetic; ``inf`` on
    overflow). Costs ~min(k, n) * n * log(n) operations: 0.2 s for n500-k50."""
    parts, pulls = min(k, n), n - 1
    poly = np.zeros((parts + 1, pulls + 1))  # poly[j, t]: multisets of j pairs with t pulls
    poly[0, 0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        for w in range(1, pulls + 1):
            old = poly.copy()
            for i in range(1, min(parts, pulls // w) + 1):  # i pairs of weight w: C(w + i, i) multisets
                poly[i:, w * i:] += float(math.comb(w + i, i)) * old[:parts + 1 - i, :pulls + 1 - w * i]
        total = float(poly.sum())
    return total if math.isfinite(total) else math.inf


EXACT_COUNT_CELLS = 50_000  # min(k, n) * n up to which ``reach`` always counts exactly (n500-k50: 0.2 s)


def reach(n: int, k: int) -> tuple[float, str | None]:
    """(state count, None) for a cell the table can be built for, else (count, one-line reason)."""
    cap = f"(the exact table holds at most {MAX_STATES:,})"
    if min(k, n) * n > EXACT_COUNT_CELLS:
        log10 = _log10_states_lower_bound(n, k)
        if log10 > math.log10(MAX_STATES) + 3:
            return math.inf, f"more than 1e{int(log10)} posterior states {cap}; beyond any memory"
        pulls = 8  # the states with at most `pulls` pulls are the states of cell n = pulls + 1: cheap
        while pulls < n - 1:
            states = count_states(pulls + 1, k)
            if states > 1000.0 * MAX_STATES:
                return states, f"more than {states:.2g} posterior states {cap}; beyond any memory"
            pulls *= 2
        states = count_states(n, k)
    else:
        states = count_states(n, k)
    if states <= MAX_STATES:
        return states, None
    gib = states * BUILD_BYTES_PER_STATE / 2**30
    hours = states / BUILD_STATES_PER_SECOND / 3600
    return states, f"{states:.2g} posterior states {cap}: ~{gib:.2g} GiB and ~{hours:.2g} h to build"


@dataclass(frozen=True)
class PolicyTable:
    """The Bayes-optimal policy of one (n, min(k, n)), per decision level t = 0..n-1 (pulls made).

    Level t's entries are the (state, kind) pairs of its states, sorted by ``keys[t]`` = state id *
    ``n_codes`` + the kind's ``arm_code``; ``q[t]`` is the kind's Q-value, ``optimal[t]`` whether it is
    within ``TIE_TOL`` of the state's best, ``successor[t]`` (entries x 2) the next level's state ids
    after a failure (column 0) and a success (column 1); meaningless at the last level. State 0 of level
    0 is the start; ``value`` is V(start), the exact expected total reward."""

    n: int
    k: int
    value: float
    n_states: int
    n_codes: int
    keys: list[np.ndarray]
    q: list[np.ndarray]
    optimal: list[np.ndarray]
    successor: list[np.ndarray]


def _unique_rows(rows: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True)``, faster: the rows are packed, a few slots per int64
    (base n_codes, so the order is the rows' order), and sorted by those columns (``np.lexsort``)."""
    per_word = max(1, int(62 / math.log2(n_codes)))
    slots = rows.shape[1]
    words = []
    for start in range(0, slots, per_word):
        block = rows[:, start:start + per_word].astype(np.int64)
        powers = n_codes ** np.arange(block.shape[1] - 1, -1, -1, dtype=np.int64)
        words.append((block * powers).sum(axis=1))
    if len(words) == 1:
        _, first, inverse = np.unique(words[0], return_index=True, return_inverse=True)
        return rows[first], inverse.reshape(-1)
    order = np.lexsort(words[::-1])  # lexsort's primary key is its last
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any([w[order[1:]] != w[order[:-1]] for w in words], axis=0)
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return rows[order[new]], inverse


def compute_policy_table(n: int, k: int) -> PolicyTable:
    """Solve the cell by dynamic programming (see the module docstring); no reach check, no cache."""
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 pulls and k >= 1 arms, not n={n}, k={k}")
    slots = min(k, n)  # k > n: slots stay zero (unpulled) at every decision, see the module docstring
    s_of, w_of = _code_tables(n)
    n_codes = len(w_of)
    rows = np.zeros((1, slots), dtype=np.int32)  # level 0: every arm unpulled
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (state id, code, successors) per entry
    n_states = 0
    for t in range(n):
        n_states += len(rows)
        first = np.ones(rows.shape, dtype=bool)  # rows are sorted: a kind starts where the code changes
        first[:, 1:] = rows[:, 1:] != rows[:, :-1]
        state, slot = np.nonzero(first)  # row-major: grouped by state
        code = rows[state, slot]
        if t < n - 1:
            after = np.concatenate([rows[state], rows[state]])
            entries = np.arange(len(state))
            after[entries, slot] = code + w_of[code] + 1  # failure
            after[len(state) + entries, slot] = code + w_of[code] + 2  # success
            after = -np.sort(-after, axis=1)
            rows, inverse = _unique_rows(after, n_codes)
            successor = inverse.reshape(2, -1).T.astype(np.int64)
        else:
            successor = np.zeros((len(state), 2), dtype=np.int64)
        levels.append((state.astype(np.int64), code.astype(np.int64), successor))
    keys, qs, optimal, successors = [], [], [], []
    v_next = np.zeros(1)
    for t in range(n - 1, -1, -1):
        state, code, successor = levels[t]
        p = (s_of[code] + 1.0) / (w_of[code] + 2.0)
        if t == n - 1:
            q = p
        else:
            q = p * (1.0 + v_next[successor[:, 1]]) + (1.0 - p) * v_next[successor[:, 0]]
        starts = np.flatnonzero(np.r_[True, state[1:] != state[:-1]])
        v = np.maximum.reduceat(q, starts)
        key = state * n_codes + code
        order = np.argsort(key)
        keys.append(key[order])
        qs.append(q[order])
        optimal.append((q >= v[state] - TIE_TOL)[order])
        successors.append(successor[order])
        v_next = v
    return PolicyTable(n=n, k=slots, value=float(v_next[0]), n_states=n_states, n_codes=n_codes,
                       keys=keys[::-1], q=qs[::-1], optimal=optimal[::-1], successor=successors[::-1])


def _cache_path(n: int, k: int) -> Path:
    return cache_dir() / "bayes_optimal" / f"v{TABLE_FORMAT}_n{n}_k{min(k, n)}.npz"


def _save_table(path: Path, table: PolicyTable) -> None:
    """One .npz, written to a temporary file and renamed (a concurrent or killed writer leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = np.array([len(x) for x in table.keys], dtype=np.int64)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=np.array([table.n, table.k, table.n_states, table.n_codes], dtype=np.int64),
                 value=np.array(table.value), sizes=sizes, keys=np.concatenate(table.keys),
                 q=np.concatenate(table.q), optimal=np.concatenate(table.optimal),
                 successor=np.concatenate(table.successor))
    os.replace(tmp, path)


def _load_table(path: Path) -> PolicyTable:
    with np.load(path) as data:
        n, k, n_states, n_codes = (int(x) for x in data["meta"])
        cuts = np.cumsum(data["sizes"])[:-1]
        return PolicyTable(n=n, k=k, value=float(data["value"]), n_states=n_states, n_codes=n_codes,
                           keys=np.split(data["keys"], cuts), q=np.split(data["q"], cuts),
                           optimal=np.split(data["optimal"], cuts), successor=np.split(data["successor"], cuts))


@functools.lru_cache(maxsize=4)
def policy_table(n: int, k: int) -> PolicyTable:
    """The table of a cell, from memory, the disk cache, or built (and cached on disk when large)."""
    k = min(k, n)
    states, reason = reach(n, k)
    if reason is not None:
        raise ValueError(f"bayes-optimal n{n}-k{k}: {reason}")
    if states <= DISK_CACHE_MIN_STATES:
        return compute_policy_table(n, k)
    path = _cache_path(n, k)
    cached = load_or_rebuild(path, _load_table)
    if cached is not None:
        return cached
    table = compute_policy_table(n, k)
    _save_table(path, table)
    return table


def bayes_optimal_value(n: int, k: int) -> float:
    """The exact expected total reward of the Bayes-optimal policy over n pulls of k Beta(1, 1) arms."""
    return policy_table(n, k).value


@register_algorithm
class BayesOptimal(BetaCountsAgent):
    """The exact Bayes-optimal policy (dynamic programming over posterior states; first index on ties).

    Not in the paper: the ceiling every algorithm's expected return lies below on the cells where the
    table fits (``unavailable`` names the others)."""

    name = "bayes-optimal"

    @classmethod
    def unavailable(cls, cell, spec):
        _, reason = reach(spec.n_episodes, spec.n_actions)
        return reason

    @classmethod
    def prepare(cls, cell, spec, settings):
        policy_table(spec.n_episodes, spec.n_actions)

    @classmethod
    def exact_value(cls, cell, spec) -> float | None:
        if reach(spec.n_episodes, spec.n_actions)[1] is not None:
            return None
        return bayes_optimal_value(spec.n_episodes, spec.n_actions)

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng)
        self.table = policy_table(spec.n_episodes, spec.n_actions)
        self.state = np.zeros(batch_size, dtype=np.int64)  # state id within the current level

    def _entries(self, codes: np.ndarray) -> np.ndarray:
        """Positions in level t's table of every (instance, code) pair; codes is (batch, m)."""
        keys = self.table.keys[self.t]
        want = self.state[:, None] * self.table.n_codes + codes
        where = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        if not np.array_equal(keys[where], want):
            raise RuntimeError("bayes-optimal: a state outside the table (the agent must see every pull of "
                               "the trial from its start)")
        return where

    def _codes(self) -> np.ndarray:
        s = self.successes.astype(np.int64) - 1  # pseudo-counts start at Beta(1, 1)
        f = self.failures.astype(np.int64) - 1
        return np.asarray(arm_code(s, f))

    def act(self, obs):
        optimal = self.table.optimal[self.t][self._entries(self._codes())]
        return np.argmax(optimal, axis=1)

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        pulled = self._codes()[self._rows, actions]
        where = self._entries(pulled[:, None])[:, 0]
        self.state = self.table.successor[self.t][where, np.asarray(rewards, dtype=np.int64)]
        super().observe(actions, rewards, next_obs, episode_done)
