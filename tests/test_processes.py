"""How rl2bench's processes end: real runs killed with SIGTERM (``kill``, a batch scheduler) and SIGKILL,
a worker lost under a run, training interrupted next to a checkpoint. After each, no process of the run's
tree is left (the tree is recorded while it runs, since orphans are reparented), and ``--resume`` finishes
the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rl2bench.processes import (
    Terminated,
    WorkerLost,
    _jobs_folder,
    deferred_interrupts,
    exit_code,
    interrupt_on_sigterm,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MAB = ["run", "--task", "mab", "--algos", "ucb1,ts", "--cells", "n500-k50", "--instances", "2000", "--jobs", "2",
       "--no-progress"]
MAZE = ["run", "--task", "maze", "--algos", "random", "--cells", "small-e1-t50", "--instances", "500", "--jobs", "2",
        "--no-progress"]
SETTLE = 10.0  # seconds the processes of a killed run get to end


# -- the process table -------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of ``pid``, or None where it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _table() -> dict[int, tuple[int, str, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    return table


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, int]:
    """Every process below ``root`` now, as pid -> start time (a pid reused later is another process)."""
    table, found = _table(), {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return {pid: table[pid][2] for pid in found - {root}}


def _running(processes: dict[int, int]) -> dict[int, str]:
    """Those of ``processes`` (pid -> start time) still running (not zombies), with their command lines."""
    left = {}
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == start and stat[1] != "Z":
            left[pid] = _cmdline(pid)
    return left


def _settled(processes: dict[int, int], seconds: float = SETTLE) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    while (left := _running(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class Run:
    """``python -m rl2bench ...`` in a process of its own, its tree recorded as it grows."""

    def __init__(self, args: list[str], folder: Path):
        self.err_path = folder / f"stderr-{time.monotonic_ns()}.txt"
        with open(self.err_path, "w") as err:  # a file: a leftover process must not hold a pipe open
            self.proc = subprocess.Popen([sys.executable, "-m", "rl2bench", *args], stdout=subprocess.DEVNULL,
                                         stderr=err, stdin=subprocess.DEVNULL)
        self.tree: dict[int, int] = {}

    def watch_until(self, ready, timeout: float = 240.0) -> None:
        """Record the tree until ``ready(tree)`` holds (then a little longer, to be mid-run)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the run ended before it could be killed:\n{self.stderr}"
            self.tree.update(_descendants(self.proc.pid))
            if ready(self.tree):
                return
            time.sleep(0.1)
        raise AssertionError(f"not ready in {timeout} s:\n{self.stderr}")

    def kill(self, signum: int) -> int:
        self.tree.update(_descendants(self.proc.pid))
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=120)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()


def _finished_jobs(out: Path) -> int:
    """Jobs stored in the run folder so far (tuning lines and evaluation chunks)."""
    parts = out / "parts"
    if not parts.is_dir():
        return 0
    tuned = sum(len(p.read_text().splitlines()) for p in parts.glob("tune/*/*.jsonl"))
    return tuned + sum(1 for p in parts.glob("eval/*/*/*") if p.is_file())


def _resume_completes(args: list[str], out: Path, rows: int) -> None:
    done = subprocess.run([sys.executable, "-m", "rl2bench", *args, "--out", str(out), "--resume"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len((out / "results.csv").read_text().splitlines()) == rows + 1


def _vizdoom_or_skip() -> None:
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        # CI sets RL2BENCH_REQUIRE_MAZE=1: there the maze cases must run, never skip.
        if os.environ.get("RL2BENCH_REQUIRE_MAZE") == "1":
            raise
        pytest.skip('vizdoom not installed (pip install -e ".[test,maze]")')


def _interrupted_line(out: Path) -> str:
    return f"interrupted: finished jobs are saved in {out}; continue with the same command plus --resume --out {out}"


# -- killing real runs ---------------------------------------------------------------------------------------
@pytest.mark.heavy
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_bandit_run_leaves_no_process_and_resumes(tmp_path, signum):
    out = tmp_path / "run"
    run = Run([*MAB, "--out", str(out)], tmp_path)
    run.watch_until(lambda tree: _finished_jobs(out) >= 1 and len(tree) >= 4)  # 2 workers, 2 resource trackers
    saved = _finished_jobs(out)
    code = run.kill(signum)
    left = _settled(run.tree)
    assert not left, f"left after {SETTLE:.0f} s: {left}"
    if signum == signal.SIGTERM:
        assert code == 143, run.stderr
        assert run.stderr.strip().splitlines() == [_interrupted_line(out)]
    else:
        assert code == -signal.SIGKILL
    assert _finished_jobs(out) >= saved  # what was finished stays saved
    _resume_completes(MAB, out, 2 * 2000)


def _engine_tags(tree: dict[int, int]) -> tuple[list[str], list[str]]:
    """The shared-memory objects and folders of the maze engines in ``tree`` (named in their command lines)."""
    shm, folders = [], []
    for pid in tree:
        argv = _cmdline(pid).split()
        if "+viz_instance_id" in argv[:-1]:
            tag = argv[argv.index("+viz_instance_id") + 1]
            shm += [f"/dev/shm/ViZDoom{kind}{tag}" for kind in ("SM", "MQCtr", "MQDoom")]
        if "-config" in argv[:-1]:
            folders.append(os.path.dirname(argv[argv.index("-config") + 1]))
    return shm, sorted(set(folders))


def _janitors(folders: list[str]) -> dict[int, int]:
    """The engine servers' janitors (outside the run's tree: their parent is not in it) for ``folders``."""
    table = _table()
    return {pid: table[pid][2] for pid in table
            if "janitor.py" in (line := _cmdline(pid)) and any(line.rstrip().endswith(f) for f in folders)}


def _kill_while_engines_play(run: Run, signum: int) -> int:
    """Send ``signum`` once 8 engines play; then workers, engine servers, engines, their shared memory and
    folders must all be gone within SETTLE seconds. Returns the exit code."""

    def engines_playing(tree: dict[int, int]) -> bool:
        return sum("+viz_instance_id" in _cmdline(pid) for pid in tree) >= 8

    run.watch_until(engines_playing)
    time.sleep(1.0)  # mid-job: the engines are stepping
    shm, folders = _engine_tags(run.tree)
    janitors = _janitors(folders)
    assert shm and folders and janitors
    code = run.kill(signum)
    left = _settled({**run.tree, **janitors})
    assert not left, f"left after {SETTLE:.0f} s: {left}"
    assert [p for p in shm + folders if os.path.exists(p)] == []
    return code


@pytest.mark.heavy
@pytest.mark.maze
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_maze_run_leaves_no_engine_and_resumes(tmp_path, signum):
    """Workers, engine servers, ViZDoom engines, their shared memory and folders: all gone within seconds."""
    _vizdoom_or_skip()
    out = tmp_path / "run"
    run = Run([*MAZE, "--out", str(out)], tmp_path)
    code = _kill_while_engines_play(run, signum)
    if signum == signal.SIGTERM:
        assert code == 143 and run.stderr.strip().splitlines() == [_interrupted_line(out)], run.stderr
    else:
        assert code == -signal.SIGKILL
    _resume_completes(MAZE, out, 500)


MAZE_TRAIN = ["train", "--task", "maze", "--cell", "g3-e2-t12", "--preset", "maze-ppo", "--no-progress",
              "--iters", "500", "--set", "hidden=16", "--set", "batch_steps=96", "--set", "workers=1",
              "--set", "games_per_worker=8", "--set", "pool=16", "--set", "encoder_frames=64",
              "--set", "encoder_epochs=1", "--set", "ppo_minibatch_trials=4"]


@pytest.mark.heavy
@pytest.mark.maze
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_maze_training_leaves_no_engine(tmp_path, signum):
    """The maze trainer's engines (its one environment for the whole run) end with it, however it ends."""
    _vizdoom_or_skip()
    code = _kill_while_engines_play(Run([*MAZE_TRAIN, "--out", str(tmp_path / "train")], tmp_path), signum)
    assert code == (143 if signum == signal.SIGTERM else -signal.SIGKILL)


@pytest.mark.heavy
def test_a_lost_worker_is_one_line_naming_its_job(tmp_path):
    """A worker killed under a run (as the out-of-memory killer does): one line that names the job it was
    running and how to resume, exit 2, no traceback, and no process left."""
    out = tmp_path / "run"
    run = Run([*MAB, "--out", str(out)], tmp_path)
    marks = _jobs_folder(run.proc.pid)  # where the workers note the job each runs

    def a_worker_in_a_job(tree: dict[int, int]) -> bool:
        return any(str(pid) in os.listdir(marks) for pid in tree) if marks.is_dir() else False

    run.watch_until(a_worker_in_a_job)
    victim = next(pid for pid in run.tree if (marks / str(pid)).exists())
    job = (marks / str(victim)).read_text()
    os.kill(victim, signal.SIGKILL)
    assert run.proc.wait(timeout=120) == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("rl2bench: error: a worker process was lost (SIGKILL")
    assert job in lines[0] and lines[0].endswith(f"continue with the same command plus --resume --out {out}")
    assert not _settled(run.tree)
    assert not marks.exists()


# -- training --------------------------------------------------------------------------------------------------
TRAIN = ["train", "--task", "mab", "--cell", "n10-k5", "--no-progress"]
TINY_TRAIN = [*TRAIN, "--set", "hidden=16", "--set", "batch_steps=2000", "--set", "baseline_epochs=1"]


@pytest.mark.heavy
def test_sigterm_after_a_checkpoint_names_its_iteration_and_resumes(tmp_path):
    """A checkpoint every iteration and SIGTERM as soon as the first exists (often in the middle of writing
    the next): the line names the iteration the checkpoint on disk holds."""
    import torch

    out = tmp_path / "train"
    run = Run([*TINY_TRAIN, "--set", "checkpoint_every=1", "--iters", "200", "--out", str(out)], tmp_path)
    run.watch_until(lambda tree: (out / "checkpoint.pt").exists(), timeout=120)
    assert run.kill(signal.SIGTERM) == 143, run.stderr
    stored = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["iteration"]
    assert stored >= 1 and json.loads((out / "meta.json").read_text())["iterations"] == stored
    assert run.stderr.strip().splitlines()[-1] == (f"interrupted; the checkpoint in {out} is at iteration {stored}: "
                                                   f"continue with the same command plus --resume --out {out}")
    done = subprocess.run([sys.executable, "-m", "rl2bench", *TRAIN, "--iters", str(stored + 1), "--resume",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and f"done: iteration {stored + 1}" in done.stderr, done.stderr


@pytest.mark.heavy
def test_resume_of_a_run_still_training_names_its_process(tmp_path, capsys):
    """Before the first checkpoint of a training run, a --resume of its folder names the process training
    there (not "no checkpoint.pt"); SIGTERM then says nothing was saved."""
    from rl2bench.cli import main

    out = tmp_path / "train"
    run = Run([*TINY_TRAIN, "--set", "batch_steps=200000", "--iters", "1000", "--out", str(out)], tmp_path)
    run.watch_until(lambda tree: "training rl2 on" in run.stderr, timeout=120)  # the folder is held, it trains
    assert main([*TRAIN, "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"pid {run.proc.pid}" in err and "being written by another rl2bench process" in err, err
    assert run.kill(signal.SIGTERM) == 143
    assert "interrupted before the first checkpoint: nothing was saved" in run.stderr
    assert not _settled(run.tree)


def test_a_checkpoint_is_written_whole_before_an_interrupt(tmp_path):
    """Ctrl-C in the middle of a checkpoint waits for it: the trainer's saved iteration is the one written."""
    from rl2bench.algorithms.rl2.loop import training_loop

    class Trainer:
        iteration, saved_iteration = 0, 0

        class cfg:
            checkpoint_every, iters = 5, 100

        def iterate(self):
            self.iteration += 1
            return {}

        def save(self, finished):
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the files are being written
            time.sleep(0.05)
            self.saved_iteration = self.iteration

    trainer = Trainer()
    # Ctrl-C as a terminal delivers it, however pytest was started (a job started in the background with `&`
    # inherits SIGINT ignored, and an ignored Ctrl-C rightly stays ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            training_loop(trainer, 100, "test", lambda row: "", False, None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert trainer.iteration == trainer.saved_iteration == 5


# -- the pieces ----------------------------------------------------------------------------------------------
def test_sigterm_raises_terminated_inside_the_command_only(monkeypatch):
    import rl2bench.processes as processes

    monkeypatch.setattr(processes, "stop_workers", lambda: None)  # this test process's own loky workers stay
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught:
        with interrupt_on_sigterm():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert isinstance(caught.value, KeyboardInterrupt) and exit_code(caught.value) == 143
    assert exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == before
    with deferred_interrupts():  # nothing caught: nothing raised
        pass


FOLLOWER = textwrap.dedent("""
    import os, sys, time
    from rl2bench.processes import follow_parent
    follow_parent(int(sys.argv[1]))
    print("following", flush=True)
    time.sleep(60)
""")

PARENT = textwrap.dedent("""
    import os, subprocess, sys, threading, time
    follower = sys.argv[1]
    def start():  # from a thread that ends at once: the kernel's parent-death signal fires then
        global child
        child = subprocess.Popen([sys.executable, "-c", follower, str(os.getpid())], stdout=subprocess.PIPE,
                                 text=True)
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert child.stdout.readline().strip() == "following"
    time.sleep(1.5)
    print(child.pid, child.poll(), flush=True)
    time.sleep(60)
""")


@pytest.mark.heavy
def test_a_follower_ends_with_its_parent_not_with_the_thread_that_started_it():
    parent = subprocess.Popen([sys.executable, "-c", PARENT, FOLLOWER], stdout=subprocess.PIPE, text=True)
    try:
        pid, status = parent.stdout.readline().split()
        assert status == "None"  # the starting thread ended, the parent lives: the follower too
        follower = {int(pid): _stat(int(pid))[2]}
        parent.kill()
        parent.wait()
        assert not _settled(follower, 3.0)
    finally:
        parent.kill()
        parent.wait()


def test_the_lost_worker_line():
    class Broken(Exception):
        pass

    exc = Broken("A worker process managed by the executor was unexpectedly terminated.\n"
                 "The exit codes of the workers are {SIGKILL(-9)}\n")
    one = str(WorkerLost.from_error(exc, ["ts on mab n10-k5 (eval, setting {}, chunk 3)"]))
    assert one == ("a worker process was lost (SIGKILL(-9): killed, e.g. by the out-of-memory killer when memory ran "
                   "out, or crashed) while it ran ts on mab n10-k5 (eval, setting {}, chunk 3)")
    two = str(WorkerLost.from_error(exc, ["a", "b"]))
    assert two.endswith("while the workers ran a and b")
    assert str(WorkerLost.from_error(Broken("?"), [])).endswith("or crashed)")

