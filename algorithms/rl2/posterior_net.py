"""A diagnostic network for the bandit/MDP trainer (``--set network=posterior``): the GRU's memory replaced
by the exact posterior statistics of the trial so far, computed by a fixed (unlearned) recurrence, read by a
two-layer MLP. Trained by the same PPO as the GRU, it asks whether RL^2's shortfall on larger MDPs is the
memory (then this reaches the paper) or the outer loop (then it stalls where the GRU does).

It takes the same inputs as the GRU policy, the embedding ``(s, a_prev, r_prev, d_prev)`` of
``policy.embed``, and keeps in its "hidden state", per trial: the previous state, the visit counts N(s, a),
the reward sums, the transition counts N(s, a, s') and the step index. At each step the MLP reads:

* the current state (one-hot) and two time features: the step within the episode and the episode within
  the trial, each as a fraction;
* for every (s, a): the posterior mean reward under the task's prior (N(1, 1) means, unit noise):
  ``(1 + sum) / (1 + N)``, and its posterior variance ``1 / (1 + N)``;
* for every (s, a, s'): the posterior mean transition under the flat Dirichlet prior:
  ``(1 + N(s, a, s')) / (n_states + sum over s' of N(s, a, s'))``.

These are sufficient statistics of the posterior over the MDP, so a policy on them lacks no memory. The
time features are more than the GRU is given (it must count steps from done flags). A transition into an
episode's first state is not a transition (episodes restart in state 0) and is not counted. Bandits have
one state; their statistics are the arms' counts and mean rewards (the Gaussian prior is the wrong one for
Bernoulli arms, but the MLP reads both numbers, so it loses nothing).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .policy import Baseline, Policy


def time_fractions(t: torch.Tensor, horizon: int, n_episodes: int) -> torch.Tensor:
    """Step counters within a trial (..., 1) -> (..., 2): the step within the episode and the episode
    within the trial, each a fraction in [0, 1). Shared by this net and the critic's time features."""
    return torch.cat([torch.remainder(t, horizon) / horizon,
                      torch.div(t, horizon, rounding_mode="floor") / n_episodes], dim=-1)


class TrialCounts(NamedTuple):
    """Running counts of a trial at every step (steps, trials, ...), after that step's inputs."""

    state: torch.Tensor  # the current state, one-hot (S)
    t: torch.Tensor  # the step index within the trial (1)
    counts: torch.Tensor  # visits N(s, a) (S * A)
    sums: torch.Tensor  # reward sums (S * A)
    trans: torch.Tensor  # transition counts N(s, a, s') (S * A * S)


def counts_size(n_states: int, n_actions: int) -> int:
    """Numbers carried between steps: previous state, N(s, a), reward sums, N(s, a, s'), step index."""
    return n_states + 2 * n_states * n_actions + n_states * n_actions * n_states + 1


def count_trial(x: torch.Tensor, n_states: int, n_actions: int, start: torch.Tensor | None = None) -> TrialCounts:
    """The fixed recurrence (module docstring) over embeddings x (steps, trials, input), from ``start`` (trials,
    ``counts_size``; None: a trial's beginning): the counts after every step. Vectorised over steps by
    cumulative sums."""
    steps = x.shape[0]
    S, A = n_states, n_actions
    if start is None:
        start = torch.zeros(x.shape[1], counts_size(S, A), device=x.device, dtype=x.dtype)
    prev0, counts0, sums0, trans0, t0 = start.split([S, S * A, S * A, S * A * S, 1], dim=-1)
    state = x[..., :S] if S > 1 else torch.ones_like(x[..., :1])  # a bandit's one state: always 1
    action = x[..., S:S + A]
    reward, done = x[..., S + A:S + A + 1], x[..., S + A + 1:S + A + 2]
    prev = torch.cat([prev0.unsqueeze(0), state[:-1]], dim=0)  # where the previous action was taken
    t = t0.unsqueeze(0) + torch.arange(steps, device=x.device, dtype=x.dtype).view(steps, 1, 1)
    taken = (t > 0).to(x.dtype)  # at a trial's first step the inputs are placeholders: nothing was taken
    pair = (prev.unsqueeze(-1) * action.unsqueeze(-2)).flatten(-2) * taken  # one-hot (s, a), (steps, trials, SA)
    moved = (pair.unsqueeze(-1) * state.unsqueeze(-2)).flatten(-2) * (1.0 - done)  # a transition, not a reset
    return TrialCounts(state, t, counts0 + pair.cumsum(0), sums0 + (pair * reward).cumsum(0),
                       trans0 + moved.cumsum(0))


def posterior_means(c: TrialCounts, n_states: int, n_actions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior mean of every reward (..., S, A) and transition row (..., S, A, S) under the task's prior
    (N(1, 1) means with unit noise; flat Dirichlet rows)."""
    S, A = n_states, n_actions
    reward_means = ((1.0 + c.sums) / (1.0 + c.counts)).unflatten(-1, (S, A))
    seen = c.trans.unflatten(-1, (S, A, S))
    return reward_means, (1.0 + seen) / (S + seen.sum(-1, keepdim=True))


class PosteriorNet(nn.Module):
    """Posterior statistics (a fixed recurrence) + MLP head, called as ``RecurrentNet`` is: ``step`` in
    rollouts, ``forward`` on whole trials after ``encode``."""

    fused_backward: bool = False  # nothing to fuse; set by the trainer as on the GRU

    def __init__(self, n_states: int, n_actions: int, hidden: int, n_out: int, horizon: int, n_episodes: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.n_states, self.n_actions, self.hidden = n_states, n_actions, hidden
        self.horizon, self.n_episodes = horizon, n_episodes
        s, a = n_states, n_actions
        self.state_size = counts_size(s, a)
        self.feature_size = s + 2 + 2 * s * a + s * a * s
        self.first = nn.Linear(self.feature_size, hidden)
        self.second = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, n_out)
        with torch.no_grad():
            for layer in (self.first, self.second, self.head):
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                layer.bias.zero_()

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(1, batch, self.state_size, device=self.head.bias.device)

    def statistics(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (steps, trials, input) -> (MLP inputs (steps, trials, features), statistics after the last step)."""
        h0 = self.initial_state(x.shape[1]) if h0 is None else h0
        c = count_trial(x, self.n_states, self.n_actions, h0[0])
        reward_means, transitions = posterior_means(c, self.n_states, self.n_actions)
        features = torch.cat([c.state, time_fractions(c.t, self.horizon, self.n_episodes), reward_means.flatten(2),
                              1.0 / (1.0 + c.counts), transitions.flatten(2)], dim=-1)
        last = torch.cat([c.state[-1], c.counts[-1], c.sums[-1], c.trans[-1], c.t[-1] + 1], dim=-1).unsqueeze(0)
        return features, last

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Whole trials' embeddings (steps, trials, input) -> the MLP's inputs at every step: computed once per
        batch, since they depend on no weight, then read by every epoch of the updates."""
        return self.statistics(x, None)[0]

    def forward(self, features: torch.Tensor, h0: None = None) -> tuple[torch.Tensor, None]:
        """Encoded trials (steps, trials, features) -> (head outputs (steps, trials, n_out), None)."""
        return self.head(torch.tanh(self.second(torch.tanh(self.first(features))))), None

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of embeddings (trials, input), statistics (1, trials, D) -> (outputs, next statistics)."""
        features, h_next = self.statistics(x.unsqueeze(0), h)
        return self(features)[0][0], h_next


class PosteriorPolicy(PosteriorNet):
    """Action logits from the posterior statistics."""

    def __init__(self, n_states: int, n_actions: int, hidden: int, horizon: int, n_episodes: int,
                 generator: torch.Generator | None = None):
        super().__init__(n_states, n_actions, hidden, n_actions, horizon, n_episodes, generator)


class PosteriorBaseline(PosteriorNet):
    """Value of the discounted return-to-go in units of ``scale``, as ``policy.Baseline``."""

    scale: torch.Tensor

    def __init__(self, n_states: int, n_actions: int, hidden: int, horizon: int, n_episodes: int,
                 scale: float = 1.0, generator: torch.Generator | None = None):
        super().__init__(n_states, n_actions, hidden, 1, horizon, n_episodes, generator)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def values(self, features: torch.Tensor) -> torch.Tensor:
        """(steps, trials) values in reward units, from ``encode``'s features."""
        return self.forward(features)[0].squeeze(-1) * self.scale


#: What the trainer's rollout and updates take: either network (the same calls).
AnyPolicy = Policy | PosteriorPolicy
AnyBaseline = Baseline | PosteriorBaseline
