"""The maze family (paper Section 3.3): ViZDoom mazes, the target cell in red, a trial of n episodes
on one maze and target, each episode restarting at the start.

Rewards: +1 on reaching the target (the episode ends), -0.001 per forward stride blocked by a wall,
-0.04 per step (a low-level action: a cell move, ``-move``, costs its strides). Horizon 250 on small
(5x5) and 1000 on large (9x9), in steps. Observations: RGB 40 wide x 30 high in [-1, 1], shape
(3, 30, 40). Actions and the map geometry: see ``engine``.

Engines run in worker processes (``MazeVecEnv``); a batch larger than the pool of games is played in
consecutive groups (``VecEnv.batches``), each game switching map inside its WAD (a millisecond, where a
new engine costs ~150 ms).
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from rl2bench.registry import register_family

from ..base import Cell, EnvSpec, StepResult, TaskFamily, VecEnv
from . import layout
from .engine import (
    GEOMETRY,
    N_ACTIONS,
    OBS_SHAPE,
    STRIDE,
    THREADS_PER_WORKER,
    TURN_CHOICES,
    TURN_DEGREES,
    import_vizdoom,
    kill_engines,
)

NAMED_SIZES = {"small": 5, "large": 9}
DEFAULT_EPISODES = 5  # evaluation: Table 3 reports episodes 1..5; RL^2 trains on small-e2
REWARD_TARGET, REWARD_WALL, REWARD_STEP = 1.0, -0.001, -0.04
GAMES_PER_WORKER = 8


def default_horizon(size: int) -> int:
    """250 steps for 5x5; the paper multiplies by 4 for 9x9 (about the cell-count ratio, rounded up)."""
    return 250 * math.ceil(size * size / 25)


@dataclass(frozen=True)
class MazeCell(Cell):
    """``small`` (5x5), ``large`` (9x9) or ``g<size>``; ``-e<episodes>`` (default 5), ``-t<horizon>``,
    ``-turn<degrees>`` (a coarser turn action, 45 or 90; default 22.5, the engine's 16 headings),
    ``-move`` (forward is a cell move, ``engine``'s docstring; with ``-turn90`` only)."""

    size: int
    episodes: int = DEFAULT_EPISODES
    horizon: int = 0  # 0: default_horizon(size)
    turn: float = TURN_DEGREES
    cell_moves: bool = False

    @property
    def geometry(self) -> str:
        """The layout stream's name: depends on the maze size only, so small and small-e2 share mazes."""
        names = {v: k for k, v in NAMED_SIZES.items()}
        return names.get(self.size, f"g{self.size}")

    @property
    def steps(self) -> int:
        return self.horizon or default_horizon(self.size)

    @property
    def name(self) -> str:
        parts = [self.geometry]
        if self.episodes != DEFAULT_EPISODES:
            parts.append(f"e{self.episodes}")
        if self.horizon and self.horizon != default_horizon(self.size):
            parts.append(f"t{self.horizon}")
        if self.turn != TURN_DEGREES:
            parts.append(f"turn{self.turn:g}")
        if self.cell_moves:
            parts.append("move")
        return "-".join(parts)

    @classmethod
    def parse(cls, name: str) -> MazeCell:
        head, *rest = name.strip().split("-")
        if head in NAMED_SIZES:
            size = NAMED_SIZES[head]
        elif m := re.fullmatch(r"g(\d+)", head):
            size = int(m.group(1))
        else:
            raise ValueError(head)
        values: dict[str, Any] = {}
        for part in rest:
            if part == "move" and "cell_moves" not in values:
                values["cell_moves"] = True
                continue
            m = re.fullmatch(r"(e|t|turn)(\d+(?:\.\d+)?)", part)
            if m is None:
                raise ValueError(part)
            key = {"e": "episodes", "t": "horizon", "turn": "turn"}[m.group(1)]
            if key in values:
                raise ValueError(part)
            values[key] = float(m.group(2)) if key == "turn" else int(m.group(2))
        cell = cls(size=size, **values)
        cell.validate()
        return cell

    def validate(self) -> None:
        if not 2 <= self.size <= 30 or self.episodes < 1 or self.horizon < 0 or self.turn not in TURN_CHOICES:
            raise ValueError(self.name)
        if self.cell_moves and self.turn != 90:
            raise ValueError(f"{self.name}: -move needs -turn90 (a move starts on a centre facing a wall or a way out)")


_LIVE: weakref.WeakSet[MazeVecEnv] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for env in list(_LIVE):
        env.close()


class MazeVecEnv(VecEnv):
    """Instances stepped together by worker processes, each serving up to ``GAMES_PER_WORKER`` games.

    Instances whose trial is finished get reward 0 and their actions are ignored. Engine processes are
    always cleaned up: on ``close()`` (also called by the protocol on errors, Ctrl-C and SIGTERM), when a
    worker crashes, and at interpreter exit; a worker whose parent dies, however it died (SIGKILL too), closes
    its games within a second (``engine.serve``), and a worker killed outright leaves its engines, their
    shared memory and its folder to its janitor (``engine.Janitor``).
    """

    _POSE = ("obs", "x", "y", "angle")  # what a finished instance keeps of its last step

    def __init__(self, spec: EnvSpec, layouts: dict[str, np.ndarray], workers: int | None = None,
                 games_per_worker: int = GAMES_PER_WORKER, turn_degrees: float = TURN_DEGREES,
                 cell_moves: bool = False, engine_threads: int = THREADS_PER_WORKER):
        import_vizdoom()  # fail early, in the parent, with the install hint
        self.spec = spec
        self.turn_degrees = turn_degrees
        self.cell_moves = cell_moves
        self.engine_threads = engine_threads
        self.layouts = layouts
        self.n_total = len(layouts["target"])
        workers = workers or max(1, min(os.cpu_count() or 1, 2))
        self.group_size = min(self.n_total, workers * games_per_worker)
        self.n_workers = min(workers, self.group_size)
        self.games = math.ceil(self.group_size / self.n_workers)  # per worker
        self.n_groups = math.ceil(self.n_total / self.group_size)
        self.group = 0
        self.batch_size = self.group_size
        # Workers that fill the machine get a core each, with their engines: a tic's round trip between a
        # worker and its engine then stays on one core (measured 2026-12-07: the engines step ~20% faster).
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self._cores = allowed if 1 < len(allowed) <= self.n_workers else []
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._engine_pids: list[int] = []
        self._shm: list[str] = []
        self._workdirs: list[str] = []  # each worker's temp folder (WAD, engine config), removed on close
        self._closed = False
        _LIVE.add(self)
        try:
            for w in range(self.n_workers):
                self._start_worker(w)
            for w in range(self.n_workers):
                _, pids, shm, workdir = self._recv(w)
                self._engine_pids += pids
                self._shm += shm
                self._workdirs.append(workdir)
        except BaseException:
            self.close()
            raise

    @property
    def pinned_cores(self) -> list[int]:
        """The cores the workers are pinned to, one each (none when they do not fill the machine)."""
        return list(self._cores)

    # -- worker plumbing -------------------------------------------------------------------------
    def _start_worker(self, w: int) -> None:
        """A fresh interpreter (no fork of a threaded parent, no re-import of the user's main module)
        connected by a socket pair, in its own session so that Ctrl-C reaches only this process."""
        ours, theirs = socket.socketpair()
        code = f"from rl2bench.tasks.maze.engine import serve; serve({theirs.fileno()}, {os.getpid()})"
        proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),), start_new_session=True,
                                stdin=subprocess.DEVNULL)
        theirs.close()
        if self._cores:  # before the worker starts its engines, which inherit the core
            os.sched_setaffinity(proc.pid, {self._cores[w % len(self._cores)]})
        conn = Connection(ours.detach())
        self._procs.append(proc)
        self._conns.append(conn)
        conn.send((self._share(w), self.games, self.turn_degrees, self.cell_moves, self.engine_threads))

    def _share(self, w: int) -> dict[str, np.ndarray]:
        """Worker w plays positions [w*G, (w+1)*G) of every group: instance k*group_size + w*G + g is
        its map k*G + g (indices past the end are padding, never activated)."""
        k, g = np.meshgrid(np.arange(self.n_groups), np.arange(self.games), indexing="ij")
        index = (k * self.group_size + w * self.games + g).ravel()
        return layout.take(self.layouts, np.minimum(index, self.n_total - 1))

    def _recv(self, w: int) -> tuple:
        conn, proc = self._conns[w], self._procs[w]
        try:
            while not conn.poll(1.0):  # a dead worker whose socket is still held open must not hang us
                if proc.poll() is not None:
                    raise EOFError
            message = conn.recv()
        except (EOFError, OSError):
            message = ("error", f"worker {w} (pid {proc.pid}) died")
        if message[0] == "error":
            self.close()
            raise RuntimeError(f"maze engine worker failed:\n{message[1]}")
        return message

    def _send(self, w: int, command: str, args: tuple) -> None:
        if self._closed:
            raise RuntimeError("environment is closed")
        try:
            self._conns[w].send((command, args))
        except OSError:
            self.close()
            raise RuntimeError(f"maze engine worker {w} died") from None

    def _call(self, command: str, per_worker_args: list[tuple]) -> list[Any]:
        for w, args in enumerate(per_worker_args):
            self._send(w, command, args)
        return [self._recv(w)[1] for w in range(self.n_workers)]

    def _gather(self, outs: list) -> dict[str, np.ndarray]:
        n = self.batch_size
        return {name: np.concatenate([getattr(o, name) for o in outs])[:n]
                for name in ("obs", "x", "y", "angle", "hit", "cost", "reached", "end_x", "end_y")}

    # -- VecEnv ----------------------------------------------------------------------------------
    def batches(self):
        for k in range(self.n_groups):
            yield self.select_group(k)

    def select_group(self, k: int) -> int:
        """Make group ``k`` the one the next ``reset`` plays (RL^2 training picks groups of a large
        pool out of order); returns its size."""
        if not 0 <= k < self.n_groups:
            raise IndexError(k)
        self.group = k
        self.batch_size = min(self.group_size, self.n_total - k * self.group_size)
        return self.batch_size

    def _group_layouts(self) -> dict[str, np.ndarray]:
        start = self.group * self.group_size
        return layout.take(self.layouts, slice(start, start + self.batch_size))

    def reset(self) -> np.ndarray:
        n, episodes = self.batch_size, self.spec.n_episodes
        counts = [int(np.clip(n - w * self.games, 0, self.games)) for w in range(self.n_workers)]
        out = self._gather(self._call("load", [(self.group, c) for c in counts]))
        self._t = np.zeros(n, dtype=np.int64)
        self._episode = np.zeros(n, dtype=np.int64)
        self._trial_done = np.zeros(n, dtype=bool)
        self._lengths = np.zeros((n, episodes), dtype=np.int64)
        self._success = np.zeros((n, episodes), dtype=bool)
        self._wall_hits = np.zeros(n, dtype=np.int64)
        self._pose = out
        return self._observation(out["obs"])

    @staticmethod
    def _observation(frames: np.ndarray) -> np.ndarray:
        return frames.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)

    def step(self, actions: np.ndarray) -> StepResult:
        if self._trial_done.all():
            raise RuntimeError("trial is over; call reset()")
        actions = np.asarray(actions, dtype=np.int64)
        for w in range(self.n_workers):
            self.send_step(w, actions[self.worker_rows(w)])
        parts = [self.recv_step(w) for w in range(self.n_workers)]
        info = {key: np.concatenate([p.info[key] for p in parts]) for key in parts[0].info}
        obs, reward, episode_done, trial_done = (np.concatenate([getattr(p, name) for p in parts])
                                                 for name in ("obs", "reward", "episode_done", "trial_done"))
        return StepResult(obs, reward, episode_done, trial_done, info)

    # -- stepping one worker's rows: a rollout may act on one worker's games while another steps its own
    def worker_rows(self, w: int) -> slice:
        """The rows of the current group that worker ``w`` plays (``_share``)."""
        start = min(w * self.games, self.batch_size)
        return slice(start, min(start + self.games, self.batch_size))

    def send_step(self, w: int, actions: np.ndarray) -> None:
        """Worker ``w``'s rows act (``actions``: one per row of ``worker_rows(w)``; rows whose trial is over
        are ignored); ``recv_step(w)`` returns their step."""
        rows = self.worker_rows(w)
        active = ~self._trial_done[rows]
        padded = [np.full(self.games, fill, dtype=dtype) for fill, dtype in ((-1, np.int64), (1, np.int64),
                                                                               (False, bool))]
        padded[0][: len(active)] = np.where(active, actions, -1)
        padded[1][: len(active)] = self.spec.horizon - self._t[rows]  # low-level actions left in the episode
        padded[2][: len(active)] = self._episode[rows] + 1 < self.spec.n_episodes
        self._send(w, "step", tuple(padded))

    def ready(self, workers: list[int]) -> list[int]:
        """Those of ``workers`` whose step has come back, waiting until one has."""
        by_conn = {self._conns[w]: w for w in workers}
        while True:
            done = wait(list(by_conn), timeout=1.0)
            if done:
                return sorted(by_conn[c] for c in done)
            for w in workers:  # a dead worker whose socket is still held open must not hang us
                if self._procs[w].poll() is not None:
                    return [w]  # recv_step reports it

    def recv_step(self, w: int) -> StepResult:
        """The step of worker ``w``'s rows that ``send_step(w, ...)`` started."""
        rows = self.worker_rows(w)
        n = rows.stop - rows.start
        reply = self._recv(w)[1]
        out = {name: getattr(reply, name)[:n] for name in self._POSE + ("hit", "cost", "reached", "end_x", "end_y")}
        active = ~self._trial_done[rows]
        reached = out["reached"] & active
        hit = out["hit"] & active
        cost = np.where(active, out["cost"], 0)
        reward = np.where(active, REWARD_STEP * cost + REWARD_WALL * hit + REWARD_TARGET * reached, 0.0)
        t, episode = self._t[rows], self._episode[rows]  # views: updated in place
        self._wall_hits[rows] += hit
        t += cost
        done = active & (reached | (t >= self.spec.horizon))
        more = episode + 1 < self.spec.n_episodes
        ended = np.flatnonzero(done)
        self._lengths[rows][ended, episode[ended]] = t[ended]
        self._success[rows][ended, episode[ended]] = reached[ended]
        self._trial_done[rows] |= done & ~more
        episode += done & more
        t[done] = 0
        # Finished instances keep their last pose and frame.
        for name in self._POSE:
            self._pose[name][rows][active] = out[name][active]
        end_x = np.where(active, out["end_x"], self._pose["x"][rows])
        end_y = np.where(active, out["end_y"], self._pose["y"][rows])
        # x, y: where the action left the player, before the restart of an episode that ended (the path's
        # last point: ``tasks/maze/paths.py`` draws the paths from them).
        return StepResult(self._observation(self._pose["obs"][rows]), reward, done, self._trial_done[rows].copy(),
                          {"wall_hit": hit, "reached": reached, "x": end_x, "y": end_y})

    def trial_metrics(self) -> dict[str, np.ndarray]:
        metrics: dict[str, np.ndarray] = {}
        for e in range(self.spec.n_episodes):
            metrics[f"len_ep{e + 1}"] = self._lengths[:, e].copy()
        for e in range(self.spec.n_episodes):
            metrics[f"success_ep{e + 1}"] = self._success[:, e].astype(np.int64)
        metrics["wall_hits"] = self._wall_hits.copy()
        return metrics

    def privileged_info(self) -> dict[str, Any]:
        """Hidden state, for reference agents flagged ``privileged`` only (see ``Agent.privileged``):
        the current group's layouts (``open_dirs`` (B, N, N, 4), ``start``, ``heading``, ``target``),
        the live pose (``x``, ``y`` map units, ``angle`` degrees) and the map's geometry."""
        group = self._group_layouts()
        return {"open_dirs": layout.open_dirs(group), "start": group["start"], "heading": group["heading"],
                "target": group["target"], "x": self._pose["x"].copy(), "y": self._pose["y"].copy(),
                "angle": self._pose["angle"].copy(), "geometry": GEOMETRY, "stride": STRIDE,
                "turn_degrees": self.turn_degrees, "episode": self._episode.copy(), "t": self._t.copy()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", ()))
            except (OSError, ValueError):
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for conn in self._conns:
            conn.close()
        kill_engines(self._engine_pids, self._shm)  # a crashed or killed worker leaves its engines behind
        for workdir in self._workdirs:  # a worker killed before its own cleanup leaves its folder
            shutil.rmtree(workdir, ignore_errors=True)
        _LIVE.discard(self)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


@register_family
class MazeFamily(TaskFamily[MazeCell]):
    name = "maze"
    cell_type = MazeCell
    default_cells = ("small", "large")
    cell_help = ("small (5x5), large (9x9) or g<size>, optionally -e<episodes> (default 5) -t<horizon> "
                 "-turn45|-turn90, -turn90-move (forward walks a whole cell)")
    # The reference agents have no grid, so no tuning runs; a future RL^2 grid tunes on 100 mazes.
    tune_instances = 100
    # Normalized scores (the site's aggregate table and performance profile): the trial return between a
    # random walk (0) and the shortest path that knows the map (1). Not in the paper, whose Table 3 reports
    # lengths and success rates, as this family's own page still does.
    normalize_by = ("random", "oracle")

    def cell_order(self, name: str) -> tuple:
        """One action scheme's cells together, each in the paper's order (small before large)."""
        cell = MazeCell.parse(name)
        return (cell.turn, cell.cell_moves, cell.episodes, cell.horizon, cell.size, name)

    def spec(self, cell: MazeCell) -> EnvSpec:
        return EnvSpec(family=self.name, n_states=cell.size * cell.size, n_actions=N_ACTIONS, horizon=cell.steps,
                       n_episodes=cell.episodes, obs_shape=OBS_SHAPE)

    def sample(self, cell: MazeCell, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
        return layout.generate(cell.size, rng, count)

    def sample_instances(self, cell: MazeCell, root_seed: int, phase: str, count: int) -> dict[str, np.ndarray]:
        """Training configurations are the fixed pool of 1000 (paper); tuning and evaluation ones are
        drawn from their own streams and rejected where they equal a training configuration."""
        return layout.held_out_set(root_seed, phase, cell.geometry, cell.size, count)

    def make_env(self, cell: MazeCell, instances: dict[str, np.ndarray], rng: np.random.Generator) -> MazeVecEnv:
        return MazeVecEnv(self.spec(cell), instances, turn_degrees=cell.turn, cell_moves=cell.cell_moves)

    def render_markdown(self, results, title: str = "", command: str = "") -> str | None:
        from .metrics import render_markdown

        return render_markdown(results, title, command)

