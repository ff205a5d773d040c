"""Algorithms, imported as ``rl2bench.algorithms``; importing registers the built-in agents."""

from . import (  # noqa: F401
    bandit_simple,
    bandit_variants,
    bayes_optimal,
    gittins,
    maze_agents,
    mdp_beb,
    mdp_oracle,
    mdp_psrl,
    mdp_simple,
    mdp_ucrl2,
    rl2,
    thompson,
)
from .base import Agent, grid_product

__all__ = ["Agent", "grid_product"]
