"""ViZDoom mazes (paper Section 3.3), imported as ``rl2bench.tasks.maze``; vizdoom is imported only
when an environment is built, so the other families work without it."""

from . import paths_cli  # noqa: F401  (registers `python -m rl2bench paths`)
from .env import MazeCell, MazeFamily, MazeVecEnv

__all__ = ["MazeCell", "MazeFamily", "MazeVecEnv"]
