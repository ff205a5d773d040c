"""Exploration by a perturbed policy head, drawn once per trial (``head_noise``; training only).

Why: a reactive rule can finish episode 1 of a perfect maze. ``wall-follower`` (a hand on the left
wall, no memory) succeeds in episode 1 on all of 200 held-out ``small-turn90`` and ``large-turn90``
mazes, while the ``rl2`` policies follow a reactive rule that puts straight-on first and loops
(``maze_explore.py``). Going from one rule to the other changes the choice at every junction of a
trial at once. Per-step deviations change one decision at a time, and a single side branch taken
seldom changes a trial's outcome, so their advantages are mostly noise. A perturbation of the head's
weights held for a whole trial changes the rule consistently: every state whose GRU output points the
same way gets the same shift. This is parameter-space noise (Plappert et al. 2018; NoisyNet, Fortunato
et al. 2018).

Mechanics: per trial, a standard normal matrix E (actions x hidden) from a generator of its own. The
logits become ``pi(h) + head_noise * E (h / |h|)``, so each logit moves by N(0, head_noise^2) at any
state, and by the same amount at states whose GRU outputs point the same way. The perturbation belongs
to the behaviour policy: it is stored with the batch and applied again in the update. PPO's ratio then
starts at 1, and the gradient reaches the head's mean weights through the trials that the perturbation
made better. Evaluation and the zoo play the mean head.

It uses nothing but the agent's own experience, so a policy trained with it is ``rl2``'s.
"""

from __future__ import annotations

import torch


def draw_head_noise(trials: int, actions: int, hidden: int, gen: torch.Generator) -> torch.Tensor:
    """(trials, actions, hidden) standard normal: one perturbation of the head per trial."""
    return torch.randn(trials, actions, hidden, generator=gen)


def perturb_logits(logits: torch.Tensor, out: torch.Tensor, noise: torch.Tensor, scale: float) -> torch.Tensor:
    """``logits`` (..., trials, actions) of GRU outputs ``out`` (..., trials, hidden) plus ``scale`` x
    each trial's ``noise`` (trials, actions, hidden) applied to the output's direction."""
    direction = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return logits + scale * torch.einsum("...th,tah->...ta", direction, noise.to(out.dtype))
