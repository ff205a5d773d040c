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

The update's losses and epochs are in ``maze_ppo_update``; with ``update_lag=1`` the update of the previous
batch runs beside the rollout (``maze_lag``).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from rl2bench import seeding
from rl2bench.errors import UserError

from .conv_policy import ConvPolicy
from .devices import torch_generator, torch_threads
from .maze_aux import position_targets
from .maze_encoder import pretrain_encoder, random_walk_frames
from .maze_explore import Deviations
from .maze_lag import LAGS, Learner, drop_pending, load_pending, no_update_fields, save_pending, settle
from .maze_ppo_update import Extras, Losses, minibatch_trials, ppo_losses, ppo_step
from .maze_rollout import MazeBatch, collect_maze
from .maze_route import ROUTE_TURN_DEGREES, route_agreement, route_followed, route_targets
from .maze_trainer import MazeTrainer

__all__ = ["Extras", "Losses", "MazePPOTrainer", "load_maze_trainer", "maze_trainer_class", "minibatch_trials",
           "ppo_losses", "ppo_step"]


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
        self.pending: MazeBatch | None = None  # update_lag=1: the batch the next iteration learns (maze_lag.py)
        self.learner = Learner()

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
        if self.cfg.update_lag not in LAGS:
            raise UserError(f"update_lag must be one of {', '.join(map(str, LAGS))} (0: learn before the next "
                            f"rollout; 1: beside it), not {self.cfg.update_lag}")
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
        if self.cfg.update_lag:
            return self._iterate_beside(start)
        if self.pending is not None:  # the lag was set off on resume: its waiting batch is learnt first
            self.learn(self.pending)
            self.pending = None
        batch = self.collect(self.net, self.iteration)
        t_rollout = time.perf_counter() - start
        fields = self.learn(batch)
        t_total = time.perf_counter() - start
        return self.record(batch, fields, t_rollout, t_total - t_rollout, t_total)

    def _iterate_beside(self, start: float) -> dict[str, float]:
        """``update_lag=1`` (maze_lag.py): the rollout plays a copy of the weights while the previous batch
        is learnt beside it."""
        pending, self.pending = self.pending, None
        behaviour = self.net if pending is None else copy.deepcopy(self.net)  # before the update moves them
        update = None if pending is None else self.learner.submit(self.learn, pending)
        try:
            batch = self.collect(behaviour, self.iteration)
        except BaseException:
            settle(update)
            raise
        t_rollout = time.perf_counter() - start
        fields = no_update_fields() if update is None else update.result()
        self.pending = batch
        t_total = time.perf_counter() - start
        return self.record(batch, fields, t_rollout, t_total - t_rollout, t_total)

    def close(self) -> None:
        super().close()
        self.learner.close()

    def save(self, finished: bool) -> None:
        """As the TRPO trainer's, the batch waiting for its update (``update_lag=1``) written first."""
        if self.pending is not None:
            save_pending(self.out, self.iteration, self.pending)
        super().save(finished)
        drop_pending(self.out, self.iteration if self.pending is not None else None)

    def update_threads(self) -> int:
        """``update_threads``, its 0 resolved: the update may use the cores the idle workers fill. Beside
        the rollout (``update_lag``) it keeps the process's own: the setting is the process's, and changing it
        during the rollout's steps would change how they round."""
        if self.device.type != "cpu" or self.cfg.update_lag:
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
                "encoder": self.encoder_record, "pending": self.iteration if self.pending is not None else None}

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
        if state.get("pending") is not None:  # update_lag=1 (maze_lag.py)
            self.pending = load_pending(out, state["pending"]).to(self.device)
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
