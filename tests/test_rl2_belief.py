"""rl2-belief's training aids (``belief.py``): the auxiliary loss and the true-MDP critic inputs on a
hand-made MDP batch, and a trainer run with both that resumes exactly and leaves a plain policy file."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2 import agent as rl2_agent
from rl2bench.algorithms.rl2.belief import BeliefHead, mdp_inputs, mdp_rows, posterior_rows
from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.policy import embed, input_size
from rl2bench.algorithms.rl2.rollout import TaskShape, collect, sample_instances, task_shape
from rl2bench.algorithms.rl2.runfolder import POLICY
from rl2bench.algorithms.rl2.trainer import Trainer
from rl2bench.algorithms.rl2.zoo import promote
from rl2bench.errors import UserError
from rl2bench.protocol import play_trials
from rl2bench.registry import get_family

SHAPE = TaskShape("mdp", "n1", n_states=2, n_actions=2, horizon=2, n_episodes=1)
INSTANCES = {  # two MDPs of 2 states x 2 actions
    "reward_means": np.array([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [0.5, 0.25]]]),
    "transitions": np.array([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.25, 0.75]]],
                             [[[0.5, 0.5], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]]]),
}
OBS = torch.tensor([[0, 1], [1, 0]])  # (steps, trials): trial 0 visits 0 then 1, trial 1 visits 1 then 0


def test_the_true_mdp_rows_follow_each_trials_states():
    rewards, transitions = mdp_rows(SHAPE, INSTANCES, OBS)
    assert rewards[0, 0].tolist() == [1.0, 2.0] and rewards[0, 1].tolist() == [0.5, 0.25]
    assert rewards[1, 0].tolist() == [3.0, 4.0] and rewards[1, 1].tolist() == [-1.0, 0.0]
    assert transitions[1, 0].tolist() == [[0.0, 1.0], [0.25, 0.75]]
    assert mdp_inputs(SHAPE, INSTANCES, OBS)[0, 1].tolist() == [0.5, 0.25, 0.0, 1.0, 1.0, 0.0]


def test_the_auxiliary_loss_on_a_hand_made_batch():
    head = BeliefHead(hidden=1, n_states=2, n_actions=2)
    with torch.no_grad():  # predicts rewards (1, 1) and next-state logits (0, log 3) for both actions
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([1.0, 1.0, 0.0, math.log(3), 0.0, math.log(3)]))
    rewards, transitions = mdp_rows(SHAPE, INSTANCES, OBS)
    loss = head.loss(torch.zeros(2, 2, 1), rewards, transitions)
    squared = np.mean((np.array([1, 2, 0.5, 0.25, 3, 4, -1, 0]) - 1.0) ** 2)
    logq = np.log([0.25, 0.75])  # softmax(0, log 3)
    p = np.array([[1, 0], [0.5, 0.5], [1, 0], [0, 1], [0, 1], [0.25, 0.75], [0.5, 0.5], [1, 0]])
    cross_entropy = -(p * logq).sum(-1).mean()
    assert float(loss.detach()) == pytest.approx(squared + cross_entropy, rel=1e-6)


def test_the_posterior_rows_of_a_hand_made_trial():
    """One trial: state 0 --action 1, reward 2--> state 1 --action 0, reward -1--> state 0. Priors: reward
    means N(1, 1) with unit noise, flat Dirichlet rows. The inputs at step t carry the previous action,
    reward and done flag (placeholders at t = 0)."""
    obs = torch.tensor([[0], [1], [0]])
    prev_action = torch.tensor([[0], [1], [0]])
    prev_reward = torch.tensor([[0.0], [2.0], [-1.0]])
    x = embed(obs, prev_action, prev_reward, torch.zeros(3, 1), 2, 2)
    rewards, transitions = posterior_rows(SHAPE, x, obs)
    assert rewards[:, 0].tolist() == [[1.0, 1.0], [1.0, 1.0], [1.0, 1.5]]  # (1 + 2) / (1 + 1) for (0, 1) at t = 2
    assert transitions[0, 0].tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert transitions[1, 0].tolist() == [[0.5, 0.5], [0.5, 0.5]]  # state 1: nothing taken there yet
    assert transitions[2, 0].flatten().tolist() == pytest.approx([0.5, 0.5, 1 / 3, 2 / 3])  # (0, 1) went to 1 once


def test_the_posterior_target_reaches_the_auxiliary_loss(tmp_path):
    """With ``aux_target=posterior`` the head's loss is measured against the posterior rows of the batch's
    own history, not the true MDP's."""
    trainer = _trainer(tmp_path / "run", aux_coef=1.0, aux_target="posterior")
    s = trainer.shape
    instances = sample_instances(s, np.random.default_rng(0), 4)
    batch = collect(trainer.policy, s, instances, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    trials = torch.tensor([2, 0, 3])  # a PPO minibatch: its memory rows are these trials'
    memory = torch.randn(s.trial_len, 3, trainer.cfg.hidden, generator=torch.Generator().manual_seed(2))
    record: list[float] = []
    value = trainer.belief_loss(instances, batch, record)(memory, trials).detach()
    assert trainer.belief is not None
    rewards, rows = posterior_rows(s, batch.inputs(s.n_states, s.n_actions), batch.obs, chunk=3)
    true_rewards, true_rows = mdp_rows(s, instances, batch.obs)
    with torch.no_grad():
        posterior = trainer.belief.loss(memory, rewards[:, trials], rows[:, trials])
        truth = trainer.belief.loss(memory, true_rewards[:, trials], true_rows[:, trials])
    assert float(value) == pytest.approx(float(posterior)) and float(value) != pytest.approx(float(truth))
    assert record == [pytest.approx(float(posterior))]
    with pytest.raises(UserError, match="aux_target is one of mdp, posterior"):
        trainer.change_config(["aux_target=map"])
    with pytest.raises(UserError, match="cannot change on resume"):
        trainer.change_config(["aux_target=mdp"])
    with pytest.raises(UserError, match="set aux_coef > 0"):
        _trainer(tmp_path / "no-head", aux_target="posterior")


TINY = dict(hidden=16, batch_steps=500, checkpoint_every=2, baseline_epochs=1, update="ppo")


def _trainer(path, **changes):
    cfg = dataclasses.replace(preset_config("fast", task_shape("mdp", "n10")), **{**TINY, **changes})
    return Trainer("mdp", "n10", "fast", 0, path, cfg)


@pytest.mark.heavy
@pytest.mark.parametrize("target", ["mdp", "posterior"])
def test_a_belief_run_resumes_exactly_and_leaves_a_plain_policy(tmp_path, monkeypatch, target):
    straight = _trainer(tmp_path / "a", aux_coef=0.5, critic_mdp=True, aux_target=target)
    assert straight.baseline.gru.input_size == input_size(10, 5) + 5 * 11
    straight.run(iters=3, progress=False)
    assert all(row["aux_loss"] > 0 for row in straight.curve)
    first = _trainer(tmp_path / "b", aux_coef=0.5, critic_mdp=True, aux_target=target)
    first.run(iters=2, progress=False)
    resumed = Trainer.from_checkpoint(tmp_path / "b")
    resumed.run(iters=3, progress=False)
    assert resumed.curve[-1]["mean_return"] == straight.curve[-1]["mean_return"]
    assert resumed.curve[-1]["aux_loss"] == straight.curve[-1]["aux_loss"]
    assert resumed.belief is not None and straight.belief is not None
    for a, b in zip(straight.belief.parameters(), resumed.belief.parameters(), strict=True):
        assert torch.equal(a, b)
    monkeypatch.setenv("RL2BENCH_ZOO", str(tmp_path / "zoo"))
    rl2_agent.load_policy.cache_clear()
    folder = tmp_path / "zoo" / "mdp" / "n10"
    folder.mkdir(parents=True)
    torch.save(straight.policy_file(), folder / POLICY)
    net, _ = rl2_agent.load_policy(str(folder / POLICY))  # the head is not in the policy's file
    assert net.gru.input_size == input_size(10, 5)
    with pytest.raises(UserError, match="not add or remove"):
        resumed.change_config(["aux_coef=0"])
    resumed.change_config(["aux_coef=0.1"])
    assert resumed.cfg.aux_coef == 0.1


def test_belief_aids_are_refused_where_they_cannot_work(tmp_path):
    with pytest.raises(UserError, match="mdp cells only"):
        cfg = dataclasses.replace(preset_config("fast", task_shape("mab", "n10-k5")), **TINY, aux_coef=0.1)
        Trainer("mab", "n10-k5", "fast", 0, tmp_path / "mab", cfg)
    with pytest.raises(UserError, match="update=ppo"):
        _trainer(tmp_path / "trpo", aux_coef=0.1, update="trpo")


@pytest.mark.heavy
def test_a_belief_run_is_promoted_into_its_own_zoo_folder_and_plays_as_rl2_belief(tmp_path, monkeypatch):
    run = tmp_path / "belief-run"
    _trainer(run, aux_coef=0.5, critic_mdp=True).run(iters=2, progress=False)
    zoo = tmp_path / "zoo"
    promote(run, zoo)
    assert (zoo / "mdp-belief" / "n10" / POLICY).exists() and not (zoo / "mdp").exists()  # never rl2's folder
    monkeypatch.setenv("RL2BENCH_ZOO", str(zoo))
    rl2_agent.load_policy.cache_clear()
    family = get_family("mdp")
    cell = family.parse_cell("n10")
    spec = family.spec(cell)
    assert rl2_agent.RL2Belief.unavailable(cell, spec) is None
    assert "rl2 has no trained policy" in (rl2_agent.RL2.unavailable(cell, spec) or "")
    setting = rl2_agent.RL2Belief.grid(cell, spec)[0]
    assert setting["policy"] == "mdp-belief/n10"
    played = play_trials(family, cell, rl2_agent.RL2Belief, setting, 20, 0, "eval")
    assert np.isfinite(played.returns).all()


def test_the_zoo_folder_follows_what_training_saw():
    from rl2bench.algorithms.rl2.zoo import zoo_task

    assert zoo_task({"task": "mdp", "config": {"aux_coef": 0.0}}) == "mdp"
    assert zoo_task({"task": "mdp", "config": {"critic_mdp": True}}) == "mdp-belief"
    grandchild = {"task": "mdp", "config": {}, "ancestry": [{"run": "a"}, {"run": "b", "saw_the_mdp": True}]}
    assert zoo_task(grandchild) == "mdp-belief"  # a belief run's descendants are not rl2's either
    with pytest.raises(UserError, match="diagnostic"):
        zoo_task({"task": "mdp", "config": {"network": "posterior"}})


def test_a_belief_run_keeps_ppo(tmp_path):
    trainer = _trainer(tmp_path / "run", aux_coef=0.1)
    with pytest.raises(UserError, match="update=ppo"):
        trainer.change_config(["update=trpo"])
