"""Algorithms, imported as ``rl2bench.algorithms``; importing registers the built-in agents."""

from . import bandit_simple, bandit_variants, gittins, maze_agents, thompson  # noqa: F401
from .base import Agent, grid_product

__all__ = ["Agent", "grid_product"]
