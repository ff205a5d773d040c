"""A novelty bonus for the maze trainer: reward for seeing a view not seen before in the trial.

Why: a maze policy that dithers (turning back and forth, re-entering the same corridor) covers a few cells
in 250 steps, and the sparse target reward says little about how to cover more. Counting the agent's own
views gives a dense signal for coverage (count-based exploration, as in Bellemare et al. 2016 and Tang et
al. 2017's hashed counts), from nothing but its own observations, so a policy trained with it is still
``rl2``'s. Strides end at rest and turns are exact, so a pose gives the same frame every time and an exact
match of views is a fair count.

The bonus is for training only: it is added to the rewards the update learns from, never to the network's
inputs (the previous reward it sees stays the task's), and evaluation counts the task's rewards alone.
Kept below the step cost (0.04), it never pays to wander once the target is known: every further step
still costs more than a new view earns.
"""

from __future__ import annotations

import numpy as np
import torch

QUANTUM = 1e-3  # views are compared after rounding to this, so float noise in the encoder cannot split one


def view_keys(obs: torch.Tensor) -> np.ndarray:
    """A 64-bit hash per (step, trial) of the stored observation (an encoded frame or the frame itself):
    equal views give equal keys; a collision of two different views is ~1 in 2^64."""
    flat = obs.reshape(*obs.shape[:2], -1)
    weights = torch.as_tensor(np.random.default_rng(0).integers(1, 2**62, size=flat.shape[-1]), dtype=torch.int64)
    keys = [(torch.round(chunk / QUANTUM).to(torch.int64) * weights).sum(-1)  # int64 wraps: a hash
            for chunk in flat.split(32)]  # 32 steps at a time: raw frames would take GBs at once
    return torch.cat(keys).numpy()


def first_views(obs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(steps, trials) bool: the observation at step t is the first of its kind in its trial."""
    keys, lengths = view_keys(obs), valid.sum(0).long().tolist()
    first = np.zeros(keys.shape, dtype=bool)
    for b, length in enumerate(lengths):
        _, index = np.unique(keys[:length, b], return_index=True)
        first[index, b] = True
    return torch.as_tensor(first)


def novelty_bonus(obs: torch.Tensor, valid: torch.Tensor, coef: float) -> torch.Tensor:
    """(steps, trials): ``coef`` for each action whose next observation is a view new to the trial. The
    trial's last action has no stored next observation and earns nothing; the first frame of a later
    episode (the start, seen before) earns nothing either."""
    new = first_views(obs, valid).to(valid.dtype) * valid
    bonus = torch.zeros_like(valid)
    bonus[:-1] = coef * new[1:]
    return bonus
