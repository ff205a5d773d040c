"""RL^2 (paper Section 2): a GRU policy trained by TRPO across trials, and the ``rl2`` agent that plays a
trained policy from the zoo. Importing registers the agent and the ``train`` and ``zoo`` subcommands; torch
loads only when they are used."""

from . import agent, cli  # noqa: F401
