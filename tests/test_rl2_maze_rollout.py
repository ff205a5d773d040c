"""The maze rollout's and update's numbers do not depend on how they are computed: the network stepping
only the trials that go on, each worker's games stepping on their own, or the update on several threads
(algorithms/rl2/maze_rollout.py, maze_ppo.py).
A scripted environment stands in for the engines, so these run without ViZDoom."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rl2bench.algorithms.rl2 import maze_rollout
from rl2bench.algorithms.rl2.conv_policy import ConvPolicy
from rl2bench.algorithms.rl2.maze_config import MazeTrainConfig
from rl2bench.algorithms.rl2.maze_ppo import MazePPOTrainer
from rl2bench.task import StepResult
from rl2bench.tasks.maze.engine import OBS_SHAPE


class ScriptedEnv:
    """Trials of two episodes whose lengths are drawn per instance: some end after a few steps, so the
    rollout runs on with a handful of rows, as failing trials hold a real group to its horizon. Frames
    are random, and the rewards depend on the actions taken, so a wrong row shows in the batch."""

    def __init__(self, n: int, seed: int, longest: int = 30):
        rng = np.random.default_rng(seed)
        self.n, self.n_groups = n, 1
        self.lengths = rng.integers(1, longest, size=(n, 2))
        self.frames = rng.integers(0, 256, size=(16, n, *OBS_SHAPE)).astype(np.float32) / 128 - 1  # clock % 16

    def select_group(self, k: int) -> int:
        return self.n

    def reset(self) -> np.ndarray:
        self.t = np.zeros(self.n, dtype=np.int64)
        self.episode = np.zeros(self.n, dtype=np.int64)
        self.clock = 0
        self.done = np.zeros(self.n, dtype=bool)
        return self.frames[0]

    def step(self, actions: np.ndarray) -> StepResult:
        self.clock += 1
        return self._step_rows(slice(0, self.n), actions, self.clock)

    def _step_rows(self, rows: slice, actions: np.ndarray, clock: int) -> StepResult:
        """The step of the instances ``rows``, the frames of their ``clock``-th."""
        going = ~self.done[rows]
        t, episode = self.t[rows], self.episode[rows]  # views: updated in place
        t += going
        ended = going & (t >= self.lengths[rows][np.arange(len(t)), np.minimum(episode, 1)])
        reward = np.where(going, -0.04 + 0.1 * (actions == 0), 0.0)
        self.done[rows] |= ended & (episode == 1)
        episode += ended
        t[ended] = 0
        return StepResult(self.frames[clock % 16][rows], reward, ended, self.done[rows].copy())

    def trial_metrics(self) -> dict[str, np.ndarray]:
        return {"len_ep1": self.lengths[:, 0].copy(), "len_ep2": self.lengths[:, 1].copy()}


class ScriptedWorkers(ScriptedEnv):
    """The same trials served as two workers that step their rows on their own (``MazeVecEnv``'s
    ``send_step`` / ``ready`` / ``recv_step``), the last one sent answering first."""

    n_workers = 2

    def worker_rows(self, w: int) -> slice:
        half = (self.n + 1) // 2
        return slice(min(w * half, self.n), min((w + 1) * half, self.n))

    def reset(self) -> np.ndarray:
        self.sent: dict[int, np.ndarray] = {}
        self.clocks = [0, 0]
        return super().reset()

    def send_step(self, w: int, actions: np.ndarray) -> None:
        self.sent[w] = actions

    def ready(self, workers: list[int]) -> list[int]:
        return [max(w for w in workers if w in self.sent)]

    def recv_step(self, w: int) -> StepResult:
        self.clocks[w] += 1
        return self._step_rows(self.worker_rows(w), self.sent.pop(w), self.clocks[w])


def _collect(net: ConvPolicy, n: int, encoded: bool, env_class: type = ScriptedEnv) -> maze_rollout.MazeBatch:
    env = env_class(n, seed=1)
    return maze_rollout.collect_maze(net, env, [0], torch.Generator().manual_seed(2), 80, encoded=encoded)


def _same_valid_steps(a: maze_rollout.MazeBatch, b: maze_rollout.MazeBatch) -> None:
    assert torch.equal(a.valid, b.valid)
    on = a.valid.bool()
    for name in ("actions", "rewards", "dones", "logits", "obs"):
        assert torch.equal(getattr(a, name)[on], getattr(b, name)[on]), name


@pytest.mark.parametrize("encoded", [False, True])
def test_stepping_only_live_trials_gives_the_batch_of_stepping_all(monkeypatch, encoded):
    net = ConvPolicy(3, 32, activation="relu", generator=torch.Generator().manual_seed(0))
    n = 24
    live_only = _collect(net, n, encoded)
    monkeypatch.setattr(maze_rollout, "MIN_ROWS", n)  # every row stepped at every step: the reference
    every_row = _collect(net, n, encoded)
    assert live_only.valid.sum(1).min() < maze_rollout.MIN_ROWS  # the tail ran on fewer rows than MIN_ROWS
    _same_valid_steps(live_only, every_row)


@pytest.mark.parametrize("encoded", [False, True])
def test_workers_stepping_on_their_own_give_the_batch_of_lockstep(encoded):
    net = ConvPolicy(3, 32, activation="relu", generator=torch.Generator().manual_seed(0))
    by_worker = _collect(net, 21, encoded, ScriptedWorkers)
    lockstep = _collect(net, 21, encoded)
    assert by_worker.valid.sum() > 0
    _same_valid_steps(by_worker, lockstep)
    assert by_worker.valid.shape == lockstep.valid.shape


def test_a_network_row_does_not_depend_on_the_other_rows():
    """What stepping live rows relies on: from MIN_ROWS rows up, each row's logits and state are those
    of the whole batch, bit for bit (on this machine's BLAS)."""
    gen = torch.Generator().manual_seed(0)
    net = ConvPolicy(3, 64, activation="relu", generator=gen)
    n = 48
    obs = torch.rand(n, *OBS_SHAPE, generator=gen) * 2 - 1
    prev = (torch.randint(0, 3, (n,), generator=gen), torch.rand(n, generator=gen), torch.zeros(n))
    h = torch.rand(1, n, 64, generator=gen)
    with torch.no_grad():
        logits, _, state = net.step(obs, *prev, h)
        for k in (maze_rollout.MIN_ROWS, maze_rollout.MIN_ROWS + 3, n - 1):
            rows = torch.randperm(n, generator=gen)[:k].sort().values
            sub_logits, _, sub_state = net.step(obs[rows], *(p[rows] for p in prev), h[:, rows])
            assert torch.equal(sub_logits, logits[rows]) and torch.equal(sub_state, state[:, rows])


@pytest.mark.parametrize("order", ["random", "length"])
def test_the_update_gives_the_same_network_on_one_or_two_threads(tmp_path, order):
    """Batch-wide tensors past torch's grain (~32k elements) are summed in pieces by 2 threads, rounded
    otherwise: 96 trials of up to ~500 steps, as a real iteration's, so that the test sees them."""
    cfg = MazeTrainConfig(hidden=32, batch_steps=48_000, workers=2, games_per_worker=48, pool=96, update="ppo",
                          ppo_epochs=2, ppo_minibatch_trials=8, ent_coef=0.01, freeze_encoder=True,
                          ppo_minibatch_order=order)
    trainer = MazePPOTrainer("small-e2", "maze-ppo", 0, tmp_path, cfg)
    env = ScriptedEnv(96, seed=1, longest=250)
    batch = maze_rollout.collect_maze(trainer.net, env, [0], torch.Generator().manual_seed(2), 501, encoded=True)
    assert batch.valid.numel() > 40_000
    nets, fields = [], []
    for threads in (1, 2):
        twin = copy.deepcopy(trainer)
        twin.cfg.update_threads = threads
        fields.append(twin.learn(batch))
        nets.append(twin.net.state_dict())
    assert fields[0] == fields[1]
    changed = False
    for name, value in nets[0].items():
        assert torch.equal(value, nets[1][name]), name
        changed |= not torch.equal(value, trainer.net.state_dict()[name])
    assert changed


def test_update_threads_resolve_to_the_pinned_cores(tmp_path):
    cfg = MazeTrainConfig(hidden=8, update="ppo", pool=4)
    trainer = MazePPOTrainer("small-e2", "maze-ppo", 0, tmp_path, cfg)
    assert trainer.update_threads() == 1  # no engines started: nothing known to be idle

    class Pinned:
        pinned_cores = [0, 1, 2]

    trainer.env = Pinned()  # type: ignore[assignment]
    assert trainer.update_threads() == 3
    trainer.cfg.update_threads = 1
    assert trainer.update_threads() == 1
