"""Every task family's cells as registered Gymnasium environments (the ``gym`` extra: ``pip install -e ".[gym]"``).

    import gymnasium
    import rl2bench.gym                                                 # registers the ids
    env = gymnasium.make("rl2bench/mab-n100-k10")                       # a paper cell, by name
    env = gymnasium.make("rl2bench/mdp", cell="n20-s5-a3-t5")           # any cell the family parses
    envs = gymnasium.make_vec("rl2bench/mab-n100-k10", num_envs=1000)   # the family's own batched env

**Ids.** Importing this module registers ``rl2bench/<task>-<cell>`` for every paper cell of every family
(``rl2bench/mab-n10-k5``, ``rl2bench/mdp-n25``, ``rl2bench/maze-small``) and ``rl2bench/<task>``, which
takes any cell as its ``cell`` keyword. ``register_cell(task, cell)`` registers the id of any other cell.
An unknown task or a cell the family cannot parse raises ``gymnasium.error.NameNotFound`` naming the valid
ones. Any other cell works by name too: ``gymnasium.make("rl2bench/mab-n7-k3")`` registers the id on first use
(``make`` and ``make_vec``, once this module is imported; ``gymnasium.spec`` sees it once made or
registered). ``gymnasium.make("rl2bench.gym:rl2bench/mab-n10-k5")`` imports this module on the way, for the
paper's cells (Gymnasium looks the id up before the import can add any other).

**One episode is one trial**: the n episodes of one instance (``terminated`` at the trial's end; never
``truncated``). With ``rl2_inputs=True`` (the default) the observation is a ``Dict`` of what an RL^2 policy
takes at each step: ``obs`` (the state, ``Discrete(n_states)``, or the frame, ``Box(-1, 1, (3, 30, 40))``),
``prev_action`` (``Discrete(n_actions + 1)``; ``n_actions`` = none yet, the trial's first step),
``prev_reward`` (``Box`` of shape (1,), float32) and ``prev_done`` (``Discrete(2)``: the previous step
ended an episode). ``rl2_inputs=False`` gives the raw observation alone. ``info["episode_done"]`` flags the
end of each episode either way.

**Instances come from the training stream only.** ``reset(seed=s)`` starts the instance stream
``seeding.instance_rng(s, "train", task, cell)`` and the noise stream ``seeding.env_rng(s, "train", task,
cell)``; every later ``reset()`` draws the next instance from them (the first ``reset()`` without a seed
takes one from the environment's ``np_random``). Mazes train on their fixed pool of 1000 training
configurations (``TaskFamily.sample_instances(cell, s, "train", 1000)``), one drawn uniformly per trial:
evaluation and tuning mazes are rejected where they equal one of them. The evaluation instances are reached
only through the protocol (``rl2bench.protocol.play_trials``), never here. ``RL2BenchEnv.on_instances``
plays given instances instead (tests compare the environment with the protocol that way).

**Vectorized.** ``RL2BenchVectorEnv`` steps a batch with the family's own ``VecEnv`` (one array step per
batch, engine worker processes for mazes) and autoresets at the trial's end (``AutoresetMode.NEXT_STEP``: the
step after the end returns the first observation of new trials, reward 0). The trials of a batch start
together: where they end at different steps (mazes: an episode ends at the target), a finished instance
waits with reward 0 and its actions ignored, ``info["trial_over"]`` True, as under the protocol, until the
batch's last trial ends. Maze engines start with each batch of trials and stop on ``close()``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.envs import registration
from gymnasium.envs.registration import register, registry
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rl2bench import seeding
from rl2bench.errors import UserError
from rl2bench.registry import families, get_family
from rl2bench.task import Cell, EnvSpec, StepResult, TaskFamily, VecEnv

NAMESPACE = "rl2bench"
#: Mazes train on a fixed pool of configurations (paper Section 3.3), the first 1000 of the training stream.
TRAIN_POOL = 1000
_FLOAT32 = np.finfo(np.float32)


def env_id(task: str, cell: str) -> str:
    return f"{NAMESPACE}/{task}-{cell}"


def resolve(task: str, cell: str | None) -> tuple[TaskFamily[Any], Cell]:
    """The family and parsed cell, or Gymnasium's ``NameNotFound`` naming the valid tasks or cells."""
    try:
        family = get_family(task)
    except UserError as exc:
        raise gymnasium.error.NameNotFound(f"{exc} (ids: {NAMESPACE}/<task>-<cell>)") from None
    if cell is None:
        raise gymnasium.error.NameNotFound(
            f"{NAMESPACE}/{family.name} needs a cell: gymnasium.make({env_id(family.name, '')[:-1]!r}, cell=...) "
            f"with {family.cell_help} (paper cells: {', '.join(family.default_cells)})")
    try:
        return family, family.parse_cell(cell)
    except UserError as exc:
        raise gymnasium.error.NameNotFound(str(exc)) from None


def raw_space(spec: EnvSpec) -> spaces.Space[Any]:
    """The family's own observation: a state index, or a frame in [-1, 1] (mazes)."""
    if spec.obs_shape:
        return spaces.Box(-1.0, 1.0, spec.obs_shape, np.float32)
    return spaces.Discrete(spec.n_states)


def observation_space(spec: EnvSpec, rl2_inputs: bool = True) -> spaces.Space[Any]:
    """One step's observation: the raw one, or a Dict of the RL^2 inputs (see the module docstring)."""
    if not rl2_inputs:
        return raw_space(spec)
    return spaces.Dict({"obs": raw_space(spec), "prev_action": spaces.Discrete(spec.n_actions + 1),
                        "prev_reward": spaces.Box(_FLOAT32.min, _FLOAT32.max, (1,), np.float32),
                        "prev_done": spaces.Discrete(2)})


class RL2Inputs:
    """The RL^2 inputs of a batch of trials: the raw observation with the previous action, reward and
    episode-done flag. The environments here and ``rl2bench.algorithms.external.CallableAgent`` both build
    their observations with it, so a policy sees the same numbers in training and under the protocol.
    Every call returns new arrays (nothing handed out is written to later)."""

    def __init__(self, spec: EnvSpec, batch_size: int, rl2_inputs: bool = True):
        self.none = spec.n_actions  # "no previous action": the trial's first step
        self.discrete = not spec.obs_shape
        self.batch_size, self.enabled = batch_size, rl2_inputs
        self.start()

    def start(self) -> None:
        """A new trial on every instance."""
        self.prev_action = np.full(self.batch_size, self.none, dtype=np.int64)
        self.prev_reward = np.zeros((self.batch_size, 1), dtype=np.float32)
        self.prev_done = np.zeros(self.batch_size, dtype=np.int64)

    def update(self, actions: Any, rewards: Any, episode_done: Any) -> None:
        self.prev_action = np.array(actions, dtype=np.int64).reshape(self.batch_size)
        self.prev_reward = np.array(rewards, dtype=np.float32).reshape(self.batch_size, 1)
        self.prev_done = np.array(episode_done, dtype=np.int64).reshape(self.batch_size)

    def __call__(self, obs: Any) -> Any:
        obs = np.array(obs, dtype=np.int64 if self.discrete else np.float32)
        if not self.enabled:
            return obs
        return {"obs": obs, "prev_action": self.prev_action, "prev_done": self.prev_done,
                "prev_reward": self.prev_reward}


def _defines_its_phases(family: TaskFamily[Any]) -> bool:
    """A family that overrides ``sample_instances`` keeps its phases apart itself (mazes: a fixed training
    pool that evaluation and tuning configurations are checked against)."""
    return type(family).sample_instances is not TaskFamily.sample_instances


class _Trials:
    """A batch of trials on the family's own ``VecEnv``: where instances and noise come from, the
    environment of the current trials, and their RL^2 inputs. Both environment classes below use it."""

    def __init__(self, family: TaskFamily[Any], cell: Cell, batch_size: int, rl2_inputs: bool):
        self.family, self.cell, self.batch_size = family, cell, batch_size
        self.spec = family.spec(cell)
        self.inputs = RL2Inputs(self.spec, batch_size, rl2_inputs)
        self.env: VecEnv | None = None
        self.given: dict[str, np.ndarray] | None = None
        self.position = 0
        self.stream: np.random.Generator | None = None
        self.noise: np.random.Generator | None = None
        self.pool: dict[str, np.ndarray] | None = None

    def play_given(self, instances: dict[str, np.ndarray], noise: np.random.Generator) -> None:
        self.given, self.noise = {k: np.asarray(v) for k, v in instances.items()}, noise

    def seed(self, root: int) -> None:
        if self.given is not None:  # given instances replay from the first; the noise stream goes on
            self.position = 0
            return
        name, cell = self.family.name, self.cell.name
        self.stream = seeding.instance_rng(root, "train", name, cell)
        self.noise = seeding.env_rng(root, "train", name, cell)
        if _defines_its_phases(self.family):
            self.pool = self.family.sample_instances(self.cell, root, "train", TRAIN_POOL)
            self.stream = seeding.generator(root, "instances", "train", name, cell, "pool")

    def draw(self) -> dict[str, np.ndarray]:
        if self.given is not None:
            count = len(next(iter(self.given.values())))
            rows = (self.position + np.arange(self.batch_size)) % count
            self.position += self.batch_size
            return {k: v[rows] for k, v in self.given.items()}
        assert self.stream is not None, "seed() first"
        if self.pool is not None:
            rows = self.stream.integers(TRAIN_POOL, size=self.batch_size)
            return {k: v[rows] for k, v in self.pool.items()}
        return self.family.sample(self.cell, self.stream, self.batch_size)

    def begin(self) -> Any:
        """New trials: new instances on a new family environment (the previous one is closed)."""
        self.close()
        assert self.noise is not None
        self.env = env = self.family.make_env(self.cell, self.draw(), self.noise)
        if env.batch_size != self.batch_size:
            self.close()
            raise ValueError(f"{self.family.name} {self.cell.name} steps at most {env.batch_size} instances at once, "
                             f"not {self.batch_size}")
        obs = env.reset()
        self.inputs.start()
        return self.inputs(obs)

    def step(self, actions: Any) -> tuple[Any, StepResult]:
        if self.env is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        given = np.asarray(actions)
        n_actions = self.spec.n_actions
        ok = given.shape == (self.batch_size,) and given.dtype.kind in "iu"
        actions = given.astype(np.int64) if ok else given  # a copy: the caller may reuse its array
        # In range, checked in one comparison: a negative action is a huge unsigned one.
        if not ok or (actions.view(np.uint64) >= n_actions).any():
            raise ValueError(f"expected {self.batch_size} integer action(s) in 0..{n_actions - 1}, got {given!r}")
        result = self.env.step(actions)
        self.inputs.update(actions, result.reward, result.episode_done)
        return self.inputs(result.obs), result

    def close(self) -> None:
        if self.env is not None:
            env, self.env = self.env, None
            env.close()


class RL2BenchEnv(gymnasium.Env[Any, np.int64]):
    """One trial per episode on instances of the training stream; see the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, family: str, cell: str | None = None, rl2_inputs: bool = True):
        task, parsed = resolve(family, cell)
        self.trials = _Trials(task, parsed, 1, rl2_inputs)
        self.task_spec = self.trials.spec
        self.observation_space = observation_space(self.task_spec, rl2_inputs)
        self.action_space = spaces.Discrete(self.task_spec.n_actions)
        self._seeded = False
        self._over = True

    @classmethod
    def on_instances(cls, family: str, cell: str, instances: dict[str, np.ndarray], noise: np.random.Generator,
                     rl2_inputs: bool = True) -> RL2BenchEnv:
        """An environment that plays the given instances, one per trial in order (then from the first again),
        with ``noise`` for reward and transition noise: for comparing with the protocol on its instances."""
        env = cls(family, cell, rl2_inputs)
        env.trials.play_given(instances, noise)
        env._seeded = True
        return env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.trials.seed(seed if seed is not None else int(self.np_random.integers(2**63 - 1)))
            self._seeded = True
        obs = self.trials.begin()
        self._over = False
        return _first(obs), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise gymnasium.error.ResetNeeded("the trial is over: call reset()")
        obs, result = self.trials.step(np.asarray(action).reshape(1))
        self._over = bool(result.trial_done[0])
        info = {"episode_done": bool(result.episode_done[0]),
                **{k: np.asarray(v)[0].item() for k, v in result.info.items()}}
        return _first(obs), float(result.reward[0]), self._over, False, info

    def close(self) -> None:
        self.trials.close()
        super().close()


def _first(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: v[0] for k, v in obs.items()}
    return obs[0]


class RL2BenchVectorEnv(VectorEnv):
    """``num_envs`` trials stepped together by the family's own vectorized environment, autoreset at the
    trials' end; see the module docstring."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, family: str, cell: str | None = None, num_envs: int = 1, rl2_inputs: bool = True):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        task, parsed = resolve(family, cell)
        self.trials = _Trials(task, parsed, num_envs, rl2_inputs)
        self.task_spec = self.trials.spec
        self.num_envs = num_envs
        self.single_observation_space = observation_space(self.task_spec, rl2_inputs)
        self.single_action_space = spaces.Discrete(self.task_spec.n_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._seeded = False
        self._autoreset = False
        # Flag arrays handed out on every step, read-only: allocated once (they are a good part of a step's cost).
        self._flags = {value: np.full(num_envs, value) for value in (False, True)}
        for flags in self._flags.values():
            flags.flags.writeable = False

    @classmethod
    def on_instances(cls, family: str, cell: str, instances: dict[str, np.ndarray], noise: np.random.Generator,
                     rl2_inputs: bool = True) -> RL2BenchVectorEnv:
        """A batch of the given instances (their count), replayed at every autoreset, with ``noise``; for
        comparing with the protocol, which plays a chunk of instances on one family environment the same way."""
        env = cls(family, cell, len(next(iter(instances.values()))), rl2_inputs)
        env.trials.play_given(instances, noise)
        env._seeded = True
        return env

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if isinstance(seed, list):
            raise ValueError("seed the batch with one int: its instances are drawn together from one stream")
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.trials.seed(seed if seed is not None else int(self.np_random.integers(2**63 - 1)))
            self._seeded = True
        self._autoreset = False
        return self.trials.begin(), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        no, yes = self._flags[False], self._flags[True]
        if self._autoreset:
            self._autoreset = False
            return self.trials.begin(), np.zeros(self.num_envs), no, no, {}
        obs, result = self.trials.step(actions)
        self._autoreset = over = bool(result.trial_done.all())
        info = {"episode_done": result.episode_done, "_episode_done": yes, "trial_over": result.trial_done,
                "_trial_over": yes}
        return obs, np.asarray(result.reward, dtype=np.float64), self._flags[over], no, info

    def close_extras(self, **kwargs: Any) -> None:
        self.trials.close()


def register_cell(task: str, cell: str) -> str:
    """Register ``rl2bench/<task>-<cell>`` for any cell the family parses (the paper's are registered on
    import) and return the id; a cell is registered under its canonical name (``n20-s10`` is ``n20``)."""
    family, parsed = resolve(task, cell)
    name = env_id(family.name, parsed.name)
    if name not in registry:
        register(id=name, entry_point=f"{__name__}:RL2BenchEnv", vector_entry_point=f"{__name__}:RL2BenchVectorEnv",
                 kwargs={"family": family.name, "cell": parsed.name})
    return name


def register_on_demand(env_id: str) -> None:
    """Register an ``rl2bench/<task>-<cell>`` id that is not registered yet (any cell the family parses, under
    the name asked for), or raise ``NameNotFound`` naming the valid tasks or cells; other ids pass untouched."""
    name = env_id.rsplit(":", 1)[-1]
    if not name.startswith(f"{NAMESPACE}/") or name in registry:
        return
    if registration.parse_env_id(name)[2] is not None:  # "-v0": our ids have no versions; Gymnasium says so
        return
    task, _, cell = name[len(NAMESPACE) + 1:].partition("-")
    family, parsed = resolve(task, cell or None)
    register(id=name, entry_point=f"{__name__}:RL2BenchEnv", vector_entry_point=f"{__name__}:RL2BenchVectorEnv",
             kwargs={"family": family.name, "cell": parsed.name})


def _install_lookup_hook() -> None:
    """Gymnasium's registry is a plain dict with no lookup hook, so ``make("rl2bench/mab-n7-k3")`` would end in
    its bare "doesn't exist". Both ``make`` and ``make_vec`` look an id up through ``registration._find_spec``
    (Gymnasium is pinned to 1.4.0 in pyproject.toml); wrapping it lets every parseable cell resolve by name and
    bad ones fail with our choices. Ids outside the ``rl2bench/`` namespace never reach our code."""
    find_spec = registration._find_spec
    if getattr(find_spec, "rl2bench_hook", False):
        return

    def _find_spec(env_id: str) -> Any:
        register_on_demand(env_id)
        return find_spec(env_id)

    _find_spec.rl2bench_hook = True  # type: ignore[attr-defined]
    registration._find_spec = _find_spec


def _register_all() -> None:
    for task, family in families().items():
        if f"{NAMESPACE}/{task}" not in registry:
            register(id=f"{NAMESPACE}/{task}", entry_point=f"{__name__}:RL2BenchEnv",
                     vector_entry_point=f"{__name__}:RL2BenchVectorEnv", kwargs={"family": task})
        for cell in family.default_cells:
            register_cell(task, cell)


_register_all()
_install_lookup_hook()
