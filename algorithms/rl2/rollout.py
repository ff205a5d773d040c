"""Vectorized rollouts for RL^2 training: a batch of trials advances one GRU step at a time, with the
bandit and tabular-MDP environments themselves in torch (no Python loop over trials).

Instances come from the TRAINING stream (``rl2bench.seeding.instance_rng(seed, "train", task, cell)``);
evaluation and tuning instances are never seen during training. MDP instances are drawn here as the paper
writes them (Section 3.2: ``rng.dirichlet`` transitions): the same distribution as ``tasks/mdp.py``'s
sampler, with other draws; it stays so that every zoo run resumes on the stream it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rl2bench.errors import UserError

from .policy import cached_weights, embed
from .posterior_net import AnyPolicy

TASKS = ("mab", "mdp")


@dataclass(frozen=True)
class TaskShape:
    """What the trainer needs to know about a cell: sizes and the trial length."""

    task: str
    cell: str
    n_states: int
    n_actions: int
    horizon: int  # steps per episode
    n_episodes: int

    @property
    def trial_len(self) -> int:
        return self.horizon * self.n_episodes


def task_shape(task: str, cell: str) -> TaskShape:
    """Sizes of a cell, from the registered family's own cell names."""
    if task not in TASKS:
        raise UserError(f"rl2 trains on tasks {', '.join((*TASKS, 'maze'))}; got {task!r}")
    from rl2bench.registry import get_family

    family = get_family(task)
    parsed = family.parse_cell(cell)
    spec = family.spec(parsed)
    return TaskShape(task, parsed.name, spec.n_states, spec.n_actions, spec.horizon, spec.n_episodes)


def sample_instances(shape: TaskShape, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Hidden parameters of ``count`` instances. Bandits: the registered family's sampler (p ~ U[0,1]).
    MDPs (paper 3.2): reward means ~ N(1, 1) per (s, a), transitions ~ flat Dirichlet per (s, a)."""
    if shape.task == "mab":
        from rl2bench.registry import get_family

        family = get_family("mab")
        return family.sample(family.parse_cell(shape.cell), rng, count)
    s, a = shape.n_states, shape.n_actions
    return {"reward_means": rng.normal(1.0, 1.0, size=(count, s, a)),
            "transitions": rng.dirichlet(np.ones(s), size=(count, s, a))}


class TorchBandit:
    """Bernoulli arms; one state (observation 0); every step ends an episode. Noise is drawn on the CPU
    from ``generator`` and moved to ``device``, so a run's random streams are the same on every device."""

    def __init__(self, arm_means: np.ndarray, generator: torch.Generator, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.p = torch.as_tensor(arm_means, dtype=torch.float32, device=self.device)
        self.batch = self.p.shape[0]
        self.gen = generator
        self.rows = torch.arange(self.batch, device=self.device)

    def reset(self) -> torch.Tensor:
        return torch.zeros(self.batch, dtype=torch.long, device=self.device)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = torch.rand(self.batch, generator=self.gen).to(self.device)
        reward = (u < self.p[self.rows, actions]).float()
        return (reward, torch.zeros(self.batch, dtype=torch.long, device=self.device),
                torch.ones(self.batch, device=self.device))


class TorchTabularMDP:
    """Gaussian rewards with unit noise, categorical transitions, episodes of ``horizon`` steps that all
    start in state 0. Noise comes from ``generator`` on the CPU, as for the bandit."""

    def __init__(self, reward_means: np.ndarray, transitions: np.ndarray, horizon: int,
                 generator: torch.Generator, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.r = torch.as_tensor(reward_means, dtype=torch.float32, device=self.device)
        self.cdf = torch.as_tensor(transitions, dtype=torch.float32, device=self.device).cumsum(-1)
        self.batch, self.n_states = self.r.shape[0], self.r.shape[1]
        self.horizon = horizon
        self.gen = generator
        self.rows = torch.arange(self.batch, device=self.device)

    def reset(self) -> torch.Tensor:
        self.t = 0
        self.state = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        return self.state

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.state
        noise = torch.randn(self.batch, generator=self.gen).to(self.device)
        reward = self.r[self.rows, s, actions] + noise
        u = torch.rand(self.batch, 1, generator=self.gen).to(self.device)
        nxt = (self.cdf[self.rows, s, actions] < u).sum(-1).clamp_max(self.n_states - 1)
        self.t += 1
        done = self.t % self.horizon == 0
        self.state = torch.zeros_like(nxt) if done else nxt
        return reward, self.state, torch.full((self.batch,), float(done), device=self.device)


def make_env(shape: TaskShape, instances: dict[str, np.ndarray], generator: torch.Generator,
             device: torch.device | str = "cpu"):
    if shape.task == "mab":
        return TorchBandit(instances["arm_means"], generator, device)
    return TorchTabularMDP(instances["reward_means"], instances["transitions"], shape.horizon, generator, device)


@dataclass
class Batch:
    """One iteration's trials, time-major (steps, trials). ``dones[t]`` flags that step t ended an episode."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    logits: torch.Tensor  # behaviour policy's logits, (steps, trials, actions)

    def inputs(self, n_states: int, n_actions: int) -> torch.Tensor:
        """The policy's inputs for every step, rebuilt from the stored arrays (placeholders at t = 0)."""
        def shifted(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.zeros_like(x[:1]), x[:-1]], dim=0)

        return embed(self.obs, shifted(self.actions), shifted(self.rewards), shifted(self.dones), n_states,
                     n_actions)

    def trial_returns(self) -> torch.Tensor:
        return self.rewards.sum(0)


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Inverse-CDF sampling from softmax(logits) with an explicit (CPU) generator, for any batch shape;
    the uniforms move to the logits' device."""
    return inverse_cdf(logits, torch.rand(*logits.shape[:-1], 1, generator=generator))


def inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The actions of softmax(logits) at uniforms ``u`` (logits' shape, the last axis of size 1)."""
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)
    return (cdf < u.to(logits.device)).sum(-1).clamp_max(logits.shape[-1] - 1)


@torch.no_grad()
def collect(policy: AnyPolicy, shape: TaskShape, instances: dict[str, np.ndarray], env_gen: torch.Generator,
            act_gen: torch.Generator) -> Batch:
    """Play one trial on every instance, all trials stepping together through the GRU, on the policy's
    device."""
    device = next(policy.parameters()).device
    env = make_env(shape, instances, env_gen, device)
    n = env.batch
    length = shape.trial_len
    obs = torch.empty(length, n, dtype=torch.long, device=device)
    actions = torch.empty(length, n, dtype=torch.long, device=device)
    rewards = torch.empty(length, n, device=device)
    dones = torch.empty(length, n, device=device)
    logits = torch.empty(length, n, shape.n_actions, device=device)
    o = env.reset()
    a_prev = torch.zeros(n, dtype=torch.long, device=device)
    r_prev = torch.zeros(n, device=device)
    d_prev = torch.zeros(n, device=device)
    h = policy.initial_state(n)
    with cached_weights():
        for t in range(length):
            x = embed(o, a_prev, r_prev, d_prev, shape.n_states, shape.n_actions)
            logits[t], h = policy.step(x, h)
            a = sample_actions(logits[t], act_gen)
            r, o_next, d = env.step(a)
            obs[t], actions[t], rewards[t], dones[t] = o, a, r, d
            o, a_prev, r_prev, d_prev = o_next, a, r, d
    return Batch(obs, actions, rewards, dones, logits)
