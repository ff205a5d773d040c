"""The ``maze-ppo`` recipe: maze training bounded by the engines rather than the update.

Where the time went (``benchmarks/rl2_maze_profile.py``): the paper's TRPO step runs the whole maze network
forward and backward 15-20 times per environment step (gradient, conjugate-gradient Fisher products, line
search, value fit), and the convolutions' backward pass is most of each. This recipe changes two things:

1. **A frozen encoder, pretrained on the agent's own frames** (``maze_encoder.py``). Before the first
   iteration the convolutions are trained as the encoder of a frame autoencoder on ``encoder_frames``
   frames of a uniform random walk in the training mazes, then held fixed. Only the agent's own experience
   is used (no map, no target position), so the result is an ``rl2`` recipe. The
   rollout computes each frame's features once and stores them instead of the frame; no update touches
   pixels again.
2. **PPO on the shared network** (Schulman et al. 2017): ``ppo_epochs`` passes of Adam over minibatches of
   ``ppo_minibatch_trials`` whole trials, loss = clipped surrogate + ``value_coef`` x the value head's
   squared error (returns scaled by their batch std) - ``ent_coef`` x entropy, gradients clipped to
   ``max_grad_norm``. Policy and value share the trunk, as in the paper. Each minibatch runs only to its
   longest trial (later rows are padding for all of its trials), and on CPU the GRU back-propagates by
   ``fused_gru`` (``fused_backward``): together the update of a trained cell-move policy took 2.5-3.0 s
   per iteration instead of 4.1-4.3 s (2026-12-07), with the same losses. ``ppo_minibatch_order=length``
   puts trials of like length in a minibatch, so short trials no longer wait on a long one, every step
   weighed alike (``minibatch_trials``).

The steps of the random walk count toward the run's ``env_steps`` (and its wall time), so the budget
compared with other recipes is honest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from rl2bench import seeding
from rl2bench.errors import UserError

from .conv_policy import ConvPolicy
from .devices import torch_generator, torch_threads
from .maze_aux import AUX_OUTPUTS, ROUTE_OUTPUTS, aux_loss, position_targets
from .maze_encoder import pretrain_encoder, random_walk_frames
from .maze_explore import Deviations, deviation_loss
from .maze_noise import perturb_logits
from .maze_rollout import MazeBatch, collect_maze
from .maze_route import ROUTE_TURN_DEGREES, route_agreement, route_followed, route_loss, route_targets
from .maze_trainer import MazeTrainer


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
    """One PPO update of the shared network on a batch (module docstring), with ``cfg.aux_coef`` x the
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


class MazePPOTrainer(MazeTrainer):
    """The maze trainer with the ``maze-ppo`` recipe's update and encoder (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.cfg.ppo_minibatch_trials < 1:
            raise UserError("ppo_minibatch_trials must be >= 1 for mazes (trials per PPO minibatch)")
        self.check_settings()
        name = self.cell.name
        self.update_gen = torch_generator(seeding.generator(self.seed, "ppo", "maze", name, "rl2"))
        self.explore_gen = torch_generator(seeding.generator(self.seed, "explore", "maze", name, "rl2"))
        self.noise_gen = torch_generator(seeding.generator(self.seed, "head-noise", "maze", name, "rl2"))
        self.encoder_record: dict[str, Any] | None = None  # the pretraining, once done
        self.optimizer = self._optimizer()
        self.net.fused_backward = self.cfg.fused_backward and self.device.type == "cpu"  # cuDNN's GRU on a GPU

    def _optimizer(self) -> torch.optim.Optimizer:
        self.net.conv.requires_grad_(not self.cfg.freeze_encoder)
        return torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=self.cfg.policy_lr)

    def check_settings(self) -> None:
        """One-line errors for recipe settings that would do nothing or cannot work on this cell."""
        if self.cfg.explore_coef and not self.cfg.explore_eps:
            raise UserError("explore_coef weighs the imitation of explored actions: set explore_eps > 0 too")
        if self.cfg.explore_at == "centres" and self.cell.turn != ROUTE_TURN_DEGREES:
            raise UserError(f"explore_at=centres needs a 90-degree cell (-turn90), not {self.cell.name}: "
                            "cell centres are read from dead reckoning on four headings")
        if self.cfg.route_tilt and not self.cfg.route_coef:
            raise UserError("route_tilt shapes the route_coef loss: set route_coef > 0 too")
        if self.cfg.route_head and not self.cfg.route_coef:
            raise UserError("route_head puts the route_coef loss on a head of its own: set route_coef > 0 too")
        if self.cfg.ppo_minibatch_order not in ("random", "length"):
            raise UserError(f"unknown ppo_minibatch_order {self.cfg.ppo_minibatch_order!r}; valid: random, length")
        if self.cfg.ppo_minibatch_order == "length" and self.cfg.explore_eps:
            raise UserError("ppo_minibatch_order=length weighs every step alike for the PPO terms only: use the "
                            "random order with explore_eps")
        if self.cfg.route_head and self.cfg.route_tilt:
            raise UserError("route_tilt tilts the policy's own odds, and route_head keeps the route loss off the "
                            "policy: use one of them")
        if (self.cfg.route_coef or self.cfg.route_bonus) and self.cell.turn != ROUTE_TURN_DEGREES:
            raise UserError(f"route_coef and route_bonus need a 90-degree cell (-turn90), not {self.cell.name}: "
                            "their routes are read from dead reckoning on four headings")
        reckons = ((self.cfg.novelty_coef and self.cfg.novelty_kind != "view")
                   or (self.cfg.explore_eps and self.cfg.explore_at == "centres"))
        if self.cell.cell_moves and reckons:  # route recall reckons in cells there (maze_route.py)
            raise UserError(f"{self.cell.name} moves a cell per forward action, and their dead reckoning counts "
                            "strides: use novelty_kind=view, and no centre exploration, on -move cells")

    def change_config(self, overrides: list[str], by: str = "") -> None:
        super().change_config(overrides, by)
        self.check_settings()
        self.net.fused_backward = self.cfg.fused_backward and self.device.type == "cpu"
        for group in self.optimizer.param_groups:  # the restored Adam state carries the old rate
            group["lr"] = self.cfg.policy_lr

    def init_from(self, run_dir: Any) -> None:
        """As the TRPO trainer's; the convolutions come with the network, so they are not pretrained
        again (which would move the features under the fc and GRU weights just loaded)."""
        super().init_from(run_dir)
        from .runfolder import load_checkpoint

        source = load_checkpoint(run_dir).get("encoder")
        self.encoder_record = {"inherited_from": str(run_dir), **({"source": source} if source else {})}

    def prepare_encoder(self) -> None:
        """Pretrain the convolutions on random-walk frames, once, before the first iteration."""
        if self.encoder_record is not None or not self.cfg.encoder_frames:
            return
        start = time.perf_counter()
        name = self.cell.name
        rng = seeding.generator(self.seed, "encoder-walk", "maze", name, "rl2")
        frames = random_walk_frames(self.open_env(), self.cfg.encoder_frames, rng)
        gen = torch_generator(seeding.generator(self.seed, "encoder", "maze", name, "rl2"))
        self.net.conv.requires_grad_(True)
        losses = pretrain_encoder(self.net, frames, self.cfg.encoder_epochs, self.cfg.encoder_lr, gen)
        self.optimizer = self._optimizer()
        seconds = time.perf_counter() - start
        self.env_steps += len(frames)
        self.wall_seconds += seconds
        self.encoder_record = {"frames": len(frames), "epochs": self.cfg.encoder_epochs, "losses": losses,
                               "seconds": round(seconds, 1)}

    def iterate(self) -> dict[str, float]:
        self.prepare_encoder()
        start = time.perf_counter()
        batch = self.collect(self.net, self.iteration)
        t_rollout = time.perf_counter() - start
        fields = self.learn(batch)
        t_total = time.perf_counter() - start
        return self.record(batch, fields, t_rollout, t_total - t_rollout, t_total)

    def update_threads(self) -> int:
        """``update_threads``, its 0 resolved: the update may use the cores the idle workers fill."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        if self.cfg.update_threads:
            return self.cfg.update_threads
        return max(1, len(self.env.pinned_cores)) if self.env is not None else 1

    def collect(self, net: ConvPolicy, iteration: int) -> MazeBatch:
        """Iteration ``iteration``'s trials (its groups of the pool), played by ``net``."""
        env, cfg = self.open_env(), self.cfg
        groups = [(iteration * self.groups_per_iter + j) % env.n_groups for j in range(self.groups_per_iter)]
        deviations = (Deviations(cfg.explore_eps, self.explore_gen, net.n_actions, cfg.explore_at,
                                 self.cell.turn) if cfg.explore_eps else None)
        return collect_maze(net, env, groups, self.act_gen, self.trial_len, cfg.freeze_encoder, deviations,
                            cfg.head_noise, self.noise_gen).to(self.device)

    def learn(self, batch: MazeBatch) -> dict[str, float]:
        """One update of ``self.net`` on ``batch``; what the curve records of it."""
        cfg, encoded = self.cfg, self.cfg.freeze_encoder
        prev = batch.prev_inputs(self.net.no_action)
        mask = batch.valid
        threads = self.update_threads()
        with torch.no_grad(), torch_threads(threads):
            values = self.net(batch.obs, *prev, encoded=encoded)[1]
        values = values * mask
        routes, route_fields, followed = None, {}, None
        if cfg.route_coef or cfg.route_bonus:  # the routes its own successes took (maze_route.py)
            routes = route_targets(batch.actions.cpu(), batch.rewards.cpu(), batch.dones.cpu(),
                                   batch.valid.cpu(), self.cell.turn, self.cell.cell_moves).to(self.device)
            share, agreed = route_agreement(batch.actions, routes, mask)
            route_fields = {"route_share": share, "route_agreed": agreed}
            if cfg.route_bonus:
                followed = cfg.route_bonus * route_followed(batch.actions, routes) * mask
                route_fields["route_return"] = float(followed.sum(0).mean())
        returns, adv, ev = self.advantages(batch, values, followed)
        entropy = float(((-(torch.softmax(batch.logits, -1) * torch.log_softmax(batch.logits, -1)).sum(-1))
                         * mask).sum() / mask.sum())
        targets = None
        if cfg.aux_coef:  # the agent's own dead reckoning (maze_aux.py)
            targets = position_targets(batch.actions.cpu(), batch.rewards.cpu(), batch.dones.cpu(),
                                       batch.valid.cpu(), self.cell.turn, self.cell.cell_moves).to(self.device)
        step = ppo_step(self.net, self.optimizer, batch, prev, adv, returns, cfg, self.update_gen, encoded, targets,
                        routes if cfg.route_coef else None, threads)
        return {"entropy": entropy, "kl": step["kl"], "surrogate_gain": step["surrogate_gain"],
                "value_loss": step["value_loss"], "baseline_ev": ev,
                **({"aux_loss": step["aux_loss"]} if "aux_loss" in step else {}),
                **({"route_loss": step["route_loss"]} if "route_loss" in step else {}), **route_fields,
                **({"deviation_loss": step["deviation_loss"],
                    "explore_share": float((batch.explored * mask).sum() / mask.sum())}
                   if batch.explored is not None else {})}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "optimizer": self.optimizer.state_dict(),
                "update_gen": self.update_gen.get_state(), "explore_gen": self.explore_gen.get_state(),
                "noise_gen": self.noise_gen.get_state(),
                "encoder": self.encoder_record}

    @classmethod
    def from_checkpoint(cls, out: Any, command: str = "", device: torch.device | str = "cpu",
                        state: dict[str, Any] | None = None) -> MazePPOTrainer:
        from .runfolder import load_checkpoint

        state = load_checkpoint(out) if state is None else state
        self = super().from_checkpoint(out, command, device, state)
        assert isinstance(self, MazePPOTrainer)
        self.encoder_record = state.get("encoder")
        self.optimizer = self._optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.update_gen.set_state(state["update_gen"])
        if "explore_gen" in state:  # checkpoints from before branch exploration start it fresh
            self.explore_gen.set_state(state["explore_gen"])
        if "noise_gen" in state:  # and those from before head noise
            self.noise_gen.set_state(state["noise_gen"])
        return self


def maze_trainer_class(cfg: Any) -> type[MazeTrainer]:
    """The trainer that runs a maze recipe: TRPO's (the paper's) or PPO's."""
    if cfg.update != "ppo" and (cfg.freeze_encoder or cfg.encoder_frames):
        raise UserError("freeze_encoder and encoder_frames belong to the PPO maze recipe: add --set update=ppo "
                        "(or --preset maze-ppo)")
    for name in ("aux_coef", "route_coef", "route_bonus", "explore_eps", "explore_coef", "head_noise"):
        if cfg.update != "ppo" and getattr(cfg, name):
            raise UserError(f"{name} belongs to the PPO maze recipe: add --set update=ppo (or --preset maze-ppo)")
    return MazePPOTrainer if cfg.update == "ppo" else MazeTrainer


def load_maze_trainer(out: Any, command: str = "", device: torch.device | str = "cpu") -> MazeTrainer:
    """A maze run from its checkpoint, with the trainer its recipe needs."""
    from .maze_config import stored_config
    from .runfolder import load_checkpoint

    state = load_checkpoint(out)
    return maze_trainer_class(stored_config(state["config"])).from_checkpoint(out, command, device, state)
