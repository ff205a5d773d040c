"""Per-trial head noise (algorithms/rl2/maze_noise.py): the perturbation by hand, the update applying the
behaviour's own perturbation again, and through the real engine a run that draws it and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from rl2bench.algorithms.rl2.conv_policy import ConvPolicy
from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
from rl2bench.algorithms.rl2.maze_noise import draw_head_noise, perturb_logits
from rl2bench.algorithms.rl2.maze_ppo import Extras, MazePPOTrainer, load_maze_trainer, ppo_losses
from rl2bench.algorithms.rl2.maze_rollout import MazeBatch


def test_the_perturbation_follows_the_output_direction_not_its_size():
    noise = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [1.0, 1.0]]])  # (trials 2, actions 2, hidden 2)
    out = torch.tensor([[[3.0, 4.0], [0.0, 7.0]]])  # (steps 1, trials 2, hidden 2)
    logits = torch.tensor([[[1.0, -1.0], [0.0, 0.0]]])
    got = perturb_logits(logits, out, noise, 0.5)
    # trial 0: direction (0.6, 0.8) -> E d = (0.6, 0.8); trial 1: direction (0, 1) -> (2, 1)
    assert torch.allclose(got, torch.tensor([[[1.3, -0.6], [1.0, 0.5]]]))
    assert torch.allclose(perturb_logits(logits, 10 * out, noise, 0.5), got)  # the same at any size
    gen = torch.Generator().manual_seed(0)
    draws = draw_head_noise(400, 3, 64, gen)
    shifts = perturb_logits(torch.zeros(1, 400, 3), torch.rand(1, 400, 64), draws, 2.0)
    assert float(shifts.std()) == pytest.approx(2.0, rel=0.1)  # each logit moves by N(0, scale^2)


def test_the_update_plays_the_behaviours_own_perturbation():
    net = ConvPolicy(3, hidden=8, activation="relu")
    width = net.encode(torch.zeros(1, *net.obs_shape)).shape[1]
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(4, 2, width, generator=gen)
    actions = torch.tensor([[0, 1], [2, 0], [1, 1], [0, 2]])
    base = MazeBatch(obs=obs, actions=actions, rewards=torch.zeros(4, 2), dones=torch.zeros(4, 2),
                     valid=torch.ones(4, 2), logits=torch.zeros(4, 2, 3), metrics={})
    prev = base.prev_inputs(net.no_action)
    noise = draw_head_noise(2, 3, 8, gen)
    with torch.no_grad():  # the rollout's logits: the head perturbed by each trial's draw
        out, _ = net.trunk(obs, *prev, encoded=True)
        played = perturb_logits(net.pi(out), out, noise, 3.0)
    batch = MazeBatch(**{**base.__dict__, "logits": played, "head_noise": noise})
    adv = torch.randn(4, 2, generator=gen)
    with torch.no_grad():
        same = ppo_losses(net, batch, prev, adv, torch.zeros(4, 2), torch.tensor(1.0), 0.2, slice(None), True,
                          Extras(head_noise=3.0))
        mean_head = ppo_losses(net, batch, prev, adv, torch.zeros(4, 2), torch.tensor(1.0), 0.2, slice(None), True)
    assert float(same.kl) == pytest.approx(0.0, abs=1e-6)  # ratios 1: the surrogate is the mean advantage
    assert float(same.surrogate) == pytest.approx(float(adv.mean()), abs=1e-6)
    assert float(mean_head.kl) > 0.01  # the unperturbed head is another policy


@pytest.mark.heavy
@pytest.mark.maze
def test_a_run_with_head_noise_resumes_exactly(tmp_path, vizdoom_required):
    cfg = MazeTrainConfig(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, iters=3,
                          checkpoint_every=1, update="ppo", freeze_encoder=True, encoder_frames=200,
                          encoder_epochs=1, ppo_minibatch_trials=2, head_noise=2.0)
    full = MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path / "a", cfg)
    full.run(progress=False)
    quiet = MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path / "q",
                           MazeTrainConfig(**{**cfg.__dict__, "head_noise": 0.0}))
    quiet.run(iters=1, progress=False)
    assert quiet.curve[0]["entropy"] != full.curve[0]["entropy"]  # the noise changed what was played
    half = MazePPOTrainer("g3-e2-t12-turn90-move", "maze-ppo", 0, tmp_path / "b", cfg)
    half.run(iters=1, progress=False)
    resumed = load_maze_trainer(tmp_path / "b")
    resumed.run(progress=False)
    assert [r["mean_return"] for r in resumed.curve] == [r["mean_return"] for r in full.curve]
    for p, q in zip(full.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(p, q)
