"""Route recall: a self-imitation loss that asks a later episode to walk the route an earlier one found.

Why: in every maze run so far episode 2 was no better than episode 1. After a success in episode 1 the
policy wandered again, often longer than the first time, although the same maze and target come back
(experiments/results/2026-12-06-maze-turn90/). Returns alone reward remembering the route only through
the rare trials where a different walk in episode 2 happened to be shorter. This loss gives the memory a
direct target instead: in an episode after a success, wherever the agent stands on the route that success
took, the action that goes on along it.

Everything comes from the agent's own experience, so a policy trained with it is still ``rl2``'s: the route
is its own dead reckoning (``novelty.odometry_poses``: its actions and its rewards, nothing of the map),
cut at the step whose reward reached the target, read as the cells it crossed (``STRIDES_PER_CELL``
strides each; the start is a cell's centre) with its loops erased (each return to a cell drops what came
after it). It is a form of self-imitation (Oh et al. 2018): the agent imitates its own best walk, in its
own later episodes, from its own memory of it.

Why cells, not strides: dead reckoning drifts. After a blocked stride the engine's braking pushes the player
back, and a player off a corridor's centre line slides along a corner, each by up to ~0.6 stride
(measured with ``experiments/rl2_maze_route_probe.py``); a route of strides then points into walls. A cell
is 4 strides and an opening lets a player through up to 1 stride off its centre line, so the targets are:
facing the next cell of the route, forward; otherwise turn towards it where the estimate is on the
cell's centre line across that direction, else first walk back onto that line. A target contradicted by
the walls (a forward it asked for hit one where the estimate already stood one stride short of a wall,
so the hit corrected nothing) ends the targets for the rest of that episode. In the goal
cell there is nothing more to ask. That includes its edge line on the - side, which ``cell_of`` counts in
the goal while the player may still stand in the doorway: a target towards the inside there was tried
and cost 5 of 132 steered episodes 2 in the probe, which all succeed without it.

Only on 90-degree cells (``-turn90``): four headings, one turn per quarter. The route kept is the shortest
(in cells) of the trial's successful episodes so far. On cell moves (``-turn90-move``) a forward action
walks a whole cell and a bump moves nothing, so dead reckoning is exact: every pose is a cell's centre, and
each target is the forward that leaves towards the route's next cell or the turn that faces it.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from rl2bench.tasks.maze.engine import FORWARD, LEFT, N_ACTIONS, RIGHT, STRIDES_PER_CELL
from rl2bench.tasks.maze.env import REWARD_TARGET

from .novelty import before_actions, cell_of, odometry_poses, wall_hits

ROUTE_TURN_DEGREES = 90.0
Point = tuple[int, int]
# The heading (in quarter turns, anticlockwise from the start's) that points along each unit move.
_DIRECTION = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}
# Quarter turns from the heading to the move's direction -> the actions that serve it.
_ACTIONS = {0: (FORWARD,), 1: (LEFT,), 2: (LEFT, RIGHT), 3: (RIGHT,)}


def loop_erased(points: list[Point]) -> list[Point]:
    """The walk through ``points`` with its loops erased: on a return to a point, what came after it goes."""
    route: list[Point] = []
    index: dict[Point, int] = {}
    for p in points:
        if p in index:
            for q in route[index[p] + 1:]:
                del index[q]
            del route[index[p] + 1:]
        else:
            index[p] = len(route)
            route.append(p)
    return route


def _toward(facing: int, direction: int) -> tuple[int, ...]:
    """The actions that serve heading ``direction`` from heading ``facing`` (quarter turns, anticlockwise)."""
    return _ACTIONS[(direction - facing) % 4]


def episode_route(after: np.ndarray) -> list[Point]:
    """The route of one episode: the cells of the points its actions left it at ((steps, 2), strides),
    from the start's cell, with the loops erased."""
    return loop_erased([(0, 0)] + [(int(c[0]), int(c[1])) for c in cell_of(after)])


def route_step(here: Point, facing: int, cell: Point, nxt: Point) -> tuple[int, ...]:
    """The actions that go on from point ``here`` (strides) facing ``facing`` in ``cell`` towards the
    neighbouring cell ``nxt`` (module docstring)."""
    move = (nxt[0] - cell[0], nxt[1] - cell[1])
    direction = _DIRECTION[move]
    across = 1 if move[0] else 0  # the coordinate across the way out
    off = here[across] - STRIDES_PER_CELL * cell[across]
    if facing == direction and abs(off) < STRIDES_PER_CELL // 2:  # an opening passes a player 1 stride off
        return (FORWARD,)
    if off == 0:
        return _toward(facing, direction)
    back = (0, -int(np.sign(off))) if across else (-int(np.sign(off)), 0)
    return (FORWARD,) if facing == _DIRECTION[back] else _toward(facing, _DIRECTION[back])


def route_targets(actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor,
                  turn_degrees: float = ROUTE_TURN_DEGREES, cell_moves: bool = False) -> torch.Tensor:
    """(steps, trials, N_ACTIONS) float, 1 for each action that goes on along the route of the trial's
    shortest successful earlier episode from the pose before step t (module docstring); all 0 where there
    is no such route yet, the agent stands off it, or the walls contradicted a target earlier in the episode.
    ``cell_moves``: the trial was played on a ``-move`` cell (``odometry_poses``)."""
    if turn_degrees != ROUTE_TURN_DEGREES:
        raise ValueError(f"route targets need 90-degree turns, not {turn_degrees:g}")
    after, headings = odometry_poses(actions, rewards, dones, valid, turn_degrees, snap_on_hit=True,
                                     cell_moves=cell_moves)
    points, facing = before_actions(after, dones), before_actions(headings, dones) % 4
    cells = cell_of(points)
    a, done, live = actions.numpy(), dones.numpy() > 0, valid.numpy() > 0
    reached = rewards.numpy() > REWARD_TARGET / 2
    hit, moved = wall_hits(rewards.numpy()), np.any(after != points, -1)
    targets = np.zeros((*done.shape, N_ACTIONS), dtype=np.float32)
    for b in range(done.shape[1]):
        next_cell: dict[Point, Point] = {}
        best, contradicted, start = np.inf, False, 0
        for t in np.flatnonzero(live[:, b]):
            cell = (int(cells[t, b, 0]), int(cells[t, b, 1]))
            if not contradicted and cell in next_cell:
                here = (int(points[t, b, 0]), int(points[t, b, 1]))
                serve = route_step(here, int(facing[t, b]), cell, next_cell[cell])
                targets[t, b, list(serve)] = 1.0
                # a stride it asked for that hit a wall and left the estimate where it was; a hit that moved
                # the estimate corrected its drift (``snap_on_hit``), and the route goes on from there
                contradicted = serve == (FORWARD,) and a[t, b] == FORWARD and hit[t, b] and not moved[t, b]
            if done[t, b]:
                if reached[t, b]:
                    route = episode_route(after[start: t + 1, b])
                    if len(route) < best:
                        best, next_cell = len(route), dict(itertools.pairwise(route))
                start, contradicted = t + 1, False
    return torch.as_tensor(targets)


def route_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
               behaviour: torch.Tensor | None = None, tilt: float = 0.0,
               count: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean over the valid steps that have a target. ``tilt`` 0: -log (the policy's probability of the
    target's actions), a cross-entropy that accepts either turn where both serve. ``tilt`` > 0: KL(q || policy)
    with q = the ``behaviour`` policy (its logits) with the target's actions' odds multiplied by e^tilt,
    a policy-improvement step with the route as a 0/1 advantage (as MPO's and AWR's weighted targets):
    where the behaviour already follows the route q is as sure as it, so making the policy less sure,
    the plain cross-entropy's cheapest fall, costs instead of paying. ``count``: divide the sum by this
    instead of the number of those steps (a minibatch's share of the batch's, so every step weighs alike)."""
    on_route = mask * (targets.sum(-1) > 0)
    n = on_route.sum().clamp_min(1) if count is None else count
    if tilt > 0:
        if behaviour is None:
            raise ValueError("a tilted route loss needs the behaviour policy's logits")
        q = torch.softmax(behaviour + tilt * targets, -1)
        kl = (q * (torch.log(q.clamp_min(1e-12)) - torch.log_softmax(logits, -1))).sum(-1)
        return (kl * on_route).sum() / n
    # a large finite fill, not -inf: a step with no target would give NaN gradients through logsumexp
    log_p = torch.logsumexp(logits.masked_fill(targets <= 0, -1e9), -1) - torch.logsumexp(logits, -1)
    return -(torch.where(on_route > 0, log_p, torch.zeros_like(log_p)) * on_route).sum() / n


def route_followed(actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(steps, trials) float: 1 where the step has a target and its action was one of the target's."""
    return targets.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def route_agreement(actions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """On a batch: the share of valid steps that have a route target, and among them the share whose
    action was one of the target's."""
    on_route = mask * (targets.sum(-1) > 0)
    n = float(on_route.sum())
    agreed = float((route_followed(actions, targets) * on_route).sum())
    return n / max(float(mask.sum()), 1.0), agreed / max(n, 1.0)
