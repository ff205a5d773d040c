"""Task families, imported as ``rl2bench.tasks``; importing registers the built-in families."""

from . import bandit, maze, mdp  # noqa: F401
from .base import Cell, EnvSpec, StepResult, TaskFamily, VecEnv

__all__ = ["Cell", "EnvSpec", "StepResult", "TaskFamily", "VecEnv"]
