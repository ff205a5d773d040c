"""Pictures of maze paths (``tasks/maze/paths.py``): the trials recorded are the protocol's own, the
drawing puts walls and paths where the data say, the command line turns mistakes into one line, and a run
folder's pictures reach its published page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rl2bench.cli import main
from rl2bench.protocol import play_trials, prepare_agent
from rl2bench.registry import get_family
from rl2bench.tasks.maze import layout as L
from rl2bench.tasks.maze.engine import GEOMETRY
from rl2bench.tasks.maze.paths import MazePath, draw_paths, record_paths

ROOT = Path(__file__).resolve().parents[1]
MAZE_RUN = ROOT / "leaderboard" / "runs" / "maze"


def vizdoom_or_skip() -> None:
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        if os.environ.get("RL2BENCH_REQUIRE_MAZE") == "1":
            raise
        pytest.skip('vizdoom not installed (pip install -e ".[test,maze]")')


# -- drawing: a hand-made 3x3 maze --------------------------------------------------------------------------
#  row 2:  S . .      passages: (0,0)-(0,1), (0,1)-(0,2), (0,2)-(1,2), (1,2)-(1,1), (1,1)-(1,0),
#  row 1:  . . .                (1,0)-(2,0), (2,0)-(2,1), (2,1)-(2,2)
#  row 0:  T . .      (row 0 at the bottom, as in the map)
PASSAGES = {((0, 0), (0, 1)), ((0, 1), (0, 2)), ((0, 2), (1, 2)), ((1, 1), (1, 2)), ((1, 0), (1, 1)),
            ((1, 0), (2, 0)), ((2, 0), (2, 1)), ((2, 1), (2, 2))}


def hand_made() -> dict[str, np.ndarray]:
    lay = {"open_e": np.zeros((1, 3, 3), bool), "open_n": np.zeros((1, 3, 3), bool),
           "start": np.array([[2, 0]]), "heading": np.array([0]), "target": np.array([[0, 0]])}
    for (r0, c0), (r1, c1) in PASSAGES:
        if r0 == r1:
            lay["open_e"][0, r0, min(c0, c1)] = True
        else:
            lay["open_n"][0, min(r0, r1), c0] = True
    return lay


def expected_walls() -> set[tuple[float, ...]]:
    """Every edge of the 3x3 grid (outer ones included) that is not a passage, on the wall blocks' middle
    lines k * pitch + wall / 2, written out independently of the code under test."""
    line = [k * GEOMETRY.pitch + GEOMETRY.wall / 2 for k in range(4)]
    walls = set()
    for r in range(3):
        for c in range(4):  # the vertical edge left of column c (c = 3: the east border)
            if not (0 < c < 3 and ((r, c - 1), (r, c)) in PASSAGES):
                walls.add((line[c], line[r], line[c], line[r + 1]))
    for r in range(4):
        for c in range(3):  # the horizontal edge below row r
            if not (0 < r < 3 and ((r - 1, c), (r, c)) in PASSAGES):
                walls.add((line[c], line[r], line[c + 1], line[r]))
    return walls


def hand_made_path() -> MazePath:
    lay = hand_made()
    x0, y0 = (float(v) for v in GEOMETRY.centre(2, 0))
    xt, yt = (float(v) for v in GEOMETRY.centre(0, 0))
    xm, ym = (float(v) for v in GEOMETRY.centre(1, 0))
    return MazePath(
        instance=7, open_dirs=L.open_dirs(lay)[0], start=(2, 0), heading=0, target=(0, 0),
        x=np.array([x0, x0 + 20, x0 + 40, x0, xm, xt]), y=np.array([y0, y0, y0, y0, ym, yt]),
        episode=np.array([1, 1, 1, 2, 2, 2]), actions=np.zeros(4, dtype=np.int64), lengths=np.array([2, 2]),
        success=np.array([False, True]), total=0.0)


def rounded(segment) -> tuple[float, ...]:
    (xa, ya), (xb, yb) = sorted(map(tuple, np.asarray(segment, dtype=float)))
    return tuple(round(v, 6) for v in (xa, ya, xb, yb))


def test_walls_are_drawn_where_open_dirs_closes_the_maze():
    fig = draw_paths([hand_made_path()], "hand-made")
    ax = fig.axes[0]
    walls = [c for c in ax.collections if c.get_gid() == "walls"]
    assert len(walls) == 1
    drawn = {rounded(s) for s in walls[0].get_segments()}
    expected = {tuple(round(v, 6) for v in w) for w in expected_walls()}
    assert drawn == expected
    assert len(drawn) == 4 * 3 * 2 - len(PASSAGES)  # 24 edges of a 3x3 grid, 8 of them open


def test_each_episode_is_a_line_through_the_recorded_points():
    path = hand_made_path()
    fig = draw_paths([path, path], "hand-made", columns=2)
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    for e in (1, 2):
        np.testing.assert_allclose(lines[f"episode {e}"].get_xydata(),
                                   np.column_stack([path.x, path.y])[path.episode == e])
    assert lines["episode 1"].get_color() != lines["episode 2"].get_color()
    np.testing.assert_allclose(lines["start"].get_xydata(), [GEOMETRY.centre(2, 0)])
    target = next(p for p in ax.patches if p.get_gid() == "target")
    h = GEOMETRY.wall / 2
    assert target.get_xy() == pytest.approx((h, h)) and target.get_width() == pytest.approx(GEOMETRY.pitch)
    assert "ep 1: no target (2 steps)" in ax.get_title() and "ep 2: target in 2 steps" in ax.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"episode 1", "episode 2", "walls", "target"} <= set(labels)
    assert "hand-made" in fig.get_suptitle()


# -- the command line ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--task", "mab", "--cell", "small", "--algo", "random"], "maze task only"),
        (["--task", "nope", "--cell", "small", "--algo", "random"], "unknown task 'nope'"),
        (["--cell", "tiny", "--algo", "random"], "invalid maze cell 'tiny'"),
        (["--cell", "small", "--algo", "nope"], "unknown algorithm 'nope'"),
        (["--cell", "small", "--algo", "random,memory"], "one algorithm"),
        (["--cell", "small", "--algo", "random", "--instances", "0,1000"], "instance 1000 is out of range"),
        (["--cell", "small", "--algo", "random", "--instances", "4", "--eval-instances", "3"], "0..2"),
        (["--cell", "small", "--algo", "random", "--instances", "one"], "non-negative integers"),
        (["--cell", "small", "--algo", "random", "--episodes", "6"], "episodes 1..5"),
        (["--cell", "small", "--algo", "random", "--run", "nowhere"], "not an rl2bench run folder"),
        (["--cell", "small", "--algo", "random", "--run", str(ROOT / "leaderboard" / "runs" / "mab")],
         "not of the maze task"),
        (["--cell", "small", "--algo", "random", "--out", "paths.txt"], "ending in one of .png"),
    ],
)
def test_bad_input_is_one_line(args, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if "--out" not in args:
        args = [*args, "--out", "paths.png"]
    try:
        code = main(["paths", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert needle in err
    assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "paths.png").exists()


# -- a run folder's pictures on its page ------------------------------------------------------------------
@pytest.mark.heavy
def test_a_run_folders_pictures_reach_its_published_page(tmp_path):
    from matplotlib.figure import Figure

    run = tmp_path / "runs" / "maze"
    shutil.copytree(MAZE_RUN, run, ignore=shutil.ignore_patterns("*.png"))
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    fig.savefig(run / "paths-5x5-small-memory.png", metadata={"Description": "Paths of memory, drawn by: `x`"})
    assert main(["table", str(run), "--publish", str(tmp_path / "maze.md")]) == 0
    page = (tmp_path / "maze.md").read_text()
    own = (run / "leaderboard.md").read_text()
    assert "## Figures" in page and "Paths of memory, drawn by: `x`" in page
    assert "](runs/maze/paths-5x5-small-memory.png)" in page  # relative to the published page
    assert "](paths-5x5-small-memory.png)" in own
    committed = (ROOT / "leaderboard" / "maze.md").read_text()
    assert page.split("## Figures")[0].rstrip() == committed.split("## Figures")[0].rstrip()


# -- the trials are the protocol's ------------------------------------------------------------------------
CELL, N, SEED = "small-e2-t40", 20, 4  # 20 instances: two engine groups with 2 workers of 8 games


@pytest.mark.heavy
@pytest.mark.maze
@pytest.mark.parametrize("algo", ["random", "memory", "rl2"])
def test_recorded_trials_are_the_protocols(algo):
    vizdoom_or_skip()
    family = get_family("maze")
    prepared = prepare_agent("maze", CELL, algo)
    batches: list[list[np.ndarray]] = [[]]  # the protocol's actions, step by step, per engine group

    def watch(actions, step):
        batches[-1].append(actions.copy())
        if step.trial_done.all():
            batches.append([])

    full = play_trials(family, prepared.cell, prepared.agent_cls, prepared.setting, N, SEED, "eval", watch=watch)
    sizes = [len(b[0]) for b in batches[:-1]]
    assert sum(sizes) == N and len(sizes) >= 2
    wanted = [3, N - 2, 0]  # one of the second group too, which plays after the first
    paths = record_paths(prepared, wanted, N, SEED)
    assert [p.instance for p in paths] == wanted
    lay = family.sample_instances(prepared.cell, SEED, "eval", N)
    for path in paths:
        i = path.instance
        assert path.total == pytest.approx(full.returns[i])
        for e in (1, 2):
            assert path.lengths[e - 1] == full.metrics[f"len_ep{e}"][i]
            assert path.success[e - 1] == bool(full.metrics[f"success_ep{e}"][i])
        group = int(np.searchsorted(np.cumsum(sizes), i, side="right"))
        k = i - sum(sizes[:group])
        steps = int(path.lengths.sum())  # the steps until its trial ended
        np.testing.assert_array_equal(path.actions, [a[k] for a in batches[group][:steps]])
        assert len(path.actions) == path.lengths.sum()
        # Every episode starts at the start cell; one that found the target ends inside it.
        for e in (1, 2):
            xs, ys = path.x[path.episode == e], path.y[path.episode == e]
            np.testing.assert_allclose((xs[0], ys[0]), GEOMETRY.centre(*lay["start"][i]), atol=1e-3)
            if path.success[e - 1]:
                row, col, inside = GEOMETRY.cell_of(xs[-1], ys[-1])
                assert inside and (int(row), int(col)) == tuple(lay["target"][i])


@pytest.mark.heavy
@pytest.mark.maze
def test_until_ends_a_chunk_without_changing_the_trials_before():
    vizdoom_or_skip()
    family = get_family("maze")
    prepared = prepare_agent("maze", CELL, "random")
    args = (family, prepared.cell, prepared.agent_cls, prepared.setting, N, SEED, "eval")
    full = play_trials(*args)
    asked: list[int] = []
    first = play_trials(*args, until=lambda played: asked.append(played) or True)
    assert asked == [len(first.returns)] and 0 < len(first.returns) < N
    np.testing.assert_array_equal(first.returns, full.returns[: len(first.returns)])
    for key, values in first.metrics.items():
        np.testing.assert_array_equal(values, full.metrics[key][: len(values)])


@pytest.mark.heavy
@pytest.mark.maze
def test_the_paths_of_the_committed_run_are_its_results():
    """The trials drawn with --run are the ones behind the leaderboard: the same lengths, successes and returns
    as the run's results.csv, instance by instance (memory: no random stream, so any engine grouping)."""
    import pandas as pd

    vizdoom_or_skip()
    paths = record_paths(prepare_agent("maze", "small", "memory", MAZE_RUN), [0, 1, 2], 1000, 0)
    results = pd.read_csv(MAZE_RUN / "results.csv")
    rows = results[(results["cell"] == "small") & (results["algorithm"] == "memory")].set_index("instance")
    for path in paths:
        row = rows.loc[path.instance]
        assert path.total == pytest.approx(row["return"], abs=1e-6)
        for e in range(1, 6):
            assert path.lengths[e - 1] == row[f"len_ep{e}"]
            assert path.success[e - 1] == bool(row[f"success_ep{e}"])
