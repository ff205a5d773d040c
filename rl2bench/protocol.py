"""The common protocol: tune every algorithm per cell on tuning instances, evaluate the chosen setting on
the evaluation instances that every algorithm of the cell shares.

Work is cut into jobs (task, cell, algorithm, setting, phase). Jobs run through joblib (loky
processes locally, or a Dask or Ray cluster: ``backends.py``); each finished job is written to the run
store before it counts as done, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import TerminatedWorkerError

from rl2bench import seeding
from rl2bench.agent import Agent, Setting
from rl2bench.backends import execution_backend, results_as
from rl2bench.errors import AlgorithmFailed, UserError
from rl2bench.processes import WorkerLost, follow_parent_if_worker, running, running_jobs, tracking_jobs
from rl2bench.registry import get_family, resolve_algorithms
from rl2bench.results import RunStore
from rl2bench.sealed import SealedAgent, is_builtin, seed_globals
from rl2bench.task import Cell, TaskFamily


def setting_key(setting: Setting) -> str:
    """A stable text form of a setting, used in file names and tables."""
    return json.dumps(setting, sort_keys=True)


@dataclass
class TrialOutcome:
    returns: np.ndarray  # (instances,) total reward of the trial
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def chunks(n_instances: int, chunk_size: int) -> list[range]:
    """The fixed split of a phase's instances into jobs. It depends only on the instance count and the
    family's chunk size, never on the number of workers, so results do not depend on the backend."""
    return [range(i, min(i + chunk_size, n_instances)) for i in range(0, n_instances, chunk_size)]


def _checked_actions(actions, size: int, n_actions: int, name: str) -> np.ndarray:
    """An agent's actions as an int array of one valid action per instance, or a clear error that names
    the agent (a plugged-in algorithm's bug should not surface as an index error deep in an env)."""
    actions = np.asarray(actions)
    if actions.shape != (size,) or not np.issubdtype(actions.dtype, np.integer):
        raise UserError(f"{name}.act returned {actions.dtype} array of shape {actions.shape}; expected {size} "
                        f"integer actions, one per instance")
    if size and (actions.min() < 0 or actions.max() >= n_actions):
        raise UserError(f"{name}.act returned an action outside 0..{n_actions - 1} "
                        f"(got {int(actions.min())}..{int(actions.max())})")
    return actions


def play_trials(
    family: TaskFamily[Any],
    cell: Cell,
    agent_cls: type[Agent],
    setting: Setting,
    n_instances: int,
    root_seed: int,
    phase: str,
    chunk: int = 0,
    watch: Callable[[np.ndarray, Any], None] | None = None,
    sealed: bool = True,
    until: Callable[[int], bool] | None = None,
) -> TrialOutcome:
    """One trial on each instance of chunk ``chunk`` of the phase's ``n_instances`` instances of
    ``cell``, all stepping together. Instance parameters are drawn for the whole phase and sliced, so
    instance i is the same whatever the chunking; env and agent noise have a stream per chunk, so the
    returns depend on the chunk size (fixed per family, ``TaskFamily.chunk_size``) and on the phase's
    instance count where it changes the last chunk, never on the workers or the backend.
    ``watch(actions, step)``, if given, sees every step (for analyses beyond the trial return, e.g.
    ``experiments/rl2_mdp_episodes.py``); it must not change them. ``until(played)``, if given, is asked
    after each batch with the number of the chunk's instances played so far, and True ends the chunk there:
    those instances played exactly as in the whole chunk (every stream runs in batch order), and the outcome
    holds them only (a look at a few instances of an engine-backed family, ``tasks/maze/paths.py``).

    An algorithm that is not built in plays ``sealed`` (``rl2bench.sealed``: in a process of its own that
    sees only what the agent interface hands it) with a generator seeded one-way; ``sealed=False`` plays it
    here with the same generator, so both give the same numbers. Built-in algorithms keep their named
    ``seeding.agent_rng`` stream."""
    start = time.perf_counter()
    spec = family.spec(cell)
    rows = chunks(n_instances, family.chunk_size)[chunk]
    everything = family.sample_instances(cell, root_seed, phase, n_instances)
    instances = {k: v[rows.start:rows.stop] for k, v in everything.items()}
    env = family.make_env(cell, instances, seeding.env_rng(root_seed, phase, family.name, cell.name, chunk))
    builtin = is_builtin(agent_cls)
    stream = (root_seed, phase, family.name, cell.name, agent_cls.name, chunk)
    agent_rng = seeding.agent_rng(*stream)
    # Reference agents flagged ``privileged`` (oracles, built in only) also see the environment's hidden state.
    privileged = agent_cls.privileged and builtin
    totals, parts = [], []
    agent: Agent | None = None
    try:
        for batch, size in enumerate(env.batches()):  # one group of every instance, except engine-backed families
            seed = seeding.sealed_seed(*stream, batch)
            if not builtin and sealed:
                agent = SealedAgent(agent_cls, spec, size, seed, setting)
            else:
                seed_globals(seed)  # a wrapped library that draws from np.random or random reproduces too
                rng = agent_rng if builtin else np.random.Generator(np.random.PCG64(seed))
                agent = agent_cls(spec, size, rng, **setting)
            obs = env.reset()
            if privileged:
                agent.see_privileged(env.privileged_info())
            total = np.zeros(size)
            while True:
                actions = _checked_actions(agent.act(obs), size, spec.n_actions, agent_cls.name)
                step = env.step(actions)
                total += step.reward
                if watch is not None:
                    watch(actions, step)
                if privileged:
                    agent.see_privileged(env.privileged_info())
                agent.observe(actions, step.reward, step.obs, step.episode_done)
                obs = step.obs
                if step.trial_done.all():
                    break
            totals.append(total)
            parts.append(env.trial_metrics())
            if isinstance(agent, SealedAgent):
                agent.close()
            if until is not None and until(sum(len(t) for t in totals)):
                break
    finally:
        env.close()
    total = np.concatenate(totals)
    if not np.isfinite(total).all():
        raise UserError(f"{agent_cls.name} on {cell.name}: {int((~np.isfinite(total)).sum())} trial returns are "
                        f"not finite (a bug in the environment or the agent); nothing was recorded for them")
    metrics = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return TrialOutcome(total, metrics, time.perf_counter() - start)


@dataclass(frozen=True)
class PreparedAgent:
    """One algorithm ready to play a cell outside a benchmark run (analyses, benchmarks/)."""

    family: TaskFamily[Any]
    cell: Cell
    agent_cls: type[Agent]
    setting: Setting

    def returns(self, n_instances: int, root_seed: int, phase: str) -> np.ndarray:
        """Trial returns on all ``n_instances`` instances of the phase, chunk by chunk as a run plays them."""
        return np.concatenate([
            play_trials(self.family, self.cell, self.agent_cls, self.setting, n_instances, root_seed, phase,
                        chunk).returns
            for chunk in range(len(chunks(n_instances, self.family.chunk_size)))])


def prepare_agent(task: str, cell_name: str, algo: str, run_dir: str | os.PathLike | None = None,
                  **overrides: Any) -> PreparedAgent:
    """The agent as a committed leaderboard run in ``run_dir`` evaluated it on this cell (that setting,
    if the agent's grid still has it: a retrained rl2 policy has a new version), else its first grid
    setting; ``overrides`` replace setting entries (e.g. ``play="argmax"`` for rl2). Prepared as a run
    would prepare it."""
    family = get_family(task)
    cell = family.parse_cell(cell_name)
    spec = family.spec(cell)
    agent_cls = resolve_algorithms(algo, task)[0]
    grid = agent_cls.grid(cell, spec)
    setting = grid[0]
    if run_dir is not None:
        store = RunStore.existing(run_dir)  # a clear error if it is not a run folder
        if store.has_eval(cell.name, agent_cls.name):
            stored = store.eval_setting(cell.name, agent_cls.name)
            if setting_key(stored) in {setting_key(s) for s in grid}:
                setting = stored
    setting = {**setting, **overrides}
    agent_cls.prepare(cell, spec, [setting])
    return PreparedAgent(family, cell, agent_cls, setting)


@dataclass(frozen=True)
class Job:
    task: str
    cell: str
    agent_cls: type[Agent]
    setting: Setting
    phase: str  # "tune" or "eval"
    n_instances: int
    root_seed: int
    chunk: int = 0
    sealed: bool = True

    @property
    def algorithm(self) -> str:
        return self.agent_cls.name

    def cost(self) -> float:
        family = get_family(self.task)
        spec = family.spec(family.parse_cell(self.cell))
        return self.agent_cls.job_cost(self.setting) * spec.max_steps * spec.n_actions * min(
            self.n_instances, family.chunk_size)


def _execute(job: Job) -> tuple[Job, TrialOutcome]:
    follow_parent_if_worker()  # a loky worker ends with the protocol's process, however it ends
    family = get_family(job.task)
    cell = family.parse_cell(job.cell)
    what = f"{job.algorithm} on {job.task} {job.cell} ({job.phase}, setting {job.setting})"
    with running(f"{what[:-1]}, chunk {job.chunk})"):  # named if this worker is lost
        outcome = _guarded(what, play_trials, family, cell, job.agent_cls, job.setting, job.n_instances,
                           job.root_seed, job.phase, job.chunk, None, job.sealed)
    return job, outcome


def _guarded(what: str, function: Callable[..., Any], *args: Any) -> Any:
    """Run an algorithm's code (its trials, ``grid``, ``prepare``, ``unavailable``); what it raises becomes
    one clear line naming ``what``, not a worker's traceback."""
    try:
        return function(*args)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:  # a plug-in's sys.exit is its error too, not the harness's exit
        raise AlgorithmFailed.from_exception(what, exc) from None


def _call(agent_cls: type[Agent], cell: Cell, what: str, method: Callable[..., Any], *args: Any) -> Any:
    return _guarded(f"{agent_cls.name}.{what} on {cell.name}", method, *args)


#: Jobs per wave where the backend returns whole lists only (Ray): what an interruption can lose.
LIST_WAVE = 32


def _run_jobs(jobs: list[Job], n_jobs: int, on_done: Callable[[Job, TrialOutcome], None], desc: str,
              progress: bool, return_as: str = "generator_unordered") -> None:
    if not jobs:
        return
    jobs = sorted(jobs, key=lambda j: -j.cost())  # longest first balances the workers
    bar = _progress_bar(len(jobs), desc, progress)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        folder = stack.enter_context(tracking_jobs()) if n_jobs != 1 else None
        if n_jobs == 1:
            results: Iterable[tuple[Job, TrialOutcome]] = (_execute(j) for j in jobs)
        elif return_as == "list":  # a backend that returns only whole lists: waves, each stored when done
            results = (r for wave in range(0, len(jobs), LIST_WAVE)
                       for r in Parallel(n_jobs=n_jobs)(delayed(_execute)(j) for j in jobs[wave:wave + LIST_WAVE]))
        else:
            results = Parallel(n_jobs=n_jobs, return_as=return_as)(delayed(_execute)(j) for j in jobs)
        try:
            for job, outcome in results:
                on_done(job, outcome)
                bar.set_postfix_str(f"{job.cell} {job.algorithm}", refresh=False)
                bar.update(1)
        except TerminatedWorkerError as exc:  # killed under it: the out-of-memory killer, a kill -9
            raise WorkerLost.from_error(exc, running_jobs(folder) if folder else []) from None


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="job", disable=not enabled, dynamic_ncols=True)


@dataclass
class RunConfig:
    task: str
    cells: list[str]
    algorithms: list[type[Agent]]
    instances: int = 1000
    tune_instances: int = 1000
    seed: int = 0
    n_jobs: int = 2
    #: joblib backend (loky, dask, ray) and, for a cluster, its scheduler address.
    backend: str = "loky"
    cluster: str | None = None
    #: True when ``--algos`` includes ``all``: (cell, algorithm) pairs an algorithm cannot run (no trained policy) are
    #: skipped with a notice instead of failing the run.
    skip_unavailable: bool = False
    #: False (``--in-process``): plug-ins play in the protocol's process, unsealed (debugging one's own code).
    sealed: bool = True

    def identity(self) -> dict[str, Any]:
        """What must match for ``--resume`` to reuse stored jobs."""
        return {"task": self.task, "seed": self.seed, "instances": self.instances,
                "tune_instances": self.tune_instances}


def tune_instances_for(agent_cls: type[Agent], config: RunConfig) -> int:
    cap = agent_cls.max_tune_instances
    return config.tune_instances if cap is None else min(cap, config.tune_instances)


def run_benchmark(config: RunConfig, store: RunStore, progress: bool = True) -> None:
    """Tune and evaluate every (cell, algorithm) of ``config`` into ``store``, skipping stored jobs."""
    with execution_backend(config.backend, config.cluster, config.n_jobs) as n_jobs:
        _run_benchmark(config, store, progress, n_jobs, results_as(config.backend))


def _run_benchmark(config: RunConfig, store: RunStore, progress: bool, n_jobs: int,
                   return_as: str = "generator_unordered") -> None:
    family = get_family(config.task)
    cells = [family.parse_cell(c) for c in config.cells]
    pairs = []
    for c in cells:
        for a in config.algorithms:
            reason = _call(a, c, "unavailable", a.unavailable, c, family.spec(c))
            if reason is None:
                pairs.append((c, a))
            elif config.skip_unavailable:
                notice(f"skipping {a.name} on {c.name}: {reason}")
            else:
                raise UserError(reason)
    grids = {(c.name, a.name): _call(a, c, "grid", a.grid, c, family.spec(c)) for c, a in pairs}
    prepared: set[tuple[str, str]] = set()

    def prepare(c: Cell, a: type[Agent], settings: list[Setting]) -> None:
        """Build an agent's caches (e.g. Gittins tables) only where it has jobs to run: resuming a finished
        run, or adding one algorithm to a committed leaderboard, skips every other agent's preparation."""
        if (c.name, a.name) not in prepared:
            prepared.add((c.name, a.name))
            _call(a, c, "prepare", a.prepare, c, family.spec(c), settings)

    tune_jobs: list[Job] = []
    for c, a in pairs:
        grid = grids[c.name, a.name]
        if len(grid) == 1:
            continue
        n_tune, before = tune_instances_for(a, config), len(tune_jobs)
        for s in grid:
            done = store.tuning_chunks(c.name, a.name, setting_key(s))
            tune_jobs += [Job(config.task, c.name, a, s, "tune", n_tune, config.seed, i, config.sealed)
                          for i in range(len(chunks(n_tune, family.chunk_size))) if i not in done]
        if len(tune_jobs) > before:
            prepare(c, a, grid)

    def save_tuning(job: Job, outcome: TrialOutcome) -> None:
        store.save_tuning(job.cell, job.algorithm, setting_key(job.setting), job.setting, job.chunk,
                          outcome.returns, outcome.seconds)

    _run_jobs(tune_jobs, n_jobs, save_tuning, "tuning", progress, return_as)

    n_chunks = len(chunks(config.instances, family.chunk_size))
    eval_jobs = []
    for c, a in pairs:
        grid = grids[c.name, a.name]
        n_tune_chunks = len(chunks(tune_instances_for(a, config), family.chunk_size))
        chosen = grid[0] if len(grid) == 1 else store.best_setting(
            c.name, a.name, [setting_key(s) for s in grid], n_tune_chunks)
        if store.has_eval(c.name, a.name):
            stored = store.eval_setting(c.name, a.name)
            if setting_key(stored) == setting_key(chosen):
                continue
            # The setting the agent would be evaluated with now is not the stored one (a retrained rl2
            # policy has a new file version; a changed grid tunes to another setting): the stored result
            # no longer describes it, so --resume evaluates it again.
            notice(f"{a.name} on {c.name}: the stored result was played with {setting_key(stored)}, the agent "
                   f"now has {setting_key(chosen)}; evaluating it again")
            store.reopen_eval(c.name, a.name)
        done = store.eval_chunks(c.name, a.name, setting_key(chosen))
        eval_jobs += [Job(config.task, c.name, a, chosen, "eval", config.instances, config.seed, i, config.sealed)
                      for i in range(n_chunks) if i not in done]
        if len(done) < n_chunks:
            prepare(c, a, [chosen])
        if len(done) == n_chunks:  # all chunks stored but not marked complete (killed in between)
            store.complete_eval(config.task, c.name, a.name, chosen, n_chunks)

    def save_eval(job: Job, outcome: TrialOutcome) -> None:
        key = setting_key(job.setting)
        store.save_eval_chunk(job.cell, job.algorithm, job.chunk, job.task, key, outcome.returns,
                              outcome.metrics, outcome.seconds, chunk_size=family.chunk_size)
        if len(store.eval_chunks(job.cell, job.algorithm, key)) == n_chunks:
            store.complete_eval(job.task, job.cell, job.algorithm, job.setting, n_chunks)

    _run_jobs(eval_jobs, n_jobs, save_eval, "evaluation", progress, return_as)


def notice(message: str) -> None:
    print(f"rl2bench: {message}", file=sys.stderr)


def default_n_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 2))
