"""Reference agents for the maze family: what the table's numbers mean at both ends.

* ``random``: uniform over the low-level actions (forward, turn left, turn right).
* ``oracle``: knows the maze and the target and walks the BFS shortest path along cell centres:
  the lower bound on trajectory length for cell-centre paths (cutting corners diagonally could save
  a few strides), the same in every episode.
* ``memory``: perfect memory without prior knowledge: in episode 1 it explores depth-first (always
  to the nearest unvisited cell, straight ahead first), perceiving only the walls of the cell it
  stands in; it learns the target when it steps into it, and walks the shortest known path in every
  later episode (an unfinished exploration continues in the next episode). What memory alone can buy.
* ``wall-follower``: a hand on the left wall (the first open way of left, ahead, right, back at each
  cell): no memory, the same walk every episode; a reactive rule that still reaches every cell.

``oracle``, ``memory`` and ``wall-follower`` are privileged references, not competitors: they act on the
environment's grid pose and walls (``privileged_info``) instead of pixels, but drive the real low-level actions
through the real engine. All state is arrays over the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl2bench.registry import register_algorithm
from rl2bench.tasks.maze.engine import FORWARD, LEFT, RIGHT, turns_per_quarter
from rl2bench.tasks.maze.layout import STEPS, bfs

from .base import Agent

CENTRE_TOLERANCE = 1.0  # map units; strides land on cell centres to 1/65536


@register_algorithm
class MazeRandom(Agent):
    """Uniformly random low-level actions: the floor of the table."""

    name = "random"
    families = ("maze",)

    def act(self, obs):
        return self.rng.integers(self.spec.n_actions, size=self.batch_size)


class GridWalker(Agent):
    """Walks between cell centres: at a centre it turns toward ``want`` (a heading 0..3) and strides;
    between centres it keeps striding (four strides from centre to centre)."""

    families = ("maze",)
    privileged = True
    exclude_from_all = False

    def __init__(self, spec, batch_size, rng):
        super().__init__(spec, batch_size, rng)
        self.info: dict[str, Any] = {}
        self.rows = np.arange(batch_size)

    def see_privileged(self, info: dict[str, Any]) -> None:
        first = not self.info
        self.info = info
        if first:
            self.start_plan(info)

    def start_plan(self, info: dict[str, Any]) -> None:
        """Called once with the first privileged view (the layouts of this agent's batch)."""

    def pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row, col) of the nearest cell centre, whether we stand on it, and the heading in turns (16ths
        of a circle at 22.5 degrees per turn, quarters at 90)."""
        geo = self.info["geometry"]
        offset = geo.wall + geo.cell / 2
        fx = (self.info["x"] - offset) / geo.pitch
        fy = (self.info["y"] - offset) / geo.pitch
        col, row = np.rint(fx).astype(np.int64), np.rint(fy).astype(np.int64)
        at_centre = np.maximum(np.abs(fx - col), np.abs(fy - row)) * geo.pitch < CENTRE_TOLERANCE
        turns = np.rint(self.info["angle"] / self.info["turn_degrees"]).astype(np.int64) % (4 * self.per_quarter)
        size = self.info["open_dirs"].shape[1]
        return np.clip(row, 0, size - 1), np.clip(col, 0, size - 1), at_centre, turns

    @property
    def per_quarter(self) -> int:
        return turns_per_quarter(self.info["turn_degrees"])

    def descend(self, dist: np.ndarray, dirs: np.ndarray, row: np.ndarray, col: np.ndarray,
                heading: np.ndarray) -> np.ndarray:
        """A heading from (row, col) to a neighbour one step closer in ``dist`` through ``dirs``;
        straight ahead first, then left, right, back. -1 where there is none."""
        size = dist.shape[1]
        here = dist[self.rows, row, col]
        want = np.full(self.batch_size, -1)
        for turn in (0, 1, 3, 2):
            h = (heading + turn) % 4
            nr = np.clip(row + STEPS[h, 0], 0, size - 1)
            nc = np.clip(col + STEPS[h, 1], 0, size - 1)
            ok = dirs[self.rows, row, col, h] & (dist[self.rows, nr, nc] >= 0) & (dist[self.rows, nr, nc] == here - 1)
            want = np.where((want < 0) & ok, h, want)
        return want

    def want(self, row, col, at_centre, quarter) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs):
        row, col, at_centre, turns = self.pose()
        per_quarter = self.per_quarter
        quarter = turns // per_quarter
        want = self.want(row, col, at_centre, quarter)
        diff = (np.where(want >= 0, want, quarter) * per_quarter - turns) % (4 * per_quarter)
        turn = np.where(diff <= 2 * per_quarter, LEFT, RIGHT)  # counter-clockwise (left) raises the angle
        return np.where(at_centre & (diff != 0), turn, FORWARD)


@register_algorithm
class MazeOracle(GridWalker):
    """Knows maze and target: the BFS shortest path along cell centres, every episode."""

    name = "oracle"

    def start_plan(self, info):
        seeds = np.zeros(info["open_dirs"].shape[:3], dtype=bool)
        seeds[self.rows, info["target"][:, 0], info["target"][:, 1]] = True
        self.dist = bfs(info["open_dirs"], seeds)

    def want(self, row, col, at_centre, quarter):
        return self.descend(self.dist, self.info["open_dirs"], row, col, quarter)


@register_algorithm
class MazeMemory(GridWalker):
    """Explores depth-first, remembers walls and the target, then walks the shortest known path."""

    name = "memory"

    def start_plan(self, info):
        shape = info["open_dirs"].shape
        self.known = np.zeros(shape, dtype=bool)  # passages seen open (from a visited cell)
        self.visited = np.zeros(shape[:3], dtype=bool)
        self.target_known = np.zeros(self.batch_size, dtype=bool)
        self.target = np.zeros((self.batch_size, 2), dtype=np.int64)
        self.heading_to = np.zeros((self.batch_size, 2), dtype=np.int64)  # the cell the current stride enters

    def want(self, row, col, at_centre, quarter):
        dirs = self.info["open_dirs"]
        size = dirs.shape[1]
        b = self.rows[at_centre]
        r, c = row[at_centre], col[at_centre]
        self.visited[b, r, c] = True
        self.known[b, r, c] = dirs[b, r, c]  # the walls of the cell we stand in
        for h in range(4):  # ...are also seen from the other side
            nr, nc = r + STEPS[h, 0], c + STEPS[h, 1]
            ok = (nr >= 0) & (nr < size) & (nc >= 0) & (nc < size) & dirs[b, r, c, h]
            self.known[b[ok], nr[ok], nc[ok], (h + 2) % 4] = True
        seeds = np.where(self.target_known[:, None, None],
                         np.zeros_like(self.visited), ~self.visited)
        seeds[self.rows[self.target_known], self.target[self.target_known, 0], self.target[self.target_known, 1]] = True
        dist = bfs(self.known, seeds)
        want = self.descend(dist, self.known, row, col, quarter)
        going = np.where(want >= 0, want, quarter)
        moving = at_centre & (going == quarter)
        self.heading_to[moving] = np.stack([row + STEPS[going, 0], col + STEPS[going, 1]], axis=1)[moving]
        return want

    def observe(self, actions, rewards, next_obs, episode_done):
        found = episode_done & (rewards > 0.5)
        self.target[found] = self.heading_to[found]
        self.target_known |= found


@register_algorithm
class MazeWallFollower(GridWalker):
    """The classical rule for mazes without a map: a hand on the left wall. At each cell it takes the
    first way out of left, ahead, right, back, and nothing else: no memory, no knowledge of the target
    until it walks into it, the same walk in every episode. In a perfect maze it reaches every cell.
    What a reactive policy can do (the ``rl2`` policies' loops are reactive too), from the walls of the
    cell it stands in only."""

    name = "wall-follower"

    def start_plan(self, info):
        self.way = np.full(self.batch_size, -1)  # the heading chosen at this centre, until it moves on

    def want(self, row, col, at_centre, quarter):
        dirs = self.info["open_dirs"][self.rows, row, col]  # (B, 4): the ways out of the cell
        for turn in (1, 0, 3, 2):  # left, ahead, right, back
            h = (quarter + turn) % 4
            pick = at_centre & (self.way < 0) & dirs[self.rows, h]
            self.way[pick] = h[pick]
        want = np.where(at_centre, self.way, -1)
        self.way[at_centre & (self.way == quarter)] = -1  # facing its way: this action leaves the centre
        return want

    def observe(self, actions, rewards, next_obs, episode_done):
        self.way[episode_done] = -1  # a new episode restarts at the start, facing its first heading
