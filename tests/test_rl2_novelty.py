"""The maze trainer's novelty bonus (algorithms/rl2/novelty.py): counted by hand on made-up views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
from rl2bench.algorithms.rl2.maze_rollout import MazeBatch
from rl2bench.algorithms.rl2.maze_trainer import MazeTrainer
from rl2bench.algorithms.rl2.novelty import first_views, novelty_bonus
from rl2bench.errors import UserError


def views(*trials: str, width: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, trials, width) observations spelled as letters (one view per letter), and the valid mask;
    shorter trials are padded with zeros, as a batch is."""
    steps = max(len(t) for t in trials)
    obs, valid = torch.zeros(steps, len(trials), width), torch.zeros(steps, len(trials))
    for b, trial in enumerate(trials):
        for t, letter in enumerate(trial):
            obs[t, b] = torch.linspace(-1, 1, width) * (ord(letter) - ord("A") + 1) / 7
            valid[t, b] = 1.0
    return obs, valid


def test_first_views_and_the_bonus_by_hand():
    obs, valid = views("ABACB", "AAB")
    assert first_views(obs, valid).T.tolist() == [[True, True, False, True, False], [True, False, True, False, False]]
    # the bonus goes to the action before a new view; the last action of a trial has no next view
    bonus = novelty_bonus(obs, valid, 0.02)
    torch.testing.assert_close(bonus.T, torch.tensor([[0.02, 0, 0.02, 0, 0], [0, 0.02, 0, 0, 0]]))


def test_float_noise_does_not_split_a_view():
    obs, valid = views("ABA")
    obs[2] += 1e-6  # the encoder's rounding, not a new place
    assert first_views(obs, valid)[:, 0].tolist() == [True, True, False]
    obs[2] += 0.01  # a different view
    assert first_views(obs, valid)[:, 0].tolist() == [True, True, True]


def _batch(obs: torch.Tensor, valid: torch.Tensor, rewards: torch.Tensor) -> MazeBatch:
    steps, trials = valid.shape
    return MazeBatch(obs=obs, actions=torch.zeros(steps, trials, dtype=torch.long), rewards=rewards,
                     dones=torch.zeros(steps, trials), valid=valid, logits=torch.zeros(steps, trials, 3), metrics={})


def test_the_update_learns_the_bonus_but_the_network_never_sees_it(tmp_path):
    obs, valid = views("ABACB", "AAB")
    rewards = -0.04 * valid
    batch = _batch(obs, valid, rewards)
    values = torch.zeros_like(valid)
    plain = MazeTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "a", MazeTrainConfig(gamma=1.0, lam=1.0))
    curious = MazeTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "b",
                          MazeTrainConfig(gamma=1.0, lam=1.0, novelty_coef=0.02))
    returns, _, _ = plain.advantages(batch, values)
    returns_b, _, _ = curious.advantages(batch, values)
    # undiscounted: each step's return gains the bonuses from it to the end of its trial
    gained = torch.tensor([[0.04, 0.02, 0.02, 0, 0], [0.02, 0.02, 0, 0, 0]]).T
    torch.testing.assert_close(returns_b - returns, gained)
    assert curious.novelty_return == pytest.approx((0.04 + 0.02) / 2)
    # the previous reward the network is fed is the task's alone
    torch.testing.assert_close(batch.prev_inputs(3)[1][1:], rewards[:-1])


def test_the_bonus_must_stay_below_a_step_cost():
    from rl2bench.algorithms.rl2.config import apply_overrides

    assert apply_overrides(MazeTrainConfig(), ["novelty_coef=0.02"]).novelty_coef == 0.02
    with pytest.raises(UserError, match="novelty_coef must be"):
        apply_overrides(MazeTrainConfig(), ["novelty_coef=0.1"])
    assert np.isclose(apply_overrides(MazeTrainConfig(), ["novelty_coef=0"]).novelty_coef, 0.0)


def col(x: torch.Tensor) -> torch.Tensor:
    """One trial as a (steps, 1) batch."""
    return x[:, None]


def test_odometry_reaches_new_points_by_hand():
    from rl2bench.algorithms.rl2.novelty import odometry_bonus, odometry_points

    F, L, R = 0, 1, 2
    # 90-degree turns from the start (0, 0) facing +x: two strides, left, one, left, one, a stride into a
    # wall (0.001 more), left, one stride back onto (1, 0); then episode 2 restarts at the start.
    actions = torch.tensor([F, F, L, F, L, F, F, L, F, F, R, F])
    rewards = torch.full((12,), -0.04)
    rewards[6] = -0.041
    dones = torch.zeros(12)
    dones[8] = 1.0
    valid = torch.ones(12, 1)
    points = odometry_points(col(actions), col(rewards), col(dones), valid, 90.0)[:, 0]
    assert points.tolist() == [[1, 0], [2, 0], [2, 0], [2, 1], [2, 1], [1, 1], [1, 1], [1, 1], [1, 0],
                               [1, 0], [1, 0], [1, -1]]
    bonus = odometry_bonus(col(actions), col(rewards), col(dones), valid, 90.0, 0.02)[:, 0]
    assert (bonus / 0.02).round().tolist() == [1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    # at 22.5 degrees two left turns face 45 degrees: a stride lands on (0.71, 0.71) -> point (1, 1)
    diag = odometry_points(col(torch.tensor([L, L, F])), col(torch.full((3,), -0.04)), col(torch.zeros(3)),
                           torch.ones(3, 1), 22.5)[:, 0]
    assert diag.tolist() == [[0, 0], [0, 0], [1, 1]]


def test_the_cell_kind_pays_a_new_cell_once_and_nothing_for_walking_back():
    from rl2bench.algorithms.rl2.novelty import training_bonus

    F, L = 0, 1
    # 90 degrees: five strides along +x (points 1..5: cell 0 up to point 1, cell 1 from point 2), a U-turn,
    # five strides back (points 4..0: cells 1, 1, 0, 0, 0), a U-turn, and two strides out again
    actions = torch.tensor([F] * 5 + [L, L] + [F] * 5 + [L, L] + [F] * 2)
    steps = len(actions)
    valid = torch.ones(steps)
    batch = MazeBatch(obs=torch.zeros(steps, 1, 4), actions=col(actions), rewards=col(-0.04 * valid),
                      dones=col(torch.zeros(steps)), valid=col(valid), logits=torch.zeros(steps, 1, 3), metrics={})
    cells = training_bonus(batch, "cell", 0.02, 90.0)[:, 0]
    expected = torch.zeros(steps)
    expected[1] = 4 * 0.02  # the second stride crosses into cell (1, 0); nothing else is new
    torch.testing.assert_close(cells, expected)
    # the point bonus pays five points out, none back, none out again: the same 0.1 for this walk...
    points = training_bonus(batch, "odometry", 0.02, 90.0)[:, 0]
    assert (points / 0.02).round().tolist() == [1] * 5 + [0] * (steps - 5)
    # a return one stride off the way out (drift puts it there) is all new points but no new cell
    side = torch.tensor([F] * 5 + [L, F, L] + [F] * 5)
    ones = torch.ones(len(side))
    batch = MazeBatch(obs=torch.zeros(len(side), 1, 4), actions=col(side), rewards=col(-0.04 * ones),
                      dones=col(0 * ones), valid=col(ones), logits=torch.zeros(len(side), 1, 3), metrics={})
    assert (training_bonus(batch, "odometry", 0.02, 90.0)[:, 0] / 0.02).round().sum() == 5 + 1 + 5
    assert (training_bonus(batch, "cell", 0.02, 90.0)[:, 0] / 0.08).round().sum() == 1


def test_the_trainer_uses_the_odometry_kind(tmp_path):
    from rl2bench.algorithms.rl2.config import apply_overrides

    cfg = apply_overrides(MazeTrainConfig(gamma=1.0, lam=1.0), ["novelty_coef=0.02", "novelty_kind=odometry"])
    trainer = MazeTrainer("g3-e2-t12-turn90", "maze-ppo", 0, tmp_path, cfg)
    obs, valid = views("AAA")  # the same view three times: "view" would pay nothing after the first
    batch = _batch(obs, valid, -0.04 * valid)  # three strides forward: three new points
    returns, _, _ = trainer.advantages(batch, torch.zeros_like(valid))
    torch.testing.assert_close(returns[:, 0], torch.tensor([-0.12 + 0.06, -0.08 + 0.04, -0.04 + 0.02]))
    with pytest.raises(UserError, match="novelty_kind is one of"):
        apply_overrides(MazeTrainConfig(), ["novelty_kind=pixels"])


def test_the_bonus_can_be_kept_to_the_first_episodes():
    from rl2bench.algorithms.rl2.config import apply_overrides
    from rl2bench.algorithms.rl2.novelty import in_first_episodes, training_bonus

    F = 0
    # three episodes of 2, 3 and 2 strides forward at 90 degrees; the third ends the trial, padding follows
    dones = torch.tensor([0, 1, 0, 0, 1, 0, 1, 0.0])
    valid = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0.0])
    assert in_first_episodes(col(dones), 1)[:, 0].tolist() == [True, True] + [False] * 6
    assert in_first_episodes(col(dones), 2)[:, 0].tolist() == [True] * 5 + [False] * 3
    assert in_first_episodes(col(dones), 0).all()
    batch = MazeBatch(obs=torch.zeros(8, 1, 4), actions=col(torch.full((8,), F)), rewards=col(-0.04 * valid),
                      dones=col(dones), valid=col(valid), logits=torch.zeros(8, 1, 3), metrics={})
    # new points: (1,0) and (2,0) in episode 1, (3,0) in episode 2 only; episode 3 retraces (1,0), (2,0)
    every = training_bonus(batch, "odometry", 0.02, 90.0)[:, 0] / 0.02
    assert every.round().tolist() == [1, 1, 0, 0, 1, 0, 0, 0]
    first = training_bonus(batch, "odometry", 0.02, 90.0, episodes=1)[:, 0] / 0.02
    assert first.round().tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert apply_overrides(MazeTrainConfig(), ["novelty_episodes=1"]).novelty_episodes == 1
    with pytest.raises(UserError):
        apply_overrides(MazeTrainConfig(), ["novelty_episodes=-1"])
