"""Which networks a bandit/MDP run trains, built from its config, and how a trained run's weights carry into
a new run (``--init-from``).

The policy always takes the paper's inputs, the embedding of (s, a_prev, r_prev, d_prev). The critic may be
given more (``critic_time``: the step in the episode and the episode in the trial, as fractions, which the
GRU would otherwise have to count from done flags) and a width of its own (``critic_hidden``). What the
critic is given never reaches the policy: the two networks share no weights and the extra inputs are
appended only to the critic's copy of the batch (``critic_inputs``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rl2bench.errors import UserError

from .belief import mdp_input_size, mdp_inputs
from .config import TrainConfig
from .devices import torch_generator
from .policy import Baseline, Policy
from .posterior_net import AnyBaseline, AnyPolicy, PosteriorBaseline, PosteriorPolicy, time_fractions
from .rollout import TaskShape

TIME_FEATURES = 2


def critic_width(cfg: TrainConfig) -> int:
    return cfg.critic_hidden or cfg.hidden


def time_features(shape: TaskShape, steps: int, trials: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(steps, trials, 2): the step within the episode and the episode within the trial, each in [0, 1)."""
    t = torch.arange(steps, device=device, dtype=torch.float32).unsqueeze(-1)
    return time_fractions(t, shape.horizon, shape.n_episodes).unsqueeze(1).expand(steps, trials, TIME_FEATURES)


def critic_extra_inputs(shape: TaskShape, cfg: Any) -> int:
    return (TIME_FEATURES if cfg.critic_time else 0) + (mdp_input_size(shape) if cfg.critic_mdp else 0)


def critic_inputs(x: torch.Tensor, shape: TaskShape, cfg: TrainConfig,
                  instances: dict[str, np.ndarray] | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
    """The critic's copy of a batch's inputs (steps, trials, input): the policy's, plus time and the true
    MDP's rows of each step's state (``obs``, from the batch's ``instances``) where configured."""
    parts = [x]
    if cfg.critic_time:
        parts.append(time_features(shape, x.shape[0], x.shape[1], x.device))
    if cfg.critic_mdp:
        if instances is None or obs is None:
            raise ValueError("critic_mdp: the critic's inputs need the batch's instances and states")
        parts.append(mdp_inputs(shape, instances, obs))
    return torch.cat(parts, dim=-1) if len(parts) > 1 else x


def build_networks(shape: TaskShape, cfg: TrainConfig, init: np.random.Generator, scale: float
                   ) -> tuple[AnyPolicy, AnyBaseline]:
    """The policy, then the baseline, each initialised from its own draw of ``init`` (in that order)."""
    s = shape
    if cfg.network == "posterior":
        if cfg.gru_update_bias:
            raise UserError("gru_update_bias sets a GRU gate; network=posterior has no GRU")
        if cfg.critic_time or cfg.critic_mdp or cfg.aux_coef:
            raise UserError("network=posterior takes none of critic_time, critic_mdp, aux_coef (it is a diagnostic "
                            "of memory; its features already hold time)")
        return (PosteriorPolicy(s.n_states, s.n_actions, cfg.hidden, s.horizon, s.n_episodes, torch_generator(init)),
                PosteriorBaseline(s.n_states, s.n_actions, critic_width(cfg), s.horizon, s.n_episodes, scale,
                                  torch_generator(init)))
    if (cfg.critic_mdp or cfg.aux_coef) and s.task != "mdp":
        raise UserError("critic_mdp and aux_coef read the hidden MDP: mdp cells only")
    if cfg.aux_coef and cfg.update != "ppo":
        raise UserError("aux_coef adds a loss to PPO's: add --set update=ppo (or a PPO preset)")
    if cfg.aux_target != "mdp" and not cfg.aux_coef:
        raise UserError(f"aux_target={cfg.aux_target} chooses what the auxiliary head predicts: set aux_coef > 0 too")
    policy = Policy(s.n_states, s.n_actions, cfg.hidden, torch_generator(init), cfg.gru_activation)
    baseline = Baseline(s.n_states, s.n_actions, critic_width(cfg), scale, torch_generator(init), cfg.gru_activation,
                        critic_extra_inputs(s, cfg))
    if cfg.gru_update_bias:
        policy.set_update_gate_bias(cfg.gru_update_bias)
        baseline.set_update_gate_bias(cfg.gru_update_bias)
    return policy, baseline


def carry_over(net: Any, weights: dict[str, torch.Tensor], width: int, build_narrow: Any, strict: bool = True) -> bool:
    """Load a trained network's ``weights`` into ``net``: as they are when the widths agree, or through a
    narrower copy (``build_narrow(width)``) that ``net`` widens from when ``net`` is a wider GRU. True when it
    widened. Raises RuntimeError or ValueError when they do not fit."""
    if width < net.hidden and isinstance(net, Policy | Baseline):
        narrow = build_narrow(width)
        narrow.load_state_dict(weights, strict=strict)
        net.widen_from(narrow.to(net.head.bias.device))
        return True
    net.load_state_dict(weights, strict=strict)
    return False
