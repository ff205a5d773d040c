"""The ViZDoom maze environment and reference agents through the real engine (needs vizdoom)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rl2bench.algorithms.maze_agents import MazeMemory, MazeOracle, MazeWallFollower
from rl2bench.errors import UserError
from rl2bench.protocol import play_trials
from rl2bench.registry import get_family
from rl2bench.tasks.maze import layout as L
from rl2bench.tasks.maze.engine import (
    FORWARD,
    GEOMETRY,
    LEFT,
    RIGHT,
    STRIDE,
    child_pids,
    import_vizdoom,
    shortest_actions,
)
from rl2bench.tasks.maze.env import MazeVecEnv

pytestmark = pytest.mark.maze
try:
    import vizdoom  # noqa: F401
except ImportError:
    # Without the extra these tests are skipped locally; CI sets RL2BENCH_REQUIRE_MAZE=1 so they must run.
    if os.environ.get("RL2BENCH_REQUIRE_MAZE") == "1":
        raise
    pytest.skip('vizdoom not installed (pip install -e ".[test,maze]")', allow_module_level=True)
FAMILY = get_family("maze")


def alive(pid: int) -> bool:
    """Running (a zombie or a vanished /proc entry counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def corridor(n: int = 3, heading: int = 0, target_col: int | None = None) -> dict[str, np.ndarray]:
    lay = {"open_e": np.zeros((1, n, n), bool), "open_n": np.zeros((1, n, n), bool),
           "start": np.array([[0, 0]]), "heading": np.array([heading]),
           "target": np.array([[0, n - 1 if target_col is None else target_col]])}
    lay["open_e"][0, 0, : n - 1] = True
    return lay


def make_env(lay, cell="g3-e1", **kw) -> MazeVecEnv:
    c = FAMILY.parse_cell(cell)
    env = MazeVecEnv(FAMILY.spec(c), lay, turn_degrees=c.turn, cell_moves=c.cell_moves, **kw)
    next(iter(env.batches()))
    return env


@pytest.mark.heavy
def test_start_pose_and_observation():
    lay = FAMILY.sample_instances(FAMILY.parse_cell("small"), 0, "eval", 3)
    env = make_env(lay, "small-e1", workers=1)
    try:
        obs = env.reset()
        info = env.privileged_info()
    finally:
        env.close()
    assert obs.shape == (3, 3, 30, 40) and obs.dtype == np.float32 and obs.min() >= -1 and obs.max() <= 1
    x, y = GEOMETRY.centre(lay["start"][:, 0], lay["start"][:, 1])
    np.testing.assert_allclose(info["x"], x, atol=1e-3)  # POSITION_X/Y from the engine
    np.testing.assert_allclose(info["y"], y, atol=1e-3)
    np.testing.assert_allclose(info["angle"] % 360, 90 * lay["heading"], atol=1e-3)


def red_fraction(obs: np.ndarray) -> float:
    rgb = (obs + 1) * 127.5
    return float(((rgb[0] > 120) & (rgb[1] < 60) & (rgb[2] < 60)).mean())


def test_target_is_red_and_where_the_layout_says():
    ahead, behind = corridor(3, heading=0), corridor(3, heading=0, target_col=0)
    behind["start"] = np.array([[0, 2]])  # target (0, 0) behind the player, who faces east into the wall
    lay = {k: np.concatenate([ahead[k], behind[k]]) for k in ahead}
    env = make_env(lay, workers=1)
    try:
        obs = env.reset()
    finally:
        env.close()
    assert red_fraction(obs[0]) > 0.05  # the red target cell two cells ahead
    assert red_fraction(obs[1]) == 0.0


def test_stride_wall_and_target_rewards():
    # Instance 0 faces the target down the corridor; instance 1 faces the wall (north) at the same start.
    lay = {k: np.concatenate([corridor(3, 0)[k], corridor(3, 1)[k]]) for k in corridor()}
    env = make_env(lay, workers=2)
    try:
        env.reset()
        x0, y0 = env.privileged_info()["x"].copy(), env.privileged_info()["y"].copy()
        step = env.step(np.array([FORWARD, FORWARD]))
        info = env.privileged_info()
        # One stride: exactly STRIDE in free space (instance 1 has 40.9 - 16 units before the north wall).
        np.testing.assert_allclose([info["x"][0] - x0[0], info["y"][1] - y0[1]], [STRIDE, STRIDE], atol=1e-3)
        np.testing.assert_allclose(step.reward, [-0.04, -0.04])
        rewards = [step.reward]
        step = env.step(np.array([FORWARD, FORWARD]))  # instance 1 walks into the wall
        np.testing.assert_allclose(step.reward, [-0.04, -0.041])  # step cost; plus the wall hit
        assert step.info["wall_hit"].tolist() == [False, True]
        rewards.append(step.reward)
        # Seven strides from one end to the other: 4 to the middle cell's centre, 3 into the target.
        for _ in range(5):
            step = env.step(np.array([FORWARD, LEFT]))
            rewards.append(step.reward)
        rewards = np.array(rewards)
        assert step.episode_done.tolist() == [True, False] and step.trial_done[0]
        np.testing.assert_allclose(rewards[:-1, 0], -0.04)
        assert np.isclose(rewards[-1, 0], 1.0 - 0.04)
        np.testing.assert_allclose(rewards[2:, 1], -0.04)  # turning hits nothing
        step = env.step(np.array([FORWARD, RIGHT]))  # instance 0's trial is over: reward 0, action ignored
        assert step.reward[0] == 0.0 and not step.episode_done[0]
        metrics = env.trial_metrics()
    finally:
        env.close()
    assert metrics["len_ep1"][0] == 7 == shortest_actions(2, 0) and metrics["success_ep1"][0] == 1
    assert metrics["wall_hits"].tolist() == [0, 1]


def test_horizon_ends_episodes_and_restarts_at_start():
    lay = corridor(3, heading=1)  # facing the wall
    env = make_env(lay, "g3-e2-t3", workers=1)
    try:
        env.reset()
        start = env.privileged_info()["x"].copy(), env.privileged_info()["angle"].copy()
        dones = []
        for _ in range(6):
            step = env.step(np.array([LEFT]))
            dones.append((bool(step.episode_done[0]), bool(step.trial_done[0])))
            if _ == 2:  # first episode over: back at the start pose
                assert env.privileged_info()["angle"][0] == start[1][0]
        metrics = env.trial_metrics()
    finally:
        env.close()
    assert dones == [(False, False), (False, False), (True, False), (False, False), (False, False), (True, True)]
    assert metrics["len_ep1"].tolist() == [3] and metrics["success_ep2"].tolist() == [0]


def test_cell_moves_walk_a_cell_bump_in_place_and_cost_their_strides():
    # Instance 0 faces the target two cells down the corridor; instance 1 faces the north wall.
    lay = {k: np.concatenate([corridor(3, 0)[k], corridor(3, 1)[k]]) for k in corridor()}
    env = make_env(lay, "g3-e1-turn90-move", workers=1)
    try:
        env.reset()
        x0, y0 = env.privileged_info()["x"].copy(), env.privileged_info()["y"].copy()
        step = env.step(np.array([FORWARD, FORWARD]))
        info = env.privileged_info()
        np.testing.assert_allclose(info["x"] - x0, [4 * STRIDE, 0.0], atol=1e-3)  # a whole cell; a bump
        np.testing.assert_allclose(info["y"] - y0, [0.0, 0.0], atol=1e-3)
        np.testing.assert_allclose(step.reward, [4 * -0.04, -0.04 - 0.001])  # four strides; one step and a hit
        assert step.info["wall_hit"].tolist() == [False, True]
        step = env.step(np.array([FORWARD, LEFT]))  # into the target: the three strides that enter it
        np.testing.assert_allclose(step.reward, [1.0 + 3 * -0.04, -0.04])
        assert step.episode_done.tolist() == [True, False]
        metrics = env.trial_metrics()
    finally:
        env.close()
    assert metrics["len_ep1"][0] == 7 == shortest_actions(2, 0, 90)  # the same time as the strides one by one


def test_a_cell_move_is_cut_short_by_the_horizon():
    env = make_env(corridor(3, 0), "g3-e2-t6-turn90-move", workers=1)
    try:
        env.reset()
        x0 = env.privileged_info()["x"].copy()
        rewards = [env.step(np.array([FORWARD])).reward[0]]
        step = env.step(np.array([FORWARD]))  # 2 of the 3 strides into the target are left in the episode
        rewards.append(step.reward[0])
        assert step.episode_done[0] and not step.trial_done[0]
        np.testing.assert_allclose(env.privileged_info()["x"], x0, atol=1e-3)  # episode 2 restarted at the start
        metrics = env.trial_metrics()
    finally:
        env.close()
    np.testing.assert_allclose(rewards, [4 * -0.04, 2 * -0.04])
    assert metrics["len_ep1"].tolist() == [6] and metrics["success_ep1"].tolist() == [0]


def test_cell_move_names():
    assert FAMILY.parse_cell("small-e2-turn90-move").name == "small-e2-turn90-move"
    assert FAMILY.parse_cell("small-turn90-move").cell_moves and not FAMILY.parse_cell("small-turn90").cell_moves
    for bad in ("small-move", "small-turn45-move", "small-turn90-move-move"):
        with pytest.raises(UserError):
            FAMILY.parse_cell(bad)


@pytest.mark.heavy
@pytest.mark.parametrize("cell", ["small-e2", "large-e1", "small-e2-turn90", "small-e1-turn45",
                                  "small-e2-turn90-move"])
def test_oracle_walks_the_shortest_path(cell):
    """Exact lengths under every turn action: a coarser turn really turns a whole 45 or 90 degrees in one
    action (a shortfall would leave the walker off its heading and cost extra actions or wall hits)."""
    c = FAMILY.parse_cell(cell)
    n = 12 if c.size == 5 else 4
    out = play_trials(FAMILY, c, MazeOracle, {}, n, 3, "eval")
    lay = FAMILY.sample_instances(c, 3, "eval", n)
    expected = [shortest_actions(len(p), L.quarter_turns(int(lay["heading"][i]), p), c.turn)
                for i, p in enumerate(L.shortest_path(lay, i) for i in range(n))]
    for e in range(1, c.episodes + 1):
        assert out.metrics[f"success_ep{e}"].all()
        assert out.metrics[f"len_ep{e}"].tolist() == expected
    assert (out.metrics["wall_hits"] == 0).all()


@pytest.mark.heavy
@pytest.mark.parametrize("cell", ["small-e2", "small-e2-turn90", "small-e2-turn90-move"])
def test_memory_explores_then_repeats_the_shortest_path(cell):
    c = FAMILY.parse_cell(cell)
    memory = play_trials(FAMILY, c, MazeMemory, {}, 12, 3, "eval")
    oracle = play_trials(FAMILY, c, MazeOracle, {}, 12, 3, "eval")
    found = memory.metrics["success_ep1"] == 1  # exploration can outlast a 250-step episode
    assert found.mean() >= 0.75 and memory.metrics["success_ep2"].all()
    assert (memory.metrics["len_ep1"] >= oracle.metrics["len_ep1"]).all()
    assert (memory.metrics["len_ep1"] > oracle.metrics["len_ep1"]).any()
    # Once the target was found, every later episode is the shortest path.
    np.testing.assert_array_equal(memory.metrics["len_ep2"][found], oracle.metrics["len_ep1"][found])
    assert (memory.metrics["len_ep2"][~found] >= oracle.metrics["len_ep1"][~found]).all()


@pytest.mark.heavy
@pytest.mark.parametrize("cell", ["small-e2-turn90", "small-e2-turn90-move"])
def test_wall_follower_reaches_every_target_and_repeats_its_walk(cell):
    """A hand on the left wall reaches every cell of a perfect maze, with no memory: the same walk in
    both episodes, never shorter than the oracle's, and left before straight on at a junction."""
    c = FAMILY.parse_cell(cell)
    follower = play_trials(FAMILY, c, MazeWallFollower, {}, 12, 3, "eval")
    oracle = play_trials(FAMILY, c, MazeOracle, {}, 12, 3, "eval")
    assert follower.metrics["success_ep1"].all() and follower.metrics["success_ep2"].all()
    np.testing.assert_array_equal(follower.metrics["len_ep1"], follower.metrics["len_ep2"])
    assert (follower.metrics["len_ep1"] >= oracle.metrics["len_ep1"]).all()
    assert (follower.metrics["wall_hits"] == 0).all()


def test_wall_follower_turns_left_at_a_junction():
    # From (0, 0) facing east: the corridor goes on east and a passage opens north (the player's left).
    lay = corridor(3, 0)
    lay["open_n"][0, 0, 0] = True
    env = make_env(lay, "g3-e1-turn90-move", workers=1)
    agent = MazeWallFollower(env.spec, 1, np.random.default_rng(0))
    try:
        env.reset()
        agent.see_privileged(env.privileged_info())
        assert agent.act(None).tolist() == [LEFT]
        step = env.step(np.array([LEFT]))
        agent.observe(np.array([LEFT]), step.reward, step.obs, step.episode_done)
        agent.see_privileged(env.privileged_info())
        assert agent.act(None).tolist() == [FORWARD]  # facing its way: it goes, not left again
    finally:
        env.close()


@pytest.mark.heavy
def test_batches_larger_than_the_engine_pool():
    """20 instances on a pool of 2 x 4 games: three groups, each game switching maps."""
    c = FAMILY.parse_cell("small-e1")
    lay = FAMILY.sample_instances(c, 5, "eval", 20)
    env = MazeVecEnv(FAMILY.spec(c), lay, workers=2, games_per_worker=4)
    sizes, xs = [], []
    try:
        for size in env.batches():
            sizes.append(size)
            env.reset()
            xs.append(env.privileged_info()["x"])
    finally:
        env.close()
    assert sizes == [8, 8, 4]
    x_start = GEOMETRY.centre(lay["start"][:, 0], lay["start"][:, 1])[0]
    np.testing.assert_allclose(np.concatenate(xs), x_start, atol=1e-3)


@pytest.mark.heavy
def test_games_acting_on_threads_give_the_same_trials():
    """A worker acts its games on threads (engine.THREADS_PER_WORKER): the frames, rewards, poses and
    metrics of a random walk, episode restarts and a second group included, are those of one thread."""
    c = FAMILY.parse_cell("small-e2-t40-turn90-move")
    lay = FAMILY.sample_instances(c, 3, "eval", 12)
    runs = []
    for threads in (1, 4):
        rng = np.random.default_rng(0)
        env = MazeVecEnv(FAMILY.spec(c), lay, workers=1, games_per_worker=6, turn_degrees=90, cell_moves=True,
                         engine_threads=threads)
        record = []
        try:
            for _ in env.batches():
                record.append(env.reset())
                while True:
                    step = env.step(rng.choice(3, size=env.batch_size, p=[0.6, 0.2, 0.2]))
                    record += [step.obs, step.reward, step.info["x"], step.info["y"], step.episode_done]
                    if step.trial_done.all():
                        break
                record += list(env.trial_metrics().values())
        finally:
            env.close()
        runs.append(record)
    assert len(runs[0]) == len(runs[1]) > 40
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))


@pytest.mark.heavy
def test_workers_that_fill_the_machine_get_a_core_each_with_their_engines(monkeypatch):
    real = os.sched_getaffinity
    cores = sorted(real(0))[:2]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cores))  # a machine of these cores
    c = FAMILY.parse_cell("small-e1")
    lay = FAMILY.sample_instances(c, 0, "eval", 4)
    for workers in (2, 1):
        env = MazeVecEnv(FAMILY.spec(c), lay, workers=workers, games_per_worker=2)
        try:
            for w, proc in enumerate(env._procs):
                engines = child_pids(proc.pid)
                assert len(engines) == 2
                expected = {cores[w]} if workers == len(cores) > 1 else set(cores)  # fewer workers: no pin
                assert real(proc.pid) == expected and all(real(pid) == expected for pid in engines)
        finally:
            env.close()


@pytest.mark.heavy
def test_no_engine_survives_close_crash_or_interrupt():
    lay = FAMILY.sample_instances(FAMILY.parse_cell("small"), 0, "eval", 4)
    env = make_env(lay, "small-e1", workers=2, games_per_worker=2)
    pids, workdirs = list(env._engine_pids), list(env._workdirs)
    assert len(pids) == 4 and all(alive(p) for p in pids) and all(os.path.isdir(d) for d in workdirs)
    env.close()
    assert not any(alive(p) for p in pids)
    assert not any(os.path.exists(d) for d in workdirs)
    assert not os.path.exists("_vizdoom.ini") and not os.path.exists("_vizdoom")

    # A crashed worker: the next step raises, and every engine is gone.
    env = make_env(lay, "small-e1", workers=2, games_per_worker=2)
    pids, shm, workdirs = list(env._engine_pids), list(env._shm), list(env._workdirs)
    assert len(shm) == 4 * 3  # each engine's shared memory and two message queues
    env.reset()
    env._procs[0].kill()
    env._procs[0].wait()
    with pytest.raises(RuntimeError, match="worker"):
        env.step(np.zeros(4, dtype=np.int64))
    assert not any(alive(p) for p in pids)
    assert not any(os.path.exists(p) for p in shm + workdirs)

    # Ctrl-C inside a trial: the protocol's finally closes the environment.
    seen = {}

    class Interrupting(MazeOracle):
        name = "interrupting"

        def act(self, obs):
            seen["pids"] = list(_current_env()._engine_pids)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        play_trials(FAMILY, FAMILY.parse_cell("small-e1"), Interrupting, {}, 2, 0, "eval", sealed=False)
    assert seen["pids"] and not any(alive(p) for p in seen["pids"])


def _current_env() -> MazeVecEnv:
    from rl2bench.tasks.maze.env import _LIVE

    return next(iter(_LIVE))


@pytest.mark.heavy
def test_parent_killed_leaves_no_engine(tmp_path):
    """SIGKILL the process that owns the environment: its workers see EOF and close their engines."""
    script = textwrap.dedent("""
        import sys, time
        from rl2bench.registry import get_family
        from rl2bench.tasks.maze.env import MazeVecEnv
        fam = get_family("maze"); cell = fam.parse_cell("small-e1")
        env = MazeVecEnv(fam.spec(cell), fam.sample_instances(cell, 0, "eval", 2), workers=2, games_per_worker=1)
        print(*env._engine_pids, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
    assert sorted(os.listdir(tmp_path)) == []  # nothing written in the working directory


def test_missing_vizdoom_is_a_clear_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r'pip install "rl2bench\[maze\]"'):
        import_vizdoom()
    with pytest.raises(UserError, match="rl2bench"):
        MazeVecEnv(FAMILY.spec(FAMILY.parse_cell("small")), corridor(5))
    assert get_family("mab").spec(get_family("mab").parse_cell("n10-k5")).n_actions == 5  # others still work


@pytest.mark.heavy
def test_interpreter_exit_without_close_leaves_no_engine(tmp_path):
    """An environment never closed by its owner is closed by the atexit hook."""
    script = textwrap.dedent("""
        from rl2bench.registry import get_family
        from rl2bench.tasks.maze.env import MazeVecEnv
        fam = get_family("maze"); cell = fam.parse_cell("small-e1")
        env = MazeVecEnv(fam.spec(cell), fam.sample_instances(cell, 0, "eval", 2), workers=1, games_per_worker=2)
        print(*env._engine_pids, *env._workdirs, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    pids, workdirs = out.stdout.split()[:2], out.stdout.split()[2:]
    assert len(pids) == 2 and not any(alive(int(p)) for p in pids)
    assert workdirs and not any(os.path.exists(d) for d in workdirs)
    assert os.listdir(tmp_path) == []


def test_the_maze_trainer_plays_its_cells_action_scheme(tmp_path):
    from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
    from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer

    cfg = MazeTrainConfig(update="ppo", ppo_minibatch_trials=2, workers=1, games_per_worker=2, pool=2)
    trainer = MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path, cfg)
    env = trainer.open_env()
    try:
        env.select_group(0)
        env.reset()
        rewards = env.step(np.array([FORWARD, FORWARD])).reward
    finally:
        env.close()
    # From a centre a forward action is a whole move (4 strides) or a bump (one step and a wall hit).
    assert all(np.isclose(r, 4 * -0.04) or np.isclose(r, -0.041) for r in rewards)
