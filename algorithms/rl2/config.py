"""The bandit/MDP training recipe (``TrainConfig``), its presets, and ``--set key=value`` checked against
every field's type and range, so a bad value is a one-line error before any work rather than a crash
after it. The maze trainer's config (``maze_config``) is checked by the same rules.

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
  pay-off of exploring (leaderboard/NOTES.md, RL^2, 2026-11-26).

On CPU the PPO policy update and every baseline fit back-propagate through ``fused_gru`` (a hand-written
GRU backward: the same values, 1.6-1.7x faster iterations at the CPU size; ``--set fused_backward=0``
returns to nn.GRU's autograd). TRPO's policy step keeps nn.GRU: its Fisher products differentiate twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rl2bench.errors import UserError

from .fused_gru import ACTIVATIONS, UNRECORDED_ACTIVATION

if TYPE_CHECKING:
    from .rollout import TaskShape


@dataclass
class TrainConfig:
    hidden: int = 256
    # The GRU's candidate activation: "relu" is the paper's (Appendix A) and the authors' launchers'; "tanh"
    # is nn.GRU's, which the CPU presets were measured with and every run before the setting existed
    # (2026-11-27) used (a stored config without this key is one of those: ``stored_config``).
    gru_activation: str = "relu"
    gru_update_bias: float = 0.0  # initial update-gate bias of both GRUs (0 = the paper's zero biases)
    # "gru": RL^2's networks. "posterior": a diagnostic whose memory is the exact posterior statistics, read
    # by an MLP of width ``hidden`` (posterior_net.py); not the rl2 row's recipe.
    network: str = "gru"
    critic_hidden: int = 0  # the baseline's width; 0 = the policy's (``hidden``)
    critic_time: bool = False  # the baseline also sees the step in the episode and the episode in the trial
    # rl2-belief (belief.py; mdp cells): the critic sees the true MDP's rows of the current state, and an
    # auxiliary head on the policy's GRU predicts them with this weight in the PPO loss (0 = no head).
    critic_mdp: bool = False
    aux_coef: float = 0.0
    # What the auxiliary head predicts: "mdp" = the true MDP's rows (hidden state; mostly noise no history
    # can remove, experiments/rl2_memory_probe.py), "posterior" = the exact posterior mean of those rows
    # given the trial so far (a function of the agent's own history under the task's prior; no noise).
    aux_target: str = "mdp"
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
RANGES: dict[str, tuple[float, float, bool]] = {
    "hidden": (1, math.inf, True), "critic_hidden": (0, math.inf, True), "batch_steps": (1, math.inf, True),
    "gamma": (0, 1, True),
    "lam": (0, 1, True), "max_kl": (0, math.inf, False), "cg_iters": (1, math.inf, True),
    "damping": (0, math.inf, True), "fvp_fraction": (0, 1, False), "ent_coef": (0, math.inf, True),
    "aux_coef": (0, math.inf, True), "ent_decay_iters": (0, math.inf, True), "baseline_epochs": (0, math.inf, True),
    "baseline_minibatches": (1, math.inf, True), "baseline_lr": (0, math.inf, False),
    "iters": (1, math.inf, True), "checkpoint_every": (1, math.inf, True),
    "ppo_clip": (0, 1, False), "ppo_epochs": (1, math.inf, True), "ppo_minibatches": (1, math.inf, True),
    "ppo_minibatch_trials": (0, math.inf, True), "baseline_minibatch_trials": (0, math.inf, True),
    "policy_lr": (0, math.inf, False), "max_grad_norm": (0, math.inf, False),
    # maze trainer fields (maze_config.MazeTrainConfig)
    "ridge": (0, math.inf, True), "pool": (1, math.inf, True), "workers": (1, math.inf, True),
    "games_per_worker": (1, math.inf, True), "value_steps": (0, math.inf, True),
    "value_lr": (0, math.inf, False), "value_coef": (0, math.inf, True), "encoder_frames": (0, math.inf, True),
    "encoder_epochs": (0, math.inf, True), "encoder_lr": (0, math.inf, False),
    "novelty_coef": (0, 0.04, True),  # a new view must not earn more than a step costs (maze novelty.py)
    "novelty_episodes": (0, math.inf, True), "route_coef": (0, math.inf, True), "route_tilt": (0, math.inf, True),
    "route_bonus": (0, 0.04, True),  # following a route must not earn more than a step costs (maze_route.py)
    "explore_eps": (0, 1, True), "explore_coef": (0, math.inf, True), "head_noise": (0, math.inf, True),
    "update_threads": (0, math.inf, True), "update_lag": (0, 1, True),
}
# Fields that take one of a few words.
NETWORKS = ("gru", "posterior")
AUX_TARGETS = ("mdp", "posterior")
NOVELTY_KINDS = ("view", "odometry", "cell")  # maze novelty.py
EXPLORE_UPDATES = ("imitate", "gradient")  # maze_explore.py
EXPLORE_AT = ("any", "centres")
MINIBATCH_ORDERS = ("random", "length")  # maze_ppo.minibatch_trials
CHOICES: dict[str, tuple[str, ...]] = {"update": UPDATES, "gru_activation": ACTIVATIONS, "network": NETWORKS,
                                       "aux_target": AUX_TARGETS, "novelty_kind": NOVELTY_KINDS,
                                       "explore_update": EXPLORE_UPDATES, "explore_at": EXPLORE_AT,
                                       "ppo_minibatch_order": MINIBATCH_ORDERS}
# A minibatch count is ignored while the matching trials-per-minibatch setting is > 0.
SHADOWED_BY = {"ppo_minibatches": "ppo_minibatch_trials", "baseline_minibatches": "baseline_minibatch_trials"}
# What a running experiment cannot change: what shapes or initialises the networks it has trained.
FIXED_ON_RESUME = ("hidden", "gru_activation", "gru_update_bias", "network", "critic_hidden", "critic_time",
                   "critic_mdp")


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def effective_overrides(cfg: Any, overrides: list[str]) -> list[str]:
    """The ``--set`` items that change ``cfg``. "The same command plus --resume" repeats the settings a run
    started with: they change nothing, so they are neither refused (a network's shape) nor recorded."""
    return [item for item in overrides if apply_overrides(cfg, [item]) != cfg]


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
        if key in CHOICES:
            if value not in CHOICES[key]:
                raise UserError(f"bad --set {item!r}: {key} is one of {', '.join(CHOICES[key])}")
            continue
        low, high, closed = RANGES.get(key, (-math.inf, math.inf, True))
        number = changes[key]
        if isinstance(number, str):  # a word without a list of choices
            continue
        if not isinstance(number, bool) and not (low <= number <= high and (closed or number > low)):
            bound = f"{'>=' if closed else '>'} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
            raise UserError(f"bad --set {item!r}: {key} must be {bound}")
    new = dataclasses.replace(cfg, **changes)
    for count, per_trials in SHADOWED_BY.items():  # a setting that would silently do nothing is an error
        if count in changes and getattr(new, per_trials) > 0:
            raise UserError(f"--set {count}={changes[count]} would have no effect: {per_trials}="
                            f"{getattr(new, per_trials)} takes precedence; set {per_trials}=N (trials per "
                            f"minibatch) instead, or also {per_trials}=0 to count minibatches")
    return new
