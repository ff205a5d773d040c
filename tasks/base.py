"""The task-family interface, re-exported: it lives in the core (``rl2bench.task``) so that the protocol
depends on nothing above it; families import it from here or from there alike."""

from rl2bench.task import Cell, CellOutOfRange, CellT, EnvSpec, StepResult, TaskFamily, VecEnv

__all__ = ["Cell", "CellOutOfRange", "CellT", "EnvSpec", "StepResult", "TaskFamily", "VecEnv"]
