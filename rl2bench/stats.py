"""Statistics as small pure functions over per-instance returns (scipy.stats does the tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05


def mean_and_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    se = float(stats.sem(x)) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def p_worse_than_best(best: np.ndarray, other: np.ndarray) -> float:
    """One-sided Welch t-test of H1: mean(best) > mean(other). The paper marks every algorithm whose
    p-value is at least 0.05 (not significantly worse than the row's best)."""
    if np.array_equal(best, other):
        return 1.0
    if len(best) < 2 or len(other) < 2:  # no variance estimate, no test: only the best is marked
        return float("nan")
    result = stats.ttest_ind(best, other, equal_var=False, alternative="greater")
    p = float(result.pvalue)
    return 1.0 if np.isnan(p) else p  # identical constant samples: no evidence of a difference


def summarize(results: pd.DataFrame, alpha: float = ALPHA, references: frozenset[str] = frozenset()
              ) -> pd.DataFrame:
    """One row per (cell, algorithm): mean, se, n, p-value against the cell's best, and ``marked``
    (the best, or not significantly worse than it). ``references`` (oracles that see hidden state) are
    summarized but never compete: they are not the best and not marked."""
    rows = []
    for (task, cell), group in results.groupby(["task", "cell"], sort=False):
        by_algo = {a: g["return"].to_numpy() for a, g in group.groupby("algorithm", sort=False)}
        means = {a: float(x.mean()) for a, x in by_algo.items() if a not in references}
        best = max(means, key=means.__getitem__) if means else None
        for algo, x in by_algo.items():
            mean, se = mean_and_se(x)
            competing = best is not None and algo not in references
            p = p_worse_than_best(by_algo[best], x) if competing and best is not None else float("nan")
            rows.append({"task": task, "cell": cell, "algorithm": algo, "mean": mean, "se": se, "n": len(x),
                         "best": algo == best, "p_value": p,
                         "marked": competing and (algo == best or p >= alpha)})
    return pd.DataFrame(rows)


def normalize(value: float, lower: float, upper: float) -> float:
    """(value - lower) / (upper - lower): the paper's normalized score (Figures 2-3: random = 0, Gittins
    or OPSRL = 1); NaN when the two references coincide."""
    return (value - lower) / (upper - lower) if upper != lower else float("nan")


def normalized_scores(summary: pd.DataFrame, lower: str, upper: str) -> pd.Series:
    """(mean - mean[lower]) / (mean[upper] - mean[lower]) per cell (paper Figures 2-3: random = 0,
    Gittins or OPSRL = 1); NaN where a reference algorithm is missing from the cell."""
    means = summary.pivot_table(index="cell", columns="algorithm", values="mean")
    out = []
    for _, row in summary.iterrows():
        if lower in means.columns and upper in means.columns:
            lo, hi = means.at[row["cell"], lower], means.at[row["cell"], upper]
            out.append(normalize(row["mean"], lo, hi))
        else:
            out.append(np.nan)
    return pd.Series(out, index=summary.index, name="normalized")
