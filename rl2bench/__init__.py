"""rl2bench: RL^2 against classical bandit, MDP and maze algorithms under one statistical protocol."""

from rl2bench.errors import UserError
from rl2bench.registry import register_algorithm, register_family

__version__ = "0.1.0"
__all__ = ["UserError", "register_algorithm", "register_family", "__version__"]
