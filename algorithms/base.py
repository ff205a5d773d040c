"""The agent interface, re-exported: it lives in the core (``rl2bench.agent``) so that the protocol
depends on nothing above it; algorithms import it from here or from there alike."""

from rl2bench.agent import Agent, Setting, grid_product

__all__ = ["Agent", "Setting", "grid_product"]
