"""The RL^2 networks (paper Section 2.3 and Appendix A): a GRU over the embedded tuple (s, a_prev, r_prev,
d_prev), then a fully connected layer (softmax over actions for the policy, a scalar for the baseline).

Embedding: one-hot state (a constant 0 for bandits, which have one state), one-hot previous action,
previous reward and episode-done flag as they are. At t = 0 the placeholders are action 0's embedding,
reward 0 and flag 0. Sequences are time-major, shaped (steps, trials, ...).

Initialisation follows Appendix A: weight normalisation without data-dependent init (the gain starts at
the norm of the initial weight, so the network starts exactly at its Xavier/orthogonal weights) on every
weight matrix, orthogonal hidden-to-hidden blocks, Xavier elsewhere, zero biases. The hidden state is
zeroed at the start of a trial and carried across its episodes.

The GRU's candidate activation (``activation``): ``"relu"``, the paper's ("rectified linear units ... as the
hidden activation", Appendix A; the authors' launchers pass ReLU to their GRU layer), or ``"tanh"``,
``nn.GRU``'s, which every policy trained before it became a setting (2026-11-27) used (their files carry no
activation and load as tanh). A ReLU candidate is unbounded above, so a unit can count (visits, rewards) over
a long trial where a tanh unit saturates at 1. The weights live in an ``nn.GRU`` either way (same names, same
checkpoints); only the arithmetic differs (``fused_gru.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from .fused_gru import ACTIVATIONS, UNRECORDED_ACTIVATION, fused_gru, gru_cell, gru_sequence
from .tensors import grown_gru_tensors, gru_tensors


def input_size(n_states: int, n_actions: int) -> int:
    """Width of the joint embedding: state one-hot (or one constant 0), action one-hot, reward, flag."""
    return (n_states if n_states > 1 else 1) + n_actions + 2


def embed(obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor, prev_done: torch.Tensor,
          n_states: int, n_actions: int) -> torch.Tensor:
    """Joint embedding phi(s, a, r, d) of any leading shape; actions and states are integer tensors."""
    if n_states > 1:
        s = nn.functional.one_hot(obs.long(), n_states).float()
    else:
        s = torch.zeros(*obs.shape, 1, device=obs.device)
    a = nn.functional.one_hot(prev_action.long(), n_actions).float()
    return torch.cat([s, a, prev_reward.float().unsqueeze(-1), prev_done.float().unsqueeze(-1)], dim=-1)


class RecurrentNet(nn.Module):
    """GRU + linear head with the paper's initialisation; the policy and the baseline are two instances."""

    def __init__(self, n_states: int, n_actions: int, hidden: int, n_out: int,
                 generator: torch.Generator | None = None, activation: str = UNRECORDED_ACTIVATION,
                 extra_inputs: int = 0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown GRU activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.n_states, self.n_actions, self.hidden, self.activation = n_states, n_actions, hidden, activation
        self.extra_inputs = extra_inputs  # beyond the embedding: the critic's time features (networks.py)
        self.gru = nn.GRU(input_size(n_states, n_actions) + extra_inputs, hidden)
        self.head = nn.Linear(hidden, n_out)
        gru = gru_tensors(self.gru)
        with torch.no_grad():
            for block in gru.weight_ih_l0.chunk(3, dim=0):  # one block per gate (reset, update, new)
                nn.init.xavier_uniform_(block, generator=generator)
            for block in gru.weight_hh_l0.chunk(3, dim=0):
                nn.init.orthogonal_(block, generator=generator)
            nn.init.xavier_uniform_(self.head.weight, generator=generator)
            for bias in (gru.bias_ih_l0, gru.bias_hh_l0, self.head.bias):
                bias.zero_()
        for module, name in ((self.gru, "weight_ih_l0"), (self.gru, "weight_hh_l0"), (self.head, "weight")):
            weight_norm(module, name, dim=0)  # gain initialised to the row norms: no data-dependent init

    def set_update_gate_bias(self, value: float) -> None:
        """Start the GRU's update gate at sigmoid(value) instead of 1/2: h' = (1 - z) n + z h, so a positive
        value keeps more of the hidden state per step from the first iteration on (the "forget-gate bias"
        of LSTM practice; the paper's initialisation is 0)."""
        with torch.no_grad():
            gru_tensors(self.gru).bias_hh_l0[self.hidden:2 * self.hidden] = value

    @torch.no_grad()
    def widen_from(self, narrow: RecurrentNet) -> None:
        """Take a trained narrower network's function into this wider one (a net2net-style growth step):
        its units keep their weights, the new units keep this network's fresh initialisation but nothing
        old reads them yet (their columns in the old units' recurrent rows and in the head start at 0), so
        the outputs are exactly the narrow network's until training moves those zeros. Under weight
        normalisation a zero column still gets a gradient, so the new units come into use as they learn."""
        old, new = narrow.hidden, self.hidden
        if (old > new or (narrow.n_states, narrow.n_actions) != (self.n_states, self.n_actions)
                or narrow.activation != self.activation or narrow.extra_inputs != self.extra_inputs):
            raise ValueError(f"cannot widen a {narrow.activation} GRU {old} for {narrow.n_states}x{narrow.n_actions} "
                             f"into a {self.activation} GRU {new} for {self.n_states}x{self.n_actions}")
        g = gru_tensors(self.gru)
        w_ih, w_hh, b_ih, b_hh = grown_gru_tensors(g, gru_tensors(narrow.gru), old, new)
        head = self.head.weight.clone()
        head[:, :old], head[:, old:] = narrow.head.weight, 0.0
        g.weight_ih_l0, g.weight_hh_l0 = w_ih, w_hh  # through weight_norm's right_inverse: gain = row norm
        g.bias_ih_l0.copy_(b_ih)
        g.bias_hh_l0.copy_(b_hh)
        self.head.weight = head
        self.head.bias.copy_(narrow.head.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """What ``forward`` takes for whole trials: the embeddings themselves (the posterior-statistics
        network of ``posterior_net.py`` encodes them into its statistics here)."""
        return x

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(1, batch, self.hidden, device=self.head.bias.device, dtype=self.head.bias.dtype)

    #: Back-propagate through the hand-written GRU backward (``fused_gru``) when gradients are on: same
    #: outputs, 1.6-1.7x faster ppo-sgd iterations on CPU, first-order only (TRPO's Fisher-vector products need nn.GRU).
    fused_backward: bool = False

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (steps, trials, input) -> (head outputs (steps, trials, n_out), last hidden (1, trials, H))."""
        out, h = self.memory(x, h0)
        return self.head(out), h

    def memory(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (steps, trials, input) -> (the GRU's output at every step (steps, trials, H), last hidden): what
        the head reads, and what an auxiliary head (``belief.py``) reads beside it."""
        if self.fused_backward and torch.is_grad_enabled():
            h0 = self.initial_state(x.shape[1]) if h0 is None else h0
            g = gru_tensors(self.gru)
            return fused_gru(x, h0, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0, self.activation)
        if self.activation == "relu":
            h0 = self.initial_state(x.shape[1]) if h0 is None else h0
            g = gru_tensors(self.gru)
            return gru_sequence(x, h0, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0, "relu")
        out, h = self.gru(x, h0)
        return out, h

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for a whole batch: x (trials, input) -> (outputs (trials, n_out), next hidden)."""
        if self.activation == "relu":
            g = gru_tensors(self.gru)
            h_next = gru_cell(x, h[0], g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0, "relu")
            return self.head(h_next), h_next.unsqueeze(0)
        out, h = self.gru(x.unsqueeze(0), h)
        return self.head(out[0]), h


class Policy(RecurrentNet):
    """Outputs action logits; the softmax is applied by the caller (Categorical over logits)."""

    def __init__(self, n_states: int, n_actions: int, hidden: int = 256,
                 generator: torch.Generator | None = None, activation: str = UNRECORDED_ACTIVATION):
        super().__init__(n_states, n_actions, hidden, n_actions, generator, activation)


class Baseline(RecurrentNet):
    """State-value estimate of the discounted return-to-go of the trial, in units of ``scale`` so that
    targets of size ~1 keep the regression well conditioned for every trial length."""

    scale: torch.Tensor  # a buffer, registered in __init__ (declared here: the stubs type buffers Tensor | Module)

    def __init__(self, n_states: int, n_actions: int, hidden: int = 256, scale: float = 1.0,
                 generator: torch.Generator | None = None, activation: str = UNRECORDED_ACTIVATION,
                 extra_inputs: int = 0):
        super().__init__(n_states, n_actions, hidden, 1, generator, activation, extra_inputs)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """(steps, trials) values in reward units."""
        return self.forward(x)[0].squeeze(-1) * self.scale


def cached_weights():
    """Context manager: compute the weight-normalised matrices once for many small steps (rollouts)."""
    return parametrize.cached()
