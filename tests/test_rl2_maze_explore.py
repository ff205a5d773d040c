"""Branch exploration (algorithms/rl2/maze_explore.py): the deviations, their self-imitation by hand, the
surrogate that leaves them out, the settings' refusals, and a maze run that explores and resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch

from rl2bench.algorithms.rl2.config import apply_overrides
from rl2bench.algorithms.rl2.conv_policy import ConvPolicy
from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
from rl2bench.algorithms.rl2.maze_explore import deviation_loss, explore_actions
from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer, load_maze_trainer, ppo_losses
from rl2bench.algorithms.rl2.maze_rollout import MazeBatch
from rl2bench.errors import UserError


def test_deviations_replace_a_share_of_the_actions_and_use_the_same_numbers_whatever_the_share():
    actions = torch.zeros(10_000, dtype=torch.long)
    states = []
    for eps in (0.0, 0.3, 1.0):
        gen = torch.Generator().manual_seed(0)
        out, explored = explore_actions(actions, 3, eps, gen)
        states.append(gen.get_state())
        assert torch.equal(out[explored == 0], actions[explored == 0])
        assert float(explored.mean()) == pytest.approx(eps, abs=0.02)
        if eps == 1.0:  # every action a uniform draw
            assert torch.bincount(out, minlength=3).min() > 3_000
    assert all(torch.equal(states[0], s) for s in states)


def test_centre_deviations_turn_only_where_dead_reckoning_puts_the_agent_on_a_cell_centre():
    from rl2bench.algorithms.rl2.maze_explore import Deviations
    from rl2bench.tasks.maze.engine import FORWARD, LEFT, RIGHT

    dev = Deviations(1.0, torch.Generator().manual_seed(0), 3, at="centres", turn_degrees=90.0)
    dev.start(2)
    forward = torch.full((2,), FORWARD)
    step = torch.full((2,), -0.04)
    played = []
    for _ in range(6):
        a, explored = dev.apply(forward)
        played.append((a.tolist(), explored.tolist()))
        dev.observe(forward, step, torch.zeros(2))  # strides played (the deviations only read): points 1..6
    centre = [0, 4]  # steps whose pose before the action is a cell's centre: the start, then 4 strides on
    for t, (a, explored) in enumerate(played):
        if t in centre:
            assert explored == [1.0, 1.0] and all(x in (LEFT, RIGHT) for x in a)
        else:
            assert explored == [0.0, 0.0] and a == [FORWARD, FORWARD]
    # a stride into a wall moves nothing; an episode's end puts the pose back at the start, a centre
    dev.start(1)
    dev.observe(torch.tensor([FORWARD]), torch.tensor([-0.041]), torch.zeros(1))
    assert dev.apply(torch.tensor([FORWARD]))[1].tolist() == [1.0]
    dev.observe(torch.tensor([FORWARD]), torch.tensor([-0.04]), torch.ones(1))
    assert dev.apply(torch.tensor([FORWARD]))[1].tolist() == [1.0]


def test_the_self_imitation_of_deviations_by_hand():
    # 2 steps x 2 trials, 3 actions; steps (0, 0) and (1, 1) explored; (1, 1) is past its trial's end
    logp = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]], [[0.1, 0.8, 0.1], [0.6, 0.2, 0.2]]]))
    actions = torch.tensor([[1, 2], [0, 0]])
    explored = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    valid = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([[2.0, 5.0], [7.0, 9.0]])
    # one explored valid step: -2 * log 0.25
    assert float(deviation_loss(logp, actions, adv, explored, valid)) == pytest.approx(2 * math.log(4))
    # a deviation that did not pay is not imitated (nor pushed away)
    assert float(deviation_loss(logp, actions, -adv, explored, valid)) == 0.0
    assert float(deviation_loss(logp, actions, adv, torch.zeros(2, 2), valid)) == 0.0
    # the signed form pushes a deviation that cost down as hard as one that paid up...
    assert float(deviation_loss(logp, actions, -adv, explored, valid, "gradient", 0.1)) == pytest.approx(
        -2 * math.log(4))
    assert float(deviation_loss(logp, actions, adv, explored, valid, "gradient", 0.1)) == pytest.approx(2 * math.log(4))
    # ...until the policy gives it no more than exploration does (0.9 / 3 = 0.3 >= 0.25): then not at all
    assert float(deviation_loss(logp, actions, -adv, explored, valid, "gradient", 0.9)) == 0.0
    assert float(deviation_loss(logp, actions, adv, explored, valid, "gradient", 0.9)) == pytest.approx(2 * math.log(4))


def test_the_surrogate_leaves_explored_steps_out_and_imitates_the_ones_that_paid():
    net = ConvPolicy(4, hidden=8, activation="relu")
    with torch.no_grad():  # a uniform policy whatever the input
        net.pi.weight.zero_()
        net.pi.bias.zero_()
    width = net.encode(torch.zeros(1, *net.obs_shape)).shape[1]
    batch = MazeBatch(obs=torch.rand(2, 2, width, generator=torch.Generator().manual_seed(0)),
                      actions=torch.tensor([[0, 1], [2, 0]]), rewards=torch.zeros(2, 2), dones=torch.zeros(2, 2),
                      valid=torch.ones(2, 2), logits=torch.zeros(2, 2, 4), metrics={},
                      explored=torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    prev = batch.prev_inputs(net.no_action)
    adv = torch.tensor([[1.0, 10.0], [3.0, -2.0]])
    with torch.no_grad():
        losses = ppo_losses(net, batch, prev, adv, torch.zeros(2, 2), torch.tensor(1.0), 0.2, slice(None),
                            encoded=True)
    surr, deviation = losses.surrogate, losses.deviation
    assert float(surr) == pytest.approx((1.0 + 3.0 - 2.0) / 3)  # ratios 1; the explored step's 10 left out
    assert float(deviation) == pytest.approx(10.0 * math.log(4))


def test_an_update_that_diverges_stops_before_it_steps():
    from rl2bench.algorithms.rl2.maze_ppo import ppo_step

    net = ConvPolicy(4, hidden=8, activation="relu")
    width = net.encode(torch.zeros(1, *net.obs_shape)).shape[1]
    batch = MazeBatch(obs=torch.rand(2, 2, width, generator=torch.Generator().manual_seed(0)),
                      actions=torch.tensor([[0, 1], [2, 0]]), rewards=torch.zeros(2, 2), dones=torch.zeros(2, 2),
                      valid=torch.ones(2, 2), logits=torch.zeros(2, 2, 4), metrics={})
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    adv = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    cfg = MazeTrainConfig(update="ppo", ppo_minibatch_trials=2)
    with pytest.raises(UserError, match="diverged"):
        ppo_step(net, optimizer, batch, batch.prev_inputs(net.no_action), adv, torch.ones(2, 2), cfg,
                 torch.Generator().manual_seed(0), True)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_bad_exploration_settings_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="explore_eps must be"):
        apply_overrides(MazeTrainConfig(), ["explore_eps=1.5"])
    with pytest.raises(UserError, match="explore_update is one of imitate, gradient"):
        apply_overrides(MazeTrainConfig(), ["explore_update=sometimes"])
    assert apply_overrides(MazeTrainConfig(), ["explore_update=gradient"]).explore_update == "gradient"
    cfg = MazeTrainConfig(update="ppo", ppo_minibatch_trials=2, explore_coef=1.0)
    with pytest.raises(UserError, match="set explore_eps > 0"):
        MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path, cfg)
    from rl2bench.algorithms.rl2.maze_ppo import maze_trainer_class

    with pytest.raises(UserError, match="explore_eps belongs to the PPO maze recipe"):
        maze_trainer_class(MazeTrainConfig(explore_eps=0.1))
    with pytest.raises(UserError, match="explore_at=centres needs a 90-degree cell"):
        MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path, MazeTrainConfig(
            update="ppo", ppo_minibatch_trials=2, explore_eps=0.1, explore_at="centres"))
    for setting in ({"novelty_coef": 0.02, "novelty_kind": "odometry"},
                    {"explore_eps": 0.1, "explore_at": "centres"}):  # their dead reckoning counts strides
        with pytest.raises(UserError, match="moves a cell per forward action"):
            MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path, MazeTrainConfig(
                update="ppo", ppo_minibatch_trials=2, **setting))
    MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path, MazeTrainConfig(
        update="ppo", ppo_minibatch_trials=2, novelty_coef=0.02, novelty_kind="view"))  # views count cells there
    MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path / "route", MazeTrainConfig(
        update="ppo", ppo_minibatch_trials=2, route_coef=0.1))  # route recall reckons in cells there


@pytest.mark.heavy
@pytest.mark.maze
def test_a_run_that_explores_records_it_and_resumes_exactly(tmp_path, vizdoom_required):
    cfg = MazeTrainConfig(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, iters=3,
                          checkpoint_every=1, update="ppo", freeze_encoder=True, encoder_frames=200,
                          encoder_epochs=1, ppo_minibatch_trials=2, explore_eps=0.3, explore_coef=1.0)
    full = MazePPOTrainer("g3-e2-t12-turn90", "maze-ppo", 0, tmp_path / "a", cfg)
    full.run(progress=False)
    shares = [row["explore_share"] for row in full.curve]
    assert all(0.1 < s < 0.5 for s in shares) and all("deviation_loss" in row for row in full.curve)
    half = MazePPOTrainer("g3-e2-t12-turn90", "maze-ppo", 0, tmp_path / "b", cfg)
    half.run(iters=1, progress=False)
    resumed = load_maze_trainer(tmp_path / "b")
    resumed.run(progress=False)
    assert [r["mean_return"] for r in resumed.curve] == [r["mean_return"] for r in full.curve]
    assert [r["explore_share"] for r in resumed.curve] == shares
    for p, q in zip(full.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(p, q)
