"""The numbers a cell's learning curve is normalized by (random 0, Gittins or OPSRL 1), as in the paper's
figures: the paper's table where it ran the cell, else measured here the same way for every run of it."""

from __future__ import annotations

import csv
from importlib.resources import files

from rl2bench.stats import normalize


def reference_scores(task: str, cell: str) -> dict[str, float]:
    """The paper's random, reference (Gittins for bandits, OPSRL for MDPs) and RL^2 numbers for a cell,
    from leaderboard/paper/*.csv; empty for cells the paper did not run."""
    table = "table1_mab.csv" if task == "mab" else "table2_mdp.csv"
    upper = "gittins" if task == "mab" else "opsrl"
    out: dict[str, float] = {}
    with files("rl2bench.paper").joinpath(table).open() as fh:
        for row in csv.DictReader(fh):
            if row["task"] == task and row["cell"] == cell and row["algorithm"] in ("random", upper, "rl2"):
                key = {"random": "random", upper: "reference", "rl2": "rl2"}[row["algorithm"]]
                out[key] = float(row["value"])
    return out


MEASURED_REFERENCE_INSTANCES = 500


def measured_reference_scores(task: str, cell: str, instances: int = MEASURED_REFERENCE_INSTANCES
                              ) -> dict[str, float]:
    """For a cell the paper did not run: the two algorithms the family normalizes by (random and Gittins or
    OPSRL, default settings) played on ``instances`` of the cell's tuning instances (root seed 0; never the
    evaluation ones), so that every run of the cell, whatever its seed, is normalized the same way. Empty
    for families without a normalization (mazes)."""
    from rl2bench.protocol import prepare_agent  # lazily: the harness loads the algorithm packages, this one too
    from rl2bench.registry import get_family

    by = get_family(task).normalize_by
    if by is None:
        return {}
    return {key: float(prepare_agent(task, cell, algo).returns(instances, 0, "tune").mean())
            for key, algo in zip(("random", "reference"), by, strict=True)}


def normalization_scores(task: str, cell: str) -> tuple[dict[str, float], str]:
    """The random and reference numbers a cell's curves are normalized by, and where they come from: the
    paper's table where it has the cell, else measured here."""
    paper = reference_scores(task, cell)
    if {"random", "reference"} <= paper.keys():
        return paper, "paper"
    measured = measured_reference_scores(task, cell)
    return measured, f"measured on {MEASURED_REFERENCE_INSTANCES} tuning instances" if measured else "none"


def normalized(value: float, refs: dict[str, float]) -> float:
    if "random" not in refs or "reference" not in refs:
        return float("nan")
    return normalize(value, refs["random"], refs["reference"])

