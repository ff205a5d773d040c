"""The RL^2 maze network (paper Appendix A.3): pixels through two convolutions, the previous action
through a learned embedding, previous reward and done flag as they are, a fully connected layer, a GRU,
and two heads on the GRU output: action logits (the policy) and a scalar (the baseline).

Policy and baseline SHARE the network, as the paper says for the mazes. Sequences are time-major,
(steps, trials, ...). The hidden state is zeroed at the start of a trial and carried across its
episodes. At t = 0 there is no previous action: it gets its own embedding row (index ``n_actions``),
reward and flag are 0. Weight normalisation is not used here (plain Xavier / orthogonal init). The GRU's
candidate activation is ReLU as the paper's appendix says, or tanh (nn.GRU's), which the policies trained
before it became a setting (2026-11-27) used (their files carry no activation and load as tanh); see policy.py.
"""

from __future__ import annotations

import torch
from torch import nn

from .fused_gru import ACTIVATIONS, UNRECORDED_ACTIVATION, fused_gru, gru_sequence
from .tensors import grown_gru_tensors, gru_tensors

CONV_FILTERS = 16
CONV_KERNEL = 5
CONV_STRIDE = 2


def _conv_out(size: int) -> int:
    return (size - CONV_KERNEL) // CONV_STRIDE + 1


class ConvPolicy(nn.Module):
    """(obs (3, 30, 40), prev action, prev reward, prev done) -> GRU -> (logits, value)."""

    def __init__(self, n_actions: int, hidden: int = 256, obs_shape: tuple[int, ...] = (3, 30, 40),
                 action_embed: int = 256, fc: int = 256, generator: torch.Generator | None = None,
                 activation: str = UNRECORDED_ACTIVATION, aux_outputs: int = 0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown GRU activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.n_actions, self.hidden, self.obs_shape = n_actions, hidden, tuple(obs_shape)
        self.activation = activation
        channels, height, width = obs_shape
        conv1 = nn.Conv2d(channels, CONV_FILTERS, CONV_KERNEL, CONV_STRIDE)
        conv2 = nn.Conv2d(CONV_FILTERS, CONV_FILTERS, CONV_KERNEL, CONV_STRIDE)
        self.conv = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU())
        conv_size = CONV_FILTERS * _conv_out(_conv_out(height)) * _conv_out(_conv_out(width))
        self.action_embed = nn.Embedding(n_actions + 1, action_embed)  # last row: "no previous action"
        self.fc = nn.Linear(conv_size + action_embed + 2, fc)
        self.gru = nn.GRU(fc, hidden)
        self.pi = nn.Linear(hidden, n_actions)
        self.v = nn.Linear(hidden, 1)
        # an auxiliary head for training only (maze_aux.py): what the GRU is asked to carry; never acts
        self.aux_outputs = aux_outputs
        self.aux = nn.Linear(hidden, aux_outputs) if aux_outputs else None
        gru = gru_tensors(self.gru)
        with torch.no_grad():
            for layer in (conv1, conv2, self.fc, self.pi, self.v):
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                assert layer.bias is not None  # every layer here is built with one
                layer.bias.zero_()
            nn.init.xavier_uniform_(self.action_embed.weight, generator=generator)
            for block in gru.weight_ih_l0.chunk(3, dim=0):
                nn.init.xavier_uniform_(block, generator=generator)
            for block in gru.weight_hh_l0.chunk(3, dim=0):
                nn.init.orthogonal_(block, generator=generator)
            gru.bias_ih_l0.zero_()
            gru.bias_hh_l0.zero_()
            self.pi.weight.mul_(0.01)  # near-uniform initial policy
            if self.aux is not None:  # drawn last: the other weights are the same with or without it
                nn.init.xavier_uniform_(self.aux.weight, generator=generator)
                assert self.aux.bias is not None
                self.aux.bias.zero_()

    @torch.no_grad()
    def widen_from(self, narrow: ConvPolicy) -> None:
        """Take a trained network with a narrower GRU into this one (a net2net-style growth step): the
        convolutions, action embedding and input layer are copied, the old units keep their weights, and the
        new units keep this network's fresh initialisation but nothing old reads them yet (their columns in
        the old units' recurrent rows and in both heads start at 0). The outputs are exactly the narrow
        network's until training moves those zeros; the new units read the old ones from the start. With
        equal widths it is a copy; an auxiliary head is copied when both have it, else this one's is kept."""
        old, new = narrow.hidden, self.hidden
        if (old > new or narrow.n_actions != self.n_actions or narrow.obs_shape != self.obs_shape
                or narrow.activation != self.activation):
            raise ValueError(f"cannot widen a {narrow.activation} GRU {old} for {narrow.n_actions} actions into a "
                             f"{self.activation} GRU {new} for {self.n_actions} actions")
        for part in ("conv", "action_embed", "fc"):
            getattr(self, part).load_state_dict(getattr(narrow, part).state_dict())
        g = gru_tensors(self.gru)
        grown = grown_gru_tensors(g, gru_tensors(narrow.gru), old, new)
        for tensor, value in zip((g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0), grown, strict=True):
            tensor.copy_(value)
        heads = [(self.pi, narrow.pi), (self.v, narrow.v)]
        if self.aux is not None and narrow.aux is not None and self.aux_outputs == narrow.aux_outputs:
            heads.append((self.aux, narrow.aux))
        for head, narrow_head in heads:
            head.weight[:, :old] = narrow_head.weight
            head.weight[:, old:] = 0.0
            head.bias.copy_(narrow_head.bias)

    #: Back-propagate through the hand-written GRU backward (``fused_gru``) when gradients are on: the same
    #: outputs, first-order only. The PPO maze update sets it on CPU (its backward pass was half of an
    #: iteration); TRPO's Fisher-vector products need the plain autograd of ``gru_sequence`` / ``nn.GRU``.
    fused_backward: bool = False

    @property
    def no_action(self) -> int:
        """The previous-action index used at a trial's first step."""
        return self.n_actions

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(1, batch, self.hidden, device=self.pi.weight.device, dtype=self.pi.weight.dtype)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """The convolutions' output, flattened, for any leading shape: obs (..., 3, 30, 40) -> (..., conv)."""
        lead = obs.shape[: -3]
        return self.conv(obs.reshape(-1, *self.obs_shape)).flatten(1).reshape(*lead, -1)

    def features(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
                 prev_done: torch.Tensor, encoded: bool = False) -> torch.Tensor:
        """The GRU's input for any leading shape: obs (..., 3, 30, 40), or ``encode``'s output for it when
        ``encoded`` (a frozen encoder's features, computed once in the rollout) -> (..., fc)."""
        pixels = obs if encoded else self.encode(obs)
        a = self.action_embed(prev_action.long())
        x = torch.cat([pixels, a, prev_reward.float().unsqueeze(-1), prev_done.float().unsqueeze(-1)], -1)
        return torch.relu(self.fc(x))

    def trunk(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
              prev_done: torch.Tensor, h0: torch.Tensor | None = None, encoded: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences (steps, trials, ...) -> (GRU outputs (steps, trials, hidden), last hidden)."""
        x = self.features(obs, prev_action, prev_reward, prev_done, encoded)
        fused = self.fused_backward and torch.is_grad_enabled()
        if self.activation == "tanh" and not fused:
            return self.gru(x, h0)
        g = gru_tensors(self.gru)
        h0 = self.initial_state(x.shape[1]) if h0 is None else h0
        weights = (g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
        return (fused_gru if fused else gru_sequence)(x, h0, *weights, self.activation)

    def forward(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
                prev_done: torch.Tensor, h0: torch.Tensor | None = None, encoded: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (steps, trials, actions), values (steps, trials), last hidden (1, trials, hidden))."""
        out, h = self.trunk(obs, prev_action, prev_reward, prev_done, h0, encoded)
        return self.pi(out), self.v(out).squeeze(-1), h

    def step(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
             prev_done: torch.Tensor, h: torch.Tensor, encoded: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of a batch: obs (trials, 3, 30, 40) -> (logits (trials, A), values (trials,), hidden)."""
        logits, values, h = self.forward(obs.unsqueeze(0), prev_action.unsqueeze(0), prev_reward.unsqueeze(0),
                                         prev_done.unsqueeze(0), h, encoded)
        return logits[0], values[0], h
