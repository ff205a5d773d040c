"""rl2bench.gym and the adapters of rl2bench.algorithms.external.

The environments pass Gymnasium's own checker for every family, and play exactly as the protocol does: one
recorded action sequence gives the same returns through the gym environment and through ``play_trials`` on
the same instances. Instances come from the training stream only. Policies made elsewhere (a callable, a
RecurrentPPO zip, per-instance library objects) play under the protocol with the inputs the environments
give; ``--algos 'name(key=value)'`` plays one fixed setting.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from rl2bench import seeding
from rl2bench.agent import Agent
from rl2bench.algorithms.external import CallableAgent, PerInstance, RecurrentPPOAgent, callable_agent, per_instance
from rl2bench.cli import main
from rl2bench.gym import RL2BenchEnv, RL2BenchVectorEnv, register_cell
from rl2bench.protocol import play_trials
from rl2bench.registry import get_family

ROOT = Path(__file__).resolve().parents[1]
HAS_SB3 = importlib.util.find_spec("sb3_contrib") is not None


def need_maze() -> None:
    """Maze tests skip without vizdoom, except where RL2BENCH_REQUIRE_MAZE=1 (CI): there they must run."""
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        if os.environ.get("RL2BENCH_REQUIRE_MAZE") == "1":
            raise
        pytest.skip('vizdoom not installed (pip install -e ".[test,maze]")')


class Replay(Agent):
    """Plays a recorded action sequence: ``actions[t]`` over the batch at step t."""

    name = "replay"
    families = ("mab", "mdp", "maze")

    def __init__(self, spec, batch_size, rng, *, actions):
        super().__init__(spec, batch_size, rng)
        self.actions, self.t = np.asarray(actions), 0

    def act(self, obs):
        self.t += 1
        return self.actions[self.t - 1, : self.batch_size]


def eval_instances(task: str, cell: str, n: int, root: int = 0):
    """Chunk 0 of the evaluation phase's ``n`` instances and its noise, as ``play_trials`` draws them."""
    family = get_family(task)
    parsed = family.parse_cell(cell)
    instances = family.sample_instances(parsed, root, "eval", n)
    return family, parsed, instances, seeding.env_rng(root, "eval", task, parsed.name, 0)


def play_vector(env: RL2BenchVectorEnv, actions: np.ndarray) -> tuple[np.ndarray, int]:
    """One batch of trials stepped with ``actions[t]``: the returns and the step count."""
    env.reset()
    total, t = np.zeros(env.num_envs), 0
    while True:
        _, reward, terminated, truncated, _ = env.step(actions[t])
        total += reward
        t += 1
        assert not truncated.any()
        if terminated.any():
            assert terminated.all()  # a batch's trials end together (finished ones wait, as under the protocol)
            return total, t


# -- Gymnasium's checker and ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["rl2bench/mab-n10-k5", "rl2bench/mab-n100-k10", "rl2bench/mdp-n25"])
@pytest.mark.parametrize("rl2_inputs", [True, False])
def test_check_env_passes_without_a_warning(env_id, rl2_inputs):
    env = gymnasium.make(env_id, rl2_inputs=rl2_inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


@pytest.mark.heavy
@pytest.mark.maze
def test_check_env_passes_on_a_maze_and_close_ends_its_engines():
    need_maze()
    env = gymnasium.make("rl2bench/maze-small")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=3)
    assert obs["obs"].shape == (3, 30, 40) and obs["prev_action"] == 3
    procs = list(env.unwrapped.trials.env._procs)
    env.close()
    for proc in procs:
        assert proc.poll() is not None  # engine workers gone


def test_the_observation_carries_the_rl2_inputs():
    env = gymnasium.make("rl2bench/mdp", cell="n3-s4-a3-t2")
    obs, _ = env.reset(seed=1)
    assert obs["prev_action"] == 3 and obs["prev_done"] == 0 and obs["prev_reward"][0] == 0  # none yet
    steps = []
    for t in range(6):
        obs, reward, terminated, _, info = env.step(t % 3)
        steps.append((obs, reward, terminated, info["episode_done"]))
        assert obs["prev_action"] == t % 3 and np.float32(reward) == obs["prev_reward"][0]
        assert obs["prev_done"] == info["episode_done"] == (t % 2 == 1)
        if info["episode_done"]:
            assert obs["obs"] == 0  # every episode starts in state 0
    assert [s[2] for s in steps] == [False] * 5 + [True]
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(0)
    raw = gymnasium.make("rl2bench/mdp-n25", rl2_inputs=False)
    assert raw.observation_space == gymnasium.spaces.Discrete(10)


def test_bad_input_is_gymnasiums_error_naming_the_valid_choices():
    with pytest.raises(gymnasium.error.NameNotFound, match="paper cells: n10-k5, n10-k10"):
        gymnasium.make("rl2bench/mab", cell="n0-k10")
    with pytest.raises(gymnasium.error.NameNotFound, match="needs a cell"):
        gymnasium.make("rl2bench/mdp")
    with pytest.raises(gymnasium.error.NameNotFound, match="valid tasks: mab, maze, mdp"):
        RL2BenchEnv("bandits", "n10-k5")
    with pytest.raises(gymnasium.error.NameNotFound, match="valid tasks"):
        register_cell("bandits", "n10-k5")
    with pytest.raises(gymnasium.error.NameNotFound, match="paper cells: n10-k5"):  # by name, our choices
        gymnasium.make("rl2bench/mab-n7-k3-x")
    with pytest.raises(gymnasium.error.NameNotFound, match="valid tasks: mab, maze, mdp"):
        gymnasium.make("rl2bench/bandit-n10-k5")
    with pytest.raises(gymnasium.error.NameNotFound, match="paper cells"):
        gymnasium.make_vec("rl2bench/mdp-n0", num_envs=2)
    with pytest.raises(gymnasium.error.NameNotFound, match="needs a cell"):
        gymnasium.make("rl2bench/maze-")
    with pytest.raises(gymnasium.error.NameNotFound, match="doesn't exist"):  # other namespaces: untouched
        gymnasium.make("CartPol-v1")
    with pytest.raises(gymnasium.error.Error, match="version"):  # a version: Gymnasium's own word on it
        gymnasium.make("rl2bench/mab-n10-k5-v0")
    with pytest.raises(ValueError, match="integer action"):
        env = gymnasium.make("rl2bench/mab-n10-k5")
        env.reset(seed=0)
        env.step(7)


def test_any_parseable_cell_works_by_keyword_or_registered_on_demand():
    assert gymnasium.make("rl2bench/mab", cell="n7-k3").unwrapped.task_spec.n_actions == 3
    assert "rl2bench/mab-n7-k4" not in gymnasium.registry
    by_name = gymnasium.make("rl2bench/mab-n7-k4")  # not a paper cell, never registered: resolved on first use
    assert (by_name.unwrapped.task_spec.n_actions, by_name.unwrapped.task_spec.horizon) == (4, 1)
    assert gymnasium.spec("rl2bench/mab-n7-k4").kwargs == {"family": "mab", "cell": "n7-k4"}
    assert gymnasium.make_vec("rl2bench/mdp-n20-s10", num_envs=3).num_envs == 3  # an alias of mdp-n20
    assert gymnasium.spec("rl2bench/mdp-n20-s10").kwargs["cell"] == "n20"
    env_id = register_cell("mdp", "n20-s5-a3-t5")
    assert env_id == "rl2bench/mdp-n20-s5-a3-t5"
    assert gymnasium.make(env_id).unwrapped.task_spec.horizon == 5
    assert register_cell("mdp", "n20-s10") == "rl2bench/mdp-n20"  # canonical name


def test_instances_come_from_the_training_stream_only():
    family = get_family("mab")
    cell = family.parse_cell("n10-k5")
    env = gymnasium.make("rl2bench/mab-n10-k5")
    stream = seeding.instance_rng(5, "train", "mab", "n10-k5")
    env.reset(seed=5)
    seen = [env.unwrapped.trials.env.arm_means[0]]
    env.reset()
    seen.append(env.unwrapped.trials.env.arm_means[0])
    np.testing.assert_array_equal(np.array(seen), family.sample(cell, stream, 2)["arm_means"])
    for phase in ("eval", "tune"):
        held = family.sample_instances(cell, 5, phase, 1000)["arm_means"]
        assert not (held[:, None, :] == np.array(seen)[None]).all(-1).any()
    env.reset(seed=5)  # the same seed replays the same stream
    np.testing.assert_array_equal(env.unwrapped.trials.env.arm_means[0], seen[0])


# -- The same returns as the protocol -----------------------------------------------------------------------

@pytest.mark.parametrize("task,cell,n", [("mab", "n10-k5", 40), ("mab", "n100-k10", 250), ("mdp", "n10", 30),
                                         ("mdp", "n5-s4-a3-t6", 1)])
def test_a_recorded_action_sequence_gives_the_protocols_returns(task, cell, n):
    family, parsed, instances, noise = eval_instances(task, cell, n)
    spec = family.spec(parsed)
    actions = np.random.default_rng(7).integers(spec.n_actions, size=(spec.max_steps + 1, n))
    harness = play_trials(family, parsed, Replay, {"actions": actions}, n, 0, "eval", sealed=False).returns
    vector, steps = play_vector(RL2BenchVectorEnv.on_instances(task, cell, instances, noise), actions)
    assert steps == spec.max_steps
    np.testing.assert_array_equal(vector, harness)
    if n == 1:  # the single environment, one instance per trial
        _, _, instances, noise = eval_instances(task, cell, n)
        env = RL2BenchEnv.on_instances(task, cell, instances, noise)
        env.reset()
        total = sum(env.step(actions[t, 0])[1] for t in range(spec.max_steps))
        assert total == harness[0]


@pytest.mark.heavy
@pytest.mark.maze
def test_a_recorded_maze_sequence_gives_the_protocols_returns():
    """The oracle's actions, recorded under the protocol, replayed: trials end at different steps (targets
    reached), so finished instances wait in both."""
    need_maze()
    from rl2bench.algorithms.maze_agents import MazeOracle

    task, cell, n = "maze", "small-e2-t60", 3
    family, parsed, instances, noise = eval_instances(task, cell, n)
    recorded: list[np.ndarray] = []
    oracle = play_trials(family, parsed, MazeOracle, {}, n, 0, "eval", watch=lambda a, _: recorded.append(a.copy()))
    actions = np.array(recorded + [recorded[-1]])
    assert len(set(oracle.metrics["len_ep1"].tolist())) > 1  # episodes of different lengths
    vector = RL2BenchVectorEnv.on_instances(task, cell, instances, noise)
    try:
        returns, steps = play_vector(vector, actions)
    finally:
        vector.close()
    assert steps == len(recorded)
    np.testing.assert_array_equal(returns, oracle.returns)
    _, _, one, noise = eval_instances(task, cell, 1)  # a phase's instance i depends on its count here
    single = RL2BenchEnv.on_instances(task, cell, one, noise)
    first = play_trials(family, parsed, Replay, {"actions": actions[:, :1]}, 1, 0, "eval", sealed=False)
    single.reset()
    total, t, terminated = 0.0, 0, False
    while not terminated:
        _, reward, terminated, _, _ = single.step(actions[t, 0])
        total, t = total + reward, t + 1
    single.close()
    assert total == pytest.approx(first.returns[0], abs=1e-12)


# -- The vectorized environment -----------------------------------------------------------------------------

def test_the_vector_env_autoresets_at_the_trials_end_on_new_training_instances():
    envs = gymnasium.make_vec("rl2bench/mab-n10-k5", num_envs=8)
    assert isinstance(envs, RL2BenchVectorEnv) and envs.action_space.shape == (8,)
    obs, _ = envs.reset(seed=0)
    assert obs in envs.observation_space and (obs["prev_action"] == 5).all()
    first = envs.trials.env.arm_means.copy()
    for t in range(10):
        obs, reward, terminated, truncated, info = envs.step(np.full(8, t % 5))
        assert obs in envs.observation_space and info["episode_done"].all()
        assert terminated.all() == (t == 9) and not truncated.any()
    obs, reward, terminated, truncated, _ = envs.step(np.zeros(8, dtype=int))  # the autoreset step
    assert (reward == 0).all() and not terminated.any() and (obs["prev_action"] == 5).all()
    assert not np.array_equal(envs.trials.env.arm_means, first)
    stream = seeding.instance_rng(0, "train", "mab", "n10-k5")
    family = get_family("mab")
    expected = family.sample(family.parse_cell("n10-k5"), stream, 16)["arm_means"]
    np.testing.assert_array_equal(np.concatenate([first, envs.trials.env.arm_means]), expected)
    with pytest.raises(ValueError, match="one int"):
        envs.reset(seed=[1, 2])
    envs.close()


def test_one_slot_of_the_vector_env_is_the_single_env():
    single, vector = gymnasium.make("rl2bench/mdp-n10"), RL2BenchVectorEnv("mdp", "n10", num_envs=1)
    single.reset(seed=4)
    vector.reset(seed=4)
    actions = np.random.default_rng(0).integers(5, size=100)
    for a in actions:
        one = single.step(a)
        many = vector.step(np.array([a]))
        assert one[1] == many[1][0] and one[0]["obs"] == many[0]["obs"][0]


# -- Adapters: a callable, per-instance objects, a RecurrentPPO zip -----------------------------------------

def greedy_on_inputs(obs, state):
    """Greedy on Beta(1, 1) posterior means, from the RL^2 inputs alone: what the built-in `greedy` does."""
    n_arms = obs["prev_action"].max() if state is None else state[0].shape[1]
    batch = len(obs["prev_action"])
    wins, pulls = (np.ones((batch, n_arms)), np.full((batch, n_arms), 2.0)) if state is None else state
    rows, arm = np.arange(batch), obs["prev_action"]
    seen = arm < n_arms
    wins[rows[seen], arm[seen]] += obs["prev_reward"][seen, 0]
    pulls[rows[seen], arm[seen]] += 1
    return np.argmax(wins / pulls, axis=1), (wins, pulls)


GreedyOnInputs = callable_agent(greedy_on_inputs, name="greedy-on-inputs", families=("mab",))


class StateCycle(CallableAgent):
    """A deterministic policy of state, previous action and done flag (MDPs)."""

    name = "state-cycle"
    families = ("mdp",)

    def policy(self, obs, state):
        return (obs["obs"] + obs["prev_action"] + 2 * obs["prev_done"]) % self.spec.n_actions, None


def test_a_callable_plays_under_the_protocol_as_on_the_gym_env():
    family, cell, instances, noise = eval_instances("mab", "n100-k10", 250)
    assert GreedyOnInputs.__module__ == __name__  # the class is the caller's: it plays sealed
    protocol = play_trials(family, cell, GreedyOnInputs, {}, 250, 0, "eval", sealed=False).returns
    builtin = play_trials(family, cell, get_family_algorithm("mab", "greedy"), {}, 250, 0, "eval").returns
    np.testing.assert_array_equal(protocol, builtin)
    env, state = RL2BenchVectorEnv.on_instances("mab", "n100-k10", instances, noise), None
    obs, _ = env.reset()
    total = np.zeros(250)
    for _ in range(100):
        actions, state = greedy_on_inputs(obs, state)
        obs, reward, *_ = env.step(actions)
        total += reward
    np.testing.assert_array_equal(total, protocol)


def test_a_callable_agent_subclass_sees_states_and_done_flags_as_the_env_gives_them():
    family, cell, instances, noise = eval_instances("mdp", "n10", 100)
    protocol = play_trials(family, cell, StateCycle, {}, 100, 0, "eval").returns  # sealed
    env = RL2BenchVectorEnv.on_instances("mdp", "n10", instances, noise)
    obs, _ = env.reset()
    total = np.zeros(100)
    for _ in range(100):
        obs, reward, *_ = env.step((obs["obs"] + obs["prev_action"] + 2 * obs["prev_done"]) % 5)
        total += reward
    np.testing.assert_array_equal(total, protocol)


def get_family_algorithm(task: str, name: str) -> type[Agent]:
    from rl2bench.registry import algorithms

    return algorithms(task)[name]


class ToyGreedy:
    """SMPyBandits-style: one object per bandit, ``choice()`` and ``getReward(arm, reward)``."""

    def __init__(self, nbArms):
        self.nbArms = nbArms

    def startGame(self):
        self.wins, self.pulls = [1.0] * self.nbArms, [2.0] * self.nbArms

    def choice(self):
        means = [w / p for w, p in zip(self.wins, self.pulls, strict=True)]
        return means.index(max(means))  # first index on ties, as numpy's argmax

    def getReward(self, arm, reward):
        self.wins[arm] += reward
        self.pulls[arm] += 1


class ToyUCB(ToyGreedy):
    """UCB with ties broken by numpy's global generator (what a wrapped library often does)."""

    def __init__(self, nbArms, alpha=1.0):
        super().__init__(nbArms)
        self.alpha, self.t = alpha, 0

    def choice(self):
        self.t += 1
        index = [w / p + np.sqrt(self.alpha * np.log(self.t + 1) / p) for w, p in zip(self.wins, self.pulls,
                                                                                       strict=True)]
        best = max(index)
        ties = [a for a, v in enumerate(index) if v == best]
        return ties[np.random.randint(len(ties))]


class SmpyGreedy(PerInstance):
    name = "smpy-greedy"
    factory = ToyGreedy


def test_per_instance_objects_play_as_the_vectorized_agent_does():
    family, cell, _, _ = eval_instances("mab", "n100-k10", 250)
    ours = play_trials(family, cell, SmpyGreedy, {}, 250, 0, "eval").returns  # sealed
    builtin = play_trials(family, cell, get_family_algorithm("mab", "greedy"), {}, 250, 0, "eval").returns
    np.testing.assert_array_equal(ours, builtin)
    ucb = per_instance(ToyUCB, name="smpy-ucb")
    assert ucb.__module__ == __name__
    a = play_trials(family, cell, ucb, {"alpha": 0.5}, 250, 0, "eval", sealed=False).returns
    b = play_trials(family, cell, ucb, {"alpha": 0.5}, 250, 0, "eval", sealed=False).returns
    np.testing.assert_array_equal(a, b)  # np.random is seeded per job


PLUGIN = textwrap.dedent('''
    import random

    import numpy as np

    from rl2bench.algorithms.external import PerInstance


    class NoisyUCB:
        """Ties broken with np.random, a coin from random: the global generators only."""

        def __init__(self, nbArms):
            self.k, self.wins, self.pulls, self.t = nbArms, [1.0] * nbArms, [2.0] * nbArms, 0

        def choice(self):
            self.t += 1
            if random.random() < 0.05:
                return int(np.random.randint(self.k))
            index = [w / p + (np.log(self.t + 1) / p) ** 0.5 for w, p in zip(self.wins, self.pulls)]
            ties = [a for a, v in enumerate(index) if v == max(index)]
            return ties[np.random.randint(len(ties))]

        def getReward(self, arm, reward):
            self.wins[arm] += reward
            self.pulls[arm] += 1


    class Plugin(PerInstance):
        name = "noisy-ucb"
        factory = NoisyUCB
''')


@pytest.mark.heavy
def test_a_plugin_drawing_from_numpys_global_generator_gives_the_same_numbers_on_any_jobs(tmp_path):
    (tmp_path / "noisy.py").write_text(PLUGIN)
    frames = []
    for name, jobs in (("a", "2"), ("b", "2"), ("c", "1")):
        result = subprocess.run(
            [sys.executable, "-m", "rl2bench", "run", "--task", "mab", "--cells", "n10-k5", "--algos",
             "noisy:Plugin", "--instances", "500", "--jobs", jobs, "--no-progress", "--out", name],
            cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        frames.append(pd.read_csv(tmp_path / name / "results.csv").sort_values("instance")["return"].to_numpy())
    np.testing.assert_array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[0], frames[2])
    assert frames[0].std() > 0


class PPO(RecurrentPPOAgent):
    name = "ppo"
    families = ("mab",)


@pytest.mark.heavy  # importing stable-baselines3 here and in the sealed process: ~8 s
@pytest.mark.skipif(not HAS_SB3, reason='sb3-contrib not installed (pip install -e ".[sb3]")')
def test_a_recurrent_ppo_zip_plays_sealed_as_its_predict_on_the_gym_env(tmp_path):
    from sb3_contrib import RecurrentPPO

    import rl2bench.gym  # noqa: F401  (the ids)

    env = gymnasium.make("rl2bench/mab-n10-k5")
    model = RecurrentPPO("MultiInputLstmPolicy", env, n_steps=20, batch_size=20, n_epochs=1, seed=0,
                         policy_kwargs={"lstm_hidden_size": 8, "net_arch": [8]}, device="cpu")
    model.learn(40)
    model.save(tmp_path / "ppo.zip")
    family, cell, instances, noise = eval_instances("mab", "n10-k5", 50)
    setting = {"model": str(tmp_path / "ppo.zip"), "deterministic": True}
    protocol = play_trials(family, cell, PPO, setting, 50, 0, "eval").returns  # sealed: loaded in its process
    vector = RL2BenchVectorEnv.on_instances("mab", "n10-k5", instances, noise)
    obs, _ = vector.reset()
    state, starts, total = None, np.ones(50, dtype=bool), np.zeros(50)
    for _ in range(10):
        actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, reward, *_ = vector.step(actions)
        starts, total = np.zeros(50, dtype=bool), total + reward
    np.testing.assert_array_equal(total, protocol)
    sampled = [play_trials(family, cell, PPO, {**setting, "deterministic": False}, 50, 0, "eval").returns
               for _ in range(2)]
    np.testing.assert_array_equal(*sampled)  # torch's generator seeded from the agent's


# -- --algos 'name(key=value)' ------------------------------------------------------------------------------

def test_a_fixed_setting_replaces_the_grid_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--task", "mab", "--cells", "n10-k5", "--algos", "ucb1(c=0.2),greedy,eps-greedy(eps=0)",
                 "--instances", "250", "--jobs", "1", "--no-progress", "--out", str(out)]) == 0
    import json

    run = json.loads((out / "run.json").read_text())
    assert run["chosen_settings"] == {"n10-k5/ucb1": {"c": 0.2}, "n10-k5/greedy": {}, "n10-k5/eps-greedy": {"eps": 0.0}}
    assert run["tuning"] == {}  # nothing tuned
    assert "ucb1(c=0.2)" in run["command"]


@pytest.mark.parametrize("algos,message", [
    ("ucb1(d=0.2)", "ucb1(d=0.2): unknown key 'd'; valid keys: c"),
    ("ucb1(c=fast)", "ucb1(c=fast): c=fast is not a float like its default 0.2; valid keys: c"),
    ("greedy(eps=0.1)", "greedy(eps=0.1): unknown key 'eps'; valid keys: none"),
])
def test_a_bad_fixed_setting_is_one_line_naming_the_valid_keys(tmp_path, capsys, algos, message):
    assert main(["run", "--task", "mab", "--cells", "n10-k5", "--algos", algos, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r" / "results.csv").exists()


def test_fixed_setting_values_are_json_ish_and_rl2_keeps_its_policy():
    from rl2bench.registry import resolve_algorithms

    family = get_family("mab")
    cell = family.parse_cell("n10-k5")
    (rl2,) = resolve_algorithms("rl2(play=argmax)", "mab")
    (setting,) = rl2.grid(cell, family.spec(cell))
    assert setting["play"] == "argmax" and setting["policy"] == "mab/n10-k5" and "version" in setting
    (ucb,) = resolve_algorithms("ucb1(c=1)", "mab")
    assert ucb.name == "ucb1" and ucb.grid(cell, family.spec(cell)) == [{"c": 1.0}]
    every = resolve_algorithms("all,ucb1(c=0.2)", "mab")  # in the place of the name from `all`
    assert [a.name for a in every] == [a.name for a in resolve_algorithms("all", "mab")]
    assert [getattr(a, "fixed_setting", None) for a in every if a.name == "ucb1"] == [{"c": 0.2}]
    (listed,) = resolve_algorithms("eps-greedy(eps=1e-1)", "mab")
    assert listed.grid(cell, family.spec(cell)) == [{"eps": 0.1}]


# -- The worked example -------------------------------------------------------------------------------------

@pytest.mark.heavy
@pytest.mark.skipif(not HAS_SB3, reason='sb3-contrib not installed (pip install -e ".[sb3]")')
def test_the_sb3_example_trains_and_reaches_the_leaderboard(tmp_path):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sb3_recurrent_ppo.py"), "--minutes", "0.5", "--instances",
         "100", "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "work" / "run" / "results.csv")
    means = frame.groupby("algorithm")["return"].mean()
    assert set(means.index) == {"gittins", "rl2", "recurrent-ppo"}
    assert (frame.groupby("algorithm").size() == 100).all()
    assert "recurrent-ppo" in (tmp_path / "work" / "run" / "leaderboard.md").read_text()
    assert time.perf_counter() - started < 600
