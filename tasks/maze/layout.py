"""Seeded maze layouts on a grid of cells (paper Section 3.3): perfect mazes, a start cell and heading,
a target cell; disjoint training and test configurations; shortest paths by BFS.

Cells are indexed (row, col) with row 0 at the bottom: in the map, x grows with col and y with row.
Headings are quarter turns counter-clockwise from east (0 = east, 1 = north, 2 = west, 3 = south), the
same convention as Doom angles (degrees = 90 * heading).

A batch of layouts is a dict of arrays with the instance as first axis (what ``TaskFamily.sample``
returns): ``open_e[i, r, c]`` is the passage from (r, c) to (r, c+1), ``open_n[i, r, c]`` from (r, c) to
(r+1, c), plus ``start`` (row, col), ``heading`` and ``target`` (row, col).
"""

from __future__ import annotations

import numpy as np

from rl2bench import seeding

# (d_row, d_col) per heading: east, north, west, south.
STEPS = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]])
TRAIN_POOL = 1000  # the paper samples training trials from 1000 fixed configurations
FAMILY = "maze"


def carve(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One perfect maze (a spanning tree of the grid) by randomized depth-first search.

    Depth-first search gives long corridors with few branches, the kind of maze in the paper's
    Figure 4. Generation is per maze (inherently sequential) and costs microseconds per cell.
    """
    open_e = np.zeros((size, size), dtype=bool)
    open_n = np.zeros((size, size), dtype=bool)
    seen = np.zeros((size, size), dtype=bool)
    stack = [(int(rng.integers(size)), int(rng.integers(size)))]
    seen[stack[0]] = True
    while stack:
        r, c = stack[-1]
        options = [h for h in range(4)
                   if 0 <= r + STEPS[h, 0] < size and 0 <= c + STEPS[h, 1] < size
                   and not seen[r + STEPS[h, 0], c + STEPS[h, 1]]]
        if not options:
            stack.pop()
            continue
        h = options[int(rng.integers(len(options)))]
        nr, nc = r + STEPS[h, 0], c + STEPS[h, 1]
        if h == 0:
            open_e[r, c] = True
        elif h == 1:
            open_n[r, c] = True
        elif h == 2:
            open_e[r, nc] = True
        else:
            open_n[nr, c] = True
        seen[nr, nc] = True
        stack.append((nr, nc))
    return open_e, open_n


def generate(size: int, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """``count`` configurations: maze, start cell, start heading and a target cell other than the start."""
    mazes = [carve(size, rng) for _ in range(count)]
    start = rng.integers(size, size=(count, 2))
    # Target uniform over the other size^2 - 1 cells: draw an offset in [1, size^2) from the start index.
    flat = (start[:, 0] * size + start[:, 1] + rng.integers(1, size * size, size=count)) % (size * size)
    return {
        "open_e": np.array([m[0] for m in mazes], dtype=bool).reshape(count, size, size),
        "open_n": np.array([m[1] for m in mazes], dtype=bool).reshape(count, size, size),
        "start": start.astype(np.int64),
        "heading": rng.integers(4, size=count).astype(np.int64),
        "target": np.stack([flat // size, flat % size], axis=1).astype(np.int64),
    }


def config_keys(layouts: dict[str, np.ndarray]) -> list[bytes]:
    """Identity of a configuration as the paper counts them: the maze and the target position."""
    count = len(layouts["target"])
    parts = np.concatenate([layouts["open_e"].reshape(count, -1), layouts["open_n"].reshape(count, -1),
                            layouts["target"].astype(np.uint8)], axis=1)
    return [row.tobytes() for row in parts.astype(np.uint8)]


def take(layouts: dict[str, np.ndarray], index: int | np.ndarray | slice) -> dict[str, np.ndarray]:
    """The layouts at ``index``: one (an int, arrays without the instance axis) or a batch."""
    return {k: v[index] for k, v in layouts.items()}


def training_set(root_seed: int, geometry: str, size: int, count: int = TRAIN_POOL) -> dict[str, np.ndarray]:
    """The fixed pool of training configurations (RL^2 samples one per trial)."""
    return generate(size, seeding.instance_rng(root_seed, "train", FAMILY, geometry), count)


def held_out_set(root_seed: int, phase: str, geometry: str, size: int, count: int,
                 pool: int = TRAIN_POOL) -> dict[str, np.ndarray]:
    """``count`` configurations for ``phase`` ("eval" or "tune") disjoint from the training pool.

    Candidates come from the phase's own stream; any whose maze and target equal a training
    configuration's is rejected and the stream simply continues, so the result is still a pure
    function of (root_seed, phase, geometry, count).
    """
    if phase == "train":
        return training_set(root_seed, geometry, size, count)
    banned = set(config_keys(training_set(root_seed, geometry, size, pool)))
    rng = seeding.instance_rng(root_seed, phase, FAMILY, geometry)
    chunks, have = [], 0
    while have < count:
        batch = generate(size, rng, count - have)
        keep = np.array([k not in banned for k in config_keys(batch)], dtype=bool)
        chunks.append(take(batch, keep))
        have += int(keep.sum())
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def open_dirs(layouts: dict[str, np.ndarray]) -> np.ndarray:
    """(count, size, size, 4) bool: can one walk from the cell in heading 0..3."""
    open_e, open_n = layouts["open_e"], layouts["open_n"]
    out = np.zeros((*open_e.shape, 4), dtype=bool)
    out[..., 0] = open_e
    out[..., 1] = open_n
    out[:, :, 1:, 2] = open_e[:, :, :-1]
    out[:, 1:, :, 3] = open_n[:, :-1, :]
    return out


def bfs(dirs: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Distance in cells from the nearest seed cell, through passages open in ``dirs`` (count, N, N, 4),
    for a whole batch at once (relaxation sweeps on arrays); unreachable cells get -1."""
    size = dirs.shape[1]
    big = size * size + 1
    dist = np.where(seeds, 0, big).astype(np.int64)
    for _ in range(size * size):
        nxt = dist.copy()
        # Cell (r, c) is one further than its neighbour in heading h if the passage between them is open.
        nxt[:, :, :-1] = np.minimum(nxt[:, :, :-1], np.where(dirs[:, :, :-1, 0], dist[:, :, 1:] + 1, big))
        nxt[:, :-1, :] = np.minimum(nxt[:, :-1, :], np.where(dirs[:, :-1, :, 1], dist[:, 1:, :] + 1, big))
        nxt[:, :, 1:] = np.minimum(nxt[:, :, 1:], np.where(dirs[:, :, 1:, 2], dist[:, :, :-1] + 1, big))
        nxt[:, 1:, :] = np.minimum(nxt[:, 1:, :], np.where(dirs[:, 1:, :, 3], dist[:, :-1, :] + 1, big))
        if np.array_equal(nxt, dist):
            break
        dist = nxt
    return np.where(dist >= big, -1, dist)


def distances(layouts: dict[str, np.ndarray], source: np.ndarray) -> np.ndarray:
    """BFS distance (in cells) from ``source`` (count, 2) to every cell of each maze."""
    dirs = open_dirs(layouts)
    seeds = np.zeros(dirs.shape[:3], dtype=bool)
    seeds[np.arange(len(source)), source[:, 0], source[:, 1]] = True
    return bfs(dirs, seeds)


def shortest_path(layouts: dict[str, np.ndarray], i: int) -> list[int]:
    """Headings of one shortest start-to-target path of instance ``i`` (descends the BFS distances)."""
    one = take(layouts, slice(i, i + 1))
    dist = distances(one, one["target"])[0]
    dirs = open_dirs(one)[0]
    r, c = one["start"][0]
    path = []
    while dist[r, c] > 0:
        h = next(h for h in range(4) if dirs[r, c, h] and dist[r + STEPS[h, 0], c + STEPS[h, 1]] == dist[r, c] - 1)
        path.append(h)
        r, c = r + STEPS[h, 0], c + STEPS[h, 1]
    return path


def quarter_turns(heading: int, path: list[int]) -> int:
    """Quarter turns needed to follow ``path`` from ``heading``, turning the short way (180 = 2)."""
    turns, h = 0, heading
    for nh in path:
        d = (nh - h) % 4
        turns += 2 if d == 2 else (1 if d else 0)
        h = nh
    return turns


def render(layouts: dict[str, np.ndarray], i: int) -> str:
    """ASCII picture of instance ``i`` (top row first): S start, T target, # wall."""
    dirs = open_dirs(take(layouts, slice(i, i + 1)))[0]
    size = dirs.shape[0]
    grid = [["#"] * (2 * size + 1) for _ in range(2 * size + 1)]
    for r in range(size):
        for c in range(size):
            grid[2 * r + 1][2 * c + 1] = " "
            if dirs[r, c, 0]:
                grid[2 * r + 1][2 * c + 2] = " "
            if dirs[r, c, 1]:
                grid[2 * r + 2][2 * c + 1] = " "
    (sr, sc), (tr, tc) = layouts["start"][i], layouts["target"][i]
    grid[2 * sr + 1][2 * sc + 1] = "S"
    grid[2 * tr + 1][2 * tc + 1] = "T"
    return "\n".join("".join(row) for row in reversed(grid))
