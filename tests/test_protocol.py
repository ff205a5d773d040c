import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rl2bench import protocol, seeding
from rl2bench.algorithms.base import Agent
from rl2bench.errors import UserError
from rl2bench.protocol import RunConfig, chunks, play_trials, run_benchmark
from rl2bench.registry import algorithms, get_family
from rl2bench.results import RunStore

FAM = get_family("mab")
ALGOS = algorithms("mab")


def test_streams_are_independent_and_reproducible():
    a = seeding.instance_rng(0, "eval", "mab", "n10-k5").random(5)
    b = seeding.instance_rng(0, "eval", "mab", "n10-k5").random(5)
    c = seeding.instance_rng(0, "tune", "mab", "n10-k5").random(5)
    d = seeding.instance_rng(1, "eval", "mab", "n10-k5").random(5)
    np.testing.assert_array_equal(a, b)
    assert not np.isin(a, c).any() and not np.isin(a, d).any()


def test_chunks_cover_every_instance_once():
    parts = chunks(1000, 250)
    assert [len(p) for p in parts] == [250] * 4
    assert sorted(i for p in parts for i in p) == list(range(1000))
    assert [len(p) for p in chunks(10, 4)] == [4, 4, 2]


def test_instances_do_not_depend_on_chunking(monkeypatch):
    """The instances a chunk plays are its rows of the whole phase's draw, not a draw of its own."""
    cell = FAM.parse_cell("n5-k3")
    played, make_env = [], FAM.make_env

    def recording(c, instances, rng):
        played.append(instances["arm_means"])
        return make_env(c, instances, rng)

    monkeypatch.setattr(FAM, "make_env", recording)
    for chunk in (0, 1):
        play_trials(FAM, cell, ALGOS["random"], {}, 300, 0, "eval", chunk=chunk)
    whole = FAM.sample(cell, seeding.instance_rng(0, "eval", "mab", cell.name), 300)["arm_means"]
    assert FAM.chunk_size == 250 and [len(x) for x in played] == [250, 50]
    np.testing.assert_array_equal(np.concatenate(played), whole)


def test_seeded_trials_are_deterministic_and_seed_sensitive():
    cell = FAM.parse_cell("n30-k5")
    one = play_trials(FAM, cell, ALGOS["ts"], {}, 300, 7, "eval", chunk=1).returns
    two = play_trials(FAM, cell, ALGOS["ts"], {}, 300, 7, "eval", chunk=1).returns
    other = play_trials(FAM, cell, ALGOS["ts"], {}, 300, 8, "eval", chunk=1).returns
    np.testing.assert_array_equal(one, two)
    assert len(one) == 50 and not np.array_equal(one, other)


def test_a_watcher_sees_every_step_and_changes_nothing():
    cell = FAM.parse_cell("n30-k5")
    seen = []
    watched = play_trials(FAM, cell, ALGOS["ts"], {}, 300, 7, "eval", chunk=1,
                          watch=lambda actions, step: seen.append((actions.copy(), step.reward.copy()))).returns
    plain = play_trials(FAM, cell, ALGOS["ts"], {}, 300, 7, "eval", chunk=1).returns
    np.testing.assert_array_equal(watched, plain)
    assert len(seen) == 30 and all(a.shape == (50,) for a, _ in seen)
    np.testing.assert_allclose(np.sum([r for _, r in seen], axis=0), plain)


def _config(**kw):
    base = dict(task="mab", cells=["n10-k3", "n20-k2"], algorithms=[ALGOS["random"], ALGOS["ucb1"], ALGOS["ts"]],
                instances=300, tune_instances=200, seed=3, n_jobs=1)
    base.update(kw)
    return RunConfig(**base)


def _results(store: RunStore) -> pd.DataFrame:
    return store.results().sort_values(["cell", "algorithm", "instance"]).reset_index(drop=True)


@pytest.mark.heavy
@pytest.mark.parametrize("backend", ["loky", "dask", "waves"])
def test_run_is_identical_with_one_worker_or_two_on_any_backend(tmp_path, monkeypatch, backend):
    from joblib.parallel import get_active_backend

    frames, engines = [], []
    real_parallel = protocol.Parallel

    def recording_parallel(*args, **kwargs):  # which joblib backend the protocol's jobs went to, and how
        engines.append((type(get_active_backend()[0]).__name__, kwargs.get("return_as", "list")))
        return real_parallel(*args, **kwargs)

    monkeypatch.setattr(protocol, "Parallel", recording_parallel)
    for jobs in (1, 2):
        store = RunStore(tmp_path / f"j{jobs}")
        cfg = _config(n_jobs=jobs)
        if jobs == 2 and backend == "dask":  # a local Dask cluster of two worker processes
            cfg.backend = "dask"
        if jobs == 2 and backend == "waves":  # how Ray's list-only joblib backend is driven, on loky
            monkeypatch.setattr(protocol, "results_as", lambda name: "list")
            monkeypatch.setattr(protocol, "LIST_WAVE", 3)
        store.open(cfg.identity(), resume=False)
        run_benchmark(cfg, store, progress=False)
        frames.append(_results(store))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert len(frames[0]) == 2 * 3 * 300
    assert engines[-1] == ("DaskDistributedBackend" if backend == "dask" else "LokyBackend",
                           "list" if backend == "waves" else "generator_unordered")


def test_backend_errors_are_one_line(monkeypatch):
    from rl2bench.backends import check_backend

    with pytest.raises(UserError, match="choose one of loky, dask, ray"):
        check_backend("spark", None)
    with pytest.raises(UserError, match="--cluster needs --backend dask or ray"):
        check_backend("loky", "tcp://host:8786")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(UserError, match=r"pip install 'rl2bench\[ray\]'"):
        check_backend("ray", None)


def test_tuning_uses_tuning_instances_and_records_the_choice(tmp_path):
    store = RunStore(tmp_path / "r")
    cfg = _config()
    store.open(cfg.identity(), resume=False)
    run_benchmark(cfg, store, progress=False)
    rows = store.tuning_rows("n10-k3", "ucb1")
    assert len(rows) == 11 and all(r["instances"] == 200 for r in rows.values())
    best = max(rows.values(), key=lambda r: r["mean"])
    meta = json.loads((tmp_path / "r/parts/eval/n10-k3/ucb1.json").read_text())
    assert meta["setting"] == best["setting"]


def test_tuning_never_plays_an_evaluation_instance(tmp_path, monkeypatch):
    """Grid search sees only tuning instances: no instance a tuning job plays is one the evaluation plays."""
    played: dict[str, set] = {"tune": set(), "eval": set()}
    phase = []
    _watch_jobs(monkeypatch, lambda job: phase.append(job.phase))
    make_env = FAM.make_env

    def recording(cell, instances, rng):
        played[phase[-1]].update(map(tuple, instances["arm_means"].round(12)))
        return make_env(cell, instances, rng)

    monkeypatch.setattr(FAM, "make_env", recording)
    store = RunStore(tmp_path / "r")
    cfg = _config(cells=["n10-k3"])
    store.open(cfg.identity(), resume=False)
    run_benchmark(cfg, store, progress=False)
    assert len(played["tune"]) == 200 and len(played["eval"]) == 300
    assert not played["tune"] & played["eval"]


def _watch_jobs(monkeypatch, what, die_at: int | None = None) -> list:
    """Wrap the protocol's job runner: record ``what(job)`` for every job, and raise KeyboardInterrupt at job
    number ``die_at`` (a kill mid-run, that job unfinished). Later jobs run normally."""
    import rl2bench.protocol as protocol

    real, seen = protocol._execute, []

    def watched(job):
        seen.append(what(job))
        if len(seen) == die_at:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(protocol, "_execute", watched)
    return seen


def test_resume_skips_finished_work(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "r")
    cfg = _config()
    store.open(cfg.identity(), resume=False)
    calls = _watch_jobs(monkeypatch, lambda job: job.phase, die_at=11)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, store, progress=False)
    done_before = sum(len(store.tuning_chunks("n10-k3", "ucb1", k)) for k in store.tuning_rows("n10-k3", "ucb1"))
    done_before += sum(len(store.tuning_chunks("n20-k2", "ucb1", k)) for k in store.tuning_rows("n20-k2", "ucb1"))
    assert done_before == 10

    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)
    total_jobs = 2 * 11 + 2 * 3 * 2  # tuning chunks (1 chunk of 200) + eval chunks (2 of 250/50)
    assert len(calls) == 11 + total_jobs - 10
    resumed = store.results()

    fresh = RunStore(tmp_path / "fresh")
    fresh.open(cfg.identity(), resume=False)
    run_benchmark(cfg, fresh, progress=False)
    key = ["cell", "algorithm", "instance"]
    pd.testing.assert_frame_equal(resumed.sort_values(key).reset_index(drop=True),
                                  fresh.results().sort_values(key).reset_index(drop=True))


def test_resume_after_a_kill_between_the_last_chunk_and_its_marker(tmp_path, monkeypatch):
    """Every chunk of an evaluation stored, the run killed before the completion marker: --resume must
    complete it from the stored chunks, neither losing its rows nor playing it again."""
    cfg = _config(cells=["n10-k3"], algorithms=[ALGOS["random"], ALGOS["greedy"]])
    store = RunStore(tmp_path / "r")
    store.open(cfg.identity(), resume=False)
    real_complete = RunStore.complete_eval

    killed_algorithm = []

    def killed(self, task, cell, algorithm, *args, **kwargs):
        killed_algorithm.append(algorithm)
        raise KeyboardInterrupt  # after the evaluation's last chunk was saved, before its marker

    monkeypatch.setattr(RunStore, "complete_eval", killed)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, store, progress=False)
    monkeypatch.setattr(RunStore, "complete_eval", real_complete)
    calls = _watch_jobs(monkeypatch, lambda job: (job.phase, job.agent_cls.name))
    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)
    assert len(killed_algorithm) == 1 and killed_algorithm[0] not in {name for _, name in calls}
    assert store.results().groupby("algorithm").size().to_dict() == {"greedy": 300, "random": 300}


def test_resume_with_one_more_algorithm_runs_only_its_jobs(tmp_path, monkeypatch):
    """How a user adds their algorithm to a committed leaderboard run without recomputing the baselines."""
    store = RunStore(tmp_path / "r")
    store.open(_config().identity(), resume=False)
    run_benchmark(_config(), store, progress=False)
    before = store.results()
    calls = _watch_jobs(monkeypatch, lambda job: job.agent_cls.name)
    more = _config(algorithms=[ALGOS["random"], ALGOS["ucb1"], ALGOS["ts"], ALGOS["greedy"]])
    store.open(more.identity(), resume=True)
    run_benchmark(more, store, progress=False)
    assert calls and set(calls) == {"greedy"}
    after = store.results()
    kept = after[after["algorithm"] != "greedy"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before.reset_index(drop=True))
    assert (after["algorithm"] == "greedy").sum() == 2 * 300


def _as_committed(run: Path, to: Path) -> Path:
    """Copy a run folder as git carries a committed one: results.csv, run.json, config.json, the tuning lines
    and the evaluation markers, but none of the per-chunk files or merged rows (.gitignore)."""
    shutil.copytree(run, to, ignore=lambda folder, names: [
        n for n in names if Path(folder).parent.name == "eval" and (n.endswith(".csv") or (Path(folder) / n).is_dir())])
    return to


def test_resume_of_a_committed_run_folder_reuses_every_stored_result(tmp_path, monkeypatch):
    """A fresh clone has no per-chunk files: --resume must still reuse the committed evaluations and tuning."""
    store = RunStore(tmp_path / "r")
    store.open(_config().identity(), resume=False)
    run_benchmark(_config(), store, progress=False)
    before = store.assemble({})
    clone = _as_committed(tmp_path / "r", tmp_path / "clone")
    assert not list((clone / "parts" / "eval").glob("*/*.csv")) and list((clone / "parts" / "eval").glob("*/*.json"))
    key = ["cell", "algorithm", "instance"]
    read = RunStore.existing(clone).results()  # what check and table read, without writing to the folder
    pd.testing.assert_frame_equal(read.sort_values(key).reset_index(drop=True),
                                  before.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert not list((clone / "parts" / "eval").glob("*/*.csv"))
    results = pd.read_csv(clone / "results.csv")  # one stored evaluation lost its rows: only it runs again
    (clone / "results.csv").write_text(
        results[~((results.cell == "n20-k2") & (results.algorithm == "ucb1"))].to_csv(index=False))
    calls = _watch_jobs(monkeypatch, lambda job: (job.agent_cls.name, job.phase, job.cell))
    more = _config(algorithms=[ALGOS["random"], ALGOS["ucb1"], ALGOS["ts"], ALGOS["greedy"]])
    prepared = []
    for algo in more.algorithms:  # caches (Gittins tables, policies) are built only where jobs run
        monkeypatch.setattr(algo, "prepare", classmethod(
            lambda cls, cell, spec, settings: prepared.append((cls.name, cell.name, len(settings)))))
    resumed = RunStore(clone)
    resumed.open(more.identity(), resume=True)
    run_benchmark(more, resumed, progress=False)
    assert calls and {c for c in calls if c[0] != "greedy"} == {("ucb1", "eval", "n20-k2")}
    assert sorted(prepared) == [("greedy", "n10-k3", 1), ("greedy", "n20-k2", 1), ("ucb1", "n20-k2", 1)]
    after = resumed.assemble({})
    kept = after[after["algorithm"] != "greedy"].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before.sort_values(key).reset_index(drop=True), check_dtype=False)


class _Versioned(Agent):
    """Pulls one fixed arm; which one is its single setting, like the rl2 policy's file version."""

    name = "versioned"
    families = ("mab",)
    arm = 0

    @classmethod
    def grid(cls, cell, spec):
        return [{"arm": cls.arm}]

    def __init__(self, spec, batch_size, rng, *, arm):
        super().__init__(spec, batch_size, rng)
        self.fixed = arm

    def act(self, obs):
        return np.full(self.batch_size, self.fixed)


def test_resume_replays_chunks_played_with_another_setting(tmp_path, monkeypatch):
    cfg = _config(cells=["n10-k3"], algorithms=[_Versioned])  # 300 instances: two evaluation chunks
    store = RunStore(tmp_path / "r")
    store.open(cfg.identity(), resume=False)
    calls = _watch_jobs(monkeypatch, lambda job: job.setting["arm"], die_at=2)
    monkeypatch.setattr(_Versioned, "arm", 0)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, store, progress=False)
    monkeypatch.setattr(_Versioned, "arm", 1)  # the "policy" changed between the two invocations
    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)
    assert calls == [0, 0, 1, 1]  # the chunk finished with arm 0 was played again
    fresh = RunStore(tmp_path / "fresh")
    fresh.open(cfg.identity(), resume=False)
    run_benchmark(cfg, fresh, progress=False)
    pd.testing.assert_frame_equal(store.results(), fresh.results())


class _VersionedPair(_Versioned):
    """Two settings (arm 0 or 2) of one versioned policy, like rl2's sampled and argmax play."""

    name = "versioned-pair"
    version = 1

    @classmethod
    def grid(cls, cell, spec):
        return [{"arm": arm, "version": cls.version} for arm in (0, 2)]

    def __init__(self, spec, batch_size, rng, *, arm, version):
        super().__init__(spec, batch_size, rng, arm=arm)


def test_resume_tunes_and_evaluates_again_when_a_tuned_grid_changed(tmp_path, monkeypatch, capsys):
    cfg = _config(cells=["n10-k3"], algorithms=[_VersionedPair])
    store = RunStore(tmp_path / "r")
    store.open(cfg.identity(), resume=False)
    calls = _watch_jobs(monkeypatch, lambda job: (job.phase, job.setting["version"]))
    run_benchmark(cfg, store, progress=False)
    first = len(calls)
    assert {p for p, _ in calls} == {"tune", "eval"}
    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)  # same grid: nothing to do
    assert len(calls) == first
    monkeypatch.setattr(_VersionedPair, "version", 2)  # a retrained policy: both settings are new
    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)
    assert calls[first:] and all(v == 2 for _, v in calls[first:]) and "evaluating it again" in capsys.readouterr().err
    assert store.eval_setting("n10-k3", "versioned-pair")["version"] == 2


def test_prepare_agent_plays_what_the_committed_run_evaluated(tmp_path, monkeypatch):
    from rl2bench.protocol import prepare_agent

    cfg = _config(cells=["n10-k3"], algorithms=[_VersionedPair])
    store = RunStore(tmp_path / "r")
    store.open(cfg.identity(), resume=False)
    run_benchmark(cfg, store, progress=False)
    evaluated = store.eval_setting("n10-k3", "versioned-pair")
    from rl2bench import registry

    algorithms("mab")  # the built-ins first, then this one for this test only
    monkeypatch.setitem(registry._ALGORITHMS["mab"], "versioned-pair", _VersionedPair)
    assert prepare_agent("mab", "n10-k3", "versioned-pair", tmp_path / "r").setting == evaluated
    assert prepare_agent("mab", "n10-k3", "versioned-pair").setting == {"arm": 0, "version": 1}  # no run: grid[0]
    assert prepare_agent("mab", "n10-k3", "versioned-pair", tmp_path / "r", arm=1).setting["arm"] == 1
    monkeypatch.setattr(_VersionedPair, "version", 2)  # retrained since the run: its setting is gone
    assert prepare_agent("mab", "n10-k3", "versioned-pair", tmp_path / "r").setting == {"arm": 0, "version": 2}
    with pytest.raises(UserError, match="unknown algorithm"):
        prepare_agent("mab", "n10-k3", "no-such-agent")
    with pytest.raises(UserError, match="not an rl2bench run folder"):
        prepare_agent("mab", "n10-k3", "versioned-pair", tmp_path)


def test_resume_evaluates_again_an_agent_whose_single_setting_changed(tmp_path, monkeypatch, capsys):
    cfg = _config(cells=["n10-k3"], algorithms=[_Versioned])
    store = RunStore(tmp_path / "r")
    store.open(cfg.identity(), resume=False)
    calls = _watch_jobs(monkeypatch, lambda job: job.setting["arm"])
    monkeypatch.setattr(_Versioned, "arm", 0)
    run_benchmark(cfg, store, progress=False)
    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)  # same setting: nothing to do
    assert calls == [0, 0]
    monkeypatch.setattr(_Versioned, "arm", 2)  # retrained between two invocations
    store.open(cfg.identity(), resume=True)
    run_benchmark(cfg, store, progress=False)
    assert calls == [0, 0, 2, 2] and "evaluating it again" in capsys.readouterr().err
    assert store.eval_setting("n10-k3", "versioned") == {"arm": 2}
    fresh = RunStore(tmp_path / "fresh")
    fresh.open(cfg.identity(), resume=False)
    run_benchmark(cfg, fresh, progress=False)
    pd.testing.assert_frame_equal(store.results(), fresh.results())


def test_resume_refuses_a_different_run(tmp_path):
    from rl2bench.errors import UserError

    store = RunStore(tmp_path / "r")
    store.open(_config().identity(), resume=False)
    with pytest.raises(UserError, match="--resume"):
        store.open(_config().identity(), resume=False)
    with pytest.raises(UserError, match="seed"):
        store.open(_config(seed=4).identity(), resume=True)


def test_all_skips_cells_an_algorithm_cannot_run_but_naming_it_fails(tmp_path, capsys):
    from rl2bench.errors import UserError

    class OnlyTwoArms(ALGOS["greedy"]):
        name = "only-two-arms"

        @classmethod
        def unavailable(cls, cell, spec):
            return None if spec.n_actions == 2 else "needs two arms"

    store = RunStore(tmp_path / "r")
    cfg = _config(algorithms=[ALGOS["random"], OnlyTwoArms], skip_unavailable=True)
    store.open(cfg.identity(), resume=False)
    run_benchmark(cfg, store, progress=False)
    rows = store.results()
    assert set(rows.loc[rows["algorithm"] == "only-two-arms", "cell"]) == {"n20-k2"}
    assert "skipping only-two-arms on n10-k3: needs two arms" in capsys.readouterr().err
    strict = RunStore(tmp_path / "strict")
    cfg = _config(algorithms=[OnlyTwoArms])
    strict.open(cfg.identity(), resume=False)
    with pytest.raises(UserError, match="needs two arms"):
        run_benchmark(cfg, strict, progress=False)


class _OutOfRange(_Versioned):
    name = "out-of-range"

    def act(self, obs):
        return np.full(self.batch_size, 7)


class _Floats(_Versioned):
    name = "floats"

    def act(self, obs):
        return np.zeros(self.batch_size)


@pytest.mark.parametrize("agent, needle", [(_OutOfRange, "outside 0..2"), (_Floats, "integer actions")])
def test_invalid_actions_are_a_clear_error_naming_the_agent(agent, needle):
    cell = FAM.parse_cell("n10-k3")
    with pytest.raises(UserError, match=needle) as info:
        play_trials(FAM, cell, agent, {"arm": 0}, 20, 0, "eval")
    assert agent.name in str(info.value)


def test_append_jsonl_keeps_earlier_lines(tmp_path):
    from rl2bench.results import append_jsonl

    log = tmp_path / "new" / "log.jsonl"
    append_jsonl(log, {"a": 1})
    append_jsonl(log, [{"a": 2}, {"a": 3}])
    append_jsonl(log, [])
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"a": 1}, {"a": 2}, {"a": 3}]


def _tuned(store: RunStore, lines: list[tuple[str, int, float]]) -> None:
    for key, chunk, total in lines:
        store.save_tuning("n10-k3", "ucb1", key, {"c": key}, chunk, np.array([total]), 0.0)


def test_tuning_statistics_do_not_depend_on_the_order_jobs_finished(tmp_path):
    """Parallel jobs finish in any order; the sums that choose a setting must come out the same floats."""
    sums = [1e16, 1.0, -1e16, 1.0]  # float addition of these depends on the order
    forward, backward = RunStore(tmp_path / "f"), RunStore(tmp_path / "b")
    _tuned(forward, [("a", i, s) for i, s in enumerate(sums)])
    _tuned(backward, [("a", i, s) for i, s in reversed(list(enumerate(sums)))])
    one, two = forward.tuning_rows("n10-k3", "ucb1")["a"], backward.tuning_rows("n10-k3", "ucb1")["a"]
    assert (one["mean"], one["se"]) == (two["mean"], two["se"])


def test_a_tuning_line_cut_by_a_kill_does_not_swallow_the_next(tmp_path):
    store = RunStore(tmp_path / "r")
    _tuned(store, [("a", 0, 5.0)])
    path = next((tmp_path / "r").rglob("*.jsonl"))
    path.write_text(path.read_text() + '{"key": "a", "chunk": 1, "su')  # killed mid-write, no newline
    _tuned(store, [("a", 1, 6.0)])  # --resume replays the chunk
    assert store.tuning_chunks("n10-k3", "ucb1", "a") == {0, 1}


def test_a_setting_is_chosen_only_on_all_its_tuning_chunks(tmp_path):
    store = RunStore(tmp_path / "r")
    _tuned(store, [("a", 0, 1.0), ("a", 1, 1.0), ("b", 0, 9.0)])  # b's chunk 1 never landed
    with pytest.raises(UserError, match="lacks chunks.*--resume"):
        store.best_setting("n10-k3", "ucb1", ["a", "b"], n_chunks=2)
    _tuned(store, [("b", 1, 9.0)])
    assert store.best_setting("n10-k3", "ucb1", ["a", "b"], n_chunks=2) == {"c": "b"}
