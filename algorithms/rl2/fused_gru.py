"""A GRU over a whole sequence with a hand-written backward pass, for the trainer's many small updates on CPU.

Why: the policy and baseline updates of the ``ppo-sgd`` recipe take ~160 Adam steps per iteration, each a
forward and backward pass of a small GRU (64 units, 16 trials x 100 steps). On CPU, ``nn.GRU``'s backward
is ~30 tiny autograd operations per time step, so that pass is bound by per-operation overhead, not by
arithmetic. Here the forward pass is the native one (``torch._VF.gru``, one C++ loop, so the outputs are
bit-identical to ``nn.GRU``'s); the gates are then recomputed from the hidden states with a few whole-
sequence operations, and back-propagation through time needs ~7 small operations per step, with the weight
gradients formed by one matrix product over all steps at the end.

It is first-order only (no double backward): TRPO's Fisher-vector products keep using ``nn.GRU`` (or,
for the ReLU cell, ``gru_sequence``'s plain autograd). Equations (PyTorch's gate order r, z, n)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = act(W_in x + b_in + r * (W_hn h + b_hn))    h' = (1 - z) * n + z * h

with ``act`` tanh (``nn.GRU``'s only choice) or ReLU, the paper's "rectified linear units as the hidden
activation" (Appendix A; the authors' launchers pass ``hidden_nonlinearity=relu`` to their GRU layer, whose
candidate state it shapes). ``nn.GRU`` has no ReLU cell, so its forward pass here is a loop of a few
whole-batch operations per step; the backward pass is the same as tanh's but for the derivative.
"""

from __future__ import annotations

from typing import Any

import torch

ACTIVATIONS = ("tanh", "relu")
#: What a checkpoint, policy file or network built without an activation holds: every run before the setting
#: existed (2026-11-27) trained nn.GRU's tanh cell, and their files do not say so.
UNRECORDED_ACTIVATION = "tanh"


def gru_cell(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
             b_hh: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """One GRU step for a batch, x (trials, input), h (trials, hidden) -> next h; plain autograd."""
    return _cell_from_gi(torch.addmm(b_ih, x, w_ih.t()), h, w_hh, b_hh, activation)


def _cell_from_gi(gi: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor,
                  activation: str) -> torch.Tensor:
    """One step from the input projections ``gi``, in six operations: a loop of them is bound by the cost
    per operation, not by arithmetic, so r * gh_n + gi_n is one ``addcmul`` and (1 - z) n + z h one ``lerp``."""
    hidden = h.shape[-1]
    gh = torch.addmm(b_hh, h, w_hh.t())
    rz = torch.sigmoid(gi[:, :2 * hidden] + gh[:, :2 * hidden])
    pre = torch.addcmul(gi[:, 2 * hidden:], rz[:, :hidden], gh[:, 2 * hidden:])
    n = torch.relu(pre) if activation == "relu" else torch.tanh(pre)
    return torch.lerp(n, h, rz[:, hidden:])


def gru_sequence(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                 b_hh: torch.Tensor, activation: str = "relu") -> tuple[torch.Tensor, torch.Tensor]:
    """A one-layer GRU over x (steps, trials, input) from h0 (1, trials, hidden) in plain autograd (so it
    differentiates twice, as TRPO's Fisher-vector products need): (outputs, last state)."""
    steps, trials, _ = x.shape
    gi = torch.addmm(b_ih, x.reshape(-1, x.shape[-1]), w_ih.t()).view(steps, trials, -1)
    h, outs = h0[0], []
    for gi_t in gi.unbind(0):
        h = _cell_from_gi(gi_t, h, w_hh, b_hh, activation)
        outs.append(h)
    out = torch.stack(outs)
    return out, out[-1:]


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor, activation: str = "tanh") -> tuple[torch.Tensor, torch.Tensor]:
        if activation == "tanh":
            out, h_last = torch._VF.gru(x, h0, [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, False, False, False)
        else:
            with torch.no_grad():
                out, h_last = gru_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, activation)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        ctx.activation = activation
        return out, h_last

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor | None, d_h_last: torch.Tensor | None):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        steps, trials, hidden = out.shape
        h_prev = torch.cat([h0, out[:-1]], dim=0)  # (T, B, H): the state each step started from
        # The gates, recomputed for all steps at once from the known hidden states.
        gi = torch.addmm(b_ih, x.reshape(-1, x.shape[-1]), w_ih.t()).view(steps, trials, 3 * hidden)
        gh = torch.addmm(b_hh, h_prev.reshape(-1, hidden), w_hh.t()).view(steps, trials, 3 * hidden)
        rz = torch.sigmoid(gi[..., :2 * hidden] + gh[..., :2 * hidden])
        r, z = rz[..., :hidden], rz[..., hidden:]
        gh_n = gh[..., 2 * hidden:]
        pre = gi[..., 2 * hidden:] + r * gh_n
        relu = ctx.activation == "relu"
        n = torch.relu(pre) if relu else torch.tanh(pre)
        # Local derivatives, whole-sequence: d n_pre = dh (1 - z) act'(n_pre) (tanh: 1 - n^2; ReLU: n_pre > 0);
        # d z_pre = dh (h - n) z (1 - z); d r_pre = d n_pre * gh_n * r (1 - r); d gh_n = d n_pre * r.
        to_n_pre = (1 - z) * ((pre > 0).to(out.dtype) if relu else 1 - n * n)
        to_z_pre = (h_prev - n) * z * (1 - z)
        to_r_pre = gh_n * r * (1 - r)

        d_gh = torch.empty(steps, trials, 3 * hidden, dtype=out.dtype, device=out.device)  # [r, z, n_h]
        d_n_pre = torch.empty(steps, trials, hidden, dtype=out.dtype, device=out.device)
        # Per-step views made once (indexing inside the loop would cost more than the arithmetic).
        per_step = zip(to_n_pre.unbind(0), to_r_pre.unbind(0), to_z_pre.unbind(0), r.unbind(0), z.unbind(0),
                       d_n_pre.unbind(0), d_gh[..., :hidden].unbind(0), d_gh[..., hidden:2 * hidden].unbind(0),
                       d_gh[..., 2 * hidden:].unbind(0), d_gh.unbind(0),
                       d_out.unbind(0) if d_out is not None else [None] * steps, strict=True)
        dh = torch.zeros_like(h0[0]) if d_h_last is None else d_h_last[0].clone()
        for to_n, to_r, to_z, r_t, z_t, dn_t, dr_t, dz_t, dghn_t, dgh_t, dout_t in reversed(list(per_step)):
            if dout_t is not None:
                dh += dout_t
            torch.mul(dh, to_n, out=dn_t)
            torch.mul(dn_t, to_r, out=dr_t)
            torch.mul(dh, to_z, out=dz_t)
            torch.mul(dn_t, r_t, out=dghn_t)
            dh = torch.addmm(dh * z_t, dgh_t, w_hh)

        d_gi = torch.cat([d_gh[..., :2 * hidden], d_n_pre], dim=-1)
        d_gi_2d, d_gh_2d = d_gi.reshape(-1, 3 * hidden), d_gh.reshape(-1, 3 * hidden)
        d_x = (d_gi_2d @ w_ih).view_as(x) if ctx.needs_input_grad[0] else None
        d_w_ih = d_gi_2d.t() @ x.reshape(-1, x.shape[-1])
        d_w_hh = d_gh_2d.t() @ h_prev.reshape(-1, hidden)
        return d_x, dh.unsqueeze(0), d_w_ih, d_w_hh, d_gi_2d.sum(0), d_gh_2d.sum(0), None


def fused_gru(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
              b_hh: torch.Tensor, activation: str = "tanh") -> tuple[torch.Tensor, torch.Tensor]:
    """One-layer GRU over x (steps, trials, input) from h0 (1, trials, hidden): (outputs, last state),
    the same values as ``nn.GRU`` (tanh) or ``gru_sequence`` (ReLU); gradients by the hand-written backward
    above."""
    return _FusedGRU.apply(x, h0, w_ih, w_hh, b_ih, b_hh, activation)
