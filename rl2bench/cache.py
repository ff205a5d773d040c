"""Where expensive, reproducible artefacts (Gittins index tables) are cached between runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def cache_dir() -> Path:
    """``$RL2BENCH_CACHE`` if set, else ``~/.cache/rl2bench``."""
    root = os.environ.get("RL2BENCH_CACHE") or Path.home() / ".cache" / "rl2bench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    """Write to a temporary file and rename, so a concurrent or killed writer never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def load_or_rebuild(path: Path, load: Callable[[Path], T]) -> T | None:
    """What ``load(path)`` reads, or None (the caller builds it again) when the cached file is missing or
    damaged: cut short by a full disk, a killed copy, a bad sector. A damaged table is never used: it is
    named on stderr once, removed and rebuilt, since a cache holds nothing that cannot be computed again."""
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as exc:  # np.load raises ValueError, EOFError, OSError, zipfile errors, ...
        print(f"rl2bench: the cached table {path} is damaged ({type(exc).__name__}: {exc}); building it again",
              file=sys.stderr)
        path.unlink(missing_ok=True)
        return None
