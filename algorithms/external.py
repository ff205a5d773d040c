"""Adapters from policies made elsewhere to the agent interface, so that they play under the protocol on the
same evaluation instances as every baseline (imported as ``rl2bench.algorithms.external``; docs/gym.md).

- ``CallableAgent``: any callable ``(obs batch, recurrent state) -> (actions, state)``, fed the RL^2 inputs
  that ``rl2bench.gym`` environments give (``rl2bench.gym.RL2Inputs``): a policy trained on those
  environments sees the same numbers under the protocol.
- ``RecurrentPPOAgent``: an sb3-contrib ``RecurrentPPO`` model saved to a zip (setting ``model=PATH``).
- ``PerInstance``: one library policy object per instance (SMPyBandits style), looped over in Python.

None of them is an algorithm by itself: subclass one in your own module with a ``name`` and ``families``
(or use ``callable_agent`` / ``per_instance``), then ``--algos my_module:MyAgent``. A class of your module
plays sealed, in a process of its own (docs/plugins.md); settings cross into that process, so they must be
picklable (paths as strings, numbers), and a model is loaded there, not in the protocol's process.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from rl2bench.agent import Agent
from rl2bench.errors import UserError
from rl2bench.task import EnvSpec

Policy = Callable[[Any, Any], tuple[Any, Any]]
ALL_FAMILIES = ("mab", "mdp", "maze")


def _caller_module(depth: int = 2) -> str:
    """The module that called a factory: the class it makes belongs there (and so plays sealed)."""
    return str(sys._getframe(depth).f_globals.get("__name__", "__main__"))


class CallableAgent(Agent):
    """A policy callable ``(obs, state) -> (actions, state)`` over the batch, as an agent.

    ``obs`` is what ``rl2bench.gym.RL2BenchVectorEnv`` gives for the batch (``rl2_inputs = False`` on the
    class: the raw observation): a dict of arrays with the instance as first axis, ``obs``, ``prev_action``
    (``n_actions`` on a trial's first step), ``prev_reward`` (batch, 1) and ``prev_done``. ``state`` is None
    at the trial's start and then whatever the callable returned last. Define the callable as the method
    ``policy(self, obs, state)``, or override ``make_policy(**setting)`` to build it from the setting (load a
    model, say); ``callable_agent(fn, name=...)`` makes a class around a plain function.
    """

    families: ClassVar[tuple[str, ...]] = ALL_FAMILIES
    rl2_inputs: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, batch_size: int, rng: np.random.Generator, **setting: Any):
        super().__init__(spec, batch_size, rng)
        from rl2bench.gym import RL2Inputs

        self.inputs = RL2Inputs(spec, batch_size, self.rl2_inputs)
        self.state: Any = None
        self.function = self.make_policy(**setting)

    def make_policy(self, **setting: Any) -> Policy:
        """The callable that acts, built once per batch of trials; default: the ``policy`` method."""
        if setting:
            raise UserError(f"{self.name} takes no settings (got {', '.join(setting)}); override make_policy "
                            f"to use them")
        return self.policy

    def policy(self, obs: Any, state: Any) -> tuple[Any, Any]:
        raise NotImplementedError(f"{type(self).__name__}: define policy(self, obs, state) or make_policy()")

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions, self.state = self.function(self.inputs(obs), self.state)
        return np.asarray(actions)

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        self.inputs.update(actions, rewards, episode_done)


def callable_agent(policy: Policy, *, name: str, families: tuple[str, ...] = ALL_FAMILIES,
                   rl2_inputs: bool = True) -> type[CallableAgent]:
    """A ``CallableAgent`` class around ``policy(obs, state)``, belonging to the calling module:
    ``MyAgent = callable_agent(my_policy, name="mine", families=("mab",))``, then ``--algos my_module:MyAgent``."""
    namespace = {"name": name, "families": tuple(families), "rl2_inputs": rl2_inputs,
                 "policy": staticmethod(policy), "__module__": _caller_module()}
    return type(f"CallableAgent[{name}]", (CallableAgent,), namespace)


@lru_cache(maxsize=4)
def _load_recurrent_ppo(path: str, stamp: tuple[int, int]) -> Any:
    """The model of a zip, once per process and file version (``stamp``: its mtime and size)."""
    contrib = importlib.import_module("sb3_contrib")
    # Schedules are pickled functions; replacing them keeps a model saved by another version loadable.
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    return contrib.RecurrentPPO.load(path, device="cpu", custom_objects=custom)


class RecurrentPPOAgent(CallableAgent):
    """An sb3-contrib ``RecurrentPPO`` model trained on ``rl2bench.gym`` (saved with ``model.save(PATH)``),
    acting with ``predict(obs, state, episode_start, deterministic)`` over the whole batch.

    Settings: ``model`` (the zip's path) and ``deterministic`` (most probable action instead of a sample).
    Sampling draws from torch's global generator, which the agent seeds from its own generator: the same
    numbers on every run and worker. Needs the ``sb3`` extra. Subclass it in your module with ``name`` and
    ``families``, e.g. ``class MyPPO(RecurrentPPOAgent): name = "my-ppo"; families = ("mab",)``, then
    ``--algos 'my_module:MyPPO(model=ppo.zip)'``."""

    def __init__(self, spec: EnvSpec, batch_size: int, rng: np.random.Generator, *, model: str,
                 deterministic: bool = False):
        super().__init__(spec, batch_size, rng, model=model, deterministic=deterministic)

    def make_policy(self, **setting: Any) -> Policy:
        from rl2bench.gym import observation_space

        path, deterministic = str(setting["model"]), bool(setting["deterministic"])
        if not os.path.isfile(path):
            raise UserError(f"{self.name}: no model file {path!r} (a RecurrentPPO zip saved by model.save)")
        torch = importlib.import_module("torch")
        torch.set_num_threads(1)  # one thread: a job's numbers must not depend on the worker it lands in
        torch.manual_seed(int(self.rng.integers(2**63 - 1)))
        stat = os.stat(path)
        net = _load_recurrent_ppo(os.path.abspath(path), (stat.st_mtime_ns, stat.st_size))
        expected = observation_space(self.spec, self.rl2_inputs)
        if net.observation_space != expected:
            raise UserError(f"{self.name}: {path} was trained on observations {net.observation_space}, this cell "
                            f"gives {expected}")
        starts = np.ones(self.batch_size, dtype=bool)

        def policy(obs: Any, state: Any) -> tuple[Any, Any]:
            nonlocal starts
            actions, state = net.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            starts = np.zeros(self.batch_size, dtype=bool)
            return np.asarray(actions, dtype=np.int64), state

        return policy


class PerInstance(Agent):
    """One policy object per instance, from a library that plays one bandit at a time (SMPyBandits style:
    ``factory(n_arms, **setting)`` makes one, ``choice()`` gives its arm, ``getReward(arm, reward)`` teaches
    it; ``startGame()`` is called first where it exists), run inside the batch API.

    Subclass it with ``name`` and ``factory`` (a class or function), or use ``per_instance(factory, ...)``.
    ``choose`` and ``learn`` name the two methods for libraries that call them otherwise.

    Cost: slow by nature. Every step loops over the instances in Python, two method calls each, where a
    vectorized agent does a few array operations for the whole batch. Measured on n100-k10, 250 instances,
    environment included (2026-12-06, tests/test_gym.py's toy policies): a greedy object in plain Python
    3.5 us per instance and step against 0.3 us for the built-in ``greedy`` (~11x); a UCB object that calls
    numpy on scalars, as libraries often do, 30 us (~85x). A 1000-instance n500 cell is a million method
    calls. Fine for checking a library's policy against the baselines on a few cells; port it to arrays
    for full tables.
    """

    families: ClassVar[tuple[str, ...]] = ("mab",)
    factory: ClassVar[Callable[..., Any]]
    choose: ClassVar[str] = "choice"
    learn: ClassVar[str] = "getReward"

    def __init__(self, spec: EnvSpec, batch_size: int, rng: np.random.Generator, **setting: Any):
        super().__init__(spec, batch_size, rng)
        factory = type(self).factory
        self.policies = [factory(spec.n_actions, **setting) for _ in range(batch_size)]
        for policy in self.policies:
            if hasattr(policy, "startGame"):
                policy.startGame()
        self._choose = [getattr(p, self.choose) for p in self.policies]
        self._learn = [getattr(p, self.learn) for p in self.policies]

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.fromiter((choose() for choose in self._choose), dtype=np.int64, count=self.batch_size)

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        for learn, arm, reward in zip(self._learn, np.asarray(actions).tolist(), np.asarray(rewards).tolist(),
                                      strict=True):
            learn(arm, reward)


def per_instance(factory: Callable[..., Any], *, name: str, families: tuple[str, ...] = ("mab",)
                 ) -> type[PerInstance]:
    """A ``PerInstance`` class around ``factory``, belonging to the calling module:
    ``MyUCB = per_instance(UCB, name="smpy-ucb")``, then ``--algos my_module:MyUCB``."""
    namespace = {"name": name, "families": tuple(families), "factory": staticmethod(factory),
                 "__module__": _caller_module()}
    return type(f"PerInstance[{name}]", (PerInstance,), namespace)
