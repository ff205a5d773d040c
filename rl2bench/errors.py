"""Errors the CLI turns into one clear line and exit code 2 (never a traceback), and the checks of output
paths that run before any work, so that a typo in a path never costs a finished computation."""

from __future__ import annotations

import os
from pathlib import Path


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

        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
        return cls(f"{what} failed: {type(exc).__name__}: {exc}{where}")
