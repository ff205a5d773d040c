"""Route recall (maze_route.py): loop erasure, the route targets of a hand-walked trial, the loss."""

import math

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2.maze_route import (
    cell_of,
    loop_erased,
    route_agreement,
    route_followed,
    route_loss,
    route_targets,
)

F, L, R = 0, 1, 2
STEP, HIT, GOAL = -0.04, -0.041, 0.96


def test_loop_erasure_drops_what_follows_a_return():
    walk = [(0, 0), (1, 0), (2, 0), (2, 0), (1, 0), (1, 1), (2, 1), (1, 1), (1, 2)]
    assert loop_erased(walk) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert loop_erased([(0, 0), (1, 0), (0, 0)]) == [(0, 0)]


def trial(actions: list[int], rewards: list[float], ends: list[int]) -> tuple[torch.Tensor, ...]:
    """One trial as (steps, 1) tensors: actions, rewards, episode ends (step indices), valid."""
    dones = torch.zeros(len(actions))
    dones[ends] = 1.0
    return (torch.tensor(actions)[:, None], torch.tensor(rewards)[:, None], dones[:, None],
            torch.ones(len(actions), 1))


def test_a_later_episode_is_pointed_along_the_loop_free_route_of_cells():
    # Cells are 4 strides; the start (0,0) is the centre of cell (0,0), facing +x. Episode 1: 4 strides to
    # (4,0), the centre of cell (1,0); right (facing -y), 5 strides to (4,-5) in cell (1,-1), a stride into
    # its far wall; left twice (facing +y), 5 strides back to (4,0), 3 more onto the target in cell (1,1).
    # Its route of cells without the loop: (0,0) -> (1,0) -> (1,1).
    ep1 = ([F] * 4 + [R] + [F] * 5 + [F, L, L] + [F] * 5 + [F] * 3, [STEP] * 10 + [HIT] + [STEP] * 9 + [GOAL])
    # Episode 2, from the start facing +x: L (facing +y), R, 4 strides to (4,0), R L L (facing +y), 3 strides.
    ep2 = ([L, R, F, F, F, F, R, L, L, F, F, F], [STEP] * 11 + [GOAL])
    # Episode 3: a stride, then a stride the route asks for that hits a wall: no targets after it.
    ep3 = ([F, F, L], [STEP, HIT, STEP])
    actions, rewards, dones, valid = trial(ep1[0] + ep2[0] + ep3[0], ep1[1] + ep2[1] + ep3[1], [20, 32, 35])
    targets = route_targets(actions, rewards, dones, valid)[:, 0]
    assert targets[:21].sum() == 0  # no success before episode 1 ended: no route yet
    expected = [
        [1, 0, 0],  # (0,0) facing +x, the next cell ahead: forward
        [0, 0, 1],  # (0,0) facing +y: turn right, towards it
        [1, 0, 0],  # (0,0) facing +x
        [1, 0, 0],  # (1,0), still in cell (0,0)
        [1, 0, 0],  # (2,0): cell (1,0), whose next cell (1,1) lies +y, but 2 strides short of the centre line
        [1, 0, 0],  # (3,0): 1 short
        [0, 1, 0],  # (4,0) on the centre line facing +x: left, towards (1,1)
        [0, 1, 1],  # (4,0) facing -y: (1,1) behind, either turn
        [0, 1, 0],  # (4,0) facing +x: left
        [1, 0, 0],  # (4,0) facing +y: forward
        [1, 0, 0],  # (4,1), still in cell (1,0)
        [0, 0, 0],  # (4,2): on the target cell's edge line, counted in it: the route's end
    ]
    assert targets[21:33].tolist() == expected
    assert targets[33:36].tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_the_shortest_success_is_the_route_kept():
    # Episode 1 reaches the target cell (1,0) the long way round, by (0,1) and (1,1); episode 2 straight
    # ahead in 3 strides; episode 3 is pointed along episode 2's route; a failed episode never replaces it.
    long_way = ([L] + [F] * 4 + [R] + [F] * 4 + [R] + [F] * 3, [STEP] * 13 + [GOAL])
    short = ([F] * 3, [STEP, STEP, GOAL])
    failed = ([L, F], [STEP, STEP])
    actions, rewards, dones, valid = trial(long_way[0] + short[0] + failed[0] + [L, F],
                                           long_way[1] + short[1] + failed[1] + [STEP, STEP], [13, 16, 18, 20])
    targets = route_targets(actions, rewards, dones, valid)[:, 0]
    assert targets[14].tolist() == [0, 1, 0]  # episode 2 at the start: the long route turns left first
    assert targets[17].tolist() == [1, 0, 0]  # episode 3: the short route's, forward
    assert targets[19].tolist() == [1, 0, 0]  # episode 4: still the short route (episode 3 failed)


def test_route_targets_need_quarter_turns():
    actions, rewards, dones, valid = trial([F], [GOAL], [0])
    with pytest.raises(ValueError, match="90-degree"):
        route_targets(actions, rewards, dones, valid, 22.5)


def test_route_loss_by_hand():
    logits = torch.zeros(3, 1, 3)
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]])[:, None]
    mask = torch.ones(3, 1)
    # uniform policy: -log(1/3) on the single-action step, -log(2/3) on the either-turn step; none off route
    want = (math.log(3) + math.log(1.5)) / 2
    assert float(route_loss(logits, targets, mask)) == pytest.approx(want)
    logits[0, 0, 0] = 2.0  # forward more likely where forward is the target
    p = math.exp(2) / (math.exp(2) + 2)
    assert float(route_loss(logits, targets, mask)) == pytest.approx((-math.log(p) + math.log(1.5)) / 2)
    assert float(route_loss(logits, targets, torch.tensor([[0.0], [1.0], [1.0]]))) == pytest.approx(math.log(1.5))
    logits.requires_grad_(True)
    route_loss(logits, targets, mask).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad[2].abs().sum() == 0
    share, agreed = route_agreement(torch.tensor([[0], [0], [2]]), targets, mask)
    assert share == pytest.approx(2 / 3) and agreed == pytest.approx(0.5)
    assert route_followed(torch.tensor([[0], [2], [1]]), targets)[:, 0].tolist() == [1.0, 1.0, 0.0]


def test_the_trainer_refuses_route_recall_where_it_cannot_read_routes(tmp_path):
    from rl2bench.algorithms.rl2.config import apply_overrides
    from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
    from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer, maze_trainer_class
    from rl2bench.errors import UserError

    cfg = apply_overrides(MazeTrainConfig(), ["route_coef=0.5"])
    with pytest.raises(UserError, match="PPO maze recipe"):
        maze_trainer_class(cfg)
    ppo = apply_overrides(MazeTrainConfig(update="ppo"), ["route_coef=0.5"])
    with pytest.raises(UserError, match="90-degree"):
        MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "a", ppo)
    with pytest.raises(UserError):
        apply_overrides(MazeTrainConfig(update="ppo"), ["route_coef=-1"])
    with pytest.raises(UserError, match="0.04"):  # a followed step must not pay more than a step costs
        apply_overrides(MazeTrainConfig(update="ppo"), ["route_bonus=0.05"])
    with pytest.raises(UserError, match="90-degree"):
        MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "c",
                       apply_overrides(MazeTrainConfig(update="ppo"), ["route_bonus=0.02"]))
    trainer = MazePPOTrainer("g3-e2-t12-turn90", "maze-ppo", 0, tmp_path / "b", ppo)
    assert trainer.cfg.route_coef == 0.5


def test_a_stride_into_a_wall_corrects_the_estimate_along_the_heading():
    from rl2bench.algorithms.rl2.novelty import odometry_poses

    # From a cell's centre a stride reaches the point one short of the edge and the next one hits. Here a
    # stride that should have hit counted as a move (the engine's braking had pushed the player back), so
    # the estimate says 2; the hit after it puts it back at 1. Then the same facing -x: -2 -> -1.
    actions = [F, F, F, L, L, F, F, F, F]
    rewards = [STEP, STEP, HIT, STEP, STEP, STEP, STEP, STEP, HIT]
    a, r, d, v = trial(actions, rewards, [8])
    plain = odometry_poses(a, r, d, v, 90.0)[0][:, 0, 0].tolist()
    snapped = odometry_poses(a, r, d, v, 90.0, snap_on_hit=True)[0][:, 0, 0].tolist()
    assert plain == [1, 2, 2, 2, 2, 1, 0, -1, -1]
    assert snapped == [1, 2, 1, 1, 1, 0, -1, -2, -1]


@pytest.mark.heavy
@pytest.mark.maze
def test_a_run_with_route_recall_records_its_loss_and_resumes_exactly(tmp_path, vizdoom_required):
    from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
    from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer, load_maze_trainer

    cfg = dict(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, iters=2, checkpoint_every=1,
               update="ppo", freeze_encoder=True, encoder_frames=200, encoder_epochs=1, ppo_minibatch_trials=2,
               route_coef=0.5, route_tilt=2.0, route_bonus=0.02)
    full = MazePPOTrainer("g2-e3-t24-turn90", "maze-ppo", 0, tmp_path / "a", MazeTrainConfig(**cfg))
    full.run(progress=False)
    row = full.curve[-1]
    assert math.isfinite(row["route_loss"]) and 0 <= row["route_share"] <= 1 and 0 <= row["route_agreed"] <= 1
    assert any(r["route_share"] > 0 for r in full.curve)  # 2x2 mazes: some episode 1 succeeds in 24 steps
    # the bonus per trial is 0.02 per followed target step: at most 0.02 x the target steps per trial
    assert all(0 <= r["route_return"] <= 0.02 * r["route_share"] * 3 * 24 + 1e-6 for r in full.curve)
    half = MazePPOTrainer("g2-e3-t24-turn90", "maze-ppo", 0, tmp_path / "b", MazeTrainConfig(**cfg))
    half.run(iters=1, progress=False)
    resumed = load_maze_trainer(tmp_path / "b")
    resumed.run(progress=False)
    assert [r["route_loss"] for r in resumed.curve] == [r["route_loss"] for r in full.curve]


def test_cells_of_points_on_both_sides_of_the_start():
    # a cell is 4 strides around its centre; an edge line (+-2) belongs to the cell on its + side
    assert cell_of(np.array([-6, -5, -3, -2, -1, 0, 1, 2, 5, 6])).tolist() == [-1, -1, -1, 0, 0, 0, 0, 1, 1, 2]


def test_a_hit_halfway_between_two_wall_points_snaps_back():
    from rl2bench.algorithms.rl2.novelty import snap_to_wall

    # facing +x the wall points are 4k+1; 3 and 7 lie halfway: the drift overshot, so back to 1 and 5;
    # facing -x they are 4k-1: -3 and -7 go back to -1 and -5
    x = np.array([3.0, 7.0, -3.0, -7.0, 2.0])
    y = np.zeros(5)
    snap_to_wall(x, y, np.array([0.0, 0.0, 180.0, 180.0, 0.0]), np.array([True, True, True, True, False]))
    assert x.tolist() == [1.0, 5.0, -1.0, -5.0, 2.0] and y.tolist() == [0.0] * 5


def test_facing_the_way_out_from_a_side_doorway_walks_back_first():
    from rl2bench.algorithms.rl2.maze_route import route_step

    # in cell (0,0) on its -y edge line, facing +x towards cell (1,0): a stride would meet the doorway's
    # corner, so first back onto the centre line (+y: a left turn)
    assert route_step((0, -2), 0, (0, 0), (1, 0)) == (L,)
    assert route_step((0, -1), 0, (0, 0), (1, 0)) == (F,)  # 1 stride off: the opening still passes


def test_a_hit_that_corrects_the_drift_leaves_the_targets_on():
    # Episode 1: 4 strides to the centre of cell (1,0), left, 3 strides into the goal (1,1). In episode 2
    # the estimate reaches (2,0) and the next stride hits a wall: the player was really one stride short
    # of it, at (1,0); the snap corrects the estimate, so the route goes on from there (a forward).
    ep1 = ([F, F, F, F, L, F, F, F], [STEP] * 7 + [GOAL])
    ep2 = ([F, F, F, F], [STEP, STEP, HIT, STEP])
    actions, rewards, dones, valid = trial(ep1[0] + ep2[0], ep1[1] + ep2[1], [7, 11])
    targets = route_targets(actions, rewards, dones, valid)[:, 0]
    assert targets[8:12].tolist() == [[1, 0, 0]] * 4


def test_the_tilted_route_loss_by_hand():
    targets = torch.tensor([[1.0, 0, 0]])[:, None]
    mask = torch.ones(1, 1)
    uniform = torch.zeros(1, 1, 3)
    # behaviour uniform, target odds doubled: q = (1/2, 1/4, 1/4); KL(q || uniform) = log(9/8) / 2
    got = route_loss(uniform, targets, mask, uniform, math.log(2))
    assert float(got) == pytest.approx(0.5 * math.log(9 / 8))
    # where the behaviour already follows the route, a less sure policy costs more than staying as sure:
    # the cheapest fall of the plain cross-entropy (making the policy less sure) is not one here
    sure = torch.tensor([[[4.0, 0.0, 0.0]]])
    assert float(route_loss(sure, targets, mask, sure, 1.0)) < float(route_loss(uniform, targets, mask, sure, 1.0))
    with pytest.raises(ValueError, match="behaviour"):
        route_loss(uniform, targets, mask, None, 1.0)


def test_a_tilt_needs_the_route_loss(tmp_path):
    from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
    from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer
    from rl2bench.errors import UserError

    with pytest.raises(UserError, match="route_coef"):
        MazePPOTrainer("g3-e2-t12-turn90", "maze-ppo", 0, tmp_path, MazeTrainConfig(update="ppo", route_tilt=2.0))



MOVE, ENTER = 4 * STEP, 3 * STEP + 1.0  # a forward on a -move cell walks a cell (4 strides, 3 into the target)


def test_on_cell_moves_a_forward_is_a_cell_and_the_route_is_exact():
    # Episode 1 from cell (0,0) facing +x: a move to (1,0), a bump into its far wall (nothing moves), left
    # (facing +y), a move to (1,1), two lefts (facing -y), a move back to (1,0), a move into the target in
    # (1,-1). Its route without the loop: (0,0) -> (1,0) -> (1,-1).
    ep1 = ([F, F, L, F, L, L, F, F], [MOVE, HIT, STEP, MOVE, STEP, STEP, MOVE, ENTER])
    # Episode 2 from the start: a move to (1,0), then left, right, right, and a move into the target.
    ep2 = ([F, L, R, R, F], [MOVE, STEP, STEP, STEP, ENTER])
    actions, rewards, dones, valid = trial(ep1[0] + ep2[0], ep1[1] + ep2[1], [7, 12])
    targets = route_targets(actions, rewards, dones, valid, cell_moves=True)[:, 0]
    assert targets[:8].sum() == 0
    assert targets[8:13].tolist() == [
        [1, 0, 0],  # (0,0) facing +x: the route's next cell, (1,0), ahead
        [0, 0, 1],  # (1,0) facing +x: the next, (1,-1), on the right
        [0, 1, 1],  # facing +y: behind, either turn
        [0, 0, 1],  # facing +x: right
        [1, 0, 0],  # facing -y: forward into the target
    ]


def test_a_route_head_takes_the_route_loss_off_the_policy():
    from rl2bench.algorithms.rl2.conv_policy import ConvPolicy
    from rl2bench.algorithms.rl2.maze_ppo import Extras, ppo_losses
    from rl2bench.algorithms.rl2.maze_rollout import MazeBatch

    net = ConvPolicy(3, hidden=8, activation="relu", aux_outputs=3)  # the route head alone
    with torch.no_grad():  # the head says uniform; the policy is sure of action 0
        net.aux.weight.zero_()
        net.aux.bias.zero_()
        net.pi.weight.zero_()
        net.pi.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    width = net.encode(torch.zeros(1, *net.obs_shape)).shape[1]
    batch = MazeBatch(obs=torch.rand(2, 1, width, generator=torch.Generator().manual_seed(0)),
                      actions=torch.tensor([[0], [1]]), rewards=torch.zeros(2, 1), dones=torch.zeros(2, 1),
                      valid=torch.ones(2, 1), logits=torch.zeros(2, 1, 3), metrics={})
    routes = torch.tensor([[[0.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]]])  # one step with a target: left
    prev = batch.prev_inputs(net.no_action)
    zero = torch.zeros(2, 1)

    def route_loss_of(head: bool) -> torch.Tensor:
        net.zero_grad()
        loss = ppo_losses(net, batch, prev, zero, zero, torch.tensor(1.0), 0.2, slice(None), True,
                          Extras(routes=routes, route_head=head)).route
        loss.backward()
        return loss

    assert float(route_loss_of(True)) == pytest.approx(math.log(3))  # uniform head: -log(1/3)
    assert net.pi.weight.grad is None or float(net.pi.weight.grad.abs().sum()) == 0.0
    assert float(net.aux.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        net.aux.weight.normal_(generator=torch.Generator().manual_seed(1))  # a head that reads the GRU
    route_loss_of(True)
    assert float(net.gru.weight_ih_l0.grad.abs().sum()) > 0  # the loss reaches the memory through it
    assert net.pi.weight.grad is None or float(net.pi.weight.grad.abs().sum()) == 0.0
    policy_p_left = 1.0 / (math.exp(5.0) + 2.0)
    assert float(route_loss_of(False)) == pytest.approx(-math.log(policy_p_left), rel=1e-5)
    assert float(net.pi.bias.grad.abs().sum()) > 0


def test_a_run_on_cell_moves_trains_a_route_head_beside_the_position_task(tmp_path, vizdoom_required):
    from rl2bench.algorithms.rl2.config import apply_overrides
    from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
    from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer
    from rl2bench.errors import UserError

    cfg = dict(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, iters=2, checkpoint_every=1,
               update="ppo", freeze_encoder=True, encoder_frames=200, encoder_epochs=1, ppo_minibatch_trials=2)
    with pytest.raises(UserError, match="set route_coef > 0 too"):
        MazePPOTrainer("g2-e3-t24-turn90-move", "maze-ppo", 0, tmp_path / "a", MazeTrainConfig(**cfg, route_head=True))
    with pytest.raises(UserError, match="use one of them"):
        MazePPOTrainer("g2-e3-t24-turn90-move", "maze-ppo", 0, tmp_path / "b", MazeTrainConfig(
            **cfg, route_head=True, route_coef=0.5, route_tilt=1.0))
    ppo = apply_overrides(MazeTrainConfig(**cfg), ["route_coef=0.5", "route_head=true", "aux_coef=0.1"])
    trainer = MazePPOTrainer("g2-e3-t24-turn90-move", "maze-ppo", 0, tmp_path / "c", ppo)
    assert trainer.net.aux is not None and trainer.net.aux.out_features == 6  # position 3, then route 3
    trainer.run(progress=False)
    assert all(math.isfinite(r["route_loss"]) and math.isfinite(r["aux_loss"]) for r in trainer.curve)
    assert any(r["route_share"] > 0 for r in trainer.curve)
    # a step here is a decision, each at least one stride; a forward one that moved walked 3 or 4 (the
    # first row's env_steps also count the encoder's random walk, so the second iteration is compared)
    decisions = np.diff([r["env_steps"] for r in trainer.curve])
    strides = np.array([r["low_level_steps"] for r in trainer.curve[1:]])
    assert (strides > decisions).all()
