"""The maze trainer's recipe (``MazeTrainConfig``) and its presets: what a run is asked to do, kept apart
from how ``maze_trainer`` does it, as ``config`` is for the bandit/MDP trainer.

Presets: ``maze`` = the paper (GRU 256, 50,000 steps per iteration: 100 trials of at most 500 steps on
small-e2, rounded up to whole groups); ``maze-fast`` = 16 trials (one group) per iteration, Fisher-vector
products on a quarter of the trials. ``paper`` / ``fast`` are accepted as aliases. ``maze-ppo`` = a recipe
of this project's, made for the CPU: GRU 64, PPO on the shared network (2 epochs, minibatches of 8 trials,
clip 0.2, Adam 3e-4, value weight 0.5, entropy bonus 0.01, lambda 0.95) over a frozen encoder pretrained on
100,000 random-walk frames; groups of 48 games (2 workers x 24 engines), 96 trials (~48,000 steps) per
iteration. Its sizes were chosen by ``benchmarks/rl2_maze.py`` (2026-12-06): GRU 128 with 4 epochs and
groups of 16 ran 1,168 steps/s all in, GRU 64 with 2 epochs 1,615, and with groups of 32 / 48 / 64
1,836-2,012 / 2,203 / 2,225.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rl2bench.errors import UserError

from .fused_gru import UNRECORDED_ACTIVATION

POLICY_FORMAT = "rl2bench-rl2-maze-policy/1"
TRAIN_POOL = 1000
PRESETS = ("maze", "maze-fast", "maze-ppo")
ALIASES = {"paper": "maze", "fast": "maze-fast"}


@dataclass
class MazeTrainConfig:
    hidden: int = 256
    gru_activation: str = "relu"  # the paper's; "tanh" is nn.GRU's (every maze run before 2026-11-27)
    batch_steps: int = 50_000  # paper; trials per iteration = batch_steps / max trial length, whole groups
    gamma: float = 0.99
    lam: float = 0.99
    max_kl: float = 0.01
    cg_iters: int = 10
    damping: float = 0.01
    fvp_fraction: float = 1.0
    ent_coef: float = 0.0
    ridge: float = 1e-3  # value head regression
    value_steps: int = 0  # Adam steps of the value loss on the WHOLE shared network after the head fit
    value_lr: float = 1e-4
    pool: int = TRAIN_POOL  # training configurations (the paper's 1000; fewer only for tests)
    workers: int = 2
    games_per_worker: int = 8
    iters: int = 5000
    checkpoint_every: int = 5
    # The policy step: "trpo" (the paper's; value head by ridge regression) or "ppo" (maze_ppo.py: clipped
    # surrogate plus value loss on the shared network, Adam epochs over minibatches of whole trials).
    update: str = "trpo"
    ppo_epochs: int = 4
    ppo_minibatch_trials: int = 8
    # "random": each epoch deals the trials into minibatches at random; "length": trials of like length share
    # a minibatch (shuffled, sorted by length, cut, and the minibatches played in random order), so each runs
    # only a little past its own trials' steps (the update of a trained policy's short trials ~2x cheaper),
    # every step weighed alike (maze_ppo.minibatch_trials).
    ppo_minibatch_order: str = "random"
    ppo_clip: float = 0.2
    policy_lr: float = 3e-4
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    # PPO on CPU: torch threads of the update, while the engine workers wait. 0: one per core the workers
    # fill (MazeVecEnv pins them, one core each, when they fill the machine), else 1. The numbers do not
    # depend on it (tested); give 1 when the machine is shared, as a run niced beside other work is.
    update_threads: int = 0
    # PPO: 1 runs the update of the previous batch beside the rollout (maze_lag.py): the rollout plays the
    # weights from before it, so each batch is learnt one iteration later; an iteration then costs about its
    # rollout. 0: the update before the next rollout, as every run before 2026-12-07 (evening).
    update_lag: int = 0
    # PPO on CPU: back-propagate through the hand-written GRU backward (fused_gru.py); the same values, the
    # update ~2x faster (benchmarks/rl2_maze.py, 2026-12-07). 0: plain autograd, as every run before then.
    fused_backward: bool = True
    # A frozen encoder (PPO only): the convolutions are pretrained as a frame autoencoder on
    # ``encoder_frames`` frames of the agent's own random walk in the training mazes (0: left at their
    # initialisation), then held fixed; rollouts store their features, so updates never touch pixels.
    freeze_encoder: bool = False
    encoder_frames: int = 0
    encoder_epochs: int = 3
    encoder_lr: float = 1e-3
    # A training-only bonus for each action whose next view is new to the trial (novelty.py; 0: off). Kept
    # below the step cost (0.04) so that wandering never pays once the target is known.
    novelty_coef: float = 0.0
    # "view": a new encoded frame; "odometry": a new point of its own dead reckoning; "cell": a new cell of it
    novelty_kind: str = "view"
    # Paid in the trial's first N episodes only (0: in all). In a later episode a bonus for places the
    # trial has not reached pays the agent for leaving the route it found, against remembering it.
    novelty_episodes: int = 0
    # PPO only: weight of an auxiliary loss that asks the GRU for the agent's own dead-reckoned position and
    # whether it has been there before in the trial (maze_aux.py; 0: off, and the network has no such head).
    aux_coef: float = 0.0
    # PPO on -turn90 cells only: weight of route recall (maze_route.py), a self-imitation loss asking each
    # episode after a success to walk that success's loop-free route, from the agent's own dead reckoning.
    route_coef: float = 0.0
    # 0: route_coef weighs a plain cross-entropy to the targets; > 0: a KL to the behaviour policy with the
    # target actions' odds multiplied by e^route_tilt (maze_route.route_loss)
    route_tilt: float = 0.0
    # route_coef weighs the loss on a head of its own (the auxiliary head's last N_ACTIONS outputs), trained
    # only and never acting, instead of the policy's: the GRU learns to carry the route, the policy head is
    # left to the returns (maze_route.py)
    route_head: bool = False
    # PPO on -turn90 cells only: a training-only reward for each action that follows that route's target
    # (maze_route.py); below the step cost (0.04), so turning back and forth on the route never pays.
    route_bonus: float = 0.0
    # PPO only: a share of the training rollout's actions replaced by random ones, left out of the
    # surrogate, and a loss of weight explore_coef on them, of kind explore_update (maze_explore.py).
    explore_eps: float = 0.0
    explore_coef: float = 0.0
    explore_update: str = "imitate"  # "imitate": those that paid, -max(A, 0) log pi(a); "gradient": -A log pi(a)
    explore_at: str = "any"  # "any" step, uniform; "centres" of cells by dead reckoning, a turn (-turn90 cells)
    # PPO only: the policy head perturbed once per trial by head_noise x a standard normal matrix applied to
    # the GRU output's direction, in the rollout and again in the update (maze_noise.py); 0: off.
    head_noise: float = 0.0


# What ``--resume --set`` cannot change: the network's shape, the pool and its grouping into engine slots
# (iteration i plays groups fixed by them), the update's kind and the encoder's pretraining.
FIXED_ON_RESUME = ("hidden", "gru_activation", "pool", "workers", "games_per_worker", "update", "freeze_encoder",
                   "encoder_frames", "encoder_epochs", "encoder_lr", "aux_coef", "route_head")


def preset_config(preset: str) -> MazeTrainConfig:
    preset = ALIASES.get(preset, preset)
    if preset == "maze":
        return MazeTrainConfig()
    if preset == "maze-fast":
        return MazeTrainConfig(batch_steps=8_000, fvp_fraction=0.25, iters=500, checkpoint_every=5)
    if preset == "maze-ppo":  # bound by the engines, not the update (maze_ppo.py)
        return MazeTrainConfig(hidden=64, batch_steps=48_000, games_per_worker=24, lam=0.95, ent_coef=0.01,
                               update="ppo", ppo_epochs=2, freeze_encoder=True, encoder_frames=100_000, iters=2000,
                               checkpoint_every=5)
    raise UserError(f"unknown maze preset {preset!r}; valid: {', '.join(PRESETS)} (or paper, fast)")


def stored_config(config: dict[str, Any]) -> MazeTrainConfig:
    """The MazeTrainConfig of a checkpoint: runs from before the activation was a setting trained tanh GRUs."""
    return MazeTrainConfig(**{"gru_activation": UNRECORDED_ACTIVATION, **config})
