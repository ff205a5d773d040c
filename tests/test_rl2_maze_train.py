"""RL^2 training on the ViZDoom mazes (algorithms/rl2/maze_trainer.py) through the real engine."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig, preset_config
from rl2bench.algorithms.rl2.maze_rollout import collect_maze
from rl2bench.algorithms.rl2.maze_trainer import MazeTrainer

pytestmark = pytest.mark.maze
try:
    import vizdoom  # noqa: F401
except ImportError:
    if os.environ.get("RL2BENCH_REQUIRE_MAZE") == "1":
        raise
    pytest.skip('vizdoom not installed (pip install -e ".[test,maze]")', allow_module_level=True)

CELL = "g3-e2-t12"  # 3x3 mazes, 2 episodes of at most 12 steps: trials end at different times


def _config(**kw) -> MazeTrainConfig:
    base = dict(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, cg_iters=3, iters=2,
                checkpoint_every=1)
    return MazeTrainConfig(**{**base, **kw})


def test_presets_follow_the_paper():
    paper = preset_config("maze")
    assert (paper.hidden, paper.batch_steps, paper.gamma, paper.lam) == (256, 50_000, 0.99, 0.99)
    assert preset_config("fast") == preset_config("maze-fast")
    assert paper.gru_activation == preset_config("maze-fast").gru_activation == "relu"  # Appendix A


@pytest.mark.heavy
def test_rollout_masks_match_the_episode_lengths(tmp_path):
    trainer = MazeTrainer(CELL, "maze-fast", 0, tmp_path, _config())
    try:
        trainer.open_env()
        assert trainer.env.n_groups == 2 and trainer.groups_per_iter == 1  # 96 / 24 = 4 trials: 1 group
        batch = collect_maze(trainer.net, trainer.env, [0, 1], trainer.act_gen, trainer.trial_len)
    finally:
        trainer.close()
    m = batch.metrics
    lengths = m["len_ep1"] + m["len_ep2"]
    # every played step is valid, nothing after the trial's end is
    assert torch.equal(batch.valid.sum(0).long(), torch.as_tensor(lengths))
    assert batch.valid.shape[0] == lengths.max() <= 24
    assert torch.all(batch.rewards[batch.valid == 0] == 0)
    # each step costs 0.04 (and maybe 0.001 for a wall); +1 per solved episode
    solved = torch.as_tensor(m["success_ep1"] + m["success_ep2"], dtype=torch.float32)
    ret = batch.rewards.sum(0)
    expected = solved - 0.04 * torch.as_tensor(lengths, dtype=torch.float32)
    assert torch.all(ret <= expected + 1e-5) and torch.all(ret >= expected - 0.001 * 24 - 1e-5)
    # exactly one episode end per episode played
    assert torch.equal(batch.dones.sum(0).long(), torch.full((8,), 2))
    # the training forward over the stored sequences reproduces the behaviour logits (old KL = 0)
    with torch.no_grad():
        logits = trainer.net(batch.obs, *batch.prev_inputs(trainer.net.no_action))[0]
    valid = batch.valid.bool()
    torch.testing.assert_close(logits[valid], batch.logits[valid], rtol=1e-4, atol=1e-5)


@pytest.mark.heavy
def test_a_coarse_turn_cell_trains_with_its_own_turn(tmp_path):
    """The trainer's engines turn as its cell says: after a rollout of 90-degree turns every heading is a
    multiple of 90 degrees (at 22.5 degrees per turn most would not be)."""
    trainer = MazeTrainer(CELL + "-turn90", "maze-fast", 0, tmp_path, _config())
    try:
        env = trainer.open_env()
        collect_maze(trainer.net, env, [0], trainer.act_gen, trainer.trial_len)
        angles = env.privileged_info()["angle"]
    finally:
        trainer.close()
    assert env.turn_degrees == 90.0 and trainer.cell.name == "g3-e2-t12-turn90"
    quarters = angles / 90
    assert np.allclose(quarters, np.rint(quarters), atol=1e-6) and len(set(np.rint(quarters).tolist())) > 1


@pytest.mark.heavy
def test_resume_continues_exactly(tmp_path):
    """(A ReLU GRU, the preset's; a run written before the setting existed resumes as the tanh one it was.)"""
    full = MazeTrainer(CELL, "maze-fast", 0, tmp_path / "a", _config())
    full.run(progress=False)
    half = MazeTrainer(CELL, "maze-fast", 0, tmp_path / "b", _config())
    half.run(iters=1, progress=False)
    resumed = MazeTrainer.from_checkpoint(tmp_path / "b")
    resumed.run(progress=False)
    assert [r["mean_return"] for r in resumed.curve] == [r["mean_return"] for r in full.curve]
    for p, q in zip(full.net.parameters(), resumed.net.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert full.curve[-1]["accepted"] in (0, 1) and (tmp_path / "a" / "policy.pt").exists()
    assert resumed.net.activation == "relu"
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    del state["config"]["gru_activation"]
    torch.save(state, tmp_path / "b" / "checkpoint.pt")
    (tmp_path / "b" / "checkpoint.pt.sha256").unlink()  # as written before digests were recorded beside it
    assert MazeTrainer.from_checkpoint(tmp_path / "b").net.activation == "tanh"


def test_training_flushes_subnormal_floats_and_restores_the_default(tmp_path, monkeypatch):
    import rl2bench.algorithms.rl2.maze_trainer as maze_trainer

    def subnormal_survives() -> bool:
        return bool((torch.tensor([1e-39]) * 1.0).item() != 0.0)

    seen = []
    monkeypatch.setattr(maze_trainer, "training_loop", lambda *args: seen.append(subnormal_survives()))
    assert subnormal_survives()
    MazeTrainer(CELL, "maze-fast", 0, tmp_path / "a", _config()).run(progress=False)
    assert seen == [False]  # flushed while it trained: the slow path never runs
    assert subnormal_survives()  # and torch's default is back for whatever runs next


@pytest.mark.heavy
def test_rl2_agent_plays_a_trained_maze_policy(tmp_path, monkeypatch):
    from rl2bench.protocol import play_trials
    from rl2bench.registry import algorithms, get_family

    monkeypatch.setenv("RL2BENCH_ZOO", str(tmp_path))
    trainer = MazeTrainer(CELL, "maze-fast", 0, tmp_path / "maze" / CELL, _config())
    trainer.save(finished=False)  # the initial network is enough to play
    family = get_family("maze")
    cell = family.parse_cell("g3-t12")  # 5 episodes: falls back to the 2-episode policy
    agent_cls = algorithms("maze")["rl2"]
    assert agent_cls.unavailable(cell, family.spec(cell)) is None
    (setting,) = agent_cls.grid(cell, family.spec(cell))
    assert setting["policy"] == f"maze/{CELL}" and len(setting["version"]) == 12
    out = play_trials(family, cell, agent_cls, setting, 4, 0, "eval")
    lengths = sum(out.metrics[f"len_ep{e}"] for e in range(1, 6))
    assert lengths.min() >= 5 and lengths.max() <= 60
    missing = family.parse_cell("g4")
    assert "no trained maze policy" in agent_cls.unavailable(missing, family.spec(missing))
    # The paper evaluates its small-maze policy on large mazes: with one under small-e2, large uses it.
    large = family.parse_cell("large")
    assert agent_cls.unavailable(large, family.spec(large)) is not None
    shutil.copytree(tmp_path / "maze" / CELL, tmp_path / "maze" / "small-e2")
    assert agent_cls.unavailable(large, family.spec(large)) is None
    assert agent_cls.grid(large, family.spec(large))[0]["policy"] == "maze/small-e2"
    # ...but never across action schemes: a 90-degree cell needs a 90-degree policy.
    coarse = family.parse_cell("large-turn90")
    assert "small-e2-turn90" in agent_cls.unavailable(coarse, family.spec(coarse))
    shutil.copytree(tmp_path / "maze" / CELL, tmp_path / "maze" / "small-e2-turn90")
    assert agent_cls.grid(coarse, family.spec(coarse))[0]["policy"] == "maze/small-e2-turn90"
    moving = family.parse_cell("large-turn90-move")  # nor from strides to cell moves
    assert "small-e2-turn90-move" in agent_cls.unavailable(moving, family.spec(moving))
    shutil.copytree(tmp_path / "maze" / CELL, tmp_path / "maze" / "small-e2-turn90-move")
    assert agent_cls.grid(moving, family.spec(moving))[0]["policy"] == "maze/small-e2-turn90-move"
    assert agent_cls.grid(coarse, family.spec(coarse))[0]["policy"] == "maze/small-e2-turn90"


@pytest.mark.heavy
def test_train_cli_writes_the_zoo_files_and_refuses_bad_presets(tmp_path):
    import json

    from rl2bench.cli import main

    out = tmp_path / "run"
    tiny = ["--set", "hidden=16", "--set", "batch_steps=24", "--set", "workers=1", "--set", "games_per_worker=2",
            "--set", "pool=4", "--set", "cg_iters=2", "--set", "value_steps=2"]
    argv = ["train", "--task", "maze", "--cell", CELL, "--preset", "maze-fast", "--iters", "1", "--out", str(out),
            "--no-progress", *tiny]
    assert main(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["status"], meta["iterations"], meta["cell"]) == ("complete", 1, CELL)
    assert meta["config"]["hidden"] == 16 and meta["env_steps"] > 0
    assert len((out / "curve.csv").read_text().splitlines()) == 2
    assert main(argv) != 0  # the folder holds a run: needs --resume
    bad = ["train", "--task", "maze", "--cell", CELL, "--preset", "bogus", "--out", str(tmp_path / "x")]
    assert main(bad) != 0
    row = (out / "curve.csv").read_text().splitlines()
    value_kl = float(row[1].split(",")[row[0].split(",").index("value_kl")])
    assert value_kl > 0  # the value steps moved the shared trunk, hence the policy


@pytest.mark.heavy
def test_resume_set_and_init_from_are_recorded_and_exact(tmp_path):
    import json

    from rl2bench.cli import main

    tiny = ["--set", "hidden=16", "--set", "batch_steps=24", "--set", "workers=1", "--set", "games_per_worker=2",
            "--set", "pool=4", "--set", "cg_iters=2"]
    first = tmp_path / "first"
    base = ["train", "--task", "maze", "--cell", CELL, "--preset", "maze-fast", "--no-progress"]
    assert main([*base, "--iters", "1", "--out", str(first), *tiny]) == 0
    assert main([*base, "--iters", "2", "--out", str(first), "--resume", "--set", "max_kl=0.02"]) == 0
    meta = json.loads((first / "meta.json").read_text())
    assert meta["config"]["max_kl"] == 0.02 and meta["config_changes"][0]["iteration"] == 1
    assert meta["resumed"][0]["iteration"] == 1
    assert main([*base, "--iters", "3", "--out", str(first), "--resume", "--set", "workers=2"]) != 0  # fixed

    # --init-from: the new run starts from exactly the parent's network, and says so
    child = MazeTrainer(CELL, "maze-fast", 1, tmp_path / "child", _config(pool=4))
    parent = MazeTrainer.from_checkpoint(first)
    child.init_from(first)
    for p, q in zip(parent.net.parameters(), child.net.parameters(), strict=True):
        assert torch.equal(p, q)
    assert child.initialized_from is not None and child.initialized_from["iteration"] == 2
    assert child.ancestry[-1]["run"] == str(first) and child.ancestry[-1]["env_steps"] > 0
    wide = MazeTrainer(CELL, "maze-fast", 1, tmp_path / "wide", _config(hidden=32))
    wide.init_from(first)  # a wider GRU grows from the narrower one and plays exactly as it did
    assert wide.initialized_from is not None and wide.initialized_from["widened_from"] == 16
    batch = collect_maze(parent.net, parent.open_env(), [0], torch.Generator().manual_seed(3), parent.trial_len)
    prev = batch.prev_inputs(parent.net.no_action)
    torch.testing.assert_close(wide.net(batch.obs, *prev)[0], parent.net(batch.obs, *prev)[0])
    parent.close()
    narrow = MazeTrainer(CELL, "maze-fast", 1, tmp_path / "narrow", _config(hidden=8))
    with pytest.raises(Exception, match="hidden=16"):
        narrow.init_from(first)
    assert main([*base, "--iters", "1", "--out", str(tmp_path / "cli-child"), "--init-from", str(first), *tiny]) == 0
    child_meta = json.loads((tmp_path / "cli-child" / "meta.json").read_text())
    assert child_meta["initialized_from"]["run"] == str(first)
