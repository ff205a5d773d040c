"""The critic's own settings (``critic_time``, ``critic_hidden``): what the critic is given never reaches the
policy, runs with them resume exactly, and a run can start from a policy trained without them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rl2bench.algorithms.rl2 import trainer as trainer_module
from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.networks import critic_inputs, time_features
from rl2bench.algorithms.rl2.policy import input_size
from rl2bench.algorithms.rl2.rollout import TaskShape, task_shape
from rl2bench.algorithms.rl2.trainer import Trainer

TINY = dict(hidden=16, batch_steps=500, checkpoint_every=2, baseline_epochs=1, update="ppo")


def _trainer(path, **changes):
    cfg = dataclasses.replace(preset_config("fast", task_shape("mdp", "n10")), **{**TINY, **changes})
    return Trainer("mdp", "n10", "fast", 0, path, cfg)


def test_time_features_count_steps_and_episodes():
    shape = TaskShape("mdp", "n3", n_states=2, n_actions=2, horizon=2, n_episodes=3)
    f = time_features(shape, 6, 2)
    assert f[:, 0].flatten().tolist() == pytest.approx([0, 0, 0.5, 0, 0, 1 / 3, 0.5, 1 / 3, 0, 2 / 3, 0.5, 2 / 3])
    assert torch.equal(f[:, 0], f[:, 1])


@pytest.mark.heavy
def test_the_critic_sees_time_and_the_policy_does_not(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", critic_time=True, critic_hidden=24)
    width = input_size(10, 5)
    assert trainer.policy.gru.input_size == width and trainer.policy.hidden == 16
    assert trainer.baseline.gru.input_size == width + 2 and trainer.baseline.hidden == 24

    seen: dict[str, torch.Tensor] = {}
    update, fit = trainer_module.ppo_update, trainer_module.fit_baseline
    monkeypatch.setattr(trainer_module, "ppo_update", lambda policy, opt, batch, x, *a: (
        seen.setdefault("policy", x), update(policy, opt, batch, x, *a))[1])
    monkeypatch.setattr(trainer_module, "fit_baseline", lambda baseline, opt, x, *a: (
        seen.setdefault("critic", x), fit(baseline, opt, x, *a))[1])
    trainer.iterate()
    assert seen["policy"].shape[-1] == width  # the policy's update gets the paper's inputs only
    assert seen["critic"].shape[-1] == width + 2 and torch.equal(seen["critic"][..., :width], seen["policy"])

    x = seen["policy"]
    critic_x = critic_inputs(x, trainer.shape, trainer.cfg)
    shuffled = critic_x.clone()
    shuffled[..., width:] = shuffled[..., width:].flip(0)  # other times, same history
    with torch.no_grad():
        assert not torch.allclose(trainer.baseline.values(critic_x), trainer.baseline.values(shuffled))


@pytest.mark.heavy
def test_resume_is_exact_with_the_critics_settings(tmp_path):
    straight = _trainer(tmp_path / "a", critic_time=True, critic_hidden=24)
    straight.run(iters=3, progress=False)
    first = _trainer(tmp_path / "b", critic_time=True, critic_hidden=24)
    first.run(iters=2, progress=False)
    resumed = Trainer.from_checkpoint(tmp_path / "b")
    assert (resumed.cfg.critic_time, resumed.cfg.critic_hidden) == (True, 24)
    resumed.run(iters=3, progress=False)
    assert resumed.curve[-1]["mean_return"] == straight.curve[-1]["mean_return"]
    for a, b in zip(straight.baseline.parameters(), resumed.baseline.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.heavy
def test_a_timed_critic_starts_fresh_beside_a_carried_policy(tmp_path):
    source = _trainer(tmp_path / "plain")
    source.run(iters=2, progress=False)
    target = _trainer(tmp_path / "timed", critic_time=True)
    fresh = [p.detach().clone() for p in target.baseline.parameters()]
    target.init_from(tmp_path / "plain")
    for a, b in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(fresh, target.baseline.parameters(), strict=True):
        assert torch.equal(a, b)
    assert target.initialized_from is not None and target.initialized_from["critic"].startswith("fresh")
    wider = _trainer(tmp_path / "wide", critic_hidden=32)  # same inputs, wider critic: it grows
    wider.init_from(tmp_path / "plain")
    assert wider.baseline.hidden == 32 and "critic" not in (wider.initialized_from or {})
