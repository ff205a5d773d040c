"""Inputs that would cost the machine are refused up front, a read-only run folder is still shown, a
reproduction check fails on algorithm-cells it could not compare, and a damaged cache rebuilds itself."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from rl2bench.cli import main


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, needle", [
    (["--instances", "99999999999999999999"], "GiB of memory"),
    (["--cells", "n10000000-k5", "--instances", "1000000"], "trial steps x arms of work"),
    (["--cells", "n10-k100000000"], "GiB of memory"),
])
def test_a_run_past_the_limits_is_refused_in_one_line_before_anything_is_written(args, needle, tmp_path, capsys):
    code, _, err = cli(["run", "--task", "mab", *args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and needle in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_paper_tables_are_well_inside_the_limits():
    from rl2bench.limits import MAX_WORK, footprint, memory_limit
    from rl2bench.registry import get_family

    for task in ("mab", "mdp"):
        family = get_family(task)
        need = footprint(family, list(family.default_cells), 12, 1000, 1000)
        assert need.work < MAX_WORK / 10 and need.memory_bytes < memory_limit() / 10


def _small_run(tmp_path, capsys, name: str, cells: str, algos: str = "random,greedy") -> None:
    code, _, err = cli(["run", "--task", "mab", "--algos", algos, "--cells", cells, "--instances", "30",
                        "--jobs", "1", "--no-progress", "--out", str(tmp_path / name)], capsys)
    assert code == 0, err


def test_check_exact_fails_on_algorithm_cells_it_could_not_compare_unless_told_the_run_is_a_subset(tmp_path, capsys):
    _small_run(tmp_path, capsys, "part", "n10-k3")
    _small_run(tmp_path, capsys, "whole", "n10-k3,n10-k5")
    exact = ["check", str(tmp_path / "part"), "--against", str(tmp_path / "whole"), "--exact"]
    code, out, _ = cli(exact, capsys)
    assert code == 1 and "FAIL, not in both runs: greedy (n10-k5) only in" in out
    code, out, _ = cli([*exact, "--subset"], capsys)
    assert code == 0 and "2 reproduced exactly, 0 FAIL" in out and "not rerun (--subset)" in out
    code, out, _ = cli(["check", str(tmp_path / "whole"), "--against", str(tmp_path / "part"), "--exact",
                        "--subset"], capsys)
    assert code == 1  # the checked run holds cells the reference never had: never a pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_table_on_a_read_only_folder_shows_the_leaderboard_without_rewriting_it(tmp_path, capsys):
    _small_run(tmp_path, capsys, "run", "n10-k3")
    before = (tmp_path / "run" / "leaderboard.md").read_text()
    (tmp_path / "run").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, out, err = cli(["table", str(tmp_path / "run")], capsys)
    finally:
        (tmp_path / "run").chmod(stat.S_IRWXU)
    assert code == 0 and "n10-k3" in out and "not writable" in err
    assert (tmp_path / "run" / "leaderboard.md").read_text() == before


def test_table_on_a_folder_it_cannot_write_is_shown_not_a_traceback(tmp_path, capsys, monkeypatch):
    """The same as above for any user, root included: the folder reported as not writable."""
    _small_run(tmp_path, capsys, "run", "n10-k3")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if mode == os.W_OK and
                        str(path) == str(tmp_path / "run") else real_access(path, mode, **kw))
    code, out, err = cli(["table", str(tmp_path / "run")], capsys)
    assert code == 0 and "n10-k3" in out and "is not writable" in err and "Traceback" not in err


def test_a_damaged_cached_table_is_named_and_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL2BENCH_CACHE", str(tmp_path))
    from rl2bench.algorithms.gittins import finite_horizon_table

    horizon, table = finite_horizon_table(12)
    table = np.array(table)
    path = next((tmp_path / "gittins").glob("finite_horizon_v2_n12.npy"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again_horizon, again = finite_horizon_table(12)
    err = capsys.readouterr().err
    assert str(path) in err and "damaged" in err and "building it again" in err
    assert again_horizon == horizon and np.array_equal(np.array(again), table)
