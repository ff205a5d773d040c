"""The agent interface every algorithm implements, built-in or a user's own.

An agent is constructed for one cell and one batch of instances, with its hyperparameters and its own
seeded generator, and then plays exactly one trial on the whole batch:

    agent = MyAgent(spec, batch_size, rng, **setting)
    obs = env.reset()
    while not done:
        actions = agent.act(obs)                        # (batch,) int array
        step = env.step(actions)
        agent.observe(actions, step.reward, step.obs, step.episode_done)

State lives in arrays over the batch (counts, posteriors, Q tables, hidden states); never loop over
instances in Python. Register with ``@rl2bench.register_algorithm`` or pass ``--algos module:Class``.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from rl2bench.task import Cell, EnvSpec

Setting = dict[str, Any]


def grid_product(**axes: list[Any]) -> list[Setting]:
    """All combinations of the given hyperparameter values, as a list of settings."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


class Agent(ABC):
    """Base class for a vectorized agent. Subclasses set ``name`` and ``families``."""

    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]]
    #: Left out of ``--algos all`` (e.g. slow or experimental variants); still runnable by name.
    exclude_from_all: ClassVar[bool] = False
    #: Relative cost per step and instance, used only to schedule expensive jobs first.
    cost: ClassVar[float] = 1.0
    #: Cap on tuning instances for algorithms whose grid is expensive; set it only together with a
    #: benchmark showing the chosen setting is stable at that size (see benchmarks/).
    max_tune_instances: ClassVar[int | None] = None

    @classmethod
    def job_cost(cls, setting: Setting) -> float:
        """Relative cost of one setting (scheduling only)."""
        return cls.cost
    #: Reference agents only (oracles): the protocol also hands them the environment's hidden state
    #: through ``see_privileged(env.privileged_info())`` after every reset and step. Never set this on
    #: an agent that competes on the leaderboard's terms.
    privileged: ClassVar[bool] = False

    @classmethod
    def grid(cls, cell: Cell, spec: EnvSpec) -> list[Setting]:
        """Hyperparameter settings searched per cell on tuning instances; [{}] means none."""
        return [{}]

    @classmethod
    def unavailable(cls, cell: Cell, spec: EnvSpec) -> str | None:
        """Why this algorithm cannot run on ``cell`` (e.g. no trained policy), or None. ``--algos all``
        skips such cells with a notice; naming the algorithm explicitly makes it an error."""
        return None

    @classmethod
    def provenance(cls, setting: Setting) -> dict[str, Any] | None:
        """Where a setting's trained file came from (version, recipe, training steps), as one row of the
        leaderboard page's provenance table; None (the default) for algorithms that load nothing trained."""
        return None

    @classmethod
    def exact_value(cls, cell: Cell, spec: EnvSpec) -> float | None:
        """The algorithm's expected trial return where it is known exactly (bayes-optimal's dynamic
        programme), printed on the leaderboard beside its simulated mean; None (the default) otherwise."""
        return None

    @classmethod
    def prepare(cls, cell: Cell, spec: EnvSpec, settings: list[Setting]) -> None:
        """Build shared caches (index tables, checkpoints) once, in the parent process, before jobs."""

    def __init__(self, spec: EnvSpec, batch_size: int, rng: np.random.Generator):
        """Subclasses take their hyperparameters as keyword-only arguments after these three."""
        self.spec = spec
        self.batch_size = batch_size
        self.rng = rng

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions for the whole batch given the current observations."""

    def observe(
        self, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, episode_done: np.ndarray
    ) -> None:
        """Update the agent's state after a step (default: nothing to learn)."""

    def see_privileged(self, info: dict[str, Any]) -> None:
        """Hidden environment state; called only for classes with ``privileged = True``."""
