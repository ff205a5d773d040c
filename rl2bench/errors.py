"""Errors the CLI turns into one clear line and exit code 2 (never a traceback), and the checks of output
paths that run before any work, so that a typo in a path never costs a finished computation."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import IO

LOCK_FILE = ".rl2bench.lock"
_HELD: dict[Path, IO[str]] = {}


class UserError(Exception):
    """A problem with what the user asked for: bad task, cell, algorithm, option or path."""


def writable_folder(path: Path, flag: str) -> Path:
    """Create ``path`` (a folder to write results into) or say in one line why it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot create that folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: the folder is not writable")
    return path


def writable_file(path: Path, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Check that a file can be written at ``path`` (its folder is created), before the work that fills it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name{f' ending in {suffixes[0]}' if suffixes else ''}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path}: expected a file name ending in one of {', '.join(suffixes)}")
    writable_folder(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: the file is not writable")
    return path


class AlgorithmFailed(UserError):
    """An algorithm raised while the harness ran it (a user's plug-in, most often): one line that names the
    algorithm, cell and setting, the exception and where it was raised, instead of a worker's traceback."""

    @classmethod
    def from_exception(cls, what: str, exc: BaseException) -> AlgorithmFailed:
        import traceback

        formatted = getattr(exc, "formatted", None)  # raised in a sealed process, already formatted there
        if isinstance(formatted, str):
            return cls(f"{what} failed: {formatted}")
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
        return cls(f"{what} failed: {type(exc).__name__}: {exc}{where}")


def claim_folder(path: Path, flag: str) -> None:
    """Hold the run or training folder ``path`` for this process (until the command ends): a second
    rl2bench process writing the same folder (a ``--resume`` typed twice, two terminals) would interleave
    its files with this one's. An advisory ``flock`` on ``path/.rl2bench.lock``, released by
    ``release_folders`` or by the OS however the process ends, so a killed run never leaves a stale lock.
    Calling it again in the same process is a no-op. Where the folder cannot be locked (not POSIX, a
    read-only folder, a file system without locks) it is not guarded, and nothing is refused."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    key = Path(path).resolve()
    if key in _HELD:
        return
    try:
        handle = open(key / LOCK_FILE, "a+")
    except OSError:  # read-only: whatever writes next says why it cannot
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # no locks here (NFS, FUSE)
            handle.close()
            return
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"{flag} {path} is being written by another rl2bench process ({holder}); wait for it to "
                        f"finish, or stop it and continue with --resume") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _HELD[key] = handle


def held_folders() -> set[Path]:
    """The folders this process holds now."""
    return set(_HELD)


def release_folders(keep: AbstractSet[Path] = frozenset()) -> None:
    """Let go of every folder this process holds except ``keep`` (the end of a CLI command: the folders
    it claimed, not those a caller around it holds)."""
    for key in [k for k in _HELD if k not in keep]:
        handle = _HELD.pop(key)
        handle.truncate(0)  # no stale pid for the next reader
        handle.close()  # closing the last descriptor drops the flock
