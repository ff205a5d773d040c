"""Where expensive, reproducible artefacts (Gittins index tables) are cached between runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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
