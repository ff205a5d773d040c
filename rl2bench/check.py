"""Regression check of a run against the paper's tables (or against another run).

For every (task, cell, algorithm) present in both, z = (ours - reference) / (sqrt(2) * se), where se is
our standard error and stands in for the reference's too (the paper prints none; both are means over
1000 instances of the same distribution). Paper values are rounded to one decimal, so differences up to
0.05 count as zero. A row passes with |z| <= tolerance (3 by default); rows listed with a reason in
``leaderboard/paper/known_differences.csv`` are reported as explained instead of failing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from rl2bench.errors import UserError
from rl2bench.results import RunStore
from rl2bench.stats import summarize

DEFAULT_TOLERANCE = 3.0
PAPER_ROUNDING = 0.05


def paper_table() -> pd.DataFrame:
    return pd.concat([paper_csv(name) for name in ("table1_mab.csv", "table2_mdp.csv")], ignore_index=True)


def paper_csv(name: str) -> pd.DataFrame:
    """A table shipped in ``rl2bench.paper``, read from a real file however the package is installed."""
    with resources.as_file(resources.files("rl2bench.paper") / name) as path:
        return pd.read_csv(path)


def known_differences() -> pd.DataFrame:
    if not (resources.files("rl2bench.paper") / "known_differences.csv").is_file():
        return pd.DataFrame(columns=["task", "cell", "algorithm", "reason"])
    return paper_csv("known_differences.csv")


def compare(ours: pd.DataFrame, reference: pd.DataFrame, rounding: float, tolerance: float) -> pd.DataFrame:
    """Join our summary (mean, se) with reference values; add delta, z and status columns."""
    merged = ours.merge(reference, on=["task", "cell", "algorithm"], how="inner")
    delta = merged["mean"] - merged["value"]
    excess = np.maximum(delta.abs() - rounding, 0.0)
    merged["delta"] = delta
    with np.errstate(divide="ignore", invalid="ignore"):  # se 0 (constant returns) or NaN (one instance)
        z = np.sign(delta) * excess / (np.sqrt(2.0) * merged["se"])
    merged["z"] = np.where(excess == 0, 0.0, z)  # within the paper's rounding: agreement, whatever the se
    merged["status"] = np.where(merged["z"].abs() <= tolerance, "ok", "FAIL")
    known = known_differences()
    if len(known):
        key = merged.set_index(["task", "cell", "algorithm"]).index
        explained = key.isin(known.set_index(["task", "cell", "algorithm"]).index)
        merged.loc[explained & (merged["status"] == "FAIL"), "status"] = "explained"
    return merged


def check_run(run: Path, against: str, tolerance: float = DEFAULT_TOLERANCE) -> tuple[pd.DataFrame, bool]:
    ours = summarize(RunStore.existing(run).results())
    if against == "paper":
        reference, rounding = paper_table(), PAPER_ROUNDING
    else:
        other = summarize(RunStore.existing(Path(against)).results())
        reference, rounding = other.rename(columns={"mean": "value"})[["task", "cell", "algorithm", "value"]], 0.0
    table = compare(ours, reference, rounding, tolerance)
    if table.empty:
        raise UserError(f"no (task, cell, algorithm) of {run} appears in {against!r}")
    return table, bool((table["status"] != "FAIL").all())


def reproduce_run(run: Path, against: Path) -> tuple[pd.DataFrame, bool, list[str], list[str]]:
    """Does ``run`` reproduce ``against`` instance by instance? For every (task, cell, algorithm) in both,
    count the evaluation instances whose returns differ (beyond 1e-9) or that only one run holds: the same
    seed and protocol must give the same numbers, so any difference is a change of behaviour, however
    small its effect on the mean. Also returns the algorithm-cells that only ``run`` holds and those that
    only ``against`` holds."""
    pair = ["task", "cell", "algorithm"]
    key = [*pair, "instance"]
    ours = RunStore.existing(run).results()[[*key, "return"]]
    theirs = RunStore.existing(against).results()[[*key, "return"]]
    for frame in (ours, theirs):
        frame["cell"] = frame["cell"].astype(str)
    shared = ours[pair].drop_duplicates().merge(theirs[pair].drop_duplicates(), on=pair)
    if shared.empty:
        raise UserError(f"no (task, cell, algorithm) of {run} appears in {against}")
    only: list[list[str]] = []
    for frame, name in ((ours, run), (theirs, against)):
        alone = frame[pair].drop_duplicates().merge(shared, on=pair, how="left", indicator=True)
        alone = alone[alone["_merge"] == "left_only"]
        only.append([f"{algo} ({', '.join(group['cell'])}) only in {name}"
                     for algo, group in alone.groupby("algorithm")])
    both = (ours.merge(shared, on=pair).merge(theirs.merge(shared, on=pair), on=key, how="outer",
                                               suffixes=("", "_ref"), indicator=True))
    both["missing"] = both["_merge"] != "both"
    both["differs"] = ~both["missing"] & ~np.isclose(both["return"], both["return_ref"], rtol=1e-9, atol=1e-9)
    table = both.groupby(pair, sort=True).agg(
        mean=("return", "mean"), value=("return_ref", "mean"), instances=("_merge", "size"),
        differing=("differs", "sum"), missing=("missing", "sum")).reset_index()
    table["status"] = np.where((table["differing"] == 0) & (table["missing"] == 0), "ok", "FAIL")
    return table, bool((table["status"] == "ok").all()), only[0], only[1]


def render_reproduction(table: pd.DataFrame) -> str:
    rows = table[["task", "cell", "algorithm", "mean", "value", "instances", "differing", "missing", "status"]]
    return tabulate(rows.values.tolist(), ["task", "cell", "algorithm", "ours", "reference", "instances",
                                           "differing", "in one run only", "status"], floatfmt=".6g",
                    tablefmt="simple")


def render(table: pd.DataFrame) -> str:
    rows = table[["task", "cell", "algorithm", "mean", "value", "delta", "se", "z", "status"]]
    return tabulate(rows.values.tolist(), ["task", "cell", "algorithm", "ours", "reference", "delta", "se", "z",
                                           "status"], floatfmt=("", "", "", ".5g", ".5g", ".3g", ".3g", ".3g", ""),
                    tablefmt="simple")
