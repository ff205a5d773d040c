"""Branch exploration: random deviations in training rollouts, and a loss that learns from them.

Why: the maze policies that stop at ~70% success in episode 1 follow one reactive rule, measured on the
``small-e2-turn90`` zoo policy (``experiments/rl2_maze_openings_probe.py``): straight on wherever the way
ahead is open, else toward the one opening, else round. Arriving in a cell with the way ahead open they go
straight on with probability 1.000 to three decimals, also where the way ahead leads back to cells they
have crossed and a side leads to a new one; their memory knows that side is open (a probe on the GRU state
reads a left opening with AUC 0.98). So they walk a corridor from end to end and back, past the side
branches, and PPO never sees the branch taken: an action of probability ~0 is never sampled, and a
ratio-weighted gradient for it is ~0 even when it is.

The recipe (``explore_eps``, ``explore_coef``; training only, never in evaluation):

* In the rollout each action is, with probability ``explore_eps``, replaced by one drawn uniformly (a
  generator of its own, so the policy's action stream is the one it would have been). Such a step is
  marked ``explored`` and left out of the PPO surrogate: its action was not drawn from the policy.
* A loss on the explored steps, a mean over them, weight ``explore_coef``, not weighted by pi / mu, so a
  deviation that paid raises its own probability however small that was. ``explore_update``:
  ``imitate`` is self-imitation (Oh et al. 2018), ``-max(A, 0) * log pi(a | history)``, over the
  deviations whose advantage came out positive; ``gradient`` is ``-A * log pi(a | history)`` over all of
  them, a policy gradient whose actions a uniform behaviour drew. Self-imitation is biased towards being
  less sure: with noisy advantages about half of all deviations come out positive and are imitated, and
  nothing pushes the others down; the signed form pushes each way by its advantage. Its push down stops
  where the policy already gives the action no more than exploration does (``explore_eps / actions``):
  below that it changes nothing the rollouts play, and ``-A log pi`` with A < 0 has no lower bound (a
  first signed run without the stop drove its logits to infinity in 6 iterations).

``explore_at=centres`` deviates only where the agent's own dead reckoning (``novelty.Odometer``) puts it
on a cell's centre, and only by a turn (left or right, evenly): where a side branch can start. Of uniform
deviations anywhere, nearly all are turns in a corridor or into a wall; the branch decisions are a few in
a thousand, and their advantages drown in the others' noise (C2-C2e, 2026-12-07).

It uses nothing but the agent's own experience, so a policy trained with it is ``rl2``'s.
"""

from __future__ import annotations

import math

import torch

from rl2bench.tasks.maze.engine import LEFT, RIGHT, STRIDES_PER_CELL

from .novelty import Odometer, wall_hits


def explore_actions(actions: torch.Tensor, n_actions: int, eps: float, gen: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(actions with a share ``eps`` replaced by uniform draws, float mask of the replaced ones). The
    draws always consume the same numbers from ``gen``, whatever ``eps``."""
    coin = torch.rand(actions.shape, generator=gen)
    uniform = torch.randint(n_actions, actions.shape, generator=gen)
    explored = coin < eps
    return torch.where(explored, uniform, actions), explored.to(torch.float32)


class Deviations:
    """The training rollout's deviations: how often (``eps``), where (``at``: "any" step, or "centres"
    of cells by dead reckoning, turning only) and from which generator (``gen``)."""

    def __init__(self, eps: float, gen: torch.Generator, n_actions: int, at: str = "any",
                 turn_degrees: float = 90.0):
        self.eps, self.gen, self.n_actions, self.at, self.turn_degrees = eps, gen, n_actions, at, turn_degrees
        self.odometer = Odometer(0, turn_degrees)

    def start(self, trials: int) -> None:
        """A new group of trials, every one at its start."""
        self.odometer = Odometer(trials, self.turn_degrees)

    def apply(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the actions to play, float mask of the deviations among them)."""
        if self.at == "any":
            return explore_actions(actions, self.n_actions, self.eps, self.gen)
        coin = torch.rand(actions.shape, generator=self.gen)
        turn = torch.where(torch.rand(actions.shape, generator=self.gen) < 0.5, LEFT, RIGHT)
        centre = torch.as_tensor((self.odometer.point() % STRIDES_PER_CELL == 0).all(-1))
        explored = (coin < self.eps) & centre
        return torch.where(explored, turn, actions), explored.to(torch.float32)

    def observe(self, actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> None:
        """The step's outcome, for dead reckoning."""
        self.odometer.step(actions.numpy(), wall_hits(rewards.numpy()), dones.numpy() > 0)


def deviation_loss(logp_all: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor, explored: torch.Tensor,
                   valid: torch.Tensor, update: str = "imitate", eps: float = 0.0) -> torch.Tensor:
    """The mean over explored valid steps of ``-max(A, 0) * log pi(a)`` (``imitate``: the deviations that
    paid) or ``-A * log pi(a)`` (``gradient``), whose A < 0 terms stop where pi(a) <= ``eps / actions``
    (module docstring); 0 without any."""
    weight = explored * valid
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    if update == "imitate":
        signal = adv.clamp_min(0.0)
    else:
        floor = math.log(max(eps, 1e-12) / logp_all.shape[-1])
        signal = torch.where((adv > 0) | (logp.detach() > floor), adv, torch.zeros_like(adv))
    return -(signal * logp * weight).sum() / weight.sum().clamp_min(1.0)
