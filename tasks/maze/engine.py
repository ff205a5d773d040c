"""One worker process running several DoomGame engines: the only module that imports vizdoom.

Action scheme (the "low-level actions" every agent uses, pixels or not):
  0 forward: a 15-tic stride (7 tics forward, 4 braking backward, 4 still) that ends at rest, exactly
    ``STRIDE`` map units further in free space (Doom's momentum makes plain forward tics drift; a
    stride that ends at rest is deterministic and translation invariant in the engine's fixed point);
  1 turn left, 2 turn right: exactly ``TURN_DEGREES`` in one tic (16 headings), or a coarser turn of a
    cell's choosing (``TURN_CHOICES``: 45 or 90 degrees, still one tic).
The cell pitch is 4 strides and a quarter turn 4 turns (2 at 45, 1 at 90 degrees): a "high-level" move
(turn, then cross a cell) is 5-8 low-level actions; the paper's Section 3.3 says "around 5".

Cell moves (``cell_moves``, 90-degree turns only): forward walks from a cell centre to the next one, the
strides of one cell (``STRIDES_PER_CELL``, or ``ENTER_STRIDES`` into the target) in one action, and a wall
ahead makes it a bump that stays on the centre. The player then always stands on a centre facing a
cardinal heading, and every decision is a choice between the ways out of a cell. The paper's agent had to
learn these high-level moves itself; this scheme gives them (Oh et al. 2016's kind of action). Its
time and rewards still count strides: an action costs the strides it walked (a bump or a turn, one).

Where an engine's time goes (measured 2026-12-07): every tic is a round trip between the worker and the
engine's own process (vizdoom's controller sends one message per tic and waits), ~15-75 us each, so a stride
(15 tics) costs ~1 ms and a cell move ~4 ms, and rendering adds ~0.2 ms per observed frame. vizdoom lets go
of the GIL while it waits, so a worker acts its games on ``THREADS_PER_WORKER`` threads: while one engine
computes a tic, the others' round trips proceed. A rollout of the cell-move zoo policy then waits ~15% less
on its engines. Four threads beat eight once each worker steps on its own (``MazeVecEnv.send_step``): the
engines and workers spend ~10% less CPU handing the GIL round (rollouts 3.6 s against 4.0 s an iteration).
Each game's outcome depends on its own actions only, so the numbers are the same. Workers
that fill the machine are pinned to a core each, their engines with them (``MazeVecEnv``), so that a round
trip never crosses cores: another ~20% off the engines' time.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, SupportsIndex

import numpy as np

from .layout import STEPS, open_dirs
from .wad import Geometry, write_wad

STRIDE = 24.4344329834  # measured: map units of one forward stride in free space (vizdoom 1.3.2)
STRIDE_TICS = (7, 4, 4)  # forward, backward (braking), still
TURN_DEGREES = 22.5
STRIDES_PER_CELL = 4
THREADS_PER_WORKER = 4  # threads on which a worker's games act (module docstring)
WALL = 16.0
GEOMETRY = Geometry(cell=STRIDES_PER_CELL * STRIDE - WALL, wall=WALL)
N_ACTIONS = 3
FORWARD, LEFT, RIGHT = 0, 1, 2
SCREEN_H, SCREEN_W, DOWNSCALE = 120, 160, 4
OBS_SHAPE = (3, SCREEN_H // DOWNSCALE, SCREEN_W // DOWNSCALE)  # (3, 30, 40): the paper's 40 x 30 RGB
HIT_FRACTION = 0.5  # a forward stride that advances less than this along the heading hit a wall
TURNS_PER_QUARTER = round(90 / TURN_DEGREES)
TURN_CHOICES = (22.5, 45.0, 90.0)  # degrees per turn action: a whole number of turns per quarter turn
# Strides from a neighbour's centre until the player's centre is inside the target cell's open square.
ENTER_STRIDES = math.floor((WALL + GEOMETRY.cell / 2) / STRIDE) + 1


def turns_per_quarter(turn_degrees: float) -> int:
    return round(90 / turn_degrees)


def shortest_actions(moves: int, quarter_turns: int, turn_degrees: float = TURN_DEGREES) -> int:
    """Low-level actions of the shortest cell-centre walk of ``moves`` cell-to-cell moves (the BFS path
    length): each quarter turn is ``turns_per_quarter`` turns (at a centre), each move but the last
    STRIDES_PER_CELL strides, the last ENTER_STRIDES (the episode ends as the player enters the target)."""
    return turns_per_quarter(turn_degrees) * quarter_turns + STRIDES_PER_CELL * (moves - 1) + ENTER_STRIDES


def import_vizdoom():
    """vizdoom, or a UserError that says how to install it."""
    from rl2bench.errors import UserError

    try:
        import vizdoom
    except Exception as exc:  # ImportError, or a broken binary wheel
        raise UserError(f'the maze task needs ViZDoom: pip install "rl2bench[maze]" ({exc})') from None
    return vizdoom


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a /proc scan, no psutil)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def shared_memory_of(pid: int) -> list[str]:
    """The /dev/shm objects of the engine ``pid`` (named after its ``+viz_instance_id``), which outlive
    an engine that is killed."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return []
    if "+viz_instance_id" not in argv[:-1]:
        return []
    tag = argv[argv.index("+viz_instance_id") + 1]
    return [f"/dev/shm/ViZDoom{kind}{tag}" for kind in ("SM", "MQCtr", "MQDoom")]


def kill_engines(pids: list[int], shm: list[str]) -> None:
    """SIGKILL engine processes (they ignore SIGTERM) and remove their shared-memory objects."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5.0  # SIGKILL is delivered asynchronously: wait until they are gone
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    for path in shm:
        try:
            os.unlink(path)
        except OSError:
            pass


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def downscale(screen: np.ndarray) -> np.ndarray:
    """(3, 120, 160) uint8 -> (3, 30, 40) uint8 by 4x4 box averages: integer sums of strided slices,
    ~8x faster than a reshaped ``sum(axis=(2, 4))`` (which dominated a step)."""
    x = screen.astype(np.uint16)
    rows = x[:, 0::4] + x[:, 1::4] + x[:, 2::4] + x[:, 3::4]
    box = rows[:, :, 0::4] + rows[:, :, 1::4] + rows[:, :, 2::4] + rows[:, :, 3::4]
    return (box >> 4).astype(np.uint8)


@dataclass
class StepOut:
    obs: np.ndarray  # (G, 3, 30, 40) uint8
    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    hit: np.ndarray  # bool: forward stride blocked by a wall
    cost: np.ndarray  # int: low-level actions the action took (1, or a cell move's strides)
    reached: np.ndarray  # bool: the player stands in the target cell (before any restart)
    end_x: np.ndarray  # where the action left the player, before any restart (the path's last point)
    end_y: np.ndarray


class Engines:
    """``n_games`` DoomGames on the maps of one WAD; instance ``k * n_games + g`` of this worker's share
    is map ``k * n_games + g`` (played by game g in group k). A turn action turns ``turn_degrees``;
    ``cell_moves``: a forward action is a cell move (module docstring). The games act on ``threads``
    threads (module docstring); each game's outcome is its own, so the numbers do not depend on them."""

    def __init__(self, layouts: dict[str, np.ndarray], n_games: int, workdir: str, janitor: Janitor | None = None,
                 turn_degrees: float = TURN_DEGREES, cell_moves: bool = False, threads: int = THREADS_PER_WORKER):
        if cell_moves and turn_degrees != 90:
            raise ValueError("cell moves need 90-degree turns")
        vzd = import_vizdoom()
        self.vzd = vzd
        self.workdir = workdir
        self.n_games = n_games
        self.targets = layouts["target"]
        self.cell_moves = cell_moves
        self.open = open_dirs(layouts)  # (maps, N, N, 4): the ways out of each cell, for cell moves
        self.names = write_wad(os.path.join(workdir, "mazes.wad"), layouts, GEOMETRY)
        self.games: list[Any] = []  # vizdoom.DoomGame
        self.engine_pids: list[int] = []
        self.shm: list[str] = []
        self.group = 0
        forward: list[float] = [1, 0, 0]
        # action -> [(buttons, tics), ...]: the button values of each segment and how long it is held
        self._patterns: dict[int, list[tuple[list[float], int]]] = {
            FORWARD: [(forward, STRIDE_TICS[0]), ([0, 1, 0], STRIDE_TICS[1]), ([0, 0, 0], STRIDE_TICS[2])],
            LEFT: [([0, 0, -turn_degrees], 1)],
            RIGHT: [([0, 0, turn_degrees], 1)],
        }
        os.chdir(workdir)  # the engine writes ./_vizdoom/ here, never in the user's folder
        for g in range(min(n_games, len(self.names))):
            game = vzd.DoomGame()
            game.set_doom_config_path(os.path.join(workdir, "_vizdoom.ini"))
            game.set_doom_scenario_path(os.path.join(workdir, "mazes.wad"))
            game.set_doom_map(self.names[g])
            game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
            game.set_screen_format(vzd.ScreenFormat.CRCGCB)  # channels first: (3, 120, 160)
            game.set_window_visible(False)
            game.set_sound_enabled(False)
            game.set_render_hud(False)
            game.set_render_weapon(False)
            game.set_render_crosshair(False)
            game.set_render_decals(False)
            game.set_render_particles(False)
            game.set_episode_start_time(10)  # with 0 the first action of an episode is swallowed
            game.set_episode_timeout(0)
            for button in (vzd.Button.MOVE_FORWARD, vzd.Button.MOVE_BACKWARD, vzd.Button.TURN_LEFT_RIGHT_DELTA):
                game.add_available_button(button)
            for var in (vzd.GameVariable.POSITION_X, vzd.GameVariable.POSITION_Y, vzd.GameVariable.ANGLE):
                game.add_available_game_variable(var)
            game.set_mode(vzd.Mode.PLAYER)
            known = set(child_pids(os.getpid()))
            game.init()
            new = sorted(set(child_pids(os.getpid())) - known)
            shm = [path for pid in new for path in shared_memory_of(pid)]
            self.engine_pids += new
            self.shm += shm
            if janitor is not None:
                janitor.note(new, shm)
            self.games.append(game)
        self.active = np.zeros(len(self.games), dtype=bool)
        self.pose = np.zeros((len(self.games), 3))  # last observed (x, y, angle) per game
        self._threads = max(1, min(threads, len(self.games)))
        self._pool = ThreadPoolExecutor(self._threads) if self._threads > 1 else None

    def _read(self, g: SupportsIndex) -> tuple[np.ndarray, float, float, float]:
        state = self.games[g].get_state()
        x, y, angle = state.game_variables
        self.pose[g] = (x, y, angle)
        return downscale(state.screen_buffer), x, y, angle

    def _empty(self) -> StepOut:
        n = len(self.games)
        return StepOut(np.zeros((n, *OBS_SHAPE), np.uint8), np.zeros(n), np.zeros(n), np.zeros(n),
                       np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n), np.zeros(n))

    def load(self, group: int, count: int) -> StepOut:
        """Point the first ``count`` games at group ``group``'s maps and start their first episode."""
        self.group = group
        self.active = np.arange(len(self.games)) < count
        for g in np.flatnonzero(self.active):
            self.games[g].set_doom_map(self.names[group * self.n_games + g])  # read by the next new_episode
        return self.restart(self.active)

    def restart(self, mask: np.ndarray) -> StepOut:
        out = self._empty()

        def start(g: int) -> None:
            self.games[g].new_episode()
            out.obs[g], out.x[g], out.y[g], out.angle[g] = self._read(g)
            out.end_x[g], out.end_y[g] = out.x[g], out.y[g]

        self._each([int(g) for g in np.flatnonzero(mask & self.active)], start)
        return out

    def step(self, actions: np.ndarray, budget: np.ndarray, more: np.ndarray) -> StepOut:
        """Each active game with action >= 0 acts, taking at most ``budget`` low-level actions (what is
        left of its episode's horizon). A game whose episode ends here (target reached, or the budget
        spent) and that has ``more`` episodes to play starts the next one before observing, so the
        returned observation is the next episode's first."""
        out = self._empty()
        games = [int(g) for g in np.flatnonzero(self.active & (actions >= 0))]
        self._each(games, lambda g: self._step_game(g, int(actions[g]), int(budget[g]), bool(more[g]), out))
        return out

    def _each(self, games: list[int], work: Callable[[int], None]) -> None:
        """``work(g)`` for every game, the games dealt round-robin to the pool's threads."""
        def lane(members: list[int]) -> None:
            for g in members:
                work(g)

        if self._pool is None or len(games) < 2:
            lane(games)
            return
        lanes = [games[k::self._threads] for k in range(self._threads)]
        for future in [self._pool.submit(lane, members) for members in lanes if members]:
            future.result()

    def _step_game(self, g: int, action: int, budget: int, more: bool, out: StepOut) -> None:
        game = self.games[g]
        x0, y0, angle0 = self.pose[g]
        strides = self._cell_move(g, x0, y0, angle0) if self.cell_moves and action == FORWARD else 1
        pattern = self._patterns[action] if strides else [([0, 0, 0], 1)]  # a bump: time passes
        cost = max(1, min(strides, budget))
        out.cost[g] = cost
        segments = pattern * cost
        for k, (buttons, tics) in enumerate(segments):
            game.set_action(buttons)
            game.advance_action(tics, k == len(segments) - 1)  # render only the last segment
        obs, x, y, angle = self._read(g)
        out.end_x[g], out.end_y[g] = x, y
        if action == FORWARD:
            rad = np.deg2rad(angle0)
            advance = (x - x0) * np.cos(rad) + (y - y0) * np.sin(rad)
            out.hit[g] = advance < HIT_FRACTION * STRIDE
        row, col, inside = GEOMETRY.cell_of(x, y)
        tr, tc = self.targets[self.group * self.n_games + g]
        out.reached[g] = bool(inside and row == tr and col == tc)
        if (out.reached[g] or cost >= budget) and more:
            game.new_episode()
            obs, x, y, angle = self._read(g)
        out.obs[g], out.x[g], out.y[g], out.angle[g] = obs, x, y, angle

    def _cell_move(self, g: int, x: float, y: float, angle: float) -> int:
        """Strides of a cell move from the centre at (x, y) facing ``angle``: none into a wall, the
        target's ``ENTER_STRIDES`` into the target cell (the episode ends on entering), else a cell's."""
        row, col, _ = GEOMETRY.cell_of(x, y)
        heading = round(angle / 90) % 4
        m = self.group * self.n_games + g
        if not self.open[m, row, col, heading]:
            return 0
        if (row + STEPS[heading, 0], col + STEPS[heading, 1]) == tuple(self.targets[m]):
            return ENTER_STRIDES
        return STRIDES_PER_CELL

    def close(self) -> None:
        """Kill the engines first (their state is disposable), then release the Python-side handles:
        ViZDoom's own close() segfaulted inside about one engine in sixteen after a long job (measured,
        cause not found), and a crashing engine spends seconds writing a crash report."""
        kill_engines(self.engine_pids, self.shm)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        for game in self.games:
            try:
                game.close()
            except Exception:
                pass


class Janitor:
    """Cleans up after an engine server that could not (SIGKILLed, by loky's tree kill or by hand): its
    engines, their shared memory and the server's folder. A process outside the server's tree (``janitor.py``)
    holding the read end of a pipe that only the server writes (the engines do not inherit it): it acts once
    the pipe closes, which the kernel does however the server ends; after a clean close it finds nothing to do."""

    def __init__(self, workdir: str):
        read, self.fd = os.pipe()  # neither end inheritable: engines started later hold neither
        try:
            subprocess.Popen([sys.executable, "-S", os.path.join(os.path.dirname(__file__), "janitor.py"), str(read),
                              workdir], pass_fds=(read,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).wait()  # its first process exits at once (janitor.py)
        except OSError:
            pass  # no janitor: a clean close still cleans up
        finally:
            os.close(read)

    def note(self, engine_pids: list[int], paths: list[str]) -> None:
        lines = [f"engine {pid}" for pid in engine_pids] + [f"path {path}" for path in paths]
        try:
            os.write(self.fd, "".join(f"{line}\n" for line in lines).encode())
        except OSError:  # the janitor is gone: nothing to tell it
            pass

    def close(self) -> None:
        os.close(self.fd)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def _parent_gone() -> None:
    raise SystemExit(0)  # in the main thread: the finally below closes the engines


def serve(fd: int, parent: int | None = None) -> None:
    """A worker process's main: serve one ``Engines`` over the connection on ``fd`` until told to close or
    the parent (pid ``parent``) disappears: EOF on the connection, or the parent-death signal and watchdog of
    ``follow_parent``, which end a server that is busy stepping its games too. Started by ``MazeVecEnv`` as
    ``python -c`` in a process group of its own (start_new_session), so a Ctrl-C in the terminal reaches only the
    parent, which then
    closes us. A ``Janitor`` removes what a server killed outright leaves behind."""
    from multiprocessing.connection import Connection

    from rl2bench.processes import follow_parent

    follow_parent(parent, on_death=_parent_gone)
    os.set_inheritable(fd, False)  # engines forked later must not hold our end (hiding a crash from the parent)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # e.g. joblib shutting its workers down: close engines first
    conn = Connection(fd)
    workdir = tempfile.mkdtemp(prefix="rl2bench-maze-")
    janitor = Janitor(workdir)
    engines = None
    try:
        layouts, n_games, turn_degrees, cell_moves, threads = conn.recv()
        engines = Engines(layouts, n_games, workdir, janitor, turn_degrees, cell_moves, threads)
        conn.send(("ready", engines.engine_pids, engines.shm, workdir))
        while True:
            try:
                command, args = conn.recv()
            except (EOFError, OSError):
                break
            if command == "close":
                break
            conn.send(("ok", getattr(engines, command)(*args)))
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        if engines is not None:
            engines.close()
        else:  # stopped while starting its engines (the parent gone, an error): the ones started go too
            started = child_pids(os.getpid())
            kill_engines(started, [path for pid in started for path in shared_memory_of(pid)])
        shutil.rmtree(workdir, ignore_errors=True)
        janitor.close()
