"""The RL^2 outer loop: collect a batch of trials, fit nothing yet, estimate advantages with the recurrent
baseline and GAE, take one TRPO step on the policy, then fit the baseline; checkpoint, log, repeat.

Everything random comes from named training streams of ``rl2bench.seeding`` (instances, environment
noise, action sampling, network init), and every stream's state is in the checkpoint, so ``--resume``
continues with exactly the iteration an uninterrupted run would have made next.

Presets:

* ``paper``: Appendix A.1/A.2 (GRU 256 with ReLU hidden activation, 250,000 steps per iteration, gamma 0.99,
  GAE lambda 0.3, mean KL 0.01). About a minute per iteration on 2 CPU cores: a GPU or a long background
  job.
* ``fast``: the same algorithm (TRPO, separate GRU baseline) sized for a CPU: GRU 64 (tanh, nn.GRU's, with
  which it was measured), 25,000-step batches, Fisher-vector products on a 20% subsample of the trials (3x
  faster updates), chosen by measurement (see leaderboard/zoo/README.md); trials of 50+ steps (bandits with
  n >= 50, every MDP cell) add an entropy bonus 0.01, gamma 1 and lambda 0.95: with the paper's settings and
  no bonus the policy's entropy collapsed within ~50 iterations at these small batches (n100-k10 with PPO in
  the notes, MDP n10 with TRPO here) while the return stayed near random.
* ``ppo``: the ``fast`` sizes and exploration settings (the entropy bonus kept constant) with a
  clipped-surrogate (PPO) policy update in place of the TRPO step: several Adam epochs over minibatches of
  whole trials per batch instead of one natural-gradient step. Not the paper's optimiser; added because the
  fast TRPO recipe levels off below the paper on trials of 100+ steps, and PPO learns more per environment
  step and per second here (leaderboard/NOTES.md has the comparison and which cell uses which preset).
* ``ppo-sgd``: the update the authors' released launchers used for the paper's bandit and MDP runs (rllab
  sandbox ``neural_learner``: ``PPOSGD`` with ``TBPTTOptimizer``; read, not copied): the paper's batch, GRU
  256 (ReLU, as in the paper), gamma 0.99, lambda 0.3 and no bonus, with 5 Adam epochs (rate 1e-3, no
  gradient-norm clipping) over minibatches of 128 whole trials, ratio clip 0.1, then the full-batch mean KL
  brought back under 0.01 by halving the step (``ppo_kl_backtrack``). At 250k steps that is ~100 Adam steps
  per iteration on 100-step trials where the ``ppo`` preset's 4 x 4 minibatches take 16. On trials of 100+
  steps, ``--set gamma=0.999`` learned faster here than the paper's 0.99, which discounts away the late
  pay-off of exploring (leaderboard/NOTES.md, RL^2, session 7).

On CPU the PPO policy update and every baseline fit back-propagate through ``fused_gru`` (a hand-written
GRU backward: the same values, 1.6-1.7x faster iterations at the CPU size; ``--set fused_backward=0``
returns to nn.GRU's autograd). TRPO's policy step keeps nn.GRU: its Fisher products differentiate twice.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl2bench import seeding
from rl2bench.errors import UserError, claim_folder, writable_folder
from rl2bench.results import write_text_atomic
from rl2bench.stats import normalize

from .fused_gru import ACTIVATIONS, UNRECORDED_ACTIVATION
from .gae import discounted_returns, gae
from .policy import Baseline, Policy
from .rollout import Batch, TaskShape, collect, sample_instances, task_shape
from .trpo import StepInfo, fisher_subsample, trpo_step

CHECKPOINT = "checkpoint.pt"  # full training state, for --resume
POLICY = "policy.pt"  # the small file the rl2 agent loads
CURVE = "curve.csv"
PLOT = "curve.png"
META = "meta.json"
POLICY_FORMAT = "rl2bench-rl2-policy/1"


@dataclass
class TrainConfig:
    hidden: int = 256
    # The GRU's candidate activation: "relu" is the paper's (Appendix A) and the authors' launchers'; "tanh"
    # is nn.GRU's, which the CPU presets were measured with and every run before session 14 used (a stored
    # config without this key is one of those: ``stored_config``).
    gru_activation: str = "relu"
    gru_update_bias: float = 0.0  # initial update-gate bias of both GRUs (0 = the paper's zero biases)
    batch_steps: int = 250_000  # environment steps per iteration (whole trials)
    gamma: float = 0.99
    lam: float = 0.3
    max_kl: float = 0.01
    cg_iters: int = 10
    damping: float = 1e-3
    fvp_fraction: float = 1.0  # share of the batch's trials used for Fisher-vector products
    ent_coef: float = 0.0  # entropy bonus added to the surrogate (0 in the paper)
    ent_decay_iters: int = 0  # > 0: the bonus falls linearly from ent_coef to 0 over this many iterations
    center_adv: bool = True  # standardise advantages per batch (rllab's default)
    update: str = "trpo"  # the policy step: "trpo" (the paper's) or "ppo" (clipped surrogate, Adam epochs)
    ppo_clip: float = 0.1
    ppo_epochs: int = 4
    ppo_minibatches: int = 4
    ppo_minibatch_trials: int = 0  # > 0: minibatches of this many trials (overrides ppo_minibatches)
    ppo_kl_backtrack: bool = False  # after the epochs, halve the step until the batch's mean KL <= max_kl
    policy_lr: float = 1e-3  # Adam rate of the PPO policy step
    max_grad_norm: float = 0.5  # PPO gradient clipping
    baseline_epochs: int = 3
    baseline_minibatches: int = 4
    baseline_minibatch_trials: int = 0  # > 0: minibatches of this many trials (overrides baseline_minibatches)
    baseline_lr: float = 1e-3
    fused_backward: bool = True  # on CPU, back-propagate PPO and baseline updates by fused_gru.py (same values)
    iters: int = 1000
    checkpoint_every: int = 5


PRESETS = ("paper", "fast", "ppo", "ppo-sgd")
UPDATES = ("trpo", "ppo")


def preset_config(preset: str, shape: TaskShape) -> TrainConfig:
    """The configuration a preset gives for a cell (see the module docstring)."""
    if preset == "paper":
        return TrainConfig()
    if preset == "ppo-sgd":
        return TrainConfig(update="ppo", ppo_clip=0.1, ppo_epochs=5, ppo_minibatch_trials=128,
                           ppo_kl_backtrack=True, policy_lr=1e-3, max_grad_norm=math.inf,
                           baseline_epochs=5, baseline_minibatch_trials=128, iters=1000)
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    cfg = TrainConfig(hidden=64, gru_activation="tanh", batch_steps=25_000, fvp_fraction=0.2,
                      iters=_fast_iters(shape), checkpoint_every=5)
    if shape.trial_len >= 50:  # long trials: keep exploring (see the module docstring)
        cfg = dataclasses.replace(cfg, ent_coef=0.01, ent_decay_iters=300, gamma=1.0, lam=0.95)
    if preset == "ppo":  # a constant bonus: decaying it let n100-k10's entropy collapse at 75 (NOTES.md)
        cfg = dataclasses.replace(cfg, update="ppo", ent_decay_iters=0)
    return cfg


def stored_config(config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a checkpoint: runs from before the activation was a setting trained tanh GRUs."""
    return TrainConfig(**{"gru_activation": UNRECORDED_ACTIVATION, **config})


def _fast_iters(shape: TaskShape) -> int:
    """Measured: n10-k5 reaches the paper's number in ~120 iterations; n10-k10 and n10-k50 were still
    rising at 150 (more arms to explore). Longer trials are guesses scaled with the trial length."""
    if shape.task == "mab":
        if shape.n_episodes <= 10:
            return 150 if shape.n_actions <= 5 else 400
        return 1000
    return 500 if shape.trial_len <= 100 else 1000


# Valid ranges of the numeric fields: (lowest, highest, lowest included).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "hidden": (1, math.inf, True), "batch_steps": (1, math.inf, True), "gamma": (0, 1, True),
    "lam": (0, 1, True), "max_kl": (0, math.inf, False), "cg_iters": (1, math.inf, True),
    "damping": (0, math.inf, True), "fvp_fraction": (0, 1, False), "ent_coef": (0, math.inf, True),
    "ent_decay_iters": (0, math.inf, True), "baseline_epochs": (0, math.inf, True),
    "baseline_minibatches": (1, math.inf, True), "baseline_lr": (0, math.inf, False),
    "iters": (1, math.inf, True), "checkpoint_every": (1, math.inf, True),
    "ppo_clip": (0, 1, False), "ppo_epochs": (1, math.inf, True), "ppo_minibatches": (1, math.inf, True),
    "ppo_minibatch_trials": (0, math.inf, True), "baseline_minibatch_trials": (0, math.inf, True),
    "policy_lr": (0, math.inf, False), "max_grad_norm": (0, math.inf, False),
    # maze trainer fields
    "ridge": (0, math.inf, True), "pool": (1, math.inf, True), "workers": (1, math.inf, True),
    "games_per_worker": (1, math.inf, True), "value_steps": (0, math.inf, True),
    "value_lr": (0, math.inf, False),
}
# Fields that take one of a few words.
_CHOICES: dict[str, tuple[str, ...]] = {"update": UPDATES, "gru_activation": ACTIVATIONS}
# A minibatch count is ignored while the matching trials-per-minibatch setting is > 0.
_SHADOWED_BY = {"ppo_minibatches": "ppo_minibatch_trials", "baseline_minibatches": "baseline_minibatch_trials"}
# What a running experiment cannot change: what shapes or initialises the networks it has trained.
FIXED_ON_RESUME = ("hidden", "gru_activation", "gru_update_bias")


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def apply_overrides(cfg: Any, overrides: list[str], fixed: tuple[str, ...] = ()) -> Any:
    """``key=value`` strings (``--set``) onto a config dataclass, typed by the field's default and
    range-checked, so a bad value is a one-line error before any work rather than a crash after it."""
    types: dict[str, type[Any]] = {f.name: type(f.default) for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise UserError(f"bad --set {item!r}: expected key=value with key one of {', '.join(types)}")
        if key in fixed:
            raise UserError(f"--set {key} cannot change a run being resumed (it shapes the networks it has trained)")
        try:
            kind = types[key]
            changes[key] = _BOOLEANS[value.strip().lower()] if kind is bool else kind(value)
        except (ValueError, KeyError):
            takes = "true or false" if types[key] is bool else f"a {types[key].__name__}"
            raise UserError(f"bad --set {item!r}: {key} takes {takes}") from None
        if key in _CHOICES:
            if value not in _CHOICES[key]:
                raise UserError(f"bad --set {item!r}: {key} is one of {', '.join(_CHOICES[key])}")
            continue
        low, high, closed = _RANGES.get(key, (-math.inf, math.inf, True))
        number = changes[key]
        if not isinstance(number, bool) and not (low <= number <= high and (closed or number > low)):
            bound = f"{'>=' if closed else '>'} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
            raise UserError(f"bad --set {item!r}: {key} must be {bound}")
    new = dataclasses.replace(cfg, **changes)
    for count, per_trials in _SHADOWED_BY.items():  # a setting that would silently do nothing is an error
        if count in changes and getattr(new, per_trials) > 0:
            raise UserError(f"--set {count}={changes[count]} would have no effect: {per_trials}="
                            f"{getattr(new, per_trials)} takes precedence; set {per_trials}=N (trials per "
                            f"minibatch) instead, or also {per_trials}=0 to count minibatches")
    return new


def reference_scores(task: str, cell: str) -> dict[str, float]:
    """The paper's random, reference (Gittins for bandits, OPSRL for MDPs) and RL^2 numbers for a cell,
    from leaderboard/paper/*.csv; empty for cells the paper did not run."""
    table = "table1_mab.csv" if task == "mab" else "table2_mdp.csv"
    upper = "gittins" if task == "mab" else "opsrl"
    out: dict[str, float] = {}
    with files("rl2bench.paper").joinpath(table).open() as fh:
        for row in csv.DictReader(fh):
            if row["task"] == task and row["cell"] == cell and row["algorithm"] in ("random", upper, "rl2"):
                key = {"random": "random", upper: "reference", "rl2": "rl2"}[row["algorithm"]]
                out[key] = float(row["value"])
    return out


MEASURED_REFERENCE_INSTANCES = 500


def measured_reference_scores(task: str, cell: str, instances: int = MEASURED_REFERENCE_INSTANCES
                              ) -> dict[str, float]:
    """For a cell the paper did not run: the two algorithms the family normalizes by (random and Gittins or
    OPSRL, default settings) played on ``instances`` of the cell's tuning instances (root seed 0; never the
    evaluation ones), so that every run of the cell, whatever its seed, is normalized the same way. Empty
    for families without a normalization (mazes)."""
    from rl2bench.protocol import prepare_agent  # the harness imports this module
    from rl2bench.registry import get_family

    by = get_family(task).normalize_by
    if by is None:
        return {}
    return {key: float(prepare_agent(task, cell, algo).returns(instances, 0, "tune").mean())
            for key, algo in zip(("random", "reference"), by, strict=True)}


def normalization_scores(task: str, cell: str) -> tuple[dict[str, float], str]:
    """The random and reference numbers a cell's curves are normalized by, and where they come from: the
    paper's table where it has the cell, else measured here."""
    paper = reference_scores(task, cell)
    if {"random", "reference"} <= paper.keys():
        return paper, "paper"
    measured = measured_reference_scores(task, cell)
    return measured, f"measured on {MEASURED_REFERENCE_INSTANCES} tuning instances" if measured else "none"


def normalized(value: float, refs: dict[str, float]) -> float:
    if "random" not in refs or "reference" not in refs:
        return float("nan")
    return normalize(value, refs["random"], refs["reference"])


def _torch_gen(np_rng: np.random.Generator) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(np_rng.integers(2**63 - 1)))
    return gen


def check_resumed_identity(args: Any, preset: str, seed: int, aliases: dict[str, str] | None = None) -> None:
    """``--resume`` continues the stored run: a --preset or --seed given explicitly must agree with it."""
    explicit = getattr(args, "explicit", {})
    asked = (aliases or {}).get(explicit.get("preset", preset), explicit.get("preset", preset))
    if asked != preset or explicit.get("seed", seed) != seed:
        raise UserError(f"--resume continues the run in {args.out} (preset {preset}, seed {seed}); drop --preset "
                        f"and --seed or start a new run in another --out")


def curve_columns(curve: list[dict[str, Any]]) -> list[str]:
    """Every column any row has, in first-seen order: a run resumed by a newer trainer may log more
    columns than its first rows (those cells stay empty)."""
    return list(dict.fromkeys(key for row in curve for key in row))


def _behaviour(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampling policy's log-probabilities of every action, of the actions taken, and its
    probabilities: what both policy steps measure their surrogate and KL against."""
    logp_all = torch.log_softmax(batch.logits, -1)
    return logp_all, logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1), logp_all.exp()


def _on_cpu(obj: Any) -> Any:
    """A state dict (nested dicts, lists, tensors) with every tensor on the CPU: checkpoints written by a
    GPU run load on a machine without one."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def resolve_device(name: str) -> torch.device:
    """``--device``: ``cpu`` (the default path), ``cuda`` or ``cuda:N`` where a GPU is visible."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"bad --device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"bad --device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} here; use --device cpu")
    return device


def run_device(requested: str | None, out: Path, resume: bool) -> torch.device:
    """``--device`` as given; left out, ``cpu`` for a new run and, for ``--resume``, the kind of device the
    run last trained on (its meta.json), so that resuming a GPU run on its GPU machine stays on the GPU.
    Where that GPU is not here the run resumes on the CPU and says so."""
    if requested is not None:
        return resolve_device(requested)
    last = "cpu"
    if resume and (out / "meta.json").exists():
        try:
            last = json.loads((out / "meta.json").read_text()).get("device", "cpu")
        except (OSError, ValueError):
            last = "cpu"
    if last == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        print(f"(resuming on cuda: the run last trained on {last}; pass --device cpu to move it)", file=sys.stderr)
        return training_device("cuda")
    print(f"(the run last trained on {last}; no CUDA GPU here, so it resumes on the CPU with the same random "
          "streams)", file=sys.stderr)
    return torch.device("cpu")


def training_device(device: torch.device | str) -> torch.device:
    """The device a trainer runs its networks on. On CUDA, cuDNN is switched off for the process: its GRU
    neither differentiates twice (TRPO's Fisher products) nor accepts weight-normalised (recomputed)
    weights as its flat buffer; torch's own CUDA kernels do both."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = False
    return device


def device_label(device: torch.device) -> str:
    """What meta.json records as the device of a run's last invocation."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _minibatch_count(n_trials: int, trials_per_minibatch: int, default: int) -> int:
    """How many minibatches to cut ``n_trials`` into: about ``trials_per_minibatch`` trials each when that
    is set (> 0), else ``default``."""
    return max(1, round(n_trials / trials_per_minibatch)) if trials_per_minibatch else default


def ancestor_record(run_dir: Path | str, state: dict[str, Any]) -> dict[str, Any]:
    """What a run started by ``--init-from`` keeps of its parent: enough to count the steps and wall time
    the policy really cost (a continuation's own counters start at zero) and to find the parent again.
    ``earlier_unknown``: the parent was itself started from a run but predates this record."""
    record = {"run": str(run_dir), "task": state["task"], "cell": state["cell"], "preset": state.get("preset"),
              "seed": state.get("seed"), "iteration": state["iteration"], "env_steps": _env_steps(state),
              "wall_seconds": round(float(state.get("wall_seconds", 0.0)), 1), "command": state.get("command", "")}
    if state.get("initialized_from") and not state.get("ancestry"):
        record["earlier_unknown"] = True
    return record


def _env_steps(state: dict[str, Any]) -> int:
    return int(state["curve"][-1]["env_steps"]) if state.get("curve") else 0


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """The learning curve as CSV, replaced atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=curve_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


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
        self.policy = Policy(s.n_states, s.n_actions, self.cfg.hidden, _torch_gen(init), self.cfg.gru_activation)
        scale = min(s.trial_len, 1.0 / (1.0 - self.cfg.gamma)) if self.cfg.gamma < 1 else s.trial_len
        self.baseline = Baseline(s.n_states, s.n_actions, self.cfg.hidden, scale, _torch_gen(init),
                                 self.cfg.gru_activation)
        if self.cfg.gru_update_bias:
            self.policy.set_update_gate_bias(self.cfg.gru_update_bias)
            self.baseline.set_update_gate_bias(self.cfg.gru_update_bias)
        self.policy.to(self.device)
        self.baseline.to(self.device)
        self.optimizer = torch.optim.Adam(self.baseline.parameters(), lr=self.cfg.baseline_lr)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.cfg.policy_lr)  # PPO only
        self.instance_rng = seeding.instance_rng(seed, "train", s.task, s.cell)
        self.env_gen = _torch_gen(seeding.env_rng(seed, "train", s.task, s.cell))
        self.act_gen = _torch_gen(seeding.agent_rng(seed, "train", s.task, s.cell, "rl2"))
        self.fvp_gen = _torch_gen(seeding.generator(seed, "fvp", s.task, s.cell, "rl2"))
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

        x = batch.inputs(s.n_states, s.n_actions)
        fused = cfg.fused_backward and self.device.type == "cpu"  # cuDNN's GRU is the fast one on a GPU
        self.baseline.fused_backward = fused
        self.policy.fused_backward = fused and cfg.update == "ppo"  # TRPO's Fisher products need nn.GRU
        with torch.no_grad():
            values = self.baseline.values(x)
        returns = discounted_returns(batch.rewards, cfg.gamma)
        adv = gae(batch.rewards, values, cfg.gamma, cfg.lam)
        ev = 1.0 - float((returns - values).var() / returns.var().clamp_min(1e-8))
        if cfg.center_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        step = self._ppo_step if cfg.update == "ppo" else self._trpo_step
        info, entropy = step(batch, x, adv)
        t_policy = time.perf_counter() - start - t_rollout
        self._fit_baseline(x, returns)
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
        }
        self.curve.append(row)
        return row

    def entropy_coefficient(self) -> float:
        """The entropy bonus of the coming iteration: constant, or decaying linearly to 0."""
        if self.cfg.ent_decay_iters <= 0:
            return self.cfg.ent_coef
        return self.cfg.ent_coef * max(0.0, 1.0 - self.iteration / self.cfg.ent_decay_iters)

    def _trpo_step(self, batch: Batch, x: torch.Tensor, adv: torch.Tensor):
        cfg = self.cfg
        old_logp_all, old_logp, old_p = _behaviour(batch)

        ent_coef = self.entropy_coefficient()

        def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
            logp_all = torch.log_softmax(self.policy(x)[0], -1)
            logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
            surr = (torch.exp(logp - old_logp) * adv).mean()
            if ent_coef:
                surr = surr - ent_coef * (logp_all.exp() * logp_all).sum(-1).mean()
            kl = (old_p * (old_logp_all - logp_all)).sum(-1).mean()
            return surr, kl

        idx = fisher_subsample(x.shape[1], cfg.fvp_fraction, self.fvp_gen).to(self.device)

        def fisher_kl() -> torch.Tensor:
            logp_all = torch.log_softmax(self.policy(x[:, idx])[0], -1)
            return (old_p[:, idx] * (old_logp_all[:, idx] - logp_all)).sum(-1).mean()

        info = trpo_step(self.policy, evaluate, fisher_kl, cfg.max_kl, cfg.cg_iters, cfg.damping)
        entropy = float(-(old_p * old_logp_all).sum(-1).mean())  # of the behaviour policy
        return info, entropy

    def _ppo_step(self, batch: Batch, x: torch.Tensor, adv: torch.Tensor):
        """The clipped surrogate of PPO (Schulman et al. 2017) with an entropy bonus: ``ppo_epochs`` passes
        of Adam over ``ppo_minibatches`` minibatches of whole trials (the GRU runs each trial from its
        start, so the hidden state stays exact), gradients clipped to ``max_grad_norm``."""
        cfg = self.cfg
        old_logp_all, old_logp, old_p = _behaviour(batch)
        ent_coef = self.entropy_coefficient()
        params = [p for p in self.policy.parameters() if p.requires_grad]
        surr_before = float(adv.mean())  # the surrogate at the old policy: ratio 1 everywhere
        n_trials = x.shape[1]
        minibatches = _minibatch_count(n_trials, cfg.ppo_minibatch_trials, cfg.ppo_minibatches)
        start = torch.nn.utils.parameters_to_vector(params).detach().clone()
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n_trials, generator=self.fvp_gen).to(self.device)
            for idx in order.chunk(minibatches):
                logp_all = torch.log_softmax(self.policy(x[:, idx])[0], -1)
                logp = logp_all.gather(-1, batch.actions[:, idx].unsqueeze(-1)).squeeze(-1)
                ratio = torch.exp(logp - old_logp[:, idx])
                a = adv[:, idx]
                surr = torch.min(ratio * a, ratio.clamp(1 - cfg.ppo_clip, 1 + cfg.ppo_clip) * a).mean()
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                loss = -(surr + ent_coef * entropy)
                self.policy_optimizer.zero_grad()
                loss.backward()
                if math.isfinite(cfg.max_grad_norm):  # at inf, clipping scales finite gradients by exactly 1
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.policy_optimizer.step()

        def surrogate_and_kl() -> tuple[float, float]:
            with torch.no_grad():
                logp_all = torch.log_softmax(self.policy(x)[0], -1)
                logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
                return (float((torch.exp(logp - old_logp) * adv).mean()),
                        float((old_p * (old_logp_all - logp_all)).sum(-1).mean()))

        surr_after, kl = surrogate_and_kl()
        kl_full, backtracks = kl, 0
        if cfg.ppo_kl_backtrack:  # the authors' PPOSGD: halve the step until the mean KL is within bounds
            step = torch.nn.utils.parameters_to_vector(params).detach() - start
            while kl > cfg.max_kl and backtracks < 10:
                backtracks += 1
                torch.nn.utils.vector_to_parameters(start + 0.5 ** backtracks * step, params)
                surr_after, kl = surrogate_and_kl()
        info = StepInfo(surr_before, surr_after, kl_full, kl, backtracks, True)
        return info, float(-(old_p * old_logp_all).sum(-1).mean())

    def _fit_baseline(self, x: torch.Tensor, returns: torch.Tensor) -> None:
        """A few Adam epochs of squared error on the discounted returns, minibatches of whole trials."""
        n = x.shape[1]
        target = returns / self.baseline.scale
        minibatches = _minibatch_count(n, self.cfg.baseline_minibatch_trials, self.cfg.baseline_minibatches)
        for _ in range(self.cfg.baseline_epochs):
            order = torch.randperm(n, generator=self.fvp_gen).to(self.device)
            for idx in order.chunk(minibatches):
                pred = self.baseline(x[:, idx])[0].squeeze(-1)
                loss = ((pred - target[:, idx]) ** 2).mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()

    # ---- persistence -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "task": self.shape.task, "cell": self.shape.cell, "preset": self.preset, "seed": self.seed,
            "config": asdict(self.cfg), "iteration": self.iteration, "wall_seconds": self.wall_seconds,
            "env_steps": self.env_steps,
            "policy": _on_cpu(self.policy.state_dict()), "baseline": _on_cpu(self.baseline.state_dict()),
            "optimizer": _on_cpu(self.optimizer.state_dict()),
            "policy_optimizer": _on_cpu(self.policy_optimizer.state_dict()),
            "instance_rng": self.instance_rng.bit_generator.state,
            "env_gen": self.env_gen.get_state(), "act_gen": self.act_gen.get_state(),
            "fvp_gen": self.fvp_gen.get_state(), "curve": self.curve, "command": self.command,
            "initialized_from": self.initialized_from, "ancestry": self.ancestry,
            "config_changes": self.config_changes, "resumed": self.resumed,
        }

    @classmethod
    def from_checkpoint(cls, out: Path, command: str = "", device: torch.device | str = "cpu") -> Trainer:
        state = torch.load(Path(out) / CHECKPOINT, map_location="cpu", weights_only=False)
        self = cls(state["task"], state["cell"], state["preset"], state["seed"], out,
                   stored_config(state["config"]), command or state.get("command", ""), device)
        self.policy.load_state_dict(state["policy"])
        self.baseline.load_state_dict(state["baseline"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "policy_optimizer" in state:  # runs from before the PPO update have none (TRPO needs none)
            self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.instance_rng.bit_generator.state = state["instance_rng"]
        self.env_gen.set_state(state["env_gen"])
        self.act_gen.set_state(state["act_gen"])
        self.fvp_gen.set_state(state["fvp_gen"])
        self.iteration, self.wall_seconds = state["iteration"], state["wall_seconds"]
        self.env_steps = state.get("env_steps", _env_steps(state))
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
        if not overrides:
            return
        self.cfg = apply_overrides(self.cfg, overrides, fixed=FIXED_ON_RESUME)
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
        path = Path(run_dir) / CHECKPOINT
        if not path.exists():
            raise UserError(f"--init-from: no {CHECKPOINT} in {run_dir}")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["task"] != self.shape.task:
            raise UserError(f"--init-from: {run_dir} is a {state['task']} run, not {self.shape.task}")
        baseline = {k: v for k, v in state["baseline"].items() if k != "scale"}
        source = stored_config(state["config"])
        narrow, activation = source.hidden, source.gru_activation
        misfit = UserError(f"--init-from: the networks in {run_dir} ({state['task']} {state['cell']}, {activation} "
                           f"GRU {narrow}) do not fit {self.shape.task} {self.shape.cell} with a "
                           f"{self.cfg.gru_activation} GRU {self.cfg.hidden}")
        if activation != self.cfg.gru_activation:  # same weights, other function: nothing would carry over
            raise UserError(f"{misfit}; add --set gru_activation={activation} to start from it")
        try:
            if narrow < self.cfg.hidden:  # grow: the trained units carry over, new ones start unread
                s = self.shape
                old_policy = Policy(s.n_states, s.n_actions, narrow, activation=activation)
                old_baseline = Baseline(s.n_states, s.n_actions, narrow, activation=activation)
                old_policy.load_state_dict(state["policy"])
                old_baseline.load_state_dict(baseline, strict=False)
                self.policy.widen_from(old_policy.to(self.device))
                self.baseline.widen_from(old_baseline.to(self.device))
            else:
                self.policy.load_state_dict(state["policy"])
                self.baseline.load_state_dict(baseline, strict=False)
        except (RuntimeError, ValueError):
            raise misfit from None
        self.initialized_from = {"run": str(run_dir), "task": state["task"], "cell": state["cell"],
                                 "iteration": state["iteration"], "env_steps": _env_steps(state),
                                 **({"widened_from": narrow} if narrow < self.cfg.hidden else {})}
        self.ancestry = [*state.get("ancestry", []), ancestor_record(run_dir, state)]

    def policy_file(self) -> dict[str, Any]:
        s = self.shape
        return {"format": POLICY_FORMAT, "task": s.task, "cell": s.cell, "n_states": s.n_states,
                "n_actions": s.n_actions, "hidden": self.cfg.hidden, "activation": self.cfg.gru_activation,
                "state_dict": _on_cpu(self.policy.state_dict()),
                "iteration": self.iteration, "preset": self.preset, "seed": self.seed}

    def save(self, finished: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _atomic_save(self.state(), self.out / CHECKPOINT)
        _atomic_save(self.policy_file(), self.out / POLICY)
        self._write_curve()
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
        write_text_atomic(self.out / META, json.dumps(meta, indent=2) + "\n")
        self._plot()
        self.saved_iteration = self.iteration

    def _write_curve(self) -> None:
        if self.curve:
            write_curve(self.curve, self.out / CURVE)

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


def training_loop(trainer: Any, total: int, desc: str, postfix: Callable[[dict], str], progress: bool,
                  seconds: float | None) -> None:
    """The outer loop both trainers share: ``trainer.iterate()`` until iteration ``total`` or until an
    iteration ends past ``seconds``, a progress bar, a checkpoint every ``checkpoint_every`` iterations
    and a final one (``complete`` once the config's iterations are done, else ``partial``)."""
    from tqdm.auto import tqdm

    deadline = None if seconds is None else time.monotonic() + seconds
    bar = tqdm(total=total, initial=trainer.iteration, desc=desc, unit="it", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        while trainer.iteration < total:
            row = trainer.iterate()
            bar.set_postfix_str(postfix(row), refresh=False)
            bar.update(1)
            if trainer.iteration % trainer.cfg.checkpoint_every == 0:
                trainer.save(finished=False)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        bar.close()
    trainer.save(finished=trainer.iteration >= trainer.cfg.iters)


def apply_iters(trainer: Any, args: Any, out: Path) -> bool:
    """Apply ``--iters`` (a total, never below what is trained); True when a resumed run has reached it
    already: say so instead of rewriting its files (both trainers' ``train_command``)."""
    if args.iters:
        if args.iters < trainer.iteration:
            raise UserError(f"--iters {args.iters}: the run in {out} is already at iteration {trainer.iteration}")
        trainer.cfg = dataclasses.replace(trainer.cfg, iters=args.iters)
    if not args.resume or trainer.iteration < trainer.cfg.iters:
        return False
    print(f"{out} is complete at iteration {trainer.iteration} (its --iters): nothing to do; pass a larger --iters "
          f"to train it further", file=sys.stderr)
    return True


def claim_new_run_folder(out: Path) -> None:
    """Create ``out`` for a new run and hold it (``claim_folder``); checked again once held, since another
    process may have started a run there after the caller's first look (both trainers' ``train_command``)."""
    writable_folder(out, "--out")
    claim_folder(out, "--out")
    if (out / CHECKPOINT).exists():
        raise UserError(f"{out} already holds a training run; pass --resume to continue it")


def end_message(trainer: Any, out: Path) -> str:
    """The last line of ``train``: finished, or stopped by ``--minutes`` with how to go on."""
    mean = (trainer.curve[-1] if trainer.curve else {}).get("mean_return", float("nan"))
    head = (f"iteration {trainer.iteration}, mean trial return {mean:.3f}, {trainer.wall_seconds:.0f} s; policy in "
            f"{out / POLICY}")
    if trainer.iteration >= trainer.cfg.iters:
        return f"done: {head}"
    return (f"stopped by --minutes at {head} (partial: --iters {trainer.cfg.iters} not reached; continue with "
            f"--resume --out {out})")


def interrupted_advice(out: Path, saved_iteration: int) -> str:
    """What to do after Ctrl-C: resume from the last checkpoint, or start again if none was written."""
    if not (out / CHECKPOINT).exists():
        return (f"interrupted before the first checkpoint: nothing was saved in {out}; run the same command "
                f"again, without --resume")
    return (f"interrupted; the checkpoint in {out} is at iteration {saved_iteration}: continue with the same "
            f"command plus --resume --out {out}")


def train_command(args) -> int:
    """``python -m rl2bench train``: start or resume a run (see ``build_parser`` in rl2bench/cli.py)."""
    if args.task == "maze":  # pixels, engine workers, a shared conv network: its own trainer
        from .maze_trainer import train_command as maze_train_command

        return maze_train_command(args)
    command = args.command_line
    shape = task_shape(args.task, args.cell)
    out = args.out or Path("runs") / "rl2" / f"{shape.task}-{shape.cell}-{args.preset}-s{args.seed}"
    device = run_device(getattr(args, "device", None), out, args.resume)
    if args.resume:
        if not (out / CHECKPOINT).exists():
            raise UserError(f"--resume: no {CHECKPOINT} in {out}")
        claim_folder(out, "--out")
        trainer = Trainer.from_checkpoint(out, device=device)
        check_resumed_identity(args, trainer.preset, trainer.seed)
        trainer.resumed.append({"iteration": trainer.iteration, "command": command})
        if (trainer.shape.task, trainer.shape.cell) != (shape.task, shape.cell):
            raise UserError(f"--resume: {out} holds {trainer.shape.task} {trainer.shape.cell}, not "
                            f"{shape.task} {shape.cell}")
        if args.init_from:
            raise UserError("--init-from starts a new run; it cannot change a run being resumed")
        if args.set:  # a deliberate change of recipe mid-run: applied from the next iteration, recorded
            trainer.change_config(args.set)
    else:
        if (out / CHECKPOINT).exists():
            raise UserError(f"{out} already holds a training run; pass --resume to continue it")
        if args.preset not in PRESETS:
            raise UserError(f"unknown preset {args.preset!r}; valid: {', '.join(PRESETS)}")
        cfg = apply_overrides(preset_config(args.preset, shape), args.set or [])
        if args.iters:
            cfg = dataclasses.replace(cfg, iters=args.iters)
        created = not out.exists()
        claim_new_run_folder(out)
        trainer = Trainer(shape.task, shape.cell, args.preset, args.seed, out, cfg, command, device)
        if args.init_from is not None:
            try:
                trainer.init_from(args.init_from)
            except UserError:
                if created:  # leave no empty run folder behind a refused start
                    shutil.rmtree(out, ignore_errors=True)
                raise
    if apply_iters(trainer, args, out):
        return 0
    print(f"training rl2 on {shape.task} {shape.cell}: preset {trainer.preset}, {trainer.n_trials} trials "
          f"x {shape.trial_len} steps per iteration, {trainer.cfg.gru_activation} GRU {trainer.cfg.hidden}, "
          f"until iteration {trainer.cfg.iters} on {device}; writing {out}", file=sys.stderr)
    if trainer.norm_source not in ("paper", "none"):  # say what "norm" means for a cell of the user's own
        from rl2bench.registry import get_family

        by = get_family(shape.task).normalize_by
        assert by is not None  # measured references exist only for a family that normalizes
        refs, (lower, upper) = trainer.norm_refs, by
        print(f"(not a cell of the paper: norm = 0 at {lower}'s {refs['random']:.2f}, 1 at {upper}'s "
              f"{refs['reference']:.2f}, {trainer.norm_source})", file=sys.stderr)
    try:
        trainer.run(progress=not args.no_progress, seconds=None if args.minutes is None else 60 * args.minutes)
    except KeyboardInterrupt:  # a half-done iteration is inconsistent: the last periodic checkpoint stands
        print(f"\n{interrupted_advice(out, trainer.saved_iteration)}", file=sys.stderr)
        return 130
    print(end_message(trainer, out), file=sys.stderr)
    return 0
