"""A novelty bonus for the maze trainer: reward for reaching what is new to the trial, a view or a place.

Why: a maze policy that dithers (turning back and forth, re-entering the same corridor) covers a few cells
in 250 steps, and the sparse target reward says little about how to cover more. Counting what the agent
has reached in the trial gives a dense signal for coverage (count-based exploration, as in Bellemare et
al. 2016 and Tang et al. 2017's hashed counts), from nothing but its own experience, so a policy trained
with it is still ``rl2``'s.

Three kinds (``novelty_kind``):

* ``view``: the next observation (the stored encoded frame) is new to the trial (strides end at rest and
  turns are exact, so a pose gives the same frame every time). Measured on 16 held-out
  small mazes it does not follow coverage: random actions see 217 distinct views in 251 steps while
  ``memory``, which covers 3.6x as many cells, sees 122, because every turn at a new position is a new view.
* ``odometry``: the agent's own dead reckoning reaches a point new to the trial. From its own actions (a
  turn turns one ``turn_degrees``, a forward action moves one stride along its heading) and its own
  rewards (a stride that hit a wall costs 0.001 more and moves nothing), counted in the frame of the
  start pose, which every episode restarts from, on a grid of one stride. Turning in place or walking back
  along a corridor reaches no new point; covering the maze does.
* ``cell``: the same dead reckoning reaches a cell (``STRIDES_PER_CELL`` strides) new to the trial, paid
  ``STRIDES_PER_CELL`` times the coefficient, so a true explorer earns what ``odometry`` pays it. Why: dead
  reckoning drifts in long episodes (a blocked stride is pushed back by up to ~0.6 stride), and a policy
  that has stopped finding cells and walks the same corridors back and forth still finds "new" points.
  Measured on the ``small-e2-turn90`` zoo policy's failed episodes 1 (``experiments/rl2_maze_novelty_drift.py``),
  45% of the point bonus was paid after the last truly new cell; counted in cells, 27%.

The bonus is for training only: it is added to the rewards the update learns from, never to the network's
inputs (the previous reward it sees stays the task's), and evaluation counts the task's rewards alone.
Kept below the step cost (0.04), it never pays to wander once the target is known: every further step
still costs more than a new view earns. ``novelty_episodes`` keeps it to the trial's first episodes: in a
later one it would halve the cost of leaving the route already found, a pull against remembering it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rl2bench.tasks.maze.engine import FORWARD, LEFT, RIGHT, STRIDES_PER_CELL
from rl2bench.tasks.maze.env import REWARD_STEP, REWARD_TARGET, REWARD_WALL

QUANTUM = 1e-3  # views are compared after rounding to this, so float noise in the encoder cannot split one


def view_keys(obs: torch.Tensor) -> np.ndarray:
    """A 64-bit hash per (step, trial) of the stored observation (an encoded frame or the frame itself):
    equal views give equal keys; a collision of two different views is ~1 in 2^64."""
    flat = obs.reshape(*obs.shape[:2], -1)
    weights = torch.as_tensor(np.random.default_rng(0).integers(1, 2**62, size=flat.shape[-1]), dtype=torch.int64,
                              device=flat.device)
    keys = [(torch.round(chunk / QUANTUM).to(torch.int64) * weights).sum(-1)  # int64 wraps: a hash
            for chunk in flat.split(32)]  # 32 steps at a time: raw frames would take GBs at once
    return torch.cat(keys).cpu().numpy()


def first_occurrences(keys: np.ndarray, valid: torch.Tensor | np.ndarray) -> np.ndarray:
    """(steps, trials) bool: the key at step t is the first of its kind among its trial's valid steps
    (``valid`` may be any pattern, not only a prefix; invalid steps are never first)."""
    mask = (valid.detach().cpu().numpy() if isinstance(valid, torch.Tensor) else np.asarray(valid)) > 0
    first = np.zeros(keys.shape, dtype=bool)
    for b in range(keys.shape[1]):
        steps = np.flatnonzero(mask[:, b])
        _, index = np.unique(keys[steps, b], return_index=True)
        first[steps[index], b] = True
    return first


def first_views(obs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(steps, trials) bool: the observation at step t is the first of its kind in its trial."""
    return torch.as_tensor(first_occurrences(view_keys(obs), valid))


def novelty_bonus(obs: torch.Tensor, valid: torch.Tensor, coef: float) -> torch.Tensor:
    """(steps, trials): ``coef`` for each action whose next observation is a view new to the trial. The
    trial's last action has no stored next observation and earns nothing; the first frame of a later
    episode (the start, seen before) earns nothing either."""
    new = first_views(obs, valid).to(valid.device, valid.dtype) * valid
    bonus = torch.zeros_like(valid)
    bonus[:-1] = coef * new[1:]
    return bonus


def wall_hits(rewards: np.ndarray) -> np.ndarray:
    """Bool per step: the action's reward says it hit a wall (a target reached in the same stride too)."""
    hit_cost = REWARD_STEP + REWARD_WALL
    return (np.isclose(rewards, hit_cost, rtol=0, atol=1e-5)
            | np.isclose(rewards, hit_cost + REWARD_TARGET, rtol=0, atol=1e-5))


def odometry_poses(actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor,
                   turn_degrees: float, snap_on_hit: bool = False,
                   cell_moves: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The pose each action leaves the agent in, by dead reckoning from its actions and rewards (module
    docstring): (steps, trials, 2) int points (in strides, start pose's frame) and (steps, trials) int
    headings (in turns counted anticlockwise from the start's); an episode's end puts it back at the start.

    ``snap_on_hit`` (quarter-turn headings only): a stride into a wall also corrects the coordinate along
    the heading. From a cell's centre (the start is one) a stride reaches the point one stride short of
    the cell's edge, and the next one hits the wall there; so a hit puts the agent at the nearest point
    ``STRIDES_PER_CELL * k + 1`` (facing +) or ``- 1`` (facing -) along that axis. Without it, the engine's
    braking pushes the player back after a blocked stride by up to ~0.6 stride, the next stride from there
    can count as a move, and the estimate drifts by a stride per such pair.

    ``cell_moves`` (a ``-move`` cell): a forward action that hit no wall walked a whole cell,
    ``STRIDES_PER_CELL`` strides, from a centre to the next; a bump leaves the agent where it stood. The
    estimate is then exact (the horizon may cut a move short, but that ends the episode), so nothing snaps."""
    a, r = actions.numpy(), rewards.numpy()
    steps, trials = a.shape
    odometer = Odometer(trials, turn_degrees, snap_on_hit and not cell_moves, cell_moves)
    points = np.zeros((steps, trials, 2), dtype=np.int64)
    headings = np.zeros((steps, trials), dtype=np.int64)
    hit = wall_hits(r)
    for t in range(steps):
        points[t], headings[t] = odometer.step(a[t], hit[t], dones[t].numpy() > 0)
    live = valid.numpy() > 0
    return points * live[..., None], headings * live


class Odometer:
    """Dead reckoning of a batch of trials, one action at a time (``odometry_poses`` reads a whole batch
    with it; a rollout can read the pose before each action): a turn turns ``turn_degrees``, a forward
    action that hit no wall moves one stride along the heading, an episode's end puts it back at the
    start (0, 0) facing heading 0. With ``cell_moves`` a forward action moves a cell (``STRIDES_PER_CELL``
    strides) instead."""

    def __init__(self, trials: int, turn_degrees: float, snap_on_hit: bool = False, cell_moves: bool = False):
        self.turn_degrees, self.snap_on_hit = turn_degrees, snap_on_hit
        self.stride = STRIDES_PER_CELL if cell_moves else 1
        self.heading = np.zeros(trials, dtype=np.int64)
        self.x, self.y = np.zeros(trials), np.zeros(trials)

    def point(self) -> np.ndarray:
        """(trials, 2) int: the current point, in strides."""
        return np.stack([np.rint(self.x), np.rint(self.y)], -1).astype(np.int64)

    def step(self, actions: np.ndarray, hit: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply one action per trial (``hit``: its reward says it hit a wall; ``done``: it ended the
        episode); the point and heading it left the agent at, before any restart."""
        self.heading += (actions == LEFT).astype(np.int64) - (actions == RIGHT)
        moves = self.stride * ((actions == FORWARD) & ~hit)
        step_rad = np.deg2rad(self.turn_degrees)
        self.x += moves * np.cos(self.heading * step_rad)
        self.y += moves * np.sin(self.heading * step_rad)
        if self.snap_on_hit:
            snap_to_wall(self.x, self.y, self.heading * self.turn_degrees, (actions == FORWARD) & hit)
        point, heading = self.point(), self.heading.copy()
        self.heading[done], self.x[done], self.y[done] = 0, 0.0, 0.0
        return point, heading


def snap_to_wall(x: np.ndarray, y: np.ndarray, degrees: np.ndarray, hit: np.ndarray) -> None:
    """In place, for the trials that hit a wall facing along an axis: the coordinate along the heading
    moves to the nearest point one stride short of a cell's edge (``odometry_poses``)."""
    quarter = np.rint(degrees / 90.0)
    aligned = hit & np.isclose(degrees, quarter * 90.0)
    side = quarter.astype(np.int64) % 4  # 0: +x, 1: +y, 2: -x, 3: -y
    for coord, plus, minus in ((x, 0, 2), (y, 1, 3)):
        for facing, sign in ((plus, 1), (minus, -1)):
            rows = aligned & (side == facing)
            # nearest such point; halfway between two, the one behind (drift overshoots along the heading)
            k = -sign * np.floor(-sign * (coord[rows] - sign) / STRIDES_PER_CELL + 0.5)
            coord[rows] = STRIDES_PER_CELL * k + sign


def odometry_points(actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor,
                    turn_degrees: float, cell_moves: bool = False) -> np.ndarray:
    """(steps, trials, 2) int: the point each action leaves the agent at (``odometry_poses``)."""
    return odometry_poses(actions, rewards, dones, valid, turn_degrees, cell_moves=cell_moves)[0]


def before_actions(after: np.ndarray, dones: torch.Tensor) -> np.ndarray:
    """Poses after each action (``odometry_poses``) -> the pose before it: the previous action's, or the
    start's (zero) at the trial's first step and after an episode's end."""
    before = np.zeros_like(after)
    ended = dones.numpy()[:-1] > 0
    before[1:] = np.where(ended.reshape(ended.shape + (1,) * (after.ndim - 2)), 0, after[:-1])
    return before


def point_keys(points: np.ndarray) -> np.ndarray:
    """One integer per point (..., 2) of ``odometry_points``: equal points, equal keys."""
    return points[..., 0] * 100_003 + points[..., 1]


def cell_of(points: np.ndarray) -> np.ndarray:
    """The cell (in cells, the start's at 0) of each point (in strides): a point on a cell's edge line
    belongs to the cell on its + side."""
    return np.floor((points + STRIDES_PER_CELL // 2) / STRIDES_PER_CELL).astype(np.int64)


def odometry_bonus(actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor,
                   turn_degrees: float, coef: float, cells: bool = False) -> torch.Tensor:
    """(steps, trials): ``coef`` for each action that leaves the agent at a point its dead reckoning has
    not reached before in the trial (the start point counts as reached); with ``cells``,
    ``STRIDES_PER_CELL * coef`` for each action that leaves it in a new cell (``cell_of``) instead."""
    points = odometry_points(actions, rewards, dones, valid, turn_degrees)
    if cells:
        points, coef = cell_of(points), coef * STRIDES_PER_CELL
    return coef * torch.as_tensor(new_points(points, valid), dtype=valid.dtype) * valid


def new_points(points: np.ndarray, valid: torch.Tensor | np.ndarray) -> np.ndarray:
    """(steps, trials) bool: the point (..., 2) the step left the agent at is new to its trial among the
    ``valid`` steps; the start point (0, 0) counts as reached before the first action."""
    keys = point_keys(points)
    start = np.zeros((1, keys.shape[1]), dtype=keys.dtype)
    live = valid.detach().cpu().numpy() if isinstance(valid, torch.Tensor) else np.asarray(valid)
    with_start = np.concatenate([np.ones((1, keys.shape[1])), live])
    return first_occurrences(np.concatenate([start, keys]), with_start)[1:]


def in_first_episodes(dones: torch.Tensor, episodes: int) -> torch.Tensor:
    """(steps, trials) bool: the step belongs to one of its trial's first ``episodes`` episodes (0: all)."""
    if episodes <= 0:
        return torch.ones_like(dones, dtype=torch.bool)
    return (torch.cumsum(dones, 0) - dones) < episodes  # episodes ended before this step


def training_bonus(batch: Any, kind: str, coef: float, turn_degrees: float, episodes: int = 0) -> torch.Tensor:
    """The bonus of ``kind`` ("view", "odometry" or "cell") for a maze batch, on the batch's device, paid in
    the trial's first ``episodes`` episodes only (0: in all)."""
    if kind in ("odometry", "cell"):
        bonus = odometry_bonus(batch.actions.cpu(), batch.rewards.cpu(), batch.dones.cpu(), batch.valid.cpu(),
                               turn_degrees, coef, cells=kind == "cell").to(batch.valid.device)
    else:
        bonus = novelty_bonus(batch.obs, batch.valid, coef)
    return bonus * in_first_episodes(batch.dones.to(bonus.device), episodes)
