"""The package works from any folder, installed editable or not: from the repository root (where the
checkout's rl2bench/ shadows an installed copy) and from an empty folder (where only the installed package
is seen; under tox that is the built wheel, which must carry the trained policies)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def rl2bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RL2BENCH_ZOO")}
    return subprocess.run([sys.executable, "-m", "rl2bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("where", ["repository root", "empty folder"])
@pytest.mark.heavy
def test_the_command_line_and_its_subpackages_load_from(where, tmp_path):
    cwd = ROOT if where == "repository root" else tmp_path
    result = rl2bench("list", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "gittins" in result.stdout and "psrl" in result.stdout and "rl2" in result.stdout
    assert rl2bench("train", "--help", cwd=cwd).returncode == 0  # a subcommand the RL^2 package registers


@pytest.mark.heavy
def test_rl2_plays_its_zoo_policy_from_an_empty_folder(tmp_path):
    out = tmp_path / "run"
    result = rl2bench("run", "--task", "mab", "--algos", "all", "--cells", "n10-k5", "--instances", "40",
                      "--tune-instances", "20", "--jobs", "1", "--no-progress", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(out / "results.csv") as f:
        played = {row["algorithm"] for row in csv.DictReader(f)}
    assert {"rl2", "gittins", "ucb1"} <= played
