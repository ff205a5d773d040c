"""The optimal policy of the true MDP: an upper reference (the headroom above every learner), not a
learner. As a privileged agent (Agent.privileged) it sees the hidden instance parameters; the
leaderboard shows it but never counts it as a row's best."""

from __future__ import annotations

from typing import Any

from rl2bench.registry import register_algorithm

from .mdp_common import TabularAgent, backward_induction


@register_algorithm
class OracleMDP(TabularAgent):
    """Knows the true MDP and follows its optimal finite-horizon policy (reference only)."""

    name = "oracle"
    privileged = True
    cost = 0.1
    _q_true = None

    def see_privileged(self, info: dict[str, Any]) -> None:
        if self._q_true is None:  # the MDP is fixed for the trial: plan once
            self._q_true = backward_induction(info["reward_means"], info["transitions"], self.spec.horizon)

    def plan(self):
        return self._q_true
