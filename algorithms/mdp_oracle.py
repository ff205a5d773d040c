"""The optimal policy of the true MDP: an upper reference (the headroom above every learner), not a
learner. It is the one agent that receives the hidden instance parameters (Agent.uses_hidden_parameters)."""

from __future__ import annotations

import numpy as np

from rl2bench.registry import register_algorithm

from .mdp_common import TabularAgent, backward_induction


@register_algorithm
class OracleMDP(TabularAgent):
    """Knows the true MDP and follows its optimal finite-horizon policy (reference only)."""

    name = "oracle"
    uses_hidden_parameters = True
    exclude_from_all = True  # it would be the row's best everywhere and un-bold every real method
    cost = 0.1

    def receive_hidden_parameters(self, instances: dict[str, np.ndarray]) -> None:
        reward, trans = instances["reward_means"], instances["transitions"]
        self._q_true = backward_induction(reward, trans, self.spec.horizon)

    def plan(self):
        return self._q_true
