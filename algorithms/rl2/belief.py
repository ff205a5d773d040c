"""What ``rl2-belief`` adds to RL^2 on MDPs during training only: an auxiliary head that predicts the hidden
MDP from the policy's memory, and a critic that may see the true MDP (an asymmetric actor-critic).

* ``aux_coef > 0``: a linear head on the policy GRU's output at step t predicts, for the current state
  s_t, every action's mean reward (squared error) and next-state distribution (cross-entropy against the
  true transition probabilities). Its loss, times ``aux_coef``, joins the PPO loss, so the memory is pushed
  to hold what the posterior holds. The head is not part of the policy: the policy file, and so the agent
  that plays it, are the plain GRU policy's.
  With ``aux_target=posterior`` the head predicts instead the exact posterior mean of those rows given
  the trial so far (``posterior_rows``): a target with no irreducible noise, where the true rows are
  mostly noise that no 250-step history removes (``experiments/rl2_memory_probe.py``).
* ``critic_mdp``: the critic's inputs at step t also carry the true MDP's rows for s_t (the reward means
  and the transition probabilities of every action). The critic only shapes advantages during training;
  the policy acts on its own history, at evaluation as in ``rl2``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .posterior_net import count_trial, posterior_means
from .rollout import TaskShape


def mdp_rows(shape: TaskShape, instances: dict[str, np.ndarray], obs: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The true MDP at every step's state: reward means (steps, trials, A) and transition probabilities
    (steps, trials, A, S), for the batch's trials (instance i is trial i) and states ``obs`` (steps, trials)."""
    if shape.task != "mdp":
        raise ValueError(f"the MDP's rows exist for mdp cells only, not {shape.task}")
    rows = torch.arange(obs.shape[1], device=obs.device).expand_as(obs)
    reward_means = torch.as_tensor(instances["reward_means"], dtype=torch.float32, device=obs.device)
    transitions = torch.as_tensor(instances["transitions"], dtype=torch.float32, device=obs.device)
    return reward_means[rows, obs], transitions[rows, obs]


def posterior_rows(shape: TaskShape, inputs: torch.Tensor, obs: torch.Tensor, chunk: int = 128
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior mean of the current state's rows given the trial so far, in ``mdp_rows``' shapes,
    from the batch's embedded inputs (steps, trials, input) and states ``obs``: ``aux_target=posterior``.
    Counted ``chunk`` trials at a time (the transition counts are steps x trials x S*A*S)."""
    S, A = shape.n_states, shape.n_actions
    rewards, transitions = [], []
    for lo in range(0, inputs.shape[1], chunk):
        x, at = inputs[:, lo:lo + chunk], obs[:, lo:lo + chunk].unsqueeze(-1).unsqueeze(-1)
        reward_means, rows = posterior_means(count_trial(x, S, A), S, A)
        rewards.append(reward_means.gather(2, at.expand(-1, -1, 1, A)).squeeze(2))
        transitions.append(rows.gather(2, at.unsqueeze(-1).expand(-1, -1, 1, A, S)).squeeze(2))
    return torch.cat(rewards, 1), torch.cat(transitions, 1)


def mdp_inputs(shape: TaskShape, instances: dict[str, np.ndarray], obs: torch.Tensor) -> torch.Tensor:
    """The critic's extra inputs under ``critic_mdp``: (steps, trials, A + A * S)."""
    reward_means, transitions = mdp_rows(shape, instances, obs)
    return torch.cat([reward_means, transitions.flatten(-2)], dim=-1)


def mdp_input_size(shape: TaskShape) -> int:
    return shape.n_actions * (1 + shape.n_states)


class BeliefHead(nn.Module):
    """A linear map of the GRU's output to the current state's reward means and next-state logits."""

    def __init__(self, hidden: int, n_states: int, n_actions: int, generator: torch.Generator | None = None):
        super().__init__()
        self.n_states, self.n_actions = n_states, n_actions
        self.linear = nn.Linear(hidden, n_actions * (1 + n_states))
        with torch.no_grad():
            nn.init.xavier_uniform_(self.linear.weight, generator=generator)
            self.linear.bias.zero_()

    def forward(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(…, H) -> (reward means (…, A), next-state logits (…, A, S))."""
        out = self.linear(memory)
        a = self.n_actions
        return out[..., :a], out[..., a:].unflatten(-1, (a, self.n_states))

    def loss(self, memory: torch.Tensor, reward_means: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the reward means plus the mean cross-entropy of the next-state
        distributions, over steps, trials and actions."""
        predicted_rewards, logits = self(memory)
        squared = ((predicted_rewards - reward_means) ** 2).mean()
        cross_entropy = -(transitions * torch.log_softmax(logits, -1)).sum(-1).mean()
        return squared + cross_entropy
