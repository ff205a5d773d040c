"""The maze-ppo recipe (algorithms/rl2/maze_ppo.py): its losses on a hand-checked batch, the frozen
encoder's pretraining, and, through the real engine, a run that stores features and resumes exactly."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2.config import apply_overrides
from rl2bench.algorithms.rl2.conv_policy import ConvPolicy
from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig, preset_config
from rl2bench.algorithms.rl2.maze_encoder import FrameDecoder, pretrain_encoder, random_walk_frames
from rl2bench.algorithms.rl2.maze_ppo import (
    MazePPOTrainer,
    load_maze_trainer,
    maze_trainer_class,
    minibatch_trials,
    ppo_losses,
)
from rl2bench.algorithms.rl2.maze_rollout import MazeBatch
from rl2bench.errors import UserError
from rl2bench.results import DamagedRun


def _batch(net: ConvPolicy) -> MazeBatch:
    """2 steps x 2 trials of encoded frames; the second trial ended after one step."""
    gen = torch.Generator().manual_seed(0)
    width = net.encode(torch.zeros(1, *net.obs_shape)).shape[1]
    return MazeBatch(obs=torch.rand(2, 2, width, generator=gen), actions=torch.tensor([[0, 1], [2, 0]]),
                     rewards=torch.zeros(2, 2), dones=torch.zeros(2, 2), valid=torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
                     logits=torch.tensor([[[math.log(2), 0.0, 0.0, 0.0], [0.0] * 4], [[0.0] * 4, [0.0] * 4]]),
                     metrics={})


def test_the_losses_on_a_hand_checked_batch():
    net = ConvPolicy(4, hidden=8, activation="relu")
    with torch.no_grad():  # a uniform policy and a constant value 0.5, whatever the input
        net.pi.weight.zero_()
        net.pi.bias.zero_()
        net.v.weight.zero_()
        net.v.bias.fill_(0.5)
    batch = _batch(net)
    prev = batch.prev_inputs(net.no_action)
    adv = torch.tensor([[1.0, -2.0], [3.0, 100.0]])  # the last step is past its trial's end: masked
    returns = torch.tensor([[1.5, 0.5], [0.5, 9.0]])
    with torch.no_grad():
        losses = ppo_losses(net, batch, prev, adv, returns, torch.tensor(2.0), 0.2, slice(None), encoded=True)
    surr, value_loss, entropy, kl = losses.surrogate, losses.value, losses.entropy, losses.kl
    # ratios: step (0, trial 0) took action 0 with behaviour p = 2/5, now 1/4: ratio 5/8, clipped to 0.8 but
    # min(5/8 * 1, 0.8 * 1) = 5/8; the other valid steps had a uniform behaviour: ratio 1
    assert float(surr) == pytest.approx((5 / 8 * 1.0 + 1.0 * -2.0 + 1.0 * 3.0) / 3)
    assert float(value_loss) == pytest.approx(((1.0 / 2) ** 2 + 0.0 + 0.0) / 3)
    assert float(entropy) == pytest.approx(math.log(4))
    behaviour = np.array([2, 1, 1, 1]) / 5
    kl_first = float((behaviour * np.log(behaviour / 0.25)).sum())
    assert float(kl) == pytest.approx(kl_first / 3, rel=1e-5)



def _padded(batch: MazeBatch, rows: int) -> MazeBatch:
    """The same trials with ``rows`` more steps of padding (garbage that the mask must hide)."""
    def grow(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.full_like(x[:1], 7).expand(rows, *x.shape[1:])])
    return MazeBatch(obs=grow(batch.obs), actions=grow(batch.actions), rewards=grow(batch.rewards),
                     dones=grow(batch.dones), valid=torch.cat([batch.valid, torch.zeros(rows, batch.valid.shape[1])]),
                     logits=grow(batch.logits), metrics={})


@pytest.mark.parametrize("trials", [slice(None), torch.tensor([1]), torch.tensor([0, 1])])
def test_padding_past_the_minibatch_s_longest_trial_changes_nothing(trials):
    """The update cuts a minibatch to its longest trial: rows of padding after it, with garbage in them,
    give the same losses and the same gradients, whichever trials the minibatch holds."""
    net = ConvPolicy(4, hidden=8, activation="relu", generator=torch.Generator().manual_seed(1))
    batch = _batch(net)
    adv, returns = torch.tensor([[1.0, -2.0], [3.0, 100.0]]), torch.tensor([[1.5, 0.5], [0.5, 9.0]])
    results = []
    for b, extra in ((batch, 0), (_padded(batch, 5), 5)):
        net.zero_grad()
        pad = torch.full((extra, 2), 7.0)
        losses = ppo_losses(net, b, b.prev_inputs(net.no_action), torch.cat([adv, pad]), torch.cat([returns, pad]),
                            torch.tensor(2.0), 0.2, trials, encoded=True)
        losses.total(preset_config("maze-ppo")).backward()
        results.append((losses, [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (short, short_grads), (long, long_grads) = results
    for name in ("surrogate", "value", "entropy", "kl"):
        assert torch.allclose(getattr(short, name), getattr(long, name), atol=1e-7), name
    assert len(short_grads) == len(long_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(short_grads, long_grads, strict=True))


def test_the_fused_backward_gives_the_plain_gradients():
    """The PPO maze update back-propagates through fused_gru on CPU: same loss, same gradients as autograd."""
    grads = []
    for fused in (False, True):
        net = ConvPolicy(4, hidden=8, activation="relu", generator=torch.Generator().manual_seed(2))
        net.fused_backward = fused
        batch = _batch(net)
        adv, returns = torch.tensor([[1.0, -2.0], [3.0, 0.0]]), torch.tensor([[1.5, 0.5], [0.5, 0.0]])
        loss = ppo_losses(net, batch, batch.prev_inputs(net.no_action), adv, returns, torch.tensor(2.0), 0.2,
                          slice(None), encoded=True).total(preset_config("maze-ppo"))
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (plain_loss, plain), (fused_loss, fused) = grads
    assert fused_loss == pytest.approx(plain_loss, rel=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(plain, fused, strict=True))


@pytest.mark.heavy
def test_the_decoder_mirrors_the_encoder_and_pretraining_learns():
    net = ConvPolicy(4, hidden=8, activation="relu", generator=torch.Generator().manual_seed(0))
    frames = torch.randint(0, 256, (64, 3, 30, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    frames[:, :, 15:] = 0  # structure to learn: a dark lower half
    assert FrameDecoder()(net.conv(frames[:2].float())).shape == (2, 3, 30, 40)
    before = [p.detach().clone() for p in net.conv.parameters()]
    losses = pretrain_encoder(net, frames, epochs=4, lr=1e-2, gen=torch.Generator().manual_seed(2), batch=16)
    assert losses[-1] < losses[0]
    assert not all(torch.equal(a, b) for a, b in zip(before, net.conv.parameters(), strict=True))


def test_the_preset_says_what_it_is():
    cfg = preset_config("maze-ppo")
    assert (cfg.update, cfg.freeze_encoder, cfg.hidden, cfg.ppo_epochs) == ("ppo", True, 64, 2)
    assert cfg.encoder_frames > 0 and cfg.workers * cfg.games_per_worker == 48


CELL = "g3-e2-t12"


def _config(**kw) -> MazeTrainConfig:
    base = dict(hidden=16, batch_steps=96, workers=1, games_per_worker=4, pool=8, iters=3, checkpoint_every=1,
                update="ppo", freeze_encoder=True, encoder_frames=200, encoder_epochs=1, ppo_minibatch_trials=2)
    return MazeTrainConfig(**{**base, **kw})


@pytest.mark.heavy
@pytest.mark.maze
@pytest.mark.parametrize("lag", [0, 1])
def test_a_run_keeps_its_encoder_frozen_stores_features_and_resumes_exactly(tmp_path, vizdoom_required, lag):
    full = MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "a", _config(update_lag=lag))
    full.prepare_encoder()
    assert full.encoder_record is not None and full.env_steps == 200  # the walk counts toward the budget
    pretrained = [p.detach().clone() for p in full.net.conv.parameters()]
    trunk = full.net.fc.weight.detach().clone()
    full.run(progress=False)
    assert all(torch.equal(a, b) for a, b in zip(pretrained, full.net.conv.parameters(), strict=True))
    assert not torch.equal(trunk, full.net.fc.weight)
    assert full.curve[-1]["all_in_steps_per_second"] > 0
    half = MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "b", _config(update_lag=lag))
    half.run(iters=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "b").glob("pending-*.pt")) == (["pending-1.pt"] if lag else [])
    resumed = load_maze_trainer(tmp_path / "b")
    assert isinstance(resumed, MazePPOTrainer) and resumed.encoder_record == half.encoder_record
    resumed.run(progress=False)
    assert [r["mean_return"] for r in resumed.curve] == [r["mean_return"] for r in full.curve]
    assert [r["kl"] for r in resumed.curve] == pytest.approx([r["kl"] for r in full.curve], nan_ok=True, abs=0)
    for p, q in zip(full.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(p, q)
    child = MazePPOTrainer(CELL, "maze-ppo", 1, tmp_path / "child", _config())
    child.init_from(tmp_path / "a")  # its encoder comes with the network: not pretrained again
    child.prepare_encoder()
    assert child.env_steps == 0 and child.encoder_record is not None
    assert child.encoder_record["inherited_from"] == str(tmp_path / "a")
    assert all(torch.equal(a, b) for a, b in zip(full.net.conv.parameters(), child.net.conv.parameters(), strict=True))
    shutil.rmtree(tmp_path / "a")


class _WalkEnv:
    """Two groups of 3 games; in each trial game 0 ends after 1 step, game 1 after 2, game 2 after 4."""

    n_groups = 2

    class spec:  # noqa: N801 (the attribute MazeVecEnv has)
        n_actions = 4

    def select_group(self, k: int) -> int:
        self.t = 0
        return 3

    def reset(self) -> np.ndarray:
        return np.full((3, 3, 30, 40), -1.0, np.float32)

    def step(self, actions):
        self.t += 1
        done = np.array([self.t >= 1, self.t >= 2, self.t >= 4])
        obs = np.full((3, 3, 30, 40), -1.0 + 2.0 * self.t / 255.0, np.float32)

        class Result:
            pass

        result = Result()
        result.obs, result.trial_done = obs, done
        return result


def test_the_random_walk_keeps_and_counts_only_live_steps():
    frames = random_walk_frames(_WalkEnv(), 12, np.random.default_rng(0))
    # per trial: step 0 all 3 games live, step 1 two, steps 2-3 one: 3 + 2 + 1 + 1 = 7 frames; then 5 more
    assert len(frames) == 12
    assert frames[:7, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert frames[7:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1]


def test_minibatches_of_like_length_cover_each_trial_once_and_do_not_interleave():
    lengths = torch.tensor([5, 90, 7, 33, 33, 120, 6, 41, 2, 60, 33, 8])
    random = minibatch_trials(lengths, 4, "random", torch.Generator().manual_seed(0))
    expected = torch.randperm(12, generator=torch.Generator().manual_seed(0)).chunk(4)  # the stream runs used
    assert all(torch.equal(a, b) for a, b in zip(random, expected, strict=True))
    orders = set()
    for seed in range(6):
        pieces = minibatch_trials(lengths, 4, "length", torch.Generator().manual_seed(seed))
        assert sorted(torch.cat(pieces).tolist()) == list(range(12)) and len(pieces) == 4
        spans = sorted((int(lengths[p].min()), int(lengths[p].max())) for p in pieces)
        assert all(hi <= lo for (_, hi), (lo, _) in zip(spans[:-1], spans[1:], strict=True))  # no overlap
        orders.add(tuple(int(lengths[p].max()) for p in pieces))
    assert len(orders) > 1  # the pieces are played in random order, not shortest first


def test_minibatches_of_unlike_sizes_weigh_every_step_alike():
    """With fixed divisors (``counts``: the batch's steps per minibatch), the epoch's minibatch losses add up
    to the whole batch's mean times the number of minibatches, however unlike the minibatches' sizes;
    their own means would weigh the short trial's single step as much as the long trial's two."""
    net = ConvPolicy(4, hidden=8, activation="relu", generator=torch.Generator().manual_seed(3))
    batch = _batch(net)  # trial 0: 2 steps, trial 1: 1 step
    prev = batch.prev_inputs(net.no_action)
    adv, returns = torch.tensor([[1.0, -2.0], [3.0, 0.0]]), torch.tensor([[1.5, 0.5], [0.5, 0.0]])
    counts = {"valid": 3 / 2, "chosen": 3 / 2, "route": 3 / 2}
    with torch.no_grad():
        whole = ppo_losses(net, batch, prev, adv, returns, torch.tensor(2.0), 0.2, slice(None), encoded=True)
        parts = [ppo_losses(net, batch, prev, adv, returns, torch.tensor(2.0), 0.2, torch.tensor([k]),
                            encoded=True, counts=counts) for k in (0, 1)]
        own = [ppo_losses(net, batch, prev, adv, returns, torch.tensor(2.0), 0.2, torch.tensor([k]), encoded=True)
               for k in (0, 1)]
    for name in ("surrogate", "value", "entropy", "kl"):
        assert float(sum(getattr(p, name) for p in parts)) == pytest.approx(2 * float(getattr(whole, name)))
    assert float(sum(p.value for p in own)) != pytest.approx(2 * float(whole.value))  # what the divisors fix


def test_settings_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(UserError, match="update=ppo"):
        maze_trainer_class(MazeTrainConfig(freeze_encoder=True))
    with pytest.raises(UserError, match="ppo_minibatch_trials"):
        MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "x", _config(ppo_minibatch_trials=0))
    with pytest.raises(UserError, match="ppo_minibatch_order"):
        MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "x", _config(ppo_minibatch_order="sorted"))
    with pytest.raises(UserError, match="random order with explore_eps"):
        MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "x", _config(ppo_minibatch_order="length", explore_eps=0.1))
    with pytest.raises(UserError, match="one of random, length"):
        apply_overrides(preset_config("maze-ppo"), ["ppo_minibatch_order=sorted"])
    assert apply_overrides(preset_config("maze-ppo"), ["ppo_minibatch_order=length"]).ppo_minibatch_order == "length"


def test_resume_set_reaches_the_optimizer(tmp_path):
    trainer = MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "run", _config())
    trainer.change_config(["policy_lr=1e-05"])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-05]
    assert trainer.config_changes[-1]["set"] == ["policy_lr=1e-05"]


def _marked_batch(iteration: int) -> MazeBatch:
    """A one-step batch whose reward names the iteration that played it."""
    return MazeBatch(obs=torch.zeros(1, 2, 4), actions=torch.zeros(1, 2, dtype=torch.long),
                     rewards=torch.full((1, 2), float(iteration)), dones=torch.zeros(1, 2), valid=torch.ones(1, 2),
                     logits=torch.zeros(1, 2, 4),
                     metrics={f"{name}_ep{e}": np.ones(2) for name in ("success", "len") for e in (1, 2)})


def test_the_update_beside_the_rollout_learns_each_batch_one_iteration_later(tmp_path):
    """update_lag=1: iteration i plays the weights from before the update on batch i-1, run beside it."""
    import threading

    trainer = MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "run", _config(update_lag=1))
    weight = trainer.net.fc.bias
    played, learnt, updated = [], [], threading.Event()

    def collect(net, iteration):
        if iteration:  # read the weights only once the update beside us has moved the network's
            assert updated.wait(10)
            updated.clear()
        played.append(float(net.fc.bias[0].detach()))
        return _marked_batch(iteration)

    def learn(batch):
        learnt.append(int(batch.rewards[0, 0]))
        with torch.no_grad():
            weight.add_(1.0)
        updated.set()
        return {"kl": 0.5}

    trainer.collect, trainer.learn, trainer.prepare_encoder = collect, learn, lambda: None
    start = float(weight[0].detach())
    rows = [trainer.iterate() for _ in range(3)]
    trainer.close()
    assert learnt == [0, 1]  # nothing beside the first rollout, then each batch one iteration later
    assert played == [start, start, start + 1]
    assert math.isnan(rows[0]["kl"]) and [r["kl"] for r in rows[1:]] == [0.5, 0.5]
    assert trainer.pending is not None and int(trainer.pending.rewards[0, 0]) == 2


def test_the_batch_waiting_for_its_update_is_saved_and_read_back(tmp_path):
    trainer = MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "run", _config(update_lag=1))
    trainer.pending = _marked_batch(4)
    trainer.iteration = 5
    trainer.save(finished=False)
    trainer.iteration = 6
    trainer.save(finished=False)  # the older batch goes once the checkpoint naming the newer one is written
    assert sorted(p.name for p in (tmp_path / "run").glob("pending-*")) == ["pending-6.pt", "pending-6.pt.sha256"]
    back = load_maze_trainer(tmp_path / "run")
    assert isinstance(back, MazePPOTrainer) and back.pending is not None
    assert torch.equal(back.pending.rewards, trainer.pending.rewards)
    (tmp_path / "run" / "pending-6.pt").unlink()
    with pytest.raises(DamagedRun, match="pending-6.pt is missing"):
        load_maze_trainer(tmp_path / "run")
    trainer.pending = None
    trainer.save(finished=True)  # nothing waits: nothing is left behind
    assert not list((tmp_path / "run").glob("pending-*"))
    with pytest.raises(UserError, match="update_lag must be one of 0, 1"):
        MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "x", _config(update_lag=2))


def test_a_resume_that_sets_the_lag_off_learns_the_waiting_batch_first(tmp_path):
    trainer = MazePPOTrainer(CELL, "maze-ppo", 0, tmp_path / "run", _config(update_lag=0))
    trainer.pending = _marked_batch(7)  # left by a run that trained with update_lag=1
    learnt = []

    def learn(batch):
        learnt.append(int(batch.rewards[0, 0]))
        return {"kl": 0.5}

    trainer.collect = lambda net, iteration: _marked_batch(iteration)
    trainer.learn, trainer.prepare_encoder = learn, lambda: None
    trainer.iterate()
    assert learnt == [7, 0] and trainer.pending is None
