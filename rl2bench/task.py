"""The task-family interface every family (bandits, tabular MDPs, mazes) implements.

A *family* knows its cells (parameter settings such as ``n100-k10``), draws hidden instance parameters
as arrays, and builds a vectorized environment that steps a whole batch of instances together.
A *trial* is ``n_episodes`` episodes of at most ``horizon`` steps on one instance; bandits are the
degenerate case (one state, episodes of length 1).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from rl2bench import seeding
from rl2bench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class EnvSpec:
    """What an agent may know about a cell before acting: sizes, not hidden parameters."""

    family: str
    n_states: int
    n_actions: int
    horizon: int  # steps per episode (upper bound where episodes can end early)
    n_episodes: int  # episodes per trial
    obs_shape: tuple[int, ...] = ()  # () means the observation is a discrete state index

    @property
    def max_steps(self) -> int:
        return self.horizon * self.n_episodes


C = TypeVar("C", bound="Cell")


class CellOutOfRange(ValueError):
    """A well-formed cell name with a value the family cannot run (its message says which and why)."""


@dataclass(frozen=True)
class Cell:
    """A family's parameter setting, named so that the name alone rebuilds it.

    Subclasses declare integer fields with a one-letter ``_prefix`` map; the name is the fields
    joined by '-', e.g. ``n100-k10``. Fields left at their default are omitted from the name.
    """

    _prefixes: ClassVar[dict[str, str]] = {}

    @property
    def name(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "n" or value != f.default:
                parts.append(f"{self._prefixes.get(f.name, f.name)}{value}")
        return "-".join(parts)

    @classmethod
    def parse(cls: type[C], name: str) -> C:
        by_prefix = {prefix: fname for fname, prefix in cls._prefixes.items()}
        values: dict[str, int] = {}
        for part in name.strip().split("-"):
            m = re.fullmatch(r"([a-z]+)(\d+)", part)
            if not m or m.group(1) not in by_prefix or by_prefix[m.group(1)] in values:
                raise ValueError(part)
            values[by_prefix[m.group(1)]] = int(m.group(2))
        cell = cls(**values)  # missing required fields raise TypeError
        cell.validate()
        return cell

    def validate(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise CellOutOfRange(f"{self._prefixes.get(f.name, f.name)}{getattr(self, f.name)} is below 1")

    def __str__(self) -> str:
        return self.name


@dataclass
class StepResult:
    """One synchronous step of a batch; every array has the batch as its first axis."""

    obs: np.ndarray
    reward: np.ndarray  # float, 0 for instances whose trial is already over
    episode_done: np.ndarray  # bool: this step ended an episode
    trial_done: np.ndarray  # bool: this instance has finished its n episodes
    info: dict[str, Any] = field(default_factory=dict)


class VecEnv(ABC):
    """A batch of instances stepping together. Hidden parameters never leave the environment."""

    spec: EnvSpec
    batch_size: int

    @abstractmethod
    def reset(self) -> np.ndarray:
        """Start a new trial on every instance; returns the first observation."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> StepResult: ...

    def batches(self) -> Iterator[int]:
        """Play the instances in consecutive groups (an engine pool smaller than the batch): makes each
        group current in turn and yields its size; the protocol runs one trial per group, a fresh
        agent each. Default: one group of every instance."""
        yield self.batch_size

    def privileged_info(self) -> dict[str, Any]:
        """Hidden state (layouts, live positions) for reference agents that set ``Agent.privileged``,
        e.g. an oracle; the protocol hands it only to those. Families without such agents need not
        implement it."""
        raise NotImplementedError(f"{type(self).__name__} offers no privileged information")

    def trial_metrics(self) -> dict[str, np.ndarray]:
        """Per-instance extra result columns after a trial (e.g. maze success per episode)."""
        return {}

    def close(self) -> None:
        """Release external resources (engine processes); a no-op for array environments."""


CellT = TypeVar("CellT", bound=Cell)


class TaskFamily(ABC, Generic[CellT]):
    """A registered family of tasks; see the module docstring.

    Generic over the family's cell type: a subclass names it (``TaskFamily[BanditCell]``) and its
    methods take that type; code that handles any family uses ``TaskFamily[Any]``.
    """

    name: ClassVar[str]
    cell_type: type[CellT]  # set on the class; not a ClassVar only because a ClassVar cannot hold a type variable
    default_cells: ClassVar[tuple[str, ...]]
    cell_help: ClassVar[str]  # the name pattern, shown in errors and `list`
    # (lower, upper) reference algorithms for normalized scores: (x - lower) / (upper - lower).
    normalize_by: ClassVar[tuple[str, str] | None] = None
    #: Leaderboard column order (the paper's); other algorithms follow in registration order.
    column_order: ClassVar[tuple[str, ...]] = ()
    #: Instances per job: the fixed split that lets one (cell, algorithm) use every worker.
    chunk_size: ClassVar[int] = 250
    #: Default tuning instances per cell (None: as many as evaluation instances).
    tune_instances: ClassVar[int | None] = None

    def parse_cell(self, name: str) -> CellT:
        try:
            return self.cell_type.parse(name)
        except (ValueError, TypeError) as exc:
            why = f" ({exc})" if isinstance(exc, CellOutOfRange) else ""
            raise UserError(
                f"invalid {self.name} cell {name!r}{why}: expected {self.cell_help} "
                f"(paper cells: {', '.join(self.default_cells)})"
            ) from None

    def cell_order(self, name: str) -> tuple:
        """Sort key of a cell outside ``default_cells`` on the leaderboards (those come first, as listed):
        shorter names first by default; a family overrides it to group its variants."""
        return (len(name), name)

    @abstractmethod
    def spec(self, cell: CellT) -> EnvSpec: ...

    @abstractmethod
    def sample(self, cell: CellT, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
        """Draw ``count`` instances' hidden parameters, each array with the instance as first axis."""

    @abstractmethod
    def make_env(self, cell: CellT, instances: dict[str, np.ndarray], rng: np.random.Generator) -> VecEnv:
        """An environment over the given instances; ``rng`` drives reward and transition noise."""

    def sample_instances(self, cell: CellT, root_seed: int, phase: str, count: int) -> dict[str, np.ndarray]:
        """The instances of ``phase`` ("eval", "tune", "train"); the protocol calls this. Default: ``sample``
        on the phase's named stream. Families override it to make phases explicitly disjoint (mazes)."""
        return self.sample(cell, seeding.instance_rng(root_seed, phase, self.name, cell.name), count)

    def render_markdown(self, results: pd.DataFrame, title: str = "", command: str = "") -> str | None:
        """The family's own leaderboard page from per-instance results (e.g. the paper's Table 3 layout
        for mazes), or None for the common layout (mean total reward per cell and algorithm)."""
        return None
