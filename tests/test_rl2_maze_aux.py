"""The maze trainer's auxiliary task (algorithms/rl2/maze_aux.py): targets counted by hand, a loss that
reaches the GRU, and, through the real engine, a run that starts from a policy without the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2.conv_policy import ConvPolicy
from rl2bench.algorithms.rl2.maze_aux import AUX_OUTPUTS, POSITION_SCALE, aux_loss, position_targets
from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
from rl2bench.algorithms.rl2.novelty import first_occurrences
from rl2bench.errors import UserError

F, L, R = 0, 1, 2


def col(x: torch.Tensor) -> torch.Tensor:
    return x[:, None]


def test_positions_and_been_here_by_hand():
    # 90-degree turns from (0, 0) facing +x: F F L L F (turned round at (2, 0), then a stride back) ends
    # episode 1; episode 2 starts at (0, 0) again (been there) and strides to (1, 0) (been there too)
    actions = torch.tensor([F, F, L, L, F, F, F, 0])
    rewards = torch.full((8,), -0.04)
    dones = torch.tensor([0, 0, 0, 0, 1, 0, 1, 0.0])
    valid = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0.0])
    t = position_targets(col(actions), col(rewards), col(dones), col(valid), 90.0)[:, 0]
    assert t[:, :2].tolist() == [[0, 0], [1, 0], [2, 0], [2, 0], [2, 0], [0, 0], [1, 0], [0, 0]]
    assert t[:, 2].tolist() == [0, 0, 0, 1, 1, 1, 1, 0]


def test_the_point_where_an_episode_ended_counts_as_reached():
    # Episode 1 (F F) ends at (2, 0), a point it reached only by its last action; episode 2 walks back
    # onto it (F F F from the start): been there, as the odometry bonus also counts it.
    actions = torch.tensor([F, F, F, F, F])
    rewards = torch.full((5,), -0.04)
    dones = torch.tensor([0, 1, 0, 0, 0.0])
    valid = torch.ones(5)
    t = position_targets(col(actions), col(rewards), col(dones), col(valid), 90.0)[:, 0]
    assert t[:, :2].tolist() == [[0, 0], [1, 0], [0, 0], [1, 0], [2, 0]]
    assert t[:, 2].tolist() == [0, 0, 1, 1, 1]


def test_first_occurrences_takes_any_mask():
    keys = np.array([[5], [7], [5], [7], [9]])
    mask = np.array([[0], [1], [1], [1], [1]])
    assert first_occurrences(keys, mask)[:, 0].tolist() == [False, True, True, False, True]


def test_the_loss_is_zero_for_a_perfect_guess_and_reaches_the_gru():
    targets = torch.tensor([[[2.0, -1.0, 1.0]], [[0.0, 3.0, 0.0]]])
    mask = torch.ones(2, 1)
    perfect = torch.cat([targets[..., :2] / POSITION_SCALE, (targets[..., 2:] * 2 - 1) * 50.0], -1)
    assert float(aux_loss(perfect, targets, mask)) == pytest.approx(0.0, abs=1e-6)
    off = perfect.clone()
    off[1, 0, 0] += 0.5  # half a scale off in x on the second step: 0.25 / 2 steps
    assert float(aux_loss(off, targets, mask)) == pytest.approx(0.125, abs=1e-6)
    mask[1] = 0.0  # a padded step counts for nothing
    assert float(aux_loss(off, targets, mask)) == pytest.approx(0.0, abs=1e-6)

    net = ConvPolicy(3, hidden=8, action_embed=4, fc=8, generator=torch.Generator().manual_seed(0),
                     activation="relu", aux_outputs=AUX_OUTPUTS)
    obs = torch.rand(5, 2, net.encode(torch.zeros(1, *net.obs_shape)).shape[1])
    prev = (torch.zeros(5, 2, dtype=torch.long), torch.zeros(5, 2), torch.zeros(5, 2))
    out, _ = net.trunk(obs, *prev, encoded=True)
    assert net.aux is not None
    aux_loss(net.aux(out), torch.ones(5, 2, 3), torch.ones(5, 2)).backward()
    assert net.gru.weight_hh_l0.grad is not None and net.gru.weight_hh_l0.grad.abs().sum() > 0
    assert net.pi.weight.grad is None  # the head never acts: the policy's own weights get nothing


def test_the_head_leaves_the_rest_of_the_network_as_it_was():
    plain = ConvPolicy(3, hidden=8, generator=torch.Generator().manual_seed(1), activation="relu")
    with_aux = ConvPolicy(3, hidden=8, generator=torch.Generator().manual_seed(1), activation="relu",
                          aux_outputs=AUX_OUTPUTS)
    aux_keys = {k for k in with_aux.state_dict() if k.startswith("aux.")}
    assert aux_keys == {"aux.weight", "aux.bias"}
    for key, value in plain.state_dict().items():
        assert torch.equal(value, with_aux.state_dict()[key]), key


def test_only_the_ppo_recipe_takes_it():
    from rl2bench.algorithms.rl2.maze_ppo import maze_trainer_class

    with pytest.raises(UserError, match="aux_coef belongs to the PPO"):
        maze_trainer_class(MazeTrainConfig(aux_coef=0.1))


@pytest.mark.maze
def test_a_run_with_the_head_starts_from_one_without_it(tmp_path, vizdoom_required):
    from rl2bench.algorithms.rl2.agent import load_maze_policy
    from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer

    base = dict(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, iters=1, checkpoint_every=1,
                update="ppo", freeze_encoder=True, encoder_frames=200, encoder_epochs=1, ppo_minibatch_trials=2)
    parent = MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "parent", MazeTrainConfig(**base))
    parent.run(progress=False)
    child = MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "child", MazeTrainConfig(**base, aux_coef=0.5))
    child.init_from(tmp_path / "parent")
    for key, value in parent.net.state_dict().items():  # the policy as it was, plus a fresh head
        assert torch.equal(value, child.net.state_dict()[key]), key
    assert child.initialized_from["aux_outputs_from"] == 0
    child.run(progress=False)
    assert child.curve[-1]["aux_loss"] > 0
    net, meta = load_maze_policy(str(tmp_path / "child" / "policy.pt"))
    assert meta["aux_outputs"] == AUX_OUTPUTS and net.aux is not None

    # and back: a run without the head starts from the one with it, the head dropped, the rest kept
    plain = MazePPOTrainer("g3-e2-t12", "maze-ppo", 0, tmp_path / "plain", MazeTrainConfig(**base))
    plain.init_from(tmp_path / "child")
    assert plain.net.aux is None and plain.initialized_from["aux_outputs_from"] == AUX_OUTPUTS
    for key, value in plain.net.state_dict().items():
        assert torch.equal(value, child.net.state_dict()[key]), key


def test_on_cell_moves_a_forward_reaches_the_next_cell_centre():
    # forward (a cell: 4 strides), a bump (nothing), left, forward; positions before each action
    actions = torch.tensor([0, 0, 1, 0, 0])[:, None]
    rewards = torch.tensor([-0.16, -0.041, -0.04, -0.16, -0.16])[:, None]
    dones, valid = torch.zeros(5, 1), torch.ones(5, 1)
    moves = position_targets(actions, rewards, dones, valid, 90.0, cell_moves=True)[:, 0, :2].tolist()
    assert moves == [[0, 0], [4, 0], [4, 0], [4, 0], [4, 4]]
    strides = position_targets(actions, rewards, dones, valid, 90.0)[:, 0, :2].tolist()
    assert strides[4] == [1, 1]
