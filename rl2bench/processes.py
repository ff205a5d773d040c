"""How rl2bench's processes end, and end together.

- SIGTERM (``kill``, a batch scheduler's stop) is Ctrl-C for the command line (``interrupt_on_sigterm``): the
  same cleanup, the same "interrupted ... --resume" line; the exit code says which signal it was
  (``exit_code``: 130 for Ctrl-C, 143 for SIGTERM, as a shell reports a process that signal ended).
- A child process (a loky worker, a maze engine server) ends within a second of the process that started it,
  however that one ended, SIGKILL included (``follow_parent``): the kernel signals it when its parent dies
  (``PR_SET_PDEATHSIG`` on Linux), and a watchdog thread compares ``os.getppid()`` with the parent it was
  started by, where there is no such signal or it came too early to be set.
- A block that Ctrl-C or SIGTERM must not cut in half (a training checkpoint) holds them until it ends
  (``deferred_interrupts``).
- A worker lost to a signal (the out-of-memory killer, a ``kill -9``) is named by the job it was running
  (``tracking_jobs`` in the protocol's process, ``running`` in the worker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rl2bench.errors import UserError

#: The signal a follower gets when its parent dies. Not SIGKILL: the kernel sends it when the parent *thread*
#: that started the child ends, which need not be the parent process's end (loky starts replacement workers
#: from a thread of its own), so the handler first checks that the parent process is really gone.
LIFELINE = signal.SIGUSR2
POLL_SECONDS = 0.5  # the watchdog's look at os.getppid()
GRACE_SECONDS = 10.0  # after the parent's death, how long the main thread gets to clean up before os._exit
ORPHANED = 1  # a follower's exit status once its parent is gone (nobody is left to read it)

_followed: int | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: every ``except KeyboardInterrupt`` treats both
    alike (saves, closes, says how to resume)."""

    signum = signal.SIGTERM


def exit_code(interrupt: BaseException) -> int:
    """128 + the number of the signal that interrupted the command: 130 for Ctrl-C, 143 for SIGTERM. A shell or
    a batch scheduler reports a process that a signal ended the same way, so a script tells the two apart."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread; a second SIGTERM ends the process
    at once (the usual default), as does SIGKILL. Left as it is where the caller ignores SIGTERM or handles it
    already, and off the main thread (where Python cannot set a handler)."""
    if not _on_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block runs and deliver them once it is done: a checkpoint is then
    written whole, and the interrupt names it. Off the main thread the block just runs."""
    if not _on_main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    held = [s for s, handler in previous.items() if handler not in (signal.SIG_IGN, None)]
    for s in held:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, previous[s])
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)  # handled now as it would have been (KeyboardInterrupt, Terminated, the end)


def _parent_death_signal(signum: int) -> bool:
    """Ask the kernel for ``signum`` when the parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _leave() -> None:
    os._exit(ORPHANED)


def follow_parent(parent: int | None = None, on_death: Callable[[], None] | None = None) -> None:
    """End this process soon after its parent (``parent``: that process's pid, as the parent passed it;
    default the parent now) is gone, however the parent ended. ``on_death`` runs in the main thread, e.g. to
    close engines before leaving; the default leaves at once (``os._exit``). Call it once, from the main
    thread, as the process starts; later calls do nothing. Should the main thread not get to run ``on_death``
    (stuck in native code) within ``GRACE_SECONDS``, the watchdog ends the process."""
    global _followed
    if _followed is not None or not _on_main_thread():
        return
    parent = os.getppid() if parent is None else parent
    _followed = parent
    leave = on_death or _leave

    def check(signum, frame):
        if os.getppid() != parent:
            signal.signal(LIFELINE, signal.SIG_IGN)  # once: the watchdog's signal must not cut the cleanup
            leave()

    signal.signal(LIFELINE, check)
    _parent_death_signal(LIFELINE)
    threading.Thread(target=_watch, args=(parent,), name="rl2bench-follow-parent", daemon=True).start()
    if os.getppid() != parent:  # gone before the kernel was asked
        check(LIFELINE, None)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), LIFELINE)  # the cleanup runs in the main thread
    time.sleep(GRACE_SECONDS)
    os._exit(ORPHANED)


def follow_parent_if_worker() -> None:
    """``follow_parent()`` in a loky worker of any joblib version (joblib < 1.5 cannot pass the workers an
    initializer): once per process, at its first job. Nothing in the protocol's own process, nor in a Dask or
    Ray worker, whose cluster manages its processes."""
    loky = sys.modules.get("joblib.externals.loky.process_executor")
    if _followed is None and getattr(loky, "_CURRENT_DEPTH", 0) > 0:
        follow_parent()


# -- what each worker is running, for the line a lost worker gets ---------------------------------------------
def _jobs_folder(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"rl2bench-{pid}-running"


@contextlib.contextmanager
def tracking_jobs() -> Iterator[Path]:
    """In the protocol's process, around a parallel phase: a folder where its local workers say what they run
    (``running``), read by ``running_jobs`` when one of them is lost; removed afterwards."""
    folder = _jobs_folder(os.getpid())
    shutil.rmtree(folder, ignore_errors=True)  # a folder left by an earlier process with this pid
    try:
        folder.mkdir(mode=0o700)
    except OSError:
        pass
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running(what: str) -> Iterator[None]:
    """In a worker, around one job: note ``what`` in its parent's tracking folder (if any) while it runs."""
    mark = _jobs_folder(os.getppid()) / str(os.getpid())
    try:
        mark.write_text(what)
    except OSError:  # no tracking folder: the protocol's own process, a cluster worker
        yield
        return
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def running_jobs(folder: Path) -> list[str]:
    """What the workers were running, as they noted it (a killed worker leaves its note)."""
    try:
        return [p.read_text() for p in sorted(folder.iterdir())]
    except OSError:
        return []


class WorkerLost(UserError):
    """A worker process ended in the middle of a job (a signal, most often the out-of-memory killer's SIGKILL,
    or a crash in native code): one line naming the jobs it was running, instead of loky's traceback."""

    @classmethod
    def from_error(cls, exc: BaseException, jobs: list[str]) -> WorkerLost:
        import re

        codes = re.search(r"exit codes of the workers are \{(.*?)\}", str(exc))
        how = f"{codes.group(1)}: " if codes else ""
        what = (f" while it ran {jobs[0]}" if len(jobs) == 1 else
                f" while the workers ran {', '.join(jobs[:-1])} and {jobs[-1]}" if jobs else "")
        return cls(f"a worker process was lost ({how}killed, e.g. by the out-of-memory killer when memory ran out, "
                   f"or crashed){what}")
