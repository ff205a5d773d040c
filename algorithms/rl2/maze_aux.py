"""An auxiliary task for the maze trainer: the GRU is asked to say where the agent is and whether it has
been there before in the trial.

Why: the maze policies' failures are loops, a walk to a corridor's end and back, again and again, past the
openings that lead on (experiments/results/2026-12-06-maze-ppo/). Avoiding a loop needs a memory of
where the agent has been, and neither a wider GRU nor the novelty bonus taught one. Predicting one's own
position and "been here" from the GRU's state asks for exactly that memory, and the gradient reaches the
recurrent weights directly instead of through rare returns (auxiliary tasks as in Jaderberg et al. 2017,
Mirowski et al. 2017).

The targets come from the agent's own dead reckoning (``novelty.odometry_points``: its actions and its
rewards, nothing of the map), so a policy trained with them is still ``rl2``'s. The head
(``ConvPolicy.aux``) is trained only; it never chooses an action and no evaluation reads it.

Per step t, before the action: the position (x, y, in strides, in the start pose's frame; 0 at each
episode's start) and 1 if that point was already reached earlier in the trial (the point where an
earlier episode ended included), else 0; a turn leaves the point as it was, so the step after a turn is
always "been here". The loss is the squared error of the position, both sides divided by
``POSITION_SCALE``, plus the binary cross-entropy of "been here", both averaged over valid steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional

from rl2bench.tasks.maze.engine import N_ACTIONS

from .novelty import before_actions, first_occurrences, odometry_points, point_keys

AUX_OUTPUTS = 3  # x, y, logit of "been here"
ROUTE_OUTPUTS = N_ACTIONS  # route recall's action logits, after them when ``route_head`` (maze_route.py)
POSITION_SCALE = 10.0  # strides; small mazes span about +-12 of them from the start


def head_outputs(cfg: Any) -> int:
    """The auxiliary head's width: the position task's outputs when ``aux_coef``, then route recall's
    action logits when ``route_head``."""
    return AUX_OUTPUTS * bool(cfg.aux_coef) + ROUTE_OUTPUTS * bool(cfg.route_head)


def position_targets(actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor,
                     turn_degrees: float, cell_moves: bool = False) -> torch.Tensor:
    """(steps, trials, 3) float: the position before each action and whether it was reached before
    (``cell_moves``: played on a ``-move`` cell, a forward action walking a cell)."""
    after = odometry_points(actions, rewards, dones, valid, turn_degrees, cell_moves)  # where each action left it
    before = before_actions(after, dones)  # an episode's end puts it back at the start
    ended = dones.numpy()[:-1] > 0
    # Every point reached, in order: where the previous episode ended (its last point is never a
    # "before"), then the point before step t. Been here = that point is not new in this sequence.
    keys, reached = point_keys(before), valid.numpy() > 0
    ends = np.zeros_like(keys)
    ends[1:] = point_keys(after[:-1])
    ended_valid = np.zeros_like(reached)
    ended_valid[1:] = ended & reached[:-1]
    sequence = np.stack([ends, keys], 1).reshape(2 * keys.shape[0], -1)
    counted = np.stack([ended_valid, reached], 1).reshape(sequence.shape)
    been_here = ~first_occurrences(sequence, counted)[1::2]
    out = np.concatenate([before.astype(np.float32), been_here[..., None].astype(np.float32)], -1)
    return torch.as_tensor(out) * valid[..., None]


def aux_loss(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
             count: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean over valid steps of the position's scaled squared error plus the cross-entropy of "been here"
    (``count``: the divisor instead of the number of valid steps)."""
    n = mask.sum().clamp_min(1.0) if count is None else count
    position = ((predicted[..., :2] - targets[..., :2] / POSITION_SCALE) ** 2).sum(-1)
    been_here = functional.binary_cross_entropy_with_logits(predicted[..., 2], targets[..., 2], reduction="none")
    return ((position + been_here) * mask).sum() / n
