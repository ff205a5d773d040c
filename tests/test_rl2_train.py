"""RL^2 rollouts, training, checkpoints and the rl2 agent (small sizes; the training test takes seconds)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rl2bench import seeding
from rl2bench.algorithms.base import Agent
from rl2bench.algorithms.rl2 import agent as rl2_agent
from rl2bench.algorithms.rl2.config import preset_config
from rl2bench.algorithms.rl2.policy import Policy
from rl2bench.algorithms.rl2.rollout import (
    TaskShape,
    TorchTabularMDP,
    collect,
    sample_instances,
    task_shape,
)
from rl2bench.algorithms.rl2.runfolder import CHECKPOINT, POLICY, curve_columns
from rl2bench.algorithms.rl2.trainer import Trainer
from rl2bench.cli import main
from rl2bench.errors import UserError
from rl2bench.protocol import play_trials
from rl2bench.registry import get_family
from rl2bench.tasks.base import EnvSpec

TINY = dict(hidden=16, batch_steps=2_000, checkpoint_every=2, baseline_epochs=1)


def _trainer(tmp_path, task="mab", cell="n10-k5", **changes):
    shape = task_shape(task, cell)
    cfg = dataclasses.replace(preset_config("fast", shape), **{**TINY, **changes})
    return Trainer(task, cell, "fast", 0, tmp_path, cfg)


def test_rollout_logits_match_full_sequence_forward_and_trials_start_fresh():
    """The step-by-step rollout and the update's full-sequence pass see the same inputs and hidden states
    (carried across the MDP's episodes); every trial starts from the same zero state."""
    shape = task_shape("mdp", "n3-s4-a3-t2")
    policy = Policy(shape.n_states, shape.n_actions, 8, torch.Generator().manual_seed(0))
    inst = sample_instances(shape, np.random.default_rng(0), 5)
    batch = collect(policy, shape, inst, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    assert batch.dones[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert batch.obs[[0, 2, 4]].eq(0).all()  # episodes start in state 0
    with torch.no_grad():
        full = policy(batch.inputs(shape.n_states, shape.n_actions))[0]
    assert torch.allclose(full, batch.logits, atol=1e-5)
    assert torch.allclose(batch.logits[0], batch.logits[0, :1].expand(5, -1))  # zero state + placeholders


def test_tabular_mdp_follows_deterministic_transitions():
    p = np.zeros((1, 3, 2, 3))
    p[0, 0, 1, 2] = p[0, 2, 1, 1] = p[0, 1, 1, 0] = 1.0
    p[0, :, 0, 0] = 1.0
    env = TorchTabularMDP(np.zeros((1, 3, 2)), p, horizon=4, generator=torch.Generator().manual_seed(0))
    env.reset()
    states = [int(env.step(torch.tensor([1]))[1]) for _ in range(3)]
    assert states == [2, 1, 0]
    _, s, done = env.step(torch.tensor([1]))
    assert int(s) == 0 and float(done) == 1.0


def test_mdp_cell_shapes_come_from_the_family():
    assert task_shape("mdp", "n25") == TaskShape("mdp", "n25", 10, 5, 10, 25)
    small = task_shape("mdp", "n10-s3-t4")
    assert (small.n_states, small.horizon, small.trial_len) == (3, 4, 40)
    for bad in ("k10", "n10-n3", "n0", "n10-a1", "10"):
        with pytest.raises(UserError):
            task_shape("mdp", bad)
    with pytest.raises(UserError, match="rl2 trains on tasks"):
        task_shape("cartpole", "n10")


def _zoo_with(tmp_path, monkeypatch, trainer: Trainer) -> None:
    monkeypatch.setenv("RL2BENCH_ZOO", str(tmp_path / "zoo"))
    rl2_agent.load_policy.cache_clear()
    folder = tmp_path / "zoo" / trainer.shape.task / trainer.shape.cell
    folder.mkdir(parents=True)
    torch.save(trainer.policy_file(), folder / POLICY)


def test_argmax_play_is_deterministic_and_a_bad_mode_is_refused(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", cell="n10-k3")
    _zoo_with(tmp_path, monkeypatch, trainer)
    spec = EnvSpec("mab", n_states=1, n_actions=3, horizon=1, n_episodes=10)

    def trial(play: str, seed: int) -> list[list[int]]:
        agent = rl2_agent.RL2(spec, 64, np.random.default_rng(seed), policy="mab/n10-k3", play=play)
        chosen = []
        for t in range(10):
            actions = agent.act(np.zeros(64, dtype=int))
            chosen.append(actions.tolist())
            agent.observe(actions, (actions == t % 3).astype(float), np.zeros(64, dtype=int), np.ones(64, bool))
        return chosen

    assert trial("argmax", 0) == trial("argmax", 1)  # no sampling noise left
    assert trial("sample", 0) != trial("sample", 1)
    with pytest.raises(UserError, match="play="):
        rl2_agent.RL2(spec, 1, np.random.default_rng(0), policy="mab/n10-k3", play="greedy")


def test_agent_plays_on_one_torch_thread_whatever_the_worker_was_given(tmp_path, monkeypatch):
    """loky sets OMP_NUM_THREADS = cpu_count // jobs in its workers; the agent's numbers must not follow it."""
    trainer = _trainer(tmp_path / "run", cell="n10-k3")
    _zoo_with(tmp_path, monkeypatch, trainer)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rl2_agent.RL2(EnvSpec("mab", n_states=1, n_actions=3, horizon=1, n_episodes=10), 4,
                      np.random.default_rng(0), policy="mab/n10-k3")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_agent_hidden_state_carries_across_episodes(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", task="mdp", cell="n2-s3-a2-t2")
    _zoo_with(tmp_path, monkeypatch, trainer)
    spec = EnvSpec("mdp", n_states=3, n_actions=2, horizon=2, n_episodes=2)
    agents = [rl2_agent.RL2(spec, 1, np.random.default_rng(0), policy="mdp/n2-s3-a2-t2") for _ in range(2)]
    for i, agent in enumerate(agents):  # episode 1 identical except the first reward
        agent.act(np.array([0]))
        agent.observe(np.array([1]), np.array([0.0 if i == 0 else 5.0]), np.array([2]), np.array([False]))
        agent.act(np.array([2]))
        agent.observe(np.array([0]), np.array([1.0]), np.array([0]), np.array([True]))
        agent.act(np.array([0]))  # first step of episode 2
    assert not torch.allclose(agents[0].h, agents[1].h)  # episode 1 still shapes episode 2
    fresh = rl2_agent.RL2(spec, 1, np.random.default_rng(0), policy="mdp/n2-s3-a2-t2")
    assert float(fresh.h.abs().max()) == 0.0  # a new trial starts from zero


@pytest.mark.heavy
@pytest.mark.parametrize(("update", "iters"), [("trpo", 15), ("ppo", 30)])
def test_training_beats_random_on_n10_k5(tmp_path, update, iters):
    """A few iterations of either policy update learn something (PPO takes smaller steps per batch)."""
    trainer = _trainer(tmp_path, hidden=32, batch_steps=10_000, fvp_fraction=0.25, update=update,
                       ppo_clip=0.2, policy_lr=3e-3, baseline_epochs=3)
    trainer.run(iters=iters, progress=False)
    shape = trainer.shape
    inst = sample_instances(shape, seeding.instance_rng(1, "eval", "mab", "n10-k5"), 4000)
    gens = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    batch = collect(trainer.policy, shape, inst, *gens)
    mean = float(batch.trial_returns().mean())
    assert mean > 5.3, mean  # random scores 5.0 (SE ~0.02 at 4000 trials)


@pytest.mark.parametrize(("update", "activation"),
                         [("trpo", "tanh"), ("ppo", "tanh"), ("trpo", "relu"), ("ppo", "relu")])
@pytest.mark.heavy
def test_resume_continues_exactly(tmp_path, update, activation):
    straight = _trainer(tmp_path / "a", update=update, gru_activation=activation)
    straight.run(iters=3, progress=False)

    first = _trainer(tmp_path / "b", update=update, gru_activation=activation)
    first.run(iters=2, progress=False)
    assert (tmp_path / "b" / CHECKPOINT).exists()
    resumed = Trainer.from_checkpoint(tmp_path / "b")
    assert resumed.iteration == 2
    resumed.run(iters=3, progress=False)
    assert resumed.curve[-1]["mean_return"] == straight.curve[-1]["mean_return"]
    assert resumed.curve[-1]["kl"] == straight.curve[-1]["kl"]
    for a, b in zip(straight.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.baseline.parameters(), resumed.baseline.parameters(), strict=True):
        assert torch.equal(a, b)
    assert straight.cfg.update == resumed.cfg.update == update
    assert resumed.policy.activation == resumed.baseline.activation == activation


@pytest.mark.heavy
def test_init_from_copies_the_networks_and_keeps_its_own_scale(tmp_path):
    source = _trainer(tmp_path / "n10", cell="n10-k3")
    source.run(iters=2, progress=False)
    target = _trainer(tmp_path / "n20", cell="n20-k3")
    scale = target.baseline.scale.clone()
    target.init_from(tmp_path / "n10")
    for a, b in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(target.baseline.scale, scale) and not torch.equal(scale, source.baseline.scale)
    assert target.initialized_from["cell"] == "n10-k3" and target.initialized_from["iteration"] == 2
    target.run(iters=2, progress=False)
    assert Trainer.from_checkpoint(tmp_path / "n20").initialized_from["cell"] == "n10-k3"
    wrong = _trainer(tmp_path / "k5", cell="n10-k5")  # five arms: different input and output sizes
    with pytest.raises(UserError, match="do not fit"):
        wrong.init_from(tmp_path / "n10")


def test_init_from_into_a_wider_gru_keeps_the_function_and_lets_new_units_learn(tmp_path):
    source = _trainer(tmp_path / "narrow", cell="n10-k3")
    source.run(iters=2, progress=False)
    wide = _trainer(tmp_path / "wide", cell="n10-k3", hidden=2 * source.cfg.hidden)
    wide.init_from(tmp_path / "narrow")
    assert wide.initialized_from["widened_from"] == source.cfg.hidden
    x = torch.randn(30, 5, source.policy.gru.input_size, generator=torch.Generator().manual_seed(0))
    for narrow_net, wide_net in ((source.policy, wide.policy), (source.baseline, wide.baseline)):
        torch.testing.assert_close(wide_net(x)[0], narrow_net(x)[0], atol=1e-5, rtol=1e-5)
    wide.policy(x)[0].square().sum().backward()
    new_columns = wide.policy.head.parametrizations.weight.original1.grad[:, source.cfg.hidden:]
    assert new_columns.abs().sum() > 0  # the new units are read as soon as training moves these zeros
    wide.run(iters=1, progress=False)
    with pytest.raises(UserError, match="do not fit"):  # narrowing is not offered
        _trainer(tmp_path / "narrower", cell="n10-k3", hidden=source.cfg.hidden // 2).init_from(tmp_path / "narrow")


@pytest.mark.heavy
def test_init_from_chain_records_every_ancestor_and_what_it_cost(tmp_path):
    from rl2bench.algorithms.rl2.zoo import inherited

    root = _trainer(tmp_path / "a", cell="n10-k3", batch_steps=1_000)
    root.run(iters=2, progress=False)
    middle = _trainer(tmp_path / "b", cell="n20-k3", batch_steps=1_000)
    middle.init_from(tmp_path / "a")
    middle.run(iters=3, progress=False)
    leaf = _trainer(tmp_path / "c", cell="n20-k3", batch_steps=2_000)
    leaf.init_from(tmp_path / "b")
    leaf.run(iters=1, progress=False)
    chain = [(a["cell"], a["iteration"], a["env_steps"]) for a in leaf.ancestry]
    assert chain == [("n10-k3", 2, 2000), ("n20-k3", 3, 3000)]
    assert Trainer.from_checkpoint(tmp_path / "c").ancestry == leaf.ancestry
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert inherited(meta) == (5000, pytest.approx(root.wall_seconds + middle.wall_seconds, abs=0.2), True)
    # a parent saved before the ancestry record: its own start is known, what came before it is not
    state = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    del state["ancestry"]
    torch.save(state, tmp_path / "b" / CHECKPOINT)
    (tmp_path / "b" / f"{CHECKPOINT}.sha256").unlink()  # nor a recorded digest (runfolder.atomic_save)
    legacy = _trainer(tmp_path / "d", cell="n20-k3", batch_steps=1_000)
    legacy.init_from(tmp_path / "b")
    legacy.run(iters=1, progress=False)
    assert inherited(json.loads((tmp_path / "d" / "meta.json").read_text()))[::2] == (3000, False)


def test_budget_fits_the_rate_on_steps_counted_from_the_policy_root(tmp_path):
    """A continuation of a 100 M-step policy: 10 M more steps are a small fraction of a doubling, and the
    fit must see them so (on the run's own counter they would look like five doublings)."""
    from rl2bench.algorithms.rl2.zoo import budget_table

    folder = tmp_path / "mab" / "n100-k5"
    folder.mkdir(parents=True)
    steps = np.arange(1, 401) * 25_000.0
    offset = 100_000_000
    returns = 50.0 + 2.0 * np.log2(offset + steps) + np.random.default_rng(0).normal(0, 0.01, steps.size)
    pd.DataFrame({"iteration": np.arange(1, 401), "env_steps": steps, "mean_return": returns,
                  "wall_seconds": steps * 1e-4, "normalized": 0.5}).to_csv(folder / "curve.csv", index=False)
    meta = {"task": "mab", "cell": "n100-k5", "iterations": 400, "env_steps": int(steps[-1]),
            "wall_seconds": 1000.0, "paper": {"rl2": 200.0},
            "initialized_from": {"task": "mab", "cell": "n100-k5", "iteration": 4000, "env_steps": offset},
            "ancestry": [{"task": "mab", "cell": "n100-k5", "iteration": 4000, "env_steps": offset,
                          "wall_seconds": 9e3}]}
    (folder / "meta.json").write_text(json.dumps(meta))
    row = budget_table(tmp_path).iloc[0]
    assert row.gain_per_doubling == pytest.approx(2.0, rel=0.05)
    assert row.steps_now_M == pytest.approx(110.0)


def test_time_budget_stops_with_a_partial_run(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.run(iters=50, progress=False, seconds=1e-9)  # the first iteration already ends past the budget
    assert trainer.iteration == 1
    assert '"status": "partial"' in (tmp_path / "meta.json").read_text()
    assert (tmp_path / POLICY).exists()


def test_resume_with_set_changes_the_recipe_and_records_it(tmp_path):
    out = tmp_path / "run"
    base = ["train", "--task", "mab", "--cell", "n10-k3", "--set", "batch_steps=500", "--set", "hidden=8",
            "--out", str(out), "--no-progress"]
    assert main([*base, "--iters", "1"]) == 0
    assert main(["train", "--task", "mab", "--cell", "n10-k3", "--resume", "--out", str(out), "--no-progress",
                 "--iters", "2", "--set", "max_kl=0.02"]) == 0
    for other in (["--seed", "3"], ["--preset", "paper"]):  # a resumed run keeps its identity
        assert main(["train", "--task", "mab", "--cell", "n10-k3", "--resume", "--out", str(out), *other]) == 2
    resumed = Trainer.from_checkpoint(out)
    assert resumed.iteration == 2 and resumed.cfg.max_kl == 0.02 and resumed.cfg.batch_steps == 500
    assert resumed.config_changes == [{"iteration": 1, "set": ["max_kl=0.02"]}]
    assert [r["iteration"] for r in resumed.resumed] == [1] and "max_kl=0.02" in resumed.resumed[0]["command"]
    assert '"config_changes"' in (out / "meta.json").read_text()
    resumed.change_config(["baseline_lr=0.05", "batch_steps=1000"])
    assert all(g["lr"] == 0.05 for g in resumed.optimizer.param_groups)  # not the checkpoint's old rate
    resumed.run(iters=3, progress=False)
    assert [r["env_steps"] for r in resumed.curve] == [500, 1000, 2000]  # a running total, not recomputed
    with pytest.raises(UserError, match="cannot change a run being resumed"):
        resumed.change_config(["hidden=16"])


@pytest.mark.heavy
def test_resume_without_device_goes_where_the_run_last_trained(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--task", "mab", "--cell", "n10-k3", "--set", "batch_steps=500", "--set", "hidden=8",
            "--out", str(out), "--no-progress"]
    assert main([*base, "--iters", "1"]) == 0
    resume = ["train", "--task", "mab", "--cell", "n10-k3", "--resume", "--out", str(out), "--no-progress"]
    capsys.readouterr()
    assert main([*resume, "--iters", "2"]) == 0  # a CPU run resumes on the CPU, without a note
    err = capsys.readouterr().err
    assert "on cpu" in err and "last trained on" not in err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["device"] == "cpu"
    (out / "meta.json").write_text(json.dumps({**meta, "device": "NVIDIA H200"}))  # as a GPU machine leaves it
    assert main([*resume, "--iters", "3"]) == 0
    err = capsys.readouterr().err
    assert "last trained on NVIDIA H200" in err
    assert ("on cuda" in err) == torch.cuda.is_available() and Trainer.from_checkpoint(out).iteration == 3
    assert main([*resume, "--iters", "4", "--device", "cpu"]) == 0  # an explicit --device always wins
    assert "last trained on" not in capsys.readouterr().err


def test_agent_plays_under_protocol(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", cell="n10-k3")
    _zoo_with(tmp_path, monkeypatch, trainer)
    family = get_family("mab")
    cell = family.parse_cell("n10-k3")
    sampled, argmax = rl2_agent.RL2.grid(cell, family.spec(cell))  # the two ways of playing it, tuned per cell
    assert argmax == {**sampled, "play": "argmax"} and "play" not in sampled
    assert rl2_agent.RL2.unavailable(cell, family.spec(cell)) is None
    a = play_trials(family, cell, rl2_agent.RL2, sampled, 200, 0, "eval")
    b = play_trials(family, cell, rl2_agent.RL2, sampled, 200, 0, "eval")
    assert a.returns.shape == (200,) and np.array_equal(a.returns, b.returns)  # seeded
    assert isinstance(rl2_agent.RL2, type) and issubclass(rl2_agent.RL2, Agent)


def test_missing_policy_says_how_to_train(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL2BENCH_ZOO", str(tmp_path / "empty"))
    family = get_family("mab")
    cell = family.parse_cell("n20-k3")
    assert "python -m rl2bench train --task mab --cell n20-k3" in rl2_agent.RL2.unavailable(cell, family.spec(cell))
    code = main(["run", "--task", "mab", "--algos", "rl2", "--cells", "n20-k3", "--out", str(tmp_path / "r"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "rl2bench train" in err


def test_every_numeric_setting_has_a_valid_range():
    """--set key=value is range-checked: a new numeric field of either trainer needs its range."""
    import dataclasses

    from rl2bench.algorithms.rl2.config import RANGES as _RANGES
    from rl2bench.algorithms.rl2.config import TrainConfig
    from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig

    unbounded = {"gru_update_bias"}  # any real number is a valid initial update-gate bias
    for config in (TrainConfig, MazeTrainConfig):
        for field in dataclasses.fields(config):
            numeric = isinstance(field.default, int | float) and not isinstance(field.default, bool)
            if numeric and field.name not in unbounded:
                assert field.name in _RANGES, f"{config.__name__}.{field.name} has no range"


@pytest.mark.parametrize("argv", [
    ["train", "--task", "mab", "--cell", "n10"],
    ["train", "--task", "maze", "--cell", "n10"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--preset", "huge"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "nope=1"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "checkpoint_every=0"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "fvp_fraction=1.5"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "max_kl=0"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "update=sgd"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "gru_activation=sigmoid"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--preset", "ppo", "--set", "ppo_clip=0"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--preset", "ppo-sgd", "--set", "baseline_minibatches=16"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--set", "ppo_minibatch_trials=8", "--set", "ppo_minibatches=2"],
    ["train", "--task", "maze", "--cell", "small-e2", "--set", "workers=0"],
    ["train", "--task", "maze", "--cell", "small-e2", "--set", "value_lr=-1"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--resume", "--out", "/nonexistent/rl2"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--init-from", "/nonexistent/rl2", "--out", "/tmp/x-never"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--device", "tpu", "--out", "/tmp/x-never"],
    ["train", "--task", "mab", "--cell", "n10-k5", "--device", "cuda:x", "--out", "/tmp/x-never"],
    ["train", "--task", "maze", "--cell", "small-e2", "--device", "tpu", "--out", "/tmp/x-never"],
])
def test_train_cli_bad_input_is_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rl2bench: error:")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_cuda_device_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "mab", "--cell", "n10-k3", "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err and not out.exists()


def test_update_gate_bias_sets_both_grus_and_only_the_update_gate(tmp_path):
    cfg = dataclasses.replace(preset_config("fast", task_shape("mab", "n10-k3")), **TINY, gru_update_bias=1.5)
    trainer = Trainer("mab", "n10-k3", "fast", 0, tmp_path / "run", cfg)
    plain = Trainer("mab", "n10-k3", "fast", 0, tmp_path / "plain", dataclasses.replace(cfg, gru_update_bias=0.0))
    h = cfg.hidden
    for net, ref in ((trainer.policy, plain.policy), (trainer.baseline, plain.baseline)):
        bias = net.gru.bias_hh_l0.detach()
        assert torch.all(bias[h:2 * h] == 1.5) and torch.all(bias[:h] == 0) and torch.all(bias[2 * h:] == 0)
        for name, value in net.state_dict().items():  # nothing else differs from the paper's init
            if name != "gru.bias_hh_l0":
                assert torch.equal(value, ref.state_dict()[name]), name
    # the gate keeps more of the state: one step from h = 1 with zero input stays closer to 1
    x, h1 = torch.zeros(1, 1, trainer.policy.gru.input_size), torch.ones(1, 1, h)
    assert trainer.policy.gru(x, h1)[1].mean() > plain.policy.gru(x, h1)[1].mean()


def test_checkpoint_state_is_moved_to_the_cpu_recursively():
    from rl2bench.algorithms.rl2.devices import on_cpu as _on_cpu

    t = torch.arange(3.0, requires_grad=True) * 2
    moved = _on_cpu({"a": [t, (t, 1)], "b": {"c": t}, "d": "x"})
    assert moved["d"] == "x" and moved["a"][1][1] == 1 and isinstance(moved["a"][1], tuple)
    for x in (moved["a"][0], moved["a"][1][0], moved["b"]["c"]):
        assert x.device.type == "cpu" and not x.requires_grad and torch.equal(x, t.detach())


@pytest.mark.heavy
def test_zoo_command_lists_cells_in_numeric_order_and_plots(tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv("RL2BENCH_ZOO", str(zoo))
    assert main(["zoo"]) == 2 and "no policy zoo" in capsys.readouterr().err
    for cell in ("n100-k5", "n10-k5"):  # written in the wrong order on purpose
        _trainer(zoo / "mab" / cell, cell=cell, batch_steps=1_000).run(iters=2, progress=False)
    source = zoo / "mab" / "n10-k5"
    target = _trainer(zoo / "mab" / "n20-k5", cell="n20-k5", batch_steps=1_000)
    target.init_from(source)
    target.run(iters=2, progress=False)
    assert main(["zoo", "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("mab")]
    assert [r[1] for r in rows] == ["n10-k5", "n20-k5", "n100-k5"]
    assert rows[1][-2:] == ["mab", "n10-k5"]  # the curriculum start is shown
    assert rows[1][-4] == "4000"  # its own 2 iterations of 1000 steps plus the 2 of n10-k5 it started from
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_rl2_setting_names_the_policy_version_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", cell="n10-k3")
    _zoo_with(tmp_path, monkeypatch, trainer)
    family = get_family("mab")
    cell = family.parse_cell("n10-k3")
    setting = rl2_agent.RL2.grid(cell, family.spec(cell))[0]
    trainer.run(iters=1, progress=False)  # the policy changes: a new file in the zoo
    torch.save(trainer.policy_file(), tmp_path / "zoo" / "mab" / "n10-k3" / POLICY)
    newer = rl2_agent.RL2.grid(cell, family.spec(cell))[0]
    assert newer["version"] != setting["version"]
    with pytest.raises(UserError, match="changed while this run"):
        rl2_agent.RL2(family.spec(cell), 4, np.random.default_rng(0), **setting)
    rl2_agent.RL2(family.spec(cell), 4, np.random.default_rng(0), **newer)


def test_leaderboard_names_the_policy_version_it_evaluated(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run", cell="n10-k3")
    trainer.run(iters=1, progress=False)
    _zoo_with(tmp_path, monkeypatch, trainer)
    (tmp_path / "zoo" / "mab" / "n10-k3" / "meta.json").write_text((tmp_path / "run" / "meta.json").read_text())
    out = tmp_path / "lb"
    assert main(["run", "--task", "mab", "--algos", "rl2,random", "--cells", "n10-k3", "--instances", "50",
                 "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    page = (out / "leaderboard.md").read_text()
    version = rl2_agent.policy_version(tmp_path / "zoo" / "mab" / "n10-k3" / POLICY)
    row = next(line for line in page.splitlines() if version in line)
    assert "mab/n10-k3" in row and "partial" in row
    cfg = trainer.cfg
    assert f"{cfg.update.upper()}, GRU {cfg.hidden}, {cfg.batch_steps / 1000:g}k steps/it" in row


def test_a_resumed_run_that_logs_a_new_column_still_writes_its_curve(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.run(iters=2, progress=False)
    trainer.curve[0].pop("baseline_ev")  # as if the first rows came from an older trainer
    assert curve_columns(trainer.curve)[-1] == "baseline_ev"
    trainer.save(finished=False)
    header, first, _ = (tmp_path / "curve.csv").read_text().splitlines()
    assert header.endswith("baseline_ev") and first.endswith(",")


def test_gain_rate_recovers_a_log_linear_trend_and_its_budget():
    from rl2bench.algorithms.rl2.zoo import gain_rate

    rng = np.random.default_rng(0)
    steps = np.arange(1, 401) * 25_000.0
    returns = 50.0 + 0.5 * np.log2(steps) + rng.normal(0, 0.05, steps.size)
    rate = gain_rate(steps, returns, wall_seconds=steps * 1e-5)
    assert rate.per_doubling == pytest.approx(0.5, abs=0.02)
    assert rate.seconds_per_step == pytest.approx(1e-5)
    target = rate.level + 1.0  # two doublings at 0.5 per doubling
    assert rate.steps_to(target) == pytest.approx(4 * steps[-1], rel=0.1)
    assert rate.steps_to(rate.level - 1) == steps[-1]  # already there
    assert rate.steps_to(rate.level + 6) == math.inf  # 4096x the steps: past the horizon


def test_gain_rate_of_a_flat_curve_promises_nothing():
    from rl2bench.algorithms.rl2.zoo import gain_rate

    rng = np.random.default_rng(1)
    steps = np.arange(1, 401) * 25_000.0
    rate = gain_rate(steps, 80.0 + rng.normal(0, 1.0, steps.size), wall_seconds=steps)
    assert rate.steps_to(80.5) == math.inf
    with pytest.raises(ValueError):
        gain_rate(steps[:10], steps[:10], steps[:10])


def test_recipe_window_starts_after_the_last_recipe_change():
    import pandas as pd

    from rl2bench.algorithms.rl2.zoo import recipe_window

    curve = pd.DataFrame({"iteration": np.arange(1, 101)})
    window = recipe_window(curve, {"config_changes": [{"iteration": 20}, {"iteration": 60}]})
    assert window["iteration"].tolist() == list(range(81, 101))  # later half of 61..100
    assert recipe_window(curve, {})["iteration"].iloc[0] == 51


def test_zoo_budget_lists_every_cell(tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv("RL2BENCH_ZOO", str(zoo))
    _trainer(zoo / "mab" / "n10-k5", batch_steps=1_000).run(iters=3, progress=False)
    assert main(["zoo", "--budget"]) == 0
    out = capsys.readouterr().out
    assert "Budget to the paper's RL^2" in out
    row = [line.split() for line in out.splitlines() if line.startswith("mab")][-1]
    assert row[:3] == ["mab", "n10-k5", "6.7"]  # 3 iterations: too few to fit, so no rate
    assert len(row) == 6  # task, cell, paper, window iterations, steps, device


def test_ppo_kl_backtrack_keeps_the_step_inside_the_trust_region(tmp_path):
    """A deliberately huge Adam rate overshoots; the authors' PPOSGD rule halves the step back under max_kl."""
    big = dict(update="ppo", policy_lr=0.3, ppo_epochs=3, max_grad_norm=math.inf, max_kl=0.002)
    free = _trainer(tmp_path / "free", **big)
    free.run(iters=1, progress=False)
    held = _trainer(tmp_path / "held", **big, ppo_kl_backtrack=True)
    held.run(iters=1, progress=False)
    assert free.curve[-1]["kl"] > 0.002  # the overshoot the rule must repair
    row = held.curve[-1]
    assert row["kl_full_step"] == pytest.approx(free.curve[-1]["kl"])  # same step before backtracking
    assert row["backtracks"] >= 1 and (row["kl"] <= 0.002 or row["backtracks"] == 10)


def test_ppo_minibatch_trials_sets_the_number_of_adam_steps(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, update="ppo", ppo_epochs=2, ppo_minibatch_trials=20, baseline_minibatch_trials=50)
    steps, baseline_steps = [], []  # 2000 steps of n10-k5: 200 trials
    original, baseline_original = trainer.policy_optimizer.step, trainer.optimizer.step
    monkeypatch.setattr(trainer.policy_optimizer, "step", lambda *a, **k: (steps.append(1), original(*a, **k)))
    monkeypatch.setattr(trainer.optimizer, "step",
                        lambda *a, **k: (baseline_steps.append(1), baseline_original(*a, **k)))
    trainer.run(iters=1, progress=False)
    assert len(steps) == 2 * 10
    assert len(baseline_steps) == trainer.cfg.baseline_epochs * 4


def test_ppo_sgd_preset_trains_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--task", "mab", "--cell", "n10-k3", "--preset", "ppo-sgd", "--iters", "1", "--out", str(out),
                 "--set", "hidden=8", "--set", "batch_steps=2000", "--no-progress"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["preset"] == "ppo-sgd" and meta["config"]["ppo_kl_backtrack"] is True


@pytest.mark.parametrize("update", ["ppo", "trpo"])
def test_fused_backward_is_used_where_it_is_exact_and_changes_no_update(tmp_path, update):
    """On CPU the PPO policy and every baseline back-propagate through fused_gru; TRPO's policy keeps
    nn.GRU (its Fisher-vector products differentiate twice). With and without the switch the networks end
    the same (PPO: two iterations; TRPO: one, since its conjugate-gradient step on a near-singular Fisher
    turns float-rounding differences in the next advantages into visible ones either way)."""
    iters = 2 if update == "ppo" else 1
    fused = _trainer(tmp_path / "fused", update=update)
    fused.run(iters=iters, progress=False)
    assert fused.baseline.fused_backward and fused.policy.fused_backward == (update == "ppo")
    plain = _trainer(tmp_path / "plain", update=update, fused_backward=False)
    plain.run(iters=iters, progress=False)
    assert not plain.baseline.fused_backward and not plain.policy.fused_backward
    for net_a, net_b in ((fused.policy, plain.policy), (fused.baseline, plain.baseline)):
        for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert fused.curve[-1]["mean_return"] == pytest.approx(plain.curve[-1]["mean_return"], rel=1e-3)


def _shift_curve(run, by: float) -> float:
    """Move a run's training means by ``by`` (the promotion rule reads only the curve); its new mean."""
    curve = run / "curve.csv"
    frame = pd.read_csv(curve)
    frame["mean_return"] += by
    frame.to_csv(curve, index=False)
    return float(frame["mean_return"].mean())


@pytest.mark.heavy
def test_zoo_promote_installs_only_a_run_whose_training_means_are_higher(tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv("RL2BENCH_ZOO", str(zoo))
    first, better, worse = (tmp_path / name for name in ("first", "better", "worse"))
    for run in (first, better, worse):
        _trainer(run, cell="n10-k3", batch_steps=1_000).run(iters=2, progress=False)
    _shift_curve(better, +1.0)
    _shift_curve(worse, -1.0)
    cell = zoo / "mab" / "n10-k3"

    assert main(["zoo", "--promote", str(first)]) == 0  # an empty cell takes any run
    assert "no policy" in capsys.readouterr().out
    assert (cell / "policy.pt").read_bytes() == (first / "policy.pt").read_bytes()

    assert main(["zoo", "--promote", str(worse)]) == 1
    assert "not promoted" in capsys.readouterr().out
    assert (cell / "curve.csv").read_bytes() == (first / "curve.csv").read_bytes()  # unchanged

    assert main(["zoo", "--promote", str(better), "--window", "1"]) == 0
    out = capsys.readouterr().out
    assert "promoted" in out and "run --task mab" in out
    assert (cell / "curve.csv").read_bytes() == (better / "curve.csv").read_bytes()
    assert sorted(p.name for p in (zoo / "mab").iterdir()) == ["n10-k3"]  # no staging folder left

    assert main(["zoo", "--promote", str(worse), "--force"]) == 0
    assert (cell / "curve.csv").read_bytes() == (worse / "curve.csv").read_bytes()


def test_zoo_promote_refuses_a_torn_or_incomplete_run(tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv("RL2BENCH_ZOO", str(zoo))
    run = tmp_path / "run"
    _trainer(run, cell="n10-k3", batch_steps=1_000).run(iters=2, progress=False)
    meta = json.loads((run / "meta.json").read_text())
    meta["iterations"] += 2  # as if the trainer had saved again between two of the copies
    (run / "meta.json").write_text(json.dumps(meta))
    assert main(["zoo", "--promote", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "still training" in err
    assert not (zoo / "mab" / "n10-k3").exists() and list((zoo / "mab").iterdir()) == []

    (run / "policy.pt").unlink()
    assert main(["zoo", "--promote", str(run)]) == 2
    assert "not a trainer run folder: no policy.pt" in capsys.readouterr().err
    assert main(["zoo", "--promote", str(tmp_path / "nowhere")]) == 2
    assert main(["zoo", "--promote", str(run), "--window", "0"]) == 2
    assert "--window must be >= 1" in capsys.readouterr().err


def test_zoo_promote_min_z_keeps_a_near_tie_from_replacing_the_policy(tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv("RL2BENCH_ZOO", str(zoo))
    first, tie = tmp_path / "first", tmp_path / "tie"
    for run in (first, tie):
        _trainer(run, cell="n10-k3", batch_steps=1_000).run(iters=3, progress=False)
    assert pd.read_csv(first / "curve.csv")["mean_return"].std() > 0  # a spread to measure the lead against
    assert main(["zoo", "--promote", str(first)]) == 0
    _shift_curve(tie, +1e-3)  # same seed: the same curve, a hair higher
    cell = zoo / "mab" / "n10-k3"

    assert main(["zoo", "--promote", str(tie), "--min-z", "2"]) == 1
    out = capsys.readouterr().out
    assert "not promoted" in out and "ahead by 0.00 standard errors" in out
    assert (cell / "curve.csv").read_bytes() == (first / "curve.csv").read_bytes()
    assert main(["zoo", "--promote", str(tie)]) == 0  # the default rule: any higher mean
    assert (cell / "curve.csv").read_bytes() == (tie / "curve.csv").read_bytes()

    assert main(["zoo", "--promote", str(tie), "--min-z", "-1"]) == 2
    assert "--min-z must be a finite number >= 0" in capsys.readouterr().err


def test_a_cell_the_paper_did_not_run_is_normalized_by_measured_references(tmp_path):
    paper_cell = _trainer(tmp_path / "paper", task="mdp", cell="n10")
    assert paper_cell.norm_source == "paper" and paper_cell.norm_refs == paper_cell.refs
    trainer = _trainer(tmp_path / "own", task="mdp", cell="n7")
    assert trainer.refs == {} and trainer.norm_source.startswith("measured")
    refs = trainer.norm_refs
    assert 0 < refs["random"] < refs["reference"]
    assert _trainer(tmp_path / "again", task="mdp", cell="n7").norm_refs == refs  # the same for every seed/run
    trainer.run(iters=1, progress=False)
    row = trainer.curve[-1]
    span = refs["reference"] - refs["random"]
    assert row["normalized"] == pytest.approx((row["mean_return"] - refs["random"]) / span)
    meta = json.loads((tmp_path / "own" / "meta.json").read_text())
    assert meta["normalized_by"]["source"] == trainer.norm_source and meta["paper"] == {}


def test_train_says_when_a_run_stopped_early_or_is_already_complete(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--task", "mab", "--cell", "n10-k3", "--set", "batch_steps=500", "--set", "hidden=8",
            "--out", str(out), "--no-progress"]
    assert main([*base, "--iters", "3", "--minutes", "0.0001"]) == 0  # stops after its first iteration
    err = capsys.readouterr().err
    assert "stopped by --minutes at iteration 1" in err and f"--resume --out {out}" in err and "done:" not in err
    resume = ["train", "--task", "mab", "--cell", "n10-k3", "--resume", "--out", str(out), "--no-progress"]
    assert main(resume) == 0 and "done: iteration 3" in capsys.readouterr().err
    meta = (out / "meta.json").read_text()
    assert main(resume) == 0 and "is complete at iteration 3" in capsys.readouterr().err
    assert (out / "meta.json").read_text() == meta  # nothing rewritten, no false "resumed" entry
    assert main([*resume, "--iters", "2"]) == 2 and "already at iteration 3" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    assert main(["train", "--task", "mab", "--cell", "n10-k3", "--init-from", str(tmp_path / "nope"),
                 "--out", str(fresh)]) == 2
    assert not fresh.exists()  # a refused start leaves no empty run folder


def test_the_same_command_plus_resume_continues_a_run_started_from_another(tmp_path, capsys):
    """The interrupt advice says "the same command plus --resume": for a run started with --init-from that
    command still names its source, which is accepted; another source is a one-line error."""
    base = ["--task", "mab", "--cell", "n10-k3", "--set", "batch_steps=500", "--set", "hidden=8", "--no-progress"]
    source, child = tmp_path / "source", tmp_path / "child"
    assert main(["train", *base, "--out", str(source), "--iters", "1"]) == 0
    started = ["train", *base, "--init-from", str(source), "--out", str(child)]
    assert main([*started, "--iters", "1"]) == 0
    assert main([*started, "--resume", "--iters", "2"]) == 0
    resumed = Trainer.from_checkpoint(child)
    assert resumed.iteration == 2 and resumed.config_changes == []  # its own settings again change nothing
    capsys.readouterr()
    assert main(["train", *base, "--init-from", str(child), "--resume", "--out", str(source), "--iters", "2"]) == 2
    assert "it started from scratch" in capsys.readouterr().err


def test_the_paper_presets_use_a_relu_gru_and_older_runs_stay_tanh(tmp_path, monkeypatch):
    """Appendix A's ReLU hidden activation for the presets that follow the paper and its authors; the CPU
    presets keep the tanh they were measured with. A checkpoint or policy file written before the setting
    existed holds a tanh GRU and must resume and play as one (the zoo's policies are such files)."""
    shape = task_shape("mdp", "n10")
    assert {p: preset_config(p, shape).gru_activation for p in ("paper", "ppo-sgd", "fast", "ppo")} == {
        "paper": "relu", "ppo-sgd": "relu", "fast": "tanh", "ppo": "tanh"}
    old = _trainer(tmp_path / "old", gru_activation="tanh")
    old.run(iters=2, progress=False)
    for name in (CHECKPOINT, POLICY):  # as written before 2026-11-27: no activation recorded
        state = torch.load(tmp_path / "old" / name, weights_only=False)
        state.get("config", state).pop("gru_activation", None)
        state.pop("activation", None)
        torch.save(state, tmp_path / "old" / name)
        (tmp_path / "old" / f"{name}.sha256").unlink()  # nor a recorded digest (runfolder.atomic_save)
    resumed = Trainer.from_checkpoint(tmp_path / "old")
    assert resumed.cfg.gru_activation == resumed.policy.activation == "tanh"
    net, _ = rl2_agent.load_policy(str(tmp_path / "old" / POLICY), "old")
    assert net.activation == "tanh"
    x = torch.randn(5, 2, net.gru.input_size)
    with torch.no_grad():
        assert torch.allclose(net(x)[0], old.policy(x)[0])
    relu = _trainer(tmp_path / "relu", gru_activation="relu")
    with pytest.raises(UserError, match="gru_activation=tanh"):  # a tanh policy is no start for a ReLU run
        relu.init_from(tmp_path / "old")
    relu.run(iters=1, progress=False)
    net, meta = rl2_agent.load_policy(str(tmp_path / "relu" / POLICY), "relu")
    assert net.activation == meta["activation"] == "relu"
