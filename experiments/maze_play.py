"""Shared by the maze diagnostic scripts: a run's policy playing one engine group of its training mazes,
one step at a time, so that a script can read or steer what happens between the steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class GroupPlay:
    """The state of one group's trial: the environment, the policy's inputs and memory, and its own
    action generator (seeded by the group, so a script's numbers repeat)."""

    env: Any
    net: Any
    encoded: bool
    n: int
    obs: torch.Tensor
    gen: torch.Generator
    a_prev: torch.Tensor
    r_prev: torch.Tensor
    d_prev: torch.Tensor
    h: torch.Tensor

    @classmethod
    def start(cls, trainer: Any, group: int) -> GroupPlay:
        env, net = trainer.open_env(), trainer.net
        n = env.select_group(group)
        obs = torch.as_tensor(env.reset())
        return cls(env, net, trainer.cfg.freeze_encoder, n, obs, torch.Generator().manual_seed(group),
                   torch.full((n,), net.no_action, dtype=torch.long), torch.zeros(n), torch.zeros(n),
                   net.initial_state(n))

    @torch.no_grad()
    def policy(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input for the current frame (its features if the encoder is frozen) and its
        logits; the memory moves on by this step."""
        x = self.net.encode(self.obs) if self.encoded else self.obs
        logits, _, self.h = self.net.step(x, self.a_prev, self.r_prev, self.d_prev, self.h, self.encoded)
        return x, logits

    def advance(self, actions: torch.Tensor, result: Any) -> None:
        """After ``env.step(actions)``: the next frame and previous action, reward and episode flag."""
        self.obs, self.a_prev = torch.as_tensor(result.obs), actions
        self.r_prev = torch.as_tensor(result.reward, dtype=torch.float32)
        self.d_prev = torch.as_tensor(result.episode_done, dtype=torch.float32)
