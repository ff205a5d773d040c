"""The bandit/MDP trainer of RL^2: collect a batch of trials, estimate advantages with the recurrent
baseline and GAE, take one policy step (TRPO, or PPO: ``updates``), then fit the baseline; checkpoint, log,
repeat. The recipe and its presets are in ``config``; the maze trainer is ``maze_trainer``.

Everything random comes from named training streams of ``rl2bench.seeding`` (instances, environment
noise, action sampling, network init), and every stream's state is in the checkpoint, so ``--resume``
continues with exactly the iteration an uninterrupted run would have made next.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rl2bench import seeding
from rl2bench.errors import UserError

from .belief import BeliefHead, mdp_rows, posterior_rows
from .config import FIXED_ON_RESUME, TrainConfig, apply_overrides, effective_overrides, preset_config, stored_config
from .devices import device_label, on_cpu, torch_generator, training_device
from .gae import discounted_returns, gae
from .loop import training_loop
from .networks import build_networks, carry_over, critic_extra_inputs, critic_inputs
from .policy import Baseline, Policy
from .references import normalization_scores, normalized, reference_scores
from .rollout import Batch, collect, sample_instances, task_shape
from .runfolder import (
    CHECKPOINT,
    PLOT,
    POLICY_FORMAT,
    ancestor_record,
    checkpoint_env_steps,
    load_checkpoint,
    write_meta,
    write_run_files,
)
from .updates import fit_baseline, ppo_update, trpo_update


class Trainer:
    """One training run for one cell, writing into ``out``."""

    def __init__(self, task: str, cell: str, preset: str, seed: int, out: Path,
                 config: TrainConfig | None = None, command: str = "", device: torch.device | str = "cpu"):
        self.shape = task_shape(task, cell)
        # Where the networks, rollouts and updates run. Every random stream stays a CPU generator (its
        # draws move to the device), so checkpoints resume on any device with the same streams.
        self.device = training_device(device)
        self.preset, self.seed, self.out = preset, seed, Path(out)
        self.cfg = config or preset_config(preset, self.shape)
        self.command = command
        self.refs = reference_scores(self.shape.task, self.shape.cell)  # the paper's numbers, if any
        self.norm_refs, self.norm_source = normalization_scores(self.shape.task, self.shape.cell)
        s = self.shape
        init = seeding.generator(seed, "init", s.task, s.cell, "rl2")
        scale = min(s.trial_len, 1.0 / (1.0 - self.cfg.gamma)) if self.cfg.gamma < 1 else s.trial_len
        self.policy, self.baseline = build_networks(s, self.cfg, init, scale)
        self.policy.to(self.device)
        self.baseline.to(self.device)
        # rl2-belief's auxiliary head (belief.py): trained with the policy, never part of its file. Its own
        # stream, so runs without it keep their numbers.
        self.belief = (BeliefHead(self.cfg.hidden, s.n_states, s.n_actions,
                                  torch_generator(seeding.generator(seed, "belief", s.task, s.cell, "rl2")))
                       .to(self.device) if self.cfg.aux_coef else None)
        self.optimizer = torch.optim.Adam(self.baseline.parameters(), lr=self.cfg.baseline_lr)
        self.policy_optimizer = torch.optim.Adam(  # PPO only
            [*self.policy.parameters(), *(self.belief.parameters() if self.belief else ())], lr=self.cfg.policy_lr)
        self.instance_rng = seeding.instance_rng(seed, "train", s.task, s.cell)
        self.env_gen = torch_generator(seeding.env_rng(seed, "train", s.task, s.cell))
        self.act_gen = torch_generator(seeding.agent_rng(seed, "train", s.task, s.cell, "rl2"))
        self.fvp_gen = torch_generator(seeding.generator(seed, "fvp", s.task, s.cell, "rl2"))
        self.iteration = 0
        self.env_steps = 0  # a running total: --resume --set batch_steps=... changes the per-iteration count
        self.wall_seconds = 0.0
        self.curve: list[dict[str, float]] = []
        self.saved_iteration = 0
        self.initialized_from: dict[str, Any] | None = None  # curriculum: whose networks this run started from
        self.ancestry: list[dict[str, Any]] = []  # every run up the --init-from chain, oldest first (see init_from)
        self.config_changes: list[dict[str, Any]] = []  # ``--resume --set``: what changed at which iteration
        self.resumed: list[dict[str, Any]] = []  # each --resume invocation: its iteration and command line

    @property
    def n_trials(self) -> int:
        return max(1, round(self.cfg.batch_steps / self.shape.trial_len))

    # ---- one iteration -------------------------------------------------------------------------------
    def iterate(self) -> dict[str, float]:
        start = time.perf_counter()
        s, cfg = self.shape, self.cfg
        instances = sample_instances(s, self.instance_rng, self.n_trials)
        batch = collect(self.policy, s, instances, self.env_gen, self.act_gen)
        t_rollout = time.perf_counter() - start

        x = self.policy.encode(batch.inputs(s.n_states, s.n_actions))  # the same for the baseline
        fused = cfg.fused_backward and self.device.type == "cpu"  # cuDNN's GRU is the fast one on a GPU
        self.baseline.fused_backward = fused
        self.policy.fused_backward = fused and cfg.update == "ppo"  # TRPO's Fisher products need nn.GRU
        x_critic = critic_inputs(x, s, cfg, instances, batch.obs)  # never seen by the policy
        with torch.no_grad():
            values = self.baseline.values(x_critic)
        returns = discounted_returns(batch.rewards, cfg.gamma)
        adv = gae(batch.rewards, values, cfg.gamma, cfg.lam)
        ev = 1.0 - float((returns - values).var() / returns.var().clamp_min(1e-8))
        if cfg.center_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        aux_losses: list[float] = []
        if cfg.update == "ppo":
            info, entropy = ppo_update(self.policy, self.policy_optimizer, batch, x, adv, cfg,
                                       self.entropy_coefficient(), self.fvp_gen, self.device,
                                       self.belief_loss(instances, batch, aux_losses) if self.belief else None)
        else:
            info, entropy = trpo_update(self.policy, batch, x, adv, cfg, self.entropy_coefficient(), self.fvp_gen,
                                        self.device)
        t_policy = time.perf_counter() - start - t_rollout
        fit_baseline(self.baseline, self.optimizer, x_critic, returns, cfg, self.fvp_gen, self.device)
        t_total = time.perf_counter() - start

        self.iteration += 1
        self.env_steps += self.n_trials * s.trial_len
        self.wall_seconds += t_total
        mean_return = float(batch.trial_returns().mean())
        row = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_seconds": round(self.wall_seconds, 3),
            "mean_return": mean_return,
            "normalized": normalized(mean_return, self.norm_refs),
            "entropy": entropy,
            "kl": info.kl,
            "kl_full_step": info.kl_full_step,
            "backtracks": info.backtracks,
            "accepted": int(info.accepted),
            "surrogate_gain": info.surrogate_after - info.surrogate_before,
            "baseline_ev": ev,
            "seconds": t_total,
            "rollout_seconds": t_rollout,
            "policy_seconds": t_policy,
            **({"aux_loss": sum(aux_losses) / len(aux_losses)} if aux_losses else {}),
        }
        self.curve.append(row)
        return row

    def entropy_coefficient(self) -> float:
        """The entropy bonus of the coming iteration: constant, or decaying linearly to 0."""
        if self.cfg.ent_decay_iters <= 0:
            return self.cfg.ent_coef
        return self.cfg.ent_coef * max(0.0, 1.0 - self.iteration / self.cfg.ent_decay_iters)

    # ---- persistence -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "task": self.shape.task, "cell": self.shape.cell, "preset": self.preset, "seed": self.seed,
            "config": asdict(self.cfg), "iteration": self.iteration, "wall_seconds": self.wall_seconds,
            "env_steps": self.env_steps,
            "policy": on_cpu(self.policy.state_dict()), "baseline": on_cpu(self.baseline.state_dict()),
            **({"belief": on_cpu(self.belief.state_dict())} if self.belief else {}),
            "optimizer": on_cpu(self.optimizer.state_dict()),
            "policy_optimizer": on_cpu(self.policy_optimizer.state_dict()),
            "instance_rng": self.instance_rng.bit_generator.state,
            "env_gen": self.env_gen.get_state(), "act_gen": self.act_gen.get_state(),
            "fvp_gen": self.fvp_gen.get_state(), "curve": self.curve, "command": self.command,
            "initialized_from": self.initialized_from, "ancestry": self.ancestry,
            "config_changes": self.config_changes, "resumed": self.resumed,
        }

    def belief_loss(self, instances: dict[str, Any], batch: Batch, record: list[float]) -> Any:
        """The weighted auxiliary loss on the policy's memory for PPO's minibatches (``belief.py``); each
        value is appended to ``record``. Its target: the true MDP's rows of each step's state, or their
        posterior mean given the trial so far (``aux_target``)."""
        s = self.shape
        reward_means, transitions = (
            posterior_rows(s, batch.inputs(s.n_states, s.n_actions), batch.obs) if self.cfg.aux_target == "posterior"
            else mdp_rows(s, instances, batch.obs))
        head, weight = self.belief, self.cfg.aux_coef
        assert head is not None

        def loss(memory: torch.Tensor, trials: torch.Tensor) -> torch.Tensor:
            value = head.loss(memory, reward_means[:, trials], transitions[:, trials])
            record.append(float(value.detach()))
            return weight * value

        return loss

    @classmethod
    def from_checkpoint(cls, out: Path, command: str = "", device: torch.device | str = "cpu") -> Trainer:
        state = load_checkpoint(out)
        self = cls(state["task"], state["cell"], state["preset"], state["seed"], out,
                   stored_config(state["config"]), command or state.get("command", ""), device)
        self.policy.load_state_dict(state["policy"])
        self.baseline.load_state_dict(state["baseline"])
        if self.belief:
            self.belief.load_state_dict(state["belief"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "policy_optimizer" in state:  # runs from before the PPO update have none (TRPO needs none)
            self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.instance_rng.bit_generator.state = state["instance_rng"]
        self.env_gen.set_state(state["env_gen"])
        self.act_gen.set_state(state["act_gen"])
        self.fvp_gen.set_state(state["fvp_gen"])
        self.iteration, self.wall_seconds = state["iteration"], state["wall_seconds"]
        self.env_steps = state.get("env_steps", checkpoint_env_steps(state))
        self.curve = state["curve"]
        self.saved_iteration = self.iteration
        self.initialized_from = state.get("initialized_from")
        self.ancestry = state.get("ancestry", [])
        self.config_changes = state.get("config_changes", [])
        self.resumed = state.get("resumed", [])
        return self

    def change_config(self, overrides: list[str], by: str = "") -> None:
        """Change the recipe of a resumed run from the next iteration on, and record it (nothing to record
        without overrides: a recorded change restarts the zoo's recipe window)."""
        overrides = effective_overrides(self.cfg, overrides)
        if not overrides:
            return
        cfg = apply_overrides(self.cfg, overrides, fixed=FIXED_ON_RESUME)
        if bool(cfg.aux_coef) != bool(self.cfg.aux_coef):
            raise UserError("--set aux_coef can change its weight on resume, not add or remove the auxiliary "
                            "head; start a new run (--init-from this one) instead")
        if cfg.aux_coef and cfg.update != "ppo":
            raise UserError("aux_coef adds a loss to PPO's: this run keeps update=ppo")
        if cfg.aux_target != self.cfg.aux_target:
            raise UserError("--set aux_target cannot change on resume (the head has learned its target); start a "
                            "new run (--init-from this one) instead")
        self.cfg = cfg
        for group in self.optimizer.param_groups:  # the restored Adam state carries the old rate
            group["lr"] = self.cfg.baseline_lr
        for group in self.policy_optimizer.param_groups:
            group["lr"] = self.cfg.policy_lr
        self.config_changes.append({"iteration": self.iteration, "set": list(overrides), **({"by": by} if by else {})})

    def init_from(self, run_dir: Path) -> None:
        """Start from the policy and baseline weights of another run (a curriculum: e.g. n500-k10 from
        n100-k10, MDP n25 from n10). The networks must fit the cell; a wider GRU than the source's takes
        its function over and grows (``RecurrentNet.widen_from``); optimiser, seeds and the baseline's
        return scale stay this run's own."""
        if not (Path(run_dir) / CHECKPOINT).exists():
            raise UserError(f"--init-from: no {CHECKPOINT} in {run_dir}")
        state = load_checkpoint(run_dir)
        if state["task"] != self.shape.task:
            raise UserError(f"--init-from: {run_dir} is a {state['task']} run, not {self.shape.task}")
        baseline = {k: v for k, v in state["baseline"].items() if k != "scale"}
        source = stored_config(state["config"])
        narrow, activation = source.hidden, source.gru_activation
        misfit = UserError(f"--init-from: the networks in {run_dir} ({state['task']} {state['cell']}, {activation} "
                           f"GRU {narrow}) do not fit {self.shape.task} {self.shape.cell} with a "
                           f"{self.cfg.gru_activation} GRU {self.cfg.hidden}")
        if source.network != self.cfg.network:
            raise UserError(f"--init-from: {run_dir} trained network={source.network}, this run "
                            f"network={self.cfg.network}; their weights do not carry over")
        if activation != self.cfg.gru_activation:  # same weights, other function: nothing would carry over
            raise UserError(f"{misfit}; add --set gru_activation={activation} to start from it")
        s = self.shape
        # The critic carries over only with the same inputs; else this run's critic starts fresh.
        critic_fits = (source.critic_time, source.critic_mdp) == (self.cfg.critic_time, self.cfg.critic_mdp)
        extra = critic_extra_inputs(s, source)
        try:
            widened = carry_over(self.policy, state["policy"], narrow,
                                 lambda w: Policy(s.n_states, s.n_actions, w, activation=activation))
            if critic_fits:
                carry_over(self.baseline, baseline, source.critic_hidden or narrow,
                           lambda w: Baseline(s.n_states, s.n_actions, w, activation=activation, extra_inputs=extra),
                           strict=False)
        except (RuntimeError, ValueError):
            raise misfit from None
        self.initialized_from = {"run": str(run_dir), "task": state["task"], "cell": state["cell"],
                                 "iteration": state["iteration"], "env_steps": checkpoint_env_steps(state),
                                 **({"widened_from": narrow} if widened else {}),
                                 **({} if critic_fits else {"critic": "fresh (other critic inputs)"})}
        self.ancestry = [*state.get("ancestry", []), ancestor_record(run_dir, state)]

    def policy_file(self) -> dict[str, Any]:
        s = self.shape
        return {"format": POLICY_FORMAT, "task": s.task, "cell": s.cell, "n_states": s.n_states,
                "n_actions": s.n_actions, "hidden": self.cfg.hidden, "activation": self.cfg.gru_activation,
                **({"network": "posterior", "horizon": s.horizon, "n_episodes": s.n_episodes}
                   if self.cfg.network == "posterior" else {}),
                "state_dict": on_cpu(self.policy.state_dict()),
                "iteration": self.iteration, "preset": self.preset, "seed": self.seed}

    def save(self, finished: bool) -> None:
        write_run_files(self.out, self.state(), self.policy_file(), self.curve)
        target = self.refs.get("rl2", float("inf"))
        reached = next((r for r in self.curve if r["mean_return"] >= target), None)
        meta = {
            "status": "complete" if finished else "partial",
            "task": self.shape.task, "cell": self.shape.cell, "preset": self.preset, "seed": self.seed,
            "iterations": self.iteration, "target_iterations": self.cfg.iters,
            "env_steps": self.env_steps,
            "wall_seconds": round(self.wall_seconds, 1), "config": asdict(self.cfg),
            "command": self.command, "paper": self.refs, "initialized_from": self.initialized_from,
            "normalized_by": {"source": self.norm_source, **self.norm_refs},
            "ancestry": self.ancestry,
            "config_changes": self.config_changes, "resumed": self.resumed,
            "final_mean_return": self.curve[-1]["mean_return"] if self.curve else None,
            "first_reached_paper_rl2": None if reached is None else
            {k: reached[k] for k in ("iteration", "env_steps", "wall_seconds", "mean_return")},
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": device_label(self.device),
        }
        write_meta(self.out, meta)
        self._plot()
        self.saved_iteration = self.iteration

    def _plot(self) -> None:
        """Normalized score per iteration, as in the paper's Figures 2-3 (random 0, reference 1)."""
        if not self.curve:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        its = [r["iteration"] for r in self.curve]
        norm = not math.isnan(self.curve[0]["normalized"])
        ys = [r["normalized"] if norm else r["mean_return"] for r in self.curve]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(its, ys, lw=1.2, label="RL$^2$ (training batch mean)")
        if norm:
            ref = "Gittins" if self.shape.task == "mab" else "OPSRL"
            source = "paper" if self.norm_source == "paper" else "measured"
            ax.axhline(1.0, color="k", ls="--", lw=0.8, label=f"{ref} ({source}) = 1")
            ax.axhline(0.0, color="grey", ls=":", lw=0.8, label="random = 0")
            if "rl2" in self.refs:
                ax.axhline(normalized(self.refs["rl2"], self.norm_refs), color="C3", ls="-.", lw=0.8,
                           label="paper RL$^2$")
        ax.set_xlabel("iteration")
        ax.set_ylabel("normalized return" if norm else "mean trial return")
        ax.set_title(f"{self.shape.task} {self.shape.cell} ({self.preset}, seed {self.seed})")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        tmp = self.out / f".{PLOT}.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, self.out / PLOT)

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self, iters: int | None = None, progress: bool = True, seconds: float | None = None) -> None:
        """Train until ``iters`` iterations in total (default: the config's) or until an iteration ends past
        ``seconds`` of wall time, checkpointing as it goes."""

        def postfix(row: dict[str, float]) -> str:
            return (f"ret {row['mean_return']:.2f} norm {row['normalized']:.3f} kl {row['kl']:.4f} "
                    f"ent {row['entropy']:.3f} ev {row['baseline_ev']:.2f} {row['seconds']:.2f}s/it")

        training_loop(self, iters or self.cfg.iters, f"rl2 {self.shape.task} {self.shape.cell}", postfix,
                      progress, seconds)
