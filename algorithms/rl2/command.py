"""``python -m rl2bench train``: start, resume or extend a training run in its folder, for either trainer
(bandits and MDPs: ``trainer``; mazes: ``maze_trainer``). Everything here is about the command line's
promises (what --resume, --iters, --set and --init-from may do, what is said at the end or after Ctrl-C or
SIGTERM), none of it about training itself."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

from rl2bench.errors import UserError, claim_folder
from rl2bench.processes import exit_code

from .config import PRESETS, apply_overrides, preset_config
from .devices import run_device
from .maze_config import ALIASES
from .maze_config import preset_config as maze_preset_config
from .maze_ppo import load_maze_trainer, maze_trainer_class
from .rollout import task_shape
from .runfolder import CHECKPOINT, POLICY, claim_new_run_folder
from .trainer import Trainer


def network_label(cfg: Any) -> str:
    """The networks a run trains, in a few words."""
    if getattr(cfg, "network", "gru") == "posterior":
        return f"posterior-statistics MLP {cfg.hidden} (diagnostic)"
    extras = [f"critic {cfg.critic_hidden}"] if getattr(cfg, "critic_hidden", 0) else []
    extras += ["critic sees time"] if getattr(cfg, "critic_time", False) else []
    extras += ["critic sees the MDP"] if getattr(cfg, "critic_mdp", False) else []
    if getattr(cfg, "aux_coef", 0.0):
        extras.append(f"belief head x {cfg.aux_coef:g} on the {getattr(cfg, 'aux_target', 'mdp')}")
    return f"{cfg.gru_activation} GRU {cfg.hidden}" + (f" ({', '.join(extras)})" if extras else "")


def start_run(out: Path, build: Any, init_from: Path | None) -> Any:
    """Claim ``out`` for a new run, build its trainer and, with ``--init-from``, load the other run's
    networks; a refused start leaves no empty run folder behind."""
    created = not out.exists()
    claim_new_run_folder(out)
    trainer = build()
    if init_from is not None:
        try:
            trainer.init_from(init_from)
        except UserError:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
    return trainer


def check_resumed_identity(args: Any, preset: str, seed: int, aliases: dict[str, str] | None = None) -> None:
    """``--resume`` continues the stored run: a --preset or --seed given explicitly must agree with it."""
    explicit = getattr(args, "explicit", {})
    asked = (aliases or {}).get(explicit.get("preset", preset), explicit.get("preset", preset))
    if asked != preset or explicit.get("seed", seed) != seed:
        raise UserError(f"--resume continues the run in {args.out} (preset {preset}, seed {seed}); drop --preset "
                        f"and --seed or start a new run in another --out")


def apply_iters(trainer: Any, args: Any, out: Path) -> bool:
    """Apply ``--iters`` (a total, never below what is trained); True when a resumed run has reached it
    already: say so instead of rewriting its files (both train commands)."""
    if args.iters:
        if args.iters < trainer.iteration:
            raise UserError(f"--iters {args.iters}: the run in {out} is already at iteration {trainer.iteration}")
        trainer.cfg = dataclasses.replace(trainer.cfg, iters=args.iters)
    if not args.resume or trainer.iteration < trainer.cfg.iters:
        return False
    print(f"{out} is complete at iteration {trainer.iteration} (its --iters): nothing to do; pass a larger --iters "
          f"to train it further", file=sys.stderr)
    return True


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
    """What to do after Ctrl-C or SIGTERM: resume from the last checkpoint, or start again if none was written."""
    if not (out / CHECKPOINT).exists():
        return (f"interrupted before the first checkpoint: nothing was saved in {out}; run the same command "
                f"again, without --resume")
    return (f"interrupted; the checkpoint in {out} is at iteration {saved_iteration}: continue with the same "
            f"command plus --resume --out {out}")


def check_resumed_source(args, initialized_from: dict[str, Any] | None) -> None:
    """``--init-from`` with ``--resume``: the run's own source is accepted (the same command plus --resume,
    as the interrupt advice says); any other is a one-line error, a started run's network being its own."""
    source = (initialized_from or {}).get("run")
    if args.init_from is not None and str(args.init_from) != source:
        started = f"it started from {source}" if source else "it started from scratch"
        raise UserError(f"--init-from starts a new run; it cannot change a run being resumed ({started})")


def resumable_folder(args, out: Path) -> Any:
    """The device a run trains on; with ``--resume``, after claiming ``out`` (a run still training there,
    perhaps before its first checkpoint, is named first) and checking it holds a checkpoint."""
    if args.resume:
        claim_folder(out, "--out")
    device = run_device(getattr(args, "device", None), out, args.resume)
    if args.resume and not (out / CHECKPOINT).exists():
        raise UserError(f"--resume: no {CHECKPOINT} in {out}")
    return device


def train_command(args) -> int:
    """``python -m rl2bench train``: start or resume a run (its flags: ``add_train_arguments`` in cli.py)."""
    if args.task == "maze":  # pixels, engine workers, a shared conv network: its own trainer
        return maze_train_command(args)
    command = args.command_line
    shape = task_shape(args.task, args.cell)
    out = args.out or Path("runs") / "rl2" / f"{shape.task}-{shape.cell}-{args.preset}-s{args.seed}"
    device = resumable_folder(args, out)
    if args.resume:
        trainer = Trainer.from_checkpoint(out, device=device)
        check_resumed_identity(args, trainer.preset, trainer.seed)
        trainer.resumed.append({"iteration": trainer.iteration, "command": command})
        if (trainer.shape.task, trainer.shape.cell) != (shape.task, shape.cell):
            raise UserError(f"--resume: {out} holds {trainer.shape.task} {trainer.shape.cell}, not "
                            f"{shape.task} {shape.cell}")
        check_resumed_source(args, trainer.initialized_from)
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
        trainer = start_run(out, lambda: Trainer(shape.task, shape.cell, args.preset, args.seed, out, cfg, command,
                                                 device), args.init_from)
    if apply_iters(trainer, args, out):
        return 0
    print(f"training rl2 on {shape.task} {shape.cell}: preset {trainer.preset}, {trainer.n_trials} trials "
          f"x {shape.trial_len} steps per iteration, {network_label(trainer.cfg)}, "
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
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM; a half-done iteration is inconsistent: the last
        # periodic checkpoint stands (written whole: loop.training_loop holds interrupts while it saves)
        print(f"\n{interrupted_advice(out, trainer.saved_iteration)}", file=sys.stderr)
        return exit_code(exc)
    print(end_message(trainer, out), file=sys.stderr)
    return 0


def maze_train_command(args) -> int:
    """``python -m rl2bench train --task maze``: start or resume a run (same flags as the bandit trainer)."""
    command = args.command_line
    cell = args.cell.strip()
    out = args.out or Path("runs") / "rl2" / f"maze-{cell}-{ALIASES.get(args.preset, args.preset)}-s{args.seed}"
    device = resumable_folder(args, out)
    if args.resume:
        trainer = load_maze_trainer(out, device=device)
        check_resumed_source(args, trainer.initialized_from)
        check_resumed_identity(args, trainer.preset, trainer.seed, ALIASES)
        trainer.resumed.append({"iteration": trainer.iteration, "command": command})
        if trainer.cell.name != trainer.family.parse_cell(cell).name:
            raise UserError(f"--resume: {out} holds maze {trainer.cell.name}, not {cell}")
        trainer.change_config(args.set or [])  # a deliberate change of recipe mid-run, recorded
    else:
        if (out / CHECKPOINT).exists():
            raise UserError(f"{out} already holds a training run; pass --resume to continue it")
        cfg = apply_overrides(maze_preset_config(args.preset), args.set or [])
        trainer = start_run(out, lambda: maze_trainer_class(cfg)(cell, args.preset, args.seed, out, cfg, command,
                                                                 device), args.init_from)
    if apply_iters(trainer, args, out):
        return 0
    print(f"training rl2 on maze {trainer.cell.name}: preset {trainer.preset}, "
          f"{trainer.groups_per_iter * trainer.group_size} trials x <= {trainer.trial_len} steps per iteration, "
          f"{trainer.cfg.gru_activation} GRU {trainer.cfg.hidden}, until iteration {trainer.cfg.iters} on {device}; "
          f"writing {out}", file=sys.stderr)
    try:
        trainer.run(progress=not args.no_progress, seconds=None if args.minutes is None else 60 * args.minutes)
    except KeyboardInterrupt as exc:
        print(f"\n{interrupted_advice(out, trainer.saved_iteration)}", file=sys.stderr)
        return exit_code(exc)
    print(end_message(trainer, out), file=sys.stderr)
    return 0
