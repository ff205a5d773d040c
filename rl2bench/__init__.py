"""rl2bench: RL^2 against classical bandit, MDP and maze algorithms under one statistical protocol."""

from pathlib import Path as _Path

# Installed, the floors above the core (``rl2bench.tasks``, ``rl2bench.algorithms``) and the data packages
# (``rl2bench.paper``: the paper's tables; ``rl2bench.zoo``: the trained RL^2 policies) lie inside this
# folder. In a source checkout they stand beside it (tasks/, algorithms/, leaderboard/paper, leaderboard/zoo),
# and the checkout's ``rl2bench/`` is what Python imports whenever it runs from the repository root, even
# over an installed copy: the package then looks for its subpackages in the checkout too, so that
# ``python -m rl2bench`` and its worker processes work from any folder, installed editable or not.
_here = _Path(__file__).resolve().parent
_source = _here.parent
if not (_here / "algorithms").is_dir() and (_source / "algorithms" / "__init__.py").is_file():
    __path__.extend([str(_source), str(_source / "leaderboard")])

from rl2bench.agent import Agent, grid_product  # noqa: E402
from rl2bench.errors import UserError  # noqa: E402
from rl2bench.registry import register_algorithm, register_family  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Agent", "UserError", "grid_product", "register_algorithm", "register_family", "__version__"]
