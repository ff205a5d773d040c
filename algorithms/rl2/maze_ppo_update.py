"""The PPO update of the ``maze-ppo`` recipe on one batch: its losses (``ppo_losses``), how each epoch deals
the trials into minibatches (``minibatch_trials``), and the epochs of Adam steps (``ppo_step``). The recipe
around it (encoder, rollouts, the trainer) is ``maze_ppo``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from rl2bench.errors import UserError

from .conv_policy import ConvPolicy
from .devices import torch_threads
from .maze_aux import AUX_OUTPUTS, ROUTE_OUTPUTS, aux_loss
from .maze_explore import deviation_loss
from .maze_noise import perturb_logits
from .maze_rollout import MazeBatch
from .maze_route import route_loss


@dataclass
class Extras:
    """What the recipe's optional losses need: ``aux_targets`` for the auxiliary head
    (``maze_aux.aux_loss``), ``routes`` for route recall (``maze_route.route_loss``, tilted by
    ``route_tilt``), the kind of loss on explored steps (``maze_explore.deviation_loss``), and the scale
    at which the batch's per-trial head perturbations are applied again (``maze_noise.py``)."""

    aux_targets: torch.Tensor | None = None
    routes: torch.Tensor | None = None
    route_tilt: float = 0.0
    explore_update: str = "imitate"
    explore_eps: float = 0.0
    head_noise: float = 0.0  # the scale of the batch's head perturbations (maze_noise.py)
    route_head: bool = False  # the route loss on the auxiliary head's last outputs, not on the policy's


@dataclass
class Losses:
    """Means over the valid steps of some trials (``ppo_losses``); an optional term is 0 when unused."""

    surrogate: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    kl: torch.Tensor
    aux: torch.Tensor
    route: torch.Tensor
    deviation: torch.Tensor

    def total(self, cfg: Any) -> torch.Tensor:
        """The loss PPO descends: clipped surrogate, value, entropy and the optional terms, weighted by ``cfg``."""
        return (-self.surrogate + cfg.value_coef * self.value - cfg.ent_coef * self.entropy + cfg.aux_coef * self.aux
                + cfg.route_coef * self.route + cfg.explore_coef * self.deviation)


def ppo_losses(net: ConvPolicy, batch: MazeBatch, prev: tuple, adv: torch.Tensor, returns: torch.Tensor,
               scale: torch.Tensor, clip: float, trials: torch.Tensor | slice, encoded: bool,
               extras: Extras | None = None, counts: dict[str, float] | None = None, threads: int = 1) -> Losses:
    """On the given trials: the clipped surrogate (over the steps the policy chose: not the ``explored``
    ones), the value head's squared error on ``returns / scale``, the policy's entropy, its KL from the
    behaviour policy (the batch's logits), and the optional terms ``extras`` asks for (``Extras``). Each is
    a mean over the trials' steps, or with ``counts`` a sum divided by ``counts["valid"]`` (``"chosen"`` for
    the surrogate, ``"route"`` for route recall): fixed divisors, so that every step weighs alike whatever
    minibatch it is in. ``threads``: torch threads of the network's pass (``update_threads``)."""
    extras = extras or Extras()
    # The trials' own steps: rows past their longest trial are padding for every one of them, so they are
    # cut before the network runs (a minibatch of short successful trials costs their length, not the batch's).
    length = int(batch.valid[:, trials].sum(0).max())

    def part(x: torch.Tensor) -> torch.Tensor:
        return x[:length, trials]

    m = part(batch.valid)
    n = m.sum().clamp_min(1.0) if counts is None else counts["valid"]
    chosen = m if batch.explored is None else m * (1.0 - part(batch.explored))
    n_chosen = chosen.sum().clamp_min(1.0) if counts is None else counts["chosen"]
    old_logits = part(batch.logits)
    old_logp_all = torch.log_softmax(old_logits, -1)
    actions = part(batch.actions).unsqueeze(-1)
    prev_action, prev_reward, prev_done = (part(p) for p in prev)
    with torch_threads(threads):
        out, _ = net.trunk(part(batch.obs), prev_action, prev_reward, prev_done, encoded=encoded)
    logits, values = net.pi(out), net.v(out).squeeze(-1)
    if batch.head_noise is not None and extras.head_noise:  # the behaviour's own perturbed head
        logits = perturb_logits(logits, out, batch.head_noise[trials], extras.head_noise)
    aux = torch.zeros(())
    if extras.aux_targets is not None and net.aux is not None:
        aux = aux_loss(net.aux(out)[..., :AUX_OUTPUTS], part(extras.aux_targets), m,
                       None if counts is None else counts["valid"])
    route = torch.zeros(())
    if extras.routes is not None:
        route_logits = logits
        if extras.route_head:
            assert net.aux is not None
            route_logits = net.aux(out)[..., -ROUTE_OUTPUTS:]
        route = route_loss(route_logits, part(extras.routes), m, old_logits, extras.route_tilt,
                           None if counts is None else counts["route"])
    logp_all = torch.log_softmax(logits, -1)
    ratio = torch.exp(logp_all.gather(-1, actions) - old_logp_all.gather(-1, actions)).squeeze(-1)
    a = part(adv)
    surr = (torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a) * chosen).sum() / n_chosen
    value_loss = ((((values - part(returns)) / scale) ** 2) * m).sum() / n
    entropy = ((-(logp_all.exp() * logp_all).sum(-1)) * m).sum() / n
    kl = ((old_logp_all.exp() * (old_logp_all - logp_all)).sum(-1) * m).sum() / n
    deviation = torch.zeros(())
    if batch.explored is not None:
        deviation = deviation_loss(logp_all, part(batch.actions), a, part(batch.explored), m,
                                   extras.explore_update, extras.explore_eps)
    return Losses(surr, value_loss, entropy, kl, aux, route, deviation)


def minibatch_trials(lengths: torch.Tensor, minibatches: int, order: str, gen: torch.Generator
                     ) -> list[torch.Tensor]:
    """One epoch's minibatches of trial indices: a random deal, or (``order="length"``) trials of like
    length together: a random permutation sorted stably by length (ties stay random), cut into
    ``minibatches``, the pieces taken in random order. Such minibatches hold unlike numbers of steps, so
    ``ppo_step`` then divides each one's sums by the batch's steps per minibatch rather than by its own
    (a mean over a minibatch of short trials would weigh each of their steps several times more)."""
    perm = torch.randperm(len(lengths), generator=gen)
    if order == "random":
        return list(perm.chunk(minibatches))
    pieces = list(perm[torch.argsort(lengths[perm], stable=True)].chunk(minibatches))
    return [pieces[int(k)] for k in torch.randperm(len(pieces), generator=gen)]


def ppo_step(net: ConvPolicy, optimizer: torch.optim.Optimizer, batch: MazeBatch, prev: tuple, adv: torch.Tensor,
             returns: torch.Tensor, cfg: Any, gen: torch.Generator, encoded: bool,
             aux_targets: torch.Tensor | None = None, routes: torch.Tensor | None = None, threads: int = 1
             ) -> dict[str, float]:
    """One PPO update of the shared network on a batch (``maze_ppo``'s module docstring), with ``cfg.aux_coef`` x the
    auxiliary loss when ``aux_targets`` are given and ``cfg.route_coef`` x the route-recall loss when
    ``routes`` are; what it did, measured on the whole batch after the epochs: mean KL from the behaviour
    policy, surrogate gain, value loss (and the auxiliary and route losses).

    ``threads``: torch threads of the network's passes, forward and backward. Only those: a sum over a
    whole batch is split between threads, and its rounding with them, so the sums stay on one thread and
    the numbers do not depend on ``threads`` (tested)."""
    mask = batch.valid
    scale = returns[mask.bool()].std().clamp_min(1e-3)
    extras = Extras(aux_targets, routes, cfg.route_tilt, cfg.explore_update, cfg.explore_eps, cfg.head_noise,
                    cfg.route_head)
    params = [p for p in net.parameters() if p.requires_grad]
    n_trials = mask.shape[1]
    minibatches = max(1, round(n_trials / cfg.ppo_minibatch_trials))
    lengths = mask.sum(0)
    counts = None
    if cfg.ppo_minibatch_order == "length":  # minibatches of unlike sizes: each step weighs alike (docstring)
        chosen = mask if batch.explored is None else mask * (1.0 - batch.explored)
        on_route = mask if routes is None else mask * (routes.sum(-1) > 0)
        counts = {name: float(x.sum().clamp_min(1.0)) / minibatches
                  for name, x in (("valid", mask), ("chosen", chosen), ("route", on_route))}
    for _ in range(cfg.ppo_epochs):
        for idx in minibatch_trials(lengths, minibatches, cfg.ppo_minibatch_order, gen):
            loss = ppo_losses(net, batch, prev, adv, returns, scale, cfg.ppo_clip, idx, encoded, extras,
                              counts, threads).total(cfg)
            if not torch.isfinite(loss):  # never step into NaN weights: the last checkpoint stays good
                raise UserError(f"the maze PPO update diverged (loss {float(loss.detach())}); nothing after the last "
                                "checkpoint was saved: resume with smaller weights (--resume --set ...)")
            optimizer.zero_grad()
            with torch_threads(threads):
                loss.backward()
            if math.isfinite(cfg.max_grad_norm):
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
    with torch.no_grad():
        after = ppo_losses(net, batch, prev, adv, returns, scale, cfg.ppo_clip, slice(None), encoded, extras)
    chosen = mask if batch.explored is None else mask * (1.0 - batch.explored)
    gain = float(after.surrogate) - float((adv * chosen).sum() / chosen.sum().clamp_min(1.0))
    return {"kl": float(after.kl), "surrogate_gain": gain, "value_loss": float(after.value),
            **({"aux_loss": float(after.aux)} if aux_targets is not None else {}),
            **({"route_loss": float(after.route)} if routes is not None else {}),
            **({"deviation_loss": float(after.deviation)} if batch.explored is not None else {})}
