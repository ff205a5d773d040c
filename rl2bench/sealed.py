"""Sealed evaluation: an algorithm that is not built in plays from a process of its own.

Only what the agent interface promises crosses into that process: the spec, the batch size, the agent's
generator (seeded one-way, ``seeding.sealed_seed``), observations, actions, rewards and done flags. The
environment, the instances and the root seed stay in the protocol's process, so frame, ``gc`` or module
introspection in the agent's process finds none of them. Built-in algorithms (this package's own, reviewed
code) play in-process; ``run --in-process`` plays plug-ins in-process too, for debugging one's own code, and
the run records that it was not sealed.

One sealed process serves every sealed job of the process that runs jobs (a loky worker, or the main
process with ``--jobs 1``), so its start-up is paid once. Each step is one round trip: ``observe`` is held
back and sent with the next ``act``. The process exits when its parent does, however the parent ends
(end of file on its pipe, and on Linux a parent-death signal).
"""

from __future__ import annotations

import atexit
import os
import random
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from rl2bench.agent import Agent, Setting
from rl2bench.task import EnvSpec

_PACKAGE_DIR = Path(__file__).resolve().parent


def is_builtin(cls: type) -> bool:
    """A class of this package's own (reviewed) code: its module is under ``rl2bench`` and its file lies in
    the installed package or the source checkout's floors."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not (cls.__module__ == "rl2bench" or cls.__module__.startswith("rl2bench.")) or path is None:
        return False
    roots = [_PACKAGE_DIR, *(Path(p).resolve() for p in getattr(sys.modules["rl2bench"], "__path__", []))]
    return any(Path(path).resolve().is_relative_to(root) for root in roots)


class RemoteAgentError(Exception):
    """What an agent raised in its sealed process, already formatted as ``Type: message (at file:line in f)``."""

    def __init__(self, formatted: str):
        super().__init__(formatted)
        self.formatted = formatted


def seed_globals(seed: int) -> None:
    """Seed numpy's and Python's global generators, so that a wrapped library that draws from them (ties
    broken with ``np.random``) reproduces too. They take other bits of the digest than the agent's own
    generator does."""
    np.random.seed((seed >> 128) % 2**32)
    random.seed(seed >> 128)


class _Server:
    """The parent's end: starts the sealed process and exchanges one message per call."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from rl2bench.sealed import serve; serve()", str(child_end.fileno())],
            pass_fds=(child_end.fileno(),), env=env, stdin=subprocess.DEVNULL)
        child_end.close()
        self.conn = Connection(parent_end.detach())
        self.pid = os.getpid()

    def request(self, message: tuple[Any, ...]) -> Any:
        try:
            self.conn.send(message)
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            _drop_server()
            raise RemoteAgentError("the agent's sealed process ended unexpectedly") from None
        if kind == "error":
            raise RemoteAgentError(payload)
        return payload

    def close(self) -> None:
        try:
            self.conn.send(("exit",))
            self.conn.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.process.kill()


_SERVER: _Server | None = None


def _server() -> _Server:
    global _SERVER
    if _SERVER is None or _SERVER.pid != os.getpid() or _SERVER.process.poll() is not None:
        _SERVER = _Server()
    return _SERVER


def _drop_server() -> None:
    global _SERVER
    if _SERVER is not None and _SERVER.pid == os.getpid():
        _SERVER.close()
    _SERVER = None


atexit.register(_drop_server)


class SealedAgent(Agent):
    """The protocol's handle on an agent that lives in the sealed process: the same calls, one round trip
    per step."""

    name = "sealed"
    families = ()

    def __init__(self, agent_cls: type[Agent], spec: EnvSpec, batch_size: int, seed: int, setting: Setting):
        import cloudpickle  # classes defined in __main__ or a notebook travel by value

        self.server = _server()
        self.handle = self.server.request(("new", cloudpickle.dumps(agent_cls), spec, batch_size, seed, setting))
        self.pending: tuple[Any, ...] | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        pending, self.pending = self.pending, None
        return self.server.request(("act", self.handle, pending, obs))

    def observe(self, actions, rewards, next_obs, episode_done) -> None:
        self.pending = (actions, rewards, next_obs, episode_done)

    def close(self) -> None:
        if _SERVER is self.server:
            self.server.request(("drop", self.handle))


def _formatted(exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)[1:]  # not the serving loop's own frame
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _die_with_parent() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; we follow it out
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def serve() -> None:
    """The sealed process: build agents from their classes and answer act/observe until the parent goes."""
    _die_with_parent()
    conn = Connection(int(sys.argv[1]))
    agents: dict[int, Agent] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if message[0] == "exit":
                return
            if message[0] == "new":
                import pickle

                _, blob, spec, batch_size, seed, setting = message
                cls = pickle.loads(blob)
                seed_globals(seed)
                handle = len(agents) and max(agents) + 1
                agents[handle] = cls(spec, batch_size, np.random.Generator(np.random.PCG64(seed)), **setting)
                reply: Any = handle
            elif message[0] == "act":
                _, handle, pending, obs = message
                if pending is not None:
                    agents[handle].observe(*pending)
                reply = agents[handle].act(obs)
            elif message[0] == "drop":
                agents.pop(message[1], None)
                reply = None
            else:
                raise ValueError(f"unknown message {message[0]!r}")
        except BaseException as exc:  # SystemExit and KeyboardInterrupt in a plug-in are its errors too
            conn.send(("error", _formatted(exc)))
            continue
        conn.send(("ok", reply))
