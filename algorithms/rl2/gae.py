"""Generalized advantage estimation over whole trials (paper Section 2.4: gamma 0.99, lambda 0.3).

A trial is one long episode of the outer problem: the inner episodes' ends are an input flag to the
policy, not a cut here, so value flows from later episodes back into earlier ones. The trial's last step
bootstraps from 0 (the trial is over).
"""

from __future__ import annotations

import torch


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return-to-go G_t = sum_k gamma^k r_{t+k} of (steps, trials) rewards."""
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Advantages A_t = sum_k (gamma lam)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t, V_T = 0."""
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])], dim=0)
    deltas = rewards + gamma * next_values - values
    return discounted_returns(deltas, gamma * lam)
