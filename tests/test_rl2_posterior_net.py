"""The posterior-statistics diagnostic network (``--set network=posterior``): its statistics on a hand-made
MDP trial, its stepping equal to its sequence forward, and training, resuming and playing it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2 import agent as rl2_agent
from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.policy import embed
from rl2bench.algorithms.rl2.posterior_net import PosteriorPolicy
from rl2bench.algorithms.rl2.rollout import task_shape
from rl2bench.algorithms.rl2.runfolder import POLICY
from rl2bench.algorithms.rl2.trainer import Trainer
from rl2bench.errors import UserError
from rl2bench.protocol import play_trials
from rl2bench.registry import get_family

# A 2-state, 2-action MDP trial of 2 episodes of 2 steps, written out by hand:
#   t0: state 0, action 1, reward 3, moves to state 1
#   t1: state 1, action 0, reward -1, the episode ends (the next state is the reset, not a transition)
#   t2: state 0, action 1, reward 2, moves to state 0
#   t3: state 0
STATES = [0, 1, 0, 0]
ACTIONS = [1, 0, 1, 0]
REWARDS = [3.0, -1.0, 2.0, 0.0]
DONES = [0.0, 1.0, 0.0, 0.0]


def _inputs() -> torch.Tensor:
    obs = torch.tensor(STATES).view(4, 1)
    shifted = lambda v, dtype: torch.tensor([0, *v[:-1]], dtype=dtype).view(4, 1)  # noqa: E731
    return embed(obs, shifted(ACTIONS, torch.long), shifted(REWARDS, torch.float32), shifted(DONES, torch.float32),
                 2, 2)


def test_the_statistics_of_a_hand_made_trial():
    net = PosteriorPolicy(2, 2, hidden=8, horizon=2, n_episodes=2)
    features, last = net.statistics(_inputs(), None)
    f = features[3, 0]  # at t3, after three actions
    state, time, mean, var, trans = f[:2], f[2:4], f[4:8].view(2, 2), f[8:12].view(2, 2), f[12:].view(2, 2, 2)
    assert state.tolist() == [1.0, 0.0]
    assert time.tolist() == [0.5, 0.5]  # second step of the second episode
    assert mean.flatten().tolist() == pytest.approx([1.0, (1 + 3 + 2) / 3, (1 - 1) / 2, 1.0])  # prior N(1, 1)
    assert var.flatten().tolist() == pytest.approx([1.0, 1 / 3, 1 / 2, 1.0])
    assert trans[0, 1].tolist() == pytest.approx([2 / 4, 2 / 4])  # 0 -a1-> 1 and 0 -a1-> 0, flat prior
    assert trans[1, 0].tolist() == pytest.approx([1 / 2, 1 / 2])  # the episode's end taught nothing
    f0 = features[0, 0]  # the first step: placeholders, nothing counted yet
    assert f0[4:8].tolist() == [1.0] * 4 and f0[8:12].tolist() == [1.0] * 4
    assert last[0, 0, -1].item() == 4  # four steps seen


def test_stepping_gives_the_sequence_forward():
    gen = torch.Generator().manual_seed(0)
    net = PosteriorPolicy(2, 2, hidden=8, horizon=2, n_episodes=2, generator=gen)
    x = _inputs()
    whole, _ = net(net.encode(x))
    h = net.initial_state(1)
    for t in range(4):
        out, h = net.step(x[t], h)
        assert torch.allclose(out, whole[t], atol=1e-6)
    assert torch.equal(h, net.statistics(x, None)[1])
    half, h2 = net.statistics(x[:2], None)  # a sequence cut in two and carried on from its statistics
    rest, _ = net.statistics(x[2:], h2)
    assert torch.allclose(torch.cat([half, rest]), net.encode(x), atol=1e-6)


TINY = dict(hidden=16, batch_steps=1_000, checkpoint_every=2, baseline_epochs=1, network="posterior",
            update="ppo")


def _trainer(path, cell="n10", **changes):
    cfg = dataclasses.replace(preset_config("fast", task_shape("mdp", cell)), **{**TINY, **changes})
    return Trainer("mdp", cell, "fast", 0, path, cfg)


@pytest.mark.heavy
def test_it_trains_resumes_exactly_and_plays_as_the_rl2_agent(tmp_path, monkeypatch):
    straight = _trainer(tmp_path / "a")
    straight.run(iters=3, progress=False)
    first = _trainer(tmp_path / "b")
    first.run(iters=2, progress=False)
    resumed = Trainer.from_checkpoint(tmp_path / "b")
    resumed.run(iters=3, progress=False)
    assert resumed.curve[-1]["mean_return"] == straight.curve[-1]["mean_return"]
    for a, b in zip(straight.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(resumed.policy, PosteriorPolicy)

    monkeypatch.setenv("RL2BENCH_ZOO", str(tmp_path / "zoo"))
    rl2_agent.load_policy.cache_clear()
    folder = tmp_path / "zoo" / "mdp" / "n10"
    folder.mkdir(parents=True)
    torch.save(straight.policy_file(), folder / POLICY)
    family = get_family("mdp")
    cell = family.parse_cell("n10")
    setting = rl2_agent.RL2.grid(cell, family.spec(cell))[0]
    played = play_trials(family, cell, rl2_agent.RL2, setting, 20, 0, "eval")
    assert played.returns.shape == (20,) and np.isfinite(played.returns).all()


def test_a_gru_run_cannot_start_from_a_posterior_run(tmp_path):
    _trainer(tmp_path / "post").run(iters=2, progress=False)
    gru = _trainer(tmp_path / "gru", network="gru")
    with pytest.raises(UserError, match="network=posterior"):
        gru.init_from(tmp_path / "post")
