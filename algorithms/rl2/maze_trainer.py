"""RL^2 on the ViZDoom mazes (paper Appendix A.3): the maze network (``conv_policy``), trials played by
``MazeVecEnv``'s engine workers, GAE (gamma 0.99, lambda 0.99), one TRPO step per iteration.

How a batch is made (``maze_rollout``): the 1000 training configurations of the cell
(``MazeFamily.sample_instances(cell, seed, "train", 1000)``) are shuffled once by the seed's training
instance stream and handed to ONE ``MazeVecEnv`` for the whole run (engines start once, ~4 s);
iteration i plays the next ``groups_per_iter`` groups of that pool (a group = one game per engine slot,
16 with 2 workers x 8), so the run sweeps the pool in epochs. Every trial advances one step at a time
through the network; trials that end early (both episodes solved) are padded and masked out of every mean.

Policy and baseline share the network (paper). Choice made here: the TRPO step moves every parameter
except the value head under the KL limit on the policy; the value head (a linear map of the GRU output)
is then refitted in closed form by ridge regression on the discounted returns of the batch, using the
updated network's features. So the trust region on the policy holds exactly and the baseline needs no
learning rate; the trunk learns only from the policy objective (a combined loss would let the baseline
shape the shared features, at the price of a KL-uncontrolled policy change; ``--set value_steps=N``
adds N such Adam steps on the whole network after the head fit and logs the KL they cause).

The recipe and its presets are in ``maze_config``; the ``train`` command that starts and resumes runs is in
``command``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rl2bench import seeding
from rl2bench.errors import UserError

from .config import apply_overrides, effective_overrides
from .conv_policy import ConvPolicy
from .devices import device_label, on_cpu, torch_generator, training_device
from .gae import discounted_returns, gae
from .loop import training_loop
from .maze_aux import head_outputs
from .maze_config import ALIASES, FIXED_ON_RESUME, POLICY_FORMAT, MazeTrainConfig, preset_config, stored_config
from .maze_rollout import MazeBatch, collect_maze
from .novelty import training_bonus
from .runfolder import CHECKPOINT, ancestor_record, checkpoint_env_steps, load_checkpoint, write_meta, write_run_files
from .trpo import fisher_subsample, trpo_step

if TYPE_CHECKING:
    from rl2bench.tasks.maze.env import MazeVecEnv


class MazeTrainer:
    """One RL^2 training run on one maze cell, writing into ``out`` (same files as the bandit trainer)."""

    def __init__(self, cell: str, preset: str, seed: int, out: Path, config: MazeTrainConfig | None = None,
                 command: str = "", device: torch.device | str = "cpu"):
        from rl2bench.registry import get_family

        self.device = training_device(device)
        self.family = get_family("maze")
        self.cell = self.family.parse_cell(cell)
        self.spec = self.family.spec(self.cell)
        self.preset, self.seed, self.out = ALIASES.get(preset, preset), seed, Path(out)
        self.cfg = config or preset_config(preset)
        self.command = command
        name = self.cell.name
        init = seeding.generator(seed, "init", "maze", name, "rl2")
        self.net = ConvPolicy(self.spec.n_actions, self.cfg.hidden, self.spec.obs_shape,
                              generator=torch_generator(init), activation=self.cfg.gru_activation,
                              aux_outputs=head_outputs(self.cfg))
        self.net.to(self.device)
        self.act_gen = torch_generator(seeding.agent_rng(seed, "train", "maze", name, "rl2"))
        self.fvp_gen = torch_generator(seeding.generator(seed, "fvp", "maze", name, "rl2"))
        self.iteration = 0
        self.wall_seconds = 0.0
        self.env_steps = 0
        self.curve: list[dict[str, float]] = []
        self.saved_iteration = 0
        self.env: MazeVecEnv | None = None  # the engines, started by open_env
        self.initialized_from: dict[str, Any] | None = None  # --init-from: whose network this run started from
        self.ancestry: list[dict[str, Any]] = []  # every run up the --init-from chain, oldest first
        self.config_changes: list[dict[str, Any]] = []  # --resume --set: what changed at which iteration
        self.resumed: list[dict[str, Any]] = []  # each --resume invocation: its iteration and command line
        self.novelty_return = 0.0  # the last batch's mean novelty bonus per trial (novelty_coef > 0)

    @property
    def trial_len(self) -> int:
        return self.spec.horizon * self.spec.n_episodes

    @property
    def group_size(self) -> int:
        return self.cfg.workers * self.cfg.games_per_worker

    @property
    def groups_per_iter(self) -> int:
        wanted = max(1, round(self.cfg.batch_steps / self.trial_len))
        return math.ceil(wanted / self.group_size)

    def training_pool(self) -> dict[str, np.ndarray]:
        """The training configurations (1000) in this seed's shuffled order (a pure function of the seed)."""
        from rl2bench.tasks.maze import layout

        pool = self.family.sample_instances(self.cell, self.seed, "train", self.cfg.pool)
        order = seeding.instance_rng(self.seed, "train", "maze", self.cell.name).permutation(self.cfg.pool)
        return layout.take(pool, order)

    def open_env(self) -> MazeVecEnv:
        if self.env is None:
            from rl2bench.tasks.maze.env import MazeVecEnv

            self.env = MazeVecEnv(self.spec, self.training_pool(), self.cfg.workers, self.cfg.games_per_worker,
                                  turn_degrees=self.cell.turn, cell_moves=self.cell.cell_moves)
        return self.env

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    # ---- one iteration -------------------------------------------------------------------------------
    def iterate(self) -> dict[str, float]:
        env = self.open_env()
        start = time.perf_counter()
        cfg = self.cfg
        groups = [(self.iteration * self.groups_per_iter + j) % env.n_groups for j in range(self.groups_per_iter)]
        batch = collect_maze(self.net, env, groups, self.act_gen, self.trial_len).to(self.device)
        t_rollout = time.perf_counter() - start

        prev = batch.prev_inputs(self.net.no_action)
        mask = batch.valid
        with torch.no_grad():
            values = self.net(batch.obs, *prev)[1] * mask
        returns, adv, ev = self.advantages(batch, values)
        info, entropy = self._policy_step(batch, prev, adv)
        t_policy = time.perf_counter() - start - t_rollout
        self._fit_value_head(batch, prev, returns)
        value_kl = self._train_shared(batch, prev, returns) if cfg.value_steps else 0.0
        fields = {"entropy": entropy, "kl": info.kl, "kl_full_step": info.kl_full_step, "backtracks": info.backtracks,
                  "accepted": int(info.accepted), "surrogate_gain": info.surrogate_after - info.surrogate_before,
                  "baseline_ev": ev, "value_kl": value_kl}
        return self.record(batch, fields, t_rollout, t_policy, time.perf_counter() - start)

    def advantages(self, batch: MazeBatch, values: torch.Tensor, extra: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Discounted returns, GAE normalised over the batch's live steps, and the value head's explained
        variance: what every maze update (TRPO's, PPO's) starts from. ``extra``: a training-only reward
        added to the task's (and to the novelty bonus)."""
        cfg, mask = self.cfg, batch.valid
        rewards = batch.rewards if extra is None else batch.rewards + extra
        if cfg.novelty_coef:  # learnt from, never seen by the network (novelty.py)
            bonus = training_bonus(batch, cfg.novelty_kind, cfg.novelty_coef, self.cell.turn, cfg.novelty_episodes)
            self.novelty_return = float(bonus.sum(0).mean())
            rewards = rewards + bonus
        returns = discounted_returns(rewards, cfg.gamma)
        adv = gae(rewards, values, cfg.gamma, cfg.lam)
        n_valid = mask.sum()
        mean = (adv * mask).sum() / n_valid
        std = (((adv - mean) ** 2 * mask).sum() / n_valid).sqrt()
        return returns, (adv - mean) / (std + 1e-8) * mask, _explained_variance(returns, values, mask)

    def record(self, batch: MazeBatch, fields: dict[str, float], t_rollout: float, t_policy: float,
               t_total: float) -> dict[str, float]:
        """Count one iteration and append its curve row: the run's counters, the trials' success and
        lengths per episode, the update's own ``fields``, then the timings. On a ``-move`` cell a step is a
        decision, a forward one walking up to 4 strides: ``low_level_steps`` counts the strides too."""
        self.iteration += 1
        self.wall_seconds += t_total
        self.env_steps += batch.steps
        m, n_episodes = batch.metrics, self.spec.n_episodes
        row = {
            "iteration": self.iteration, "env_steps": self.env_steps, "wall_seconds": round(self.wall_seconds, 3),
            "trials": int(batch.valid.shape[1]), "mean_return": float(batch.rewards.sum(0).mean()),
            **{f"success_ep{e + 1}": float(m[f"success_ep{e + 1}"].mean()) for e in range(n_episodes)},
            **{f"len_ep{e + 1}": float(m[f"len_ep{e + 1}"].mean()) for e in range(n_episodes)},
            **({"low_level_steps": int(sum(m[f"len_ep{e + 1}"].sum() for e in range(n_episodes)))}
               if self.cell.cell_moves else {}),
            **fields, **({"novelty_return": self.novelty_return} if self.cfg.novelty_coef else {}),
            "seconds": t_total, "rollout_seconds": t_rollout, "policy_seconds": t_policy,
            "steps_per_second": batch.steps / t_rollout, "all_in_steps_per_second": batch.steps / t_total,
        }
        self.curve.append(row)
        return row

    def _policy_step(self, batch: MazeBatch, prev, adv: torch.Tensor):
        cfg, net, mask = self.cfg, self.net, batch.valid
        n_valid = mask.sum()
        old_logp_all = torch.log_softmax(batch.logits, -1)
        old_logp = old_logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        old_p = old_logp_all.exp()

        def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
            logp_all = torch.log_softmax(net(batch.obs, *prev)[0], -1)
            logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
            surr = (torch.exp(logp - old_logp) * adv * mask).sum() / n_valid
            if cfg.ent_coef:
                surr = surr - cfg.ent_coef * ((logp_all.exp() * logp_all).sum(-1) * mask).sum() / n_valid
            kl = ((old_p * (old_logp_all - logp_all)).sum(-1) * mask).sum() / n_valid
            return surr, kl

        idx = fisher_subsample(mask.shape[1], cfg.fvp_fraction, self.fvp_gen).to(self.device)

        def fisher_kl() -> torch.Tensor:
            sub = [x[:, idx] for x in prev]
            logp_all = torch.log_softmax(net(batch.obs[:, idx], *sub)[0], -1)
            kl = (old_p[:, idx] * (old_logp_all[:, idx] - logp_all)).sum(-1)
            return (kl * mask[:, idx]).sum() / mask[:, idx].sum()

        net.v.requires_grad_(False)  # the value head is fitted separately (module docstring)
        try:
            info = trpo_step(net, evaluate, fisher_kl, cfg.max_kl, cfg.cg_iters, cfg.damping)
        finally:
            net.v.requires_grad_(True)
        entropy = float(((-(old_p * old_logp_all).sum(-1)) * mask).sum() / n_valid)
        return info, entropy

    @torch.no_grad()
    def _fit_value_head(self, batch: MazeBatch, prev, returns: torch.Tensor) -> None:
        """Ridge regression of the returns on [GRU output, 1] over the valid steps."""
        feats = self.net.trunk(batch.obs, *prev)[0][batch.valid.bool()]
        x = torch.cat([feats, torch.ones(len(feats), 1, device=feats.device)], 1).double()
        y = returns[batch.valid.bool()].double()
        eye = torch.eye(x.shape[1], dtype=torch.float64, device=x.device) * self.cfg.ridge * len(x)
        eye[-1, -1] = 0.0  # no penalty on the bias
        w = torch.linalg.solve(x.T @ x + eye, x.T @ y)
        self.net.v.weight.copy_(w[:-1].float().unsqueeze(0))
        self.net.v.bias.copy_(w[-1:].float())

    def _train_shared(self, batch: MazeBatch, prev, returns: torch.Tensor) -> float:
        """Optional (``value_steps`` > 0): let the value loss shape the shared features too, as the paper's
        sharing does, with a fresh Adam each iteration (nothing to checkpoint). This moves the policy
        outside the trust region; the mean KL it causes is returned and logged as ``value_kl``."""
        net, mask = self.net, batch.valid
        n_valid = mask.sum()
        scale = returns[mask.bool()].std().clamp_min(1e-3)
        with torch.no_grad():
            before = torch.log_softmax(net(batch.obs, *prev)[0], -1)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.cfg.value_lr)
        for _ in range(self.cfg.value_steps):
            values = net(batch.obs, *prev)[1]
            loss = (((values - returns) / scale) ** 2 * mask).sum() / n_valid
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            after = torch.log_softmax(net(batch.obs, *prev)[0], -1)
            return float(((before.exp() * (before - after)).sum(-1) * mask).sum() / n_valid)

    # ---- persistence -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"task": "maze", "cell": self.cell.name, "preset": self.preset, "seed": self.seed,
                "config": asdict(self.cfg), "iteration": self.iteration, "wall_seconds": self.wall_seconds,
                "env_steps": self.env_steps, "net": on_cpu(self.net.state_dict()), "act_gen": self.act_gen.get_state(),
                "fvp_gen": self.fvp_gen.get_state(), "curve": self.curve, "command": self.command,
                "initialized_from": self.initialized_from, "ancestry": self.ancestry,
                "config_changes": self.config_changes, "resumed": self.resumed}

    @classmethod
    def from_checkpoint(cls, out: Path, command: str = "", device: torch.device | str = "cpu",
                        state: dict[str, Any] | None = None) -> MazeTrainer:
        """The run in ``out`` as its checkpoint left it (``state``: that checkpoint, when already read)."""
        state = load_checkpoint(out) if state is None else state
        self = cls(state["cell"], state["preset"], state["seed"], out, stored_config(state["config"]),
                   command or state.get("command", ""), device)
        self.net.load_state_dict(state["net"])
        self.act_gen.set_state(state["act_gen"])
        self.fvp_gen.set_state(state["fvp_gen"])
        self.iteration, self.wall_seconds = state["iteration"], state["wall_seconds"]
        self.env_steps, self.curve = state["env_steps"], state["curve"]
        self.saved_iteration = self.iteration
        self.initialized_from = state.get("initialized_from")
        self.ancestry = state.get("ancestry", [])
        self.config_changes = state.get("config_changes", [])
        self.resumed = state.get("resumed", [])
        return self

    def change_config(self, overrides: list[str], by: str = "") -> None:
        """``--resume --set``: change the recipe from the next iteration on, and record it."""
        overrides = effective_overrides(self.cfg, overrides)
        if not overrides:
            return
        self.cfg = apply_overrides(self.cfg, overrides, fixed=FIXED_ON_RESUME)
        self.config_changes.append({"iteration": self.iteration, "set": list(overrides), **({"by": by} if by else {})})

    def init_from(self, run_dir: Path) -> None:
        """Start from another maze run's network (a curriculum: ``g3`` mazes, then small; or another
        recipe's policy). Same network, or a wider GRU grown from it; optimiser state, seeds and the pool stay
        this run's own."""
        if not (Path(run_dir) / CHECKPOINT).exists():
            raise UserError(f"--init-from: no {CHECKPOINT} in {run_dir}")
        state = load_checkpoint(run_dir)
        if state["task"] != "maze":
            raise UserError(f"--init-from: {run_dir} is a {state['task']} run, not a maze run")
        source = stored_config(state["config"])
        if source.gru_activation != self.cfg.gru_activation or source.hidden > self.cfg.hidden:
            raise UserError(f"--init-from: {run_dir} trained a {source.gru_activation} GRU {source.hidden}, this "
                            f"run a {self.cfg.gru_activation} GRU {self.cfg.hidden}; add --set hidden="
                            f"{source.hidden} --set gru_activation={source.gru_activation} (or a larger hidden, "
                            "which grows the GRU) to start from it")
        aux_weight = state["net"].get("aux.weight")  # the head as stored, whatever its outputs are now
        source_aux = 0 if aux_weight is None else int(aux_weight.shape[0])
        try:
            if source.hidden == self.cfg.hidden and source_aux == self.net.aux_outputs:
                self.net.load_state_dict(state["net"])
            else:  # a wider GRU grown from the narrower one, same function at first (ConvPolicy.widen_from);
                # an auxiliary head the source lacks keeps its fresh weights, one this run lacks is dropped
                narrow = ConvPolicy(self.spec.n_actions, source.hidden, self.spec.obs_shape,
                                    activation=source.gru_activation, aux_outputs=source_aux).to(self.device)
                narrow.load_state_dict(state["net"])
                self.net.widen_from(narrow)
        except (RuntimeError, ValueError):
            raise UserError(f"--init-from: the network in {run_dir} does not fit maze {self.cell.name}") from None
        self.initialized_from = {"run": str(run_dir), "task": "maze", "cell": state["cell"],
                                 "iteration": state["iteration"], "env_steps": checkpoint_env_steps(state),
                                 **({"widened_from": source.hidden} if source.hidden != self.cfg.hidden else {}),
                                 **({"aux_outputs_from": source_aux} if source_aux != self.net.aux_outputs else {})}
        self.ancestry = [*state.get("ancestry", []), ancestor_record(run_dir, state)]

    def policy_file(self) -> dict[str, Any]:
        return {"format": POLICY_FORMAT, "task": "maze", "cell": self.cell.name, "n_actions": self.spec.n_actions,
                "n_states": self.spec.n_states, "obs_shape": tuple(self.spec.obs_shape), "hidden": self.cfg.hidden,
                "activation": self.cfg.gru_activation, "aux_outputs": self.net.aux_outputs,
                "state_dict": on_cpu(self.net.state_dict()),
                "iteration": self.iteration, "preset": self.preset, "seed": self.seed}

    def save(self, finished: bool) -> None:
        write_run_files(self.out, self.state(), self.policy_file(), self.curve)
        rollout = sum(r["rollout_seconds"] for r in self.curve)
        played = sum(r["steps_per_second"] * r["rollout_seconds"] for r in self.curve)  # not an encoder's walk
        meta = {
            "status": "complete" if finished else "partial", "task": "maze", "cell": self.cell.name,
            "preset": self.preset, "seed": self.seed, "iterations": self.iteration,
            "target_iterations": self.cfg.iters, "env_steps": self.env_steps,
            "wall_seconds": round(self.wall_seconds, 1),
            "seconds_per_iteration": round(self.wall_seconds / max(1, self.iteration), 2),
            "rollout_steps_per_second": round(played / rollout, 1) if rollout else None,
            "config": asdict(self.cfg), "command": self.command,
            "initialized_from": self.initialized_from, "ancestry": self.ancestry,
            "config_changes": self.config_changes, "resumed": self.resumed,
            "final": self.curve[-1] if self.curve else None,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": device_label(self.device),
        }
        write_meta(self.out, meta)
        self.saved_iteration = self.iteration

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self, iters: int | None = None, progress: bool = True, seconds: float | None = None) -> None:
        """As the bandit/MDP trainer's ``run``; the engines are shut down however the loop ends. Subnormal
        floats are flushed to zero while it trains: a ReLU GRU unit whose candidate stays at 0 decays
        geometrically, and within a 500-step trial its state reaches the subnormal range, where each
        CPU operation on it is many times slower (measured 2026-12-06: a GRU 256 grown from a GRU 64 spent
        60-70 s instead of ~8 s per update). Numbers below 1.2e-38 change; nothing the policy computes does."""

        def postfix(row: dict[str, float]) -> str:
            return (f"ret {row['mean_return']:.2f} succ1 {row['success_ep1']:.2f} kl {row['kl']:.4f} "
                    f"ent {row['entropy']:.3f} ev {row['baseline_ev']:.2f} {row['seconds']:.1f}s/it")

        try:
            with subnormals_flushed():
                training_loop(self, iters or self.cfg.iters, f"rl2 maze {self.cell.name}", postfix, progress,
                              seconds)
        finally:
            self.close()


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Flush subnormal floats to zero inside the block (see ``MazeTrainer.run``), then put back what was
    set before: torch has no getter, so the state is read from whether a subnormal survives arithmetic.
    The flag is per thread (the CPU's own): it covers the one torch thread a training run uses; intra-op
    worker threads started earlier keep theirs."""
    before = (torch.tensor([1e-39]) * 1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _explained_variance(returns: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> float:
    n = mask.sum()
    r = returns[mask.bool()]
    resid = (returns - values)[mask.bool()]
    if n < 2:
        return float("nan")
    return 1.0 - float(resid.var() / r.var().clamp_min(1e-8))
