"""RL^2 (paper Section 2): a GRU policy trained by TRPO across trials, and the ``rl2`` agent that plays a
trained policy from the zoo. Importing registers the agent; torch loads only when it is used."""

from . import agent  # noqa: F401
