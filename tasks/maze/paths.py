"""Pictures of maze behaviour, as in the paper's Figure 6: a top-down map of held-out mazes with the path an
algorithm walked in each episode of the trial.

``record_paths`` plays one algorithm and setting on chosen instances through ``protocol.play_trials``
itself: the same instances, chunks, engine groups and agent streams as the run behind a leaderboard, so
the path drawn is the one behind its numbers. Each step's pose comes from the environment's step info
(where the action left the player, before any restart). ``draw_paths`` is a pure function of the recorded
paths; ``python -m rl2bench paths`` (``.paths_cli``) puts the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rl2bench.errors import UserError

from . import layout
from .engine import GEOMETRY
from .wad import Geometry

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from rl2bench.protocol import PreparedAgent

#: Colour and line style of episodes 1, 2, ...: told apart without colour too.
EPISODE_STYLES = [("#1f77b4", "-"), ("#ff7f0e", "-"), ("#2ca02c", "--"), ("#9467bd", "--"), ("#8c564b", ":")]
#: Episode k's path is drawn shifted by (k - 1) times this many points along the diagonal, so that two
#: episodes that walk the same corridor both stay visible (the data keep the exact coordinates).
EPISODE_SHIFT_POINTS = 2.0


@dataclass(frozen=True)
class MazePath:
    """One instance's trial: its layout and, per episode, the path walked."""

    instance: int  # index among the phase's instances
    open_dirs: np.ndarray  # (N, N, 4) bool, as ``layout.open_dirs``
    start: tuple[int, int]  # (row, col)
    heading: int  # quarter turns counter-clockwise from east
    target: tuple[int, int]
    x: np.ndarray  # (points,) map units: each episode's start, then the pose after each of its steps
    y: np.ndarray
    episode: np.ndarray  # (points,) the 1-based episode of each point
    actions: np.ndarray  # (steps,) the actions the trial played, in order
    lengths: np.ndarray  # (episodes,) steps of each episode
    success: np.ndarray  # (episodes,) bool: the episode reached the target
    total: float  # the trial's return


class _Recorder:
    """The ``watch`` of ``play_trials``: every step of every batch of one chunk, per instance."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, np.ndarray]]] = []
        self._open = False

    def __call__(self, actions: np.ndarray, step: Any) -> None:
        if not self._open:  # the first step of a batch: every instance in episode 0, none finished
            self.batches.append([])
            self._episode = np.zeros(len(actions), dtype=np.int64)
            self._finished = np.zeros(len(actions), dtype=bool)
            self._open = True
        self.batches[-1].append({
            "action": np.asarray(actions).copy(), "active": ~self._finished, "episode": self._episode.copy(),
            "x": np.asarray(step.info["x"], dtype=float).copy(), "y": np.asarray(step.info["y"], dtype=float).copy(),
            "reward": np.asarray(step.reward, dtype=float).copy(), "done": np.asarray(step.episode_done).copy(),
            "reached": np.asarray(step.info["reached"]).copy()})
        self._finished = np.asarray(step.trial_done).copy()
        self._episode = self._episode + (np.asarray(step.episode_done) & ~self._finished)
        if self._finished.all():
            self._open = False

    def played(self) -> int:
        return sum(len(b[0]["action"]) for b in self.batches)

    def path(self, local: int, instance: int, layouts: dict[str, np.ndarray], n_episodes: int) -> MazePath:
        """Instance ``local`` of the chunk (``instance`` of the phase), whose layout is ``layouts``' row."""
        offset = 0
        for steps in self.batches:
            size = len(steps[0]["action"])
            if local < offset + size:
                break
            offset += size
        else:
            raise IndexError(local)
        k = local - offset
        rows = [s for s in steps if s["active"][k]]
        episode = np.array([s["episode"][k] for s in rows], dtype=np.int64)
        lengths = np.bincount(episode, minlength=n_episodes)[:n_episodes]
        success = np.zeros(n_episodes, dtype=bool)
        for s in rows:
            if s["done"][k]:
                success[s["episode"][k]] = bool(s["reached"][k])
        one = layout.take(layouts, slice(instance, instance + 1))
        (sr, sc), (tr, tc) = one["start"][0], one["target"][0]
        x0, y0 = (float(v) for v in GEOMETRY.centre(sr, sc))  # every episode starts at the start cell's centre
        xs, ys, eps = [], [], []
        for e in range(n_episodes):
            mine = [s for s in rows if s["episode"][k] == e]
            if not mine:
                continue
            xs += [x0, *(float(s["x"][k]) for s in mine)]
            ys += [y0, *(float(s["y"][k]) for s in mine)]
            eps += [e + 1] * (len(mine) + 1)
        return MazePath(
            instance=instance, open_dirs=layout.open_dirs(one)[0], start=(int(sr), int(sc)),
            heading=int(one["heading"][0]), target=(int(tr), int(tc)), x=np.array(xs), y=np.array(ys),
            episode=np.array(eps, dtype=np.int64), actions=np.array([s["action"][k] for s in rows], dtype=np.int64),
            lengths=lengths, success=success, total=float(sum(s["reward"][k] for s in rows)))


def _past(last: int) -> Callable[[int], bool]:
    """``play_trials``' ``until``: stop once the chunk's instance ``last`` has played."""
    return lambda played: played > last


def record_paths(prepared: PreparedAgent, instances: Sequence[int], n_instances: int, root_seed: int = 0,
                 phase: str = "eval") -> list[MazePath]:
    """The trials of ``instances`` (indices among the phase's ``n_instances``) as a run with ``root_seed``
    plays them: each chunk that holds one is played by ``play_trials`` up to the engine group of the last
    one wanted (the groups before it too: the agent's stream runs through them in order)."""
    from rl2bench.protocol import play_trials

    family, cell = prepared.family, prepared.cell
    if family.name != "maze":
        raise UserError(f"paths are drawn for the maze task only, not {family.name!r}")
    bad = [i for i in instances if not 0 <= i < n_instances]
    if bad:
        raise UserError(f"instance {bad[0]} is out of range: the {phase} phase has instances 0..{n_instances - 1}")
    layouts = family.sample_instances(cell, root_seed, phase, n_instances)
    n_episodes = family.spec(cell).n_episodes
    by_chunk: dict[int, list[int]] = {}
    for i in instances:
        by_chunk.setdefault(i // family.chunk_size, []).append(i)
    found: dict[int, MazePath] = {}
    for chunk, wanted in sorted(by_chunk.items()):
        first = chunk * family.chunk_size
        last = max(wanted) - first
        recorder = _Recorder()
        play_trials(family, cell, prepared.agent_cls, prepared.setting, n_instances, root_seed, phase, chunk,
                    watch=recorder, until=_past(last))
        for i in wanted:
            found[i] = recorder.path(i - first, i, layouts, n_episodes)
    return [found[i] for i in instances]


# -- drawing ---------------------------------------------------------------------------------------------
Segment = tuple[tuple[float, float], tuple[float, float]]


def wall_segments(open_dirs: np.ndarray, geometry: Geometry = GEOMETRY) -> list[Segment]:
    """Map-unit segments of the walls of one maze (``open_dirs`` (N, N, 4)), on the middle lines of the wall
    blocks: the wall east of cell (r, c) runs at x = (c + 1) * pitch + wall / 2, from row r's lower line to its
    upper one (the same for north walls); the outer walls too."""
    size = open_dirs.shape[0]
    p, h = geometry.pitch, geometry.wall / 2

    def line(k: int) -> float:
        return k * p + h

    segments: list[Segment] = []
    for r in range(size):
        for c in range(size):
            if not open_dirs[r, c, 0]:
                segments.append(((line(c + 1), line(r)), (line(c + 1), line(r + 1))))
            if not open_dirs[r, c, 1]:
                segments.append(((line(c), line(r + 1)), (line(c + 1), line(r + 1))))
            if c == 0 and not open_dirs[r, c, 2]:
                segments.append(((line(0), line(r)), (line(0), line(r + 1))))
            if r == 0 and not open_dirs[r, c, 3]:
                segments.append(((line(c), line(0)), (line(c + 1), line(0))))
    return segments


def describe(path: MazePath, episodes: Sequence[int]) -> str:
    """e.g. 'ep 1: target in 87 steps; ep 2: no target (250 steps)'."""
    parts = []
    for e in episodes:
        if e > len(path.lengths) or path.lengths[e - 1] == 0:
            parts.append(f"ep {e}: not played")
        elif path.success[e - 1]:
            parts.append(f"ep {e}: target in {int(path.lengths[e - 1])} steps")
        else:
            parts.append(f"ep {e}: no target ({int(path.lengths[e - 1])} steps)")
    return "\n".join(parts)


def draw_maze(ax: Axes, path: MazePath, episodes: Sequence[int] = (1, 2), geometry: Geometry = GEOMETRY) -> None:
    """One panel: walls (gid 'walls'), target square, start with its heading, and each episode's path (a line
    with gid and label 'episode k' whose data are the recorded map coordinates)."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import offset_copy

    p, h = geometry.pitch, geometry.wall / 2
    size = path.open_dirs.shape[0]
    fig = ax.figure if isinstance(ax.figure, Figure) else ax.figure.figure  # a subfigure's root figure
    tr, tc = path.target
    ax.add_patch(Rectangle((tc * p + h, tr * p + h), p, p, facecolor="#d62728", alpha=0.3, edgecolor="none",
                           label="target", gid="target"))
    for e in episodes:
        colour, style = EPISODE_STYLES[(e - 1) % len(EPISODE_STYLES)]
        mine = path.episode == e
        shift = EPISODE_SHIFT_POINTS * (e - 1)
        transform = offset_copy(ax.transData, fig=fig, x=shift, y=shift, units="points")
        ax.plot(path.x[mine], path.y[mine], color=colour, linestyle=style, linewidth=1.6, alpha=0.9,
                transform=transform, label=f"episode {e}", gid=f"episode {e}", solid_capstyle="round")
    ax.add_collection(LineCollection(wall_segments(path.open_dirs, geometry), colors="black", linewidths=2.2,
                                     capstyle="projecting", label="walls", gid="walls"))
    sx, sy = (float(v) for v in geometry.centre(*path.start))
    # A triangle marker points up (north) unrotated; headings count counter-clockwise from east.
    ax.plot([sx], [sy], linestyle="none", marker=(3, 0, 90 * path.heading - 90), markersize=10, color="black",
            label="start (heading)", gid="start", zorder=5)
    ax.set_xlim(0, size * p + 2 * h)
    ax.set_ylim(0, size * p + 2 * h)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"maze {path.instance}\n{describe(path, episodes)}", fontsize=8)


def draw_paths(paths: Sequence[MazePath], title: str, episodes: Sequence[int] = (1, 2), columns: int = 3,
               geometry: Geometry = GEOMETRY) -> Figure:
    """A figure with one panel per maze (``columns`` per row), a shared legend and ``title`` on top; no
    pyplot state is touched (the figure renders with Agg)."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if not paths:
        raise ValueError("no paths to draw")
    columns = max(1, min(columns, len(paths)))
    rows = -(-len(paths) // columns)
    fig = Figure(figsize=(2.7 * columns, 2.9 * rows + 0.9), layout=ConstrainedLayoutEngine(h_pad=0.08))
    axes = fig.subplots(rows, columns, squeeze=False)
    panels = list(axes.flat)
    for ax, path in zip(panels, paths, strict=False):  # the last row may have fewer mazes than panels
        draw_maze(ax, path, episodes, geometry)
    for ax in panels[len(paths):]:
        ax.set_visible(False)
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    return fig
