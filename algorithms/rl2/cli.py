"""The RL^2 package's subcommands, ``train`` and ``zoo``, registered with the core's command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rl2bench.cli import nonneg_int, positive_float, positive_int
from rl2bench.errors import writable_file
from rl2bench.registry import Command, register_command


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="mab, mdp or maze")
    p.add_argument("--cell", required=True, help="one cell, e.g. n10-k5 or n10")
    p.add_argument("--preset", default=None,
                   help="'fast' (CPU-sized TRPO, default), 'ppo' (fast sizes, PPO update), 'ppo-sgd' (the "
                        "authors' released update: PPO epochs over trial minibatches) or 'paper' (Appendix A); "
                        "maze: maze-fast (default; 'fast' means it) or maze ('paper' means it)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="train until this many iterations in total")
    p.add_argument("--seed", type=nonneg_int, default=None, help="root seed of the training streams (default 0)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/rl2/<task>-<cell>-<preset>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a preset field (repeatable); with --resume, changes the recipe "
                        "from the next iteration on (recorded in meta.json)")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="stop cleanly (checkpoint, policy, curve; status 'partial') after the first iteration "
                        "that ends past this many minutes of this invocation")
    p.add_argument("--init-from", type=Path, default=None, metavar="RUN_DIR",
                   help="start a new run from another run's trained networks (same task, e.g. n500-k10 from "
                        "n100-k10; a larger --set hidden=H grows the GRU): a curriculum, recorded in meta.json")
    p.add_argument("--device", default=None,
                   help="where the networks and updates run: cpu or cuda[:N] (default: cpu; with --resume, the "
                        "kind the run last trained on where it is here); random streams stay on the CPU, so a "
                        "run resumes on either")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_zoo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="write the normalized learning curves of every bandit and MDP cell here")
    p.add_argument("--budget", action="store_true",
                   help="per cell: the return its current recipe still gains per doubling of steps, and the "
                        "steps and hours it would need at that rate to reach the paper's RL^2")
    p.add_argument("--promote", type=Path, default=None, metavar="RUN_DIR",
                   help="install a trainer run as its cell's policy if its last --window training-batch means "
                        "beat the current policy's (exit 1 and no change otherwise)")
    p.add_argument("--window", type=int, default=100, help="training batches compared by --promote (default 100)")
    p.add_argument("--min-z", type=float, default=0.0, metavar="Z",
                   help="--promote only if the run leads by more than Z standard errors of the difference of the "
                        "two windows' means (Welch; default 0: any higher mean). 2 keeps a near-tie from "
                        "replacing a policy on noise")
    p.add_argument("--force", action="store_true", help="--promote even if the run's training means are lower")


def cmd_train(args: argparse.Namespace) -> int:
    from .command import train_command

    args.explicit = {k: getattr(args, k) for k in ("preset", "seed") if getattr(args, k) is not None}
    args.preset = args.preset or "fast"
    args.seed = 0 if args.seed is None else args.seed
    return train_command(args)


def cmd_zoo(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from .zoo import budget_table, plot_curves, promote, zoo_dir, zoo_table

    root = zoo_dir()
    if args.plot:
        from matplotlib.figure import Figure

        kinds = [f".{k}" for k in Figure().canvas.get_supported_filetypes()]
        writable_file(args.plot, "--plot", (".png", *(k for k in kinds if k != ".png")))
    if args.promote is not None:
        done = promote(args.promote, root, args.window, args.force, args.min_z)
        versus = ("the cell had no policy" if done.incumbent_mean is None or done.z is None else
                  f"the zoo policy's last {done.incumbent_window}, {done.incumbent_mean:.4g} "
                  f"({'ahead' if done.z >= 0 else 'behind'} by {abs(done.z):.2f} standard errors)")
        verdict = "promoted" if done.promoted else "not promoted (use --force to replace it anyway)"
        print(f"{done.folder or done.task} {done.cell}: the run's last {done.window} training-batch means, "
              f"{done.candidate_mean:.4g}, against {versus}: {verdict}")
        if not done.promoted:
            return 1
        if os.environ.get("RL2BENCH_ZOO"):  # a zoo of one's own: evaluate into one's own run folder
            print(f"evaluate it with: RL2BENCH_ZOO={root} python -m rl2bench run --task {done.task} --algos "
                  f"{done.algorithm} "
                  f"--cells {done.cell} --out RUN_FOLDER (plus --resume on a folder that has other results)")
        else:
            print(f"re-evaluate it with: python -m rl2bench run --task {done.task} --algos all --out "
                  f"leaderboard/runs/{done.task} --publish leaderboard/{done.task}.md --resume")
        return 0
    table = zoo_table(root)
    if table.empty:
        print(f"the zoo at {root} holds no trained policy yet")
        return 0
    print(f"RL^2 policies in {root}:")
    print(tabulate(table.astype(object).fillna(""), headers="keys", showindex=False, floatfmt=".4g"))
    if args.budget:
        print("\nBudget to the paper's RL^2 at each cell's current rate (fit: training-batch means on log2 steps, "
              "later half of the iterations since the last recipe change, steps counted from the policy's first "
              "run including --init-from ancestors; inf: not rising by 2 standard errors, "
              "or beyond 1000x the steps so far; empty: under 40 such iterations):")
        budget = budget_table(root)
        print(tabulate(budget.astype(object).where(budget.notna(), ""), headers="keys", showindex=False,
                       floatfmt=("", "", ".1f", ".1f", ".3g", ".2g", "", ".1f", ".3g", ".3g", "")))
    if args.plot:
        plot_curves(root, args.plot)
        print(f"learning curves written to {args.plot}")
    return 0


register_command(Command("train", "train an RL^2 policy for one cell (TRPO + GRU); resumable",
                         add_train_arguments, cmd_train))
register_command(Command("zoo", "list the trained RL^2 policies; optionally plot their learning curves",
                         add_zoo_arguments, cmd_zoo))
