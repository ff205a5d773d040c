"""How rl2bench's processes end, and end together.

- SIGTERM (``kill``, a batch scheduler's stop) is Ctrl-C for the command line (``interrupt_on_sigterm``): the
  same cleanup, the same "interrupted ... --resume" line; the exit code says which signal it was
  (``exit_code``: 130 for Ctrl-C, 143 for SIGTERM, as a shell reports a process that signal ended). Either
  first ends the loky workers and their children in order (``stop_workers``).
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
from typing import Any

from rl2bench.errors import UserError

#: The signal a follower gets when its parent dies. Not SIGKILL: the kernel sends it when the parent *thread*
#: that started the child ends, which need not be the parent process's end (loky starts replacement workers
#: from a thread of its own), so the handler first checks that the parent process is really gone.
LIFELINE = getattr(signal, "SIGUSR2", None)  # None on Windows, where processes are not followed
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
    """Within the block, SIGTERM raises ``Terminated`` in the main thread, and Ctrl-C KeyboardInterrupt as
    always; both first stop this process's loky workers (``stop_workers``). A second SIGTERM ends the process
    at once (the usual default), as does SIGKILL. A signal the caller ignores or handles already is left as it
    is, and so is everything off the main thread (where Python cannot set a handler)."""
    if not _on_main_thread():
        yield
        return

    def interrupt(signum, frame):
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop_workers()
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    defaults: dict[signal.Signals, Any] = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    ours = [s for s, default in defaults.items() if signal.getsignal(s) is default]
    for s in ours:
        signal.signal(s, interrupt)
    try:
        yield
    finally:
        for s in ours:
            signal.signal(s, defaults[s])


def stop_workers(timeout: float = 5.0) -> None:
    """End this process's loky workers in order, before joblib, aborting, SIGKILLs their process trees whole
    (and loky does so to every worker as soon as one ends): first freeze them (SIGSTOP: they start nothing
    more and none ends yet), then SIGTERM their children and give those ``timeout`` seconds (a maze engine
    server closes its engines and removes their shared memory; a sealed agent's process just ends), then
    SIGKILL the workers. A server SIGKILLed while starting an engine could not clean that engine up. Linux only
    (the processes are found in /proc); elsewhere joblib's abort does it all."""
    me = os.getpid()
    table = _processes()
    workers = [pid for pid, ppid in table if ppid == me and b"loky.backend.popen_loky" in _cmdline(pid)]
    if not workers:
        return
    try:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        children = [pid for pid, ppid in _processes() if ppid in workers]
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _processes() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process /proc shows (none where there is no /proc)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    with open(f"/proc/{entry}/stat") as fh:
                        found.append((int(entry), int(fh.read().rsplit(")", 1)[1].split()[1])))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which only waits for its parent to read its status, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
    if _followed is not None or not _on_main_thread() or LIFELINE is None:
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
    os.kill(os.getpid(), LIFELINE or signal.SIGTERM)  # the cleanup runs in the main thread
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
