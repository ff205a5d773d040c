"""``python -m rl2bench paths``: one algorithm's paths on held-out mazes, drawn as top-down maps
(``paths.py``); registered with the core's command line on import.

With ``--run`` the trials are the run's own: its root seed, its evaluation instance count and the setting it
evaluated the algorithm with, so the picture shows the trials behind that run's leaderboard. Written into
the run folder, a picture appears on the run's leaderboard page (``rl2bench.leaderboard.render_figures``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rl2bench.cli import nonneg_int, positive_int
from rl2bench.errors import UserError, writable_file
from rl2bench.registry import Command, register_command

#: What a run evaluates on unless told otherwise (``rl2bench.protocol.RunConfig``).
DEFAULT_SEED, DEFAULT_EVAL_INSTANCES = 0, 1000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="maze", help="the task family (maze: the only one with maps)")
    p.add_argument("--cell", required=True, help="one maze cell, e.g. small or large")
    p.add_argument("--algo", required=True, help="one algorithm, e.g. rl2, memory or random")
    p.add_argument("--instances", default="0,1,2",
                   help="evaluation (held-out) instance indices, one panel each, comma separated (default 0,1,2)")
    p.add_argument("--run", type=Path, default=None, metavar="RUN_DIR",
                   help="play as this run did (e.g. leaderboard/runs/maze): its seed, instance count and the "
                        "algorithm's evaluated setting; without it: seed 0, 1000 instances, the first grid setting")
    p.add_argument("--seed", type=nonneg_int, default=None, help="root seed (default: the run's, else 0)")
    p.add_argument("--eval-instances", type=positive_int, default=None, metavar="N",
                   help="the evaluation phase's instance count, which fixes its chunks and engine groups "
                        "(default: the run's, else 1000)")
    p.add_argument("--episodes", default="1,2", help="the episodes to draw (default 1,2)")
    p.add_argument("--columns", type=positive_int, default=3, help="panels per row (default 3)")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")


def int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise UserError(f"{flag} expects non-negative integers separated by commas, got {text!r}")
    return values


def run_identity(run: Path | None) -> tuple[int, int]:
    """(root seed, evaluation instance count) of the run folder ``run`` (a maze run), or the defaults."""
    if run is None:
        return DEFAULT_SEED, DEFAULT_EVAL_INSTANCES
    from rl2bench.results import RunStore

    config = RunStore.existing(run).config()
    if config.get("task") != "maze":
        raise UserError(f"--run {run} is a run of task {config.get('task')!r}, not of the maze task")
    return int(config.get("seed", DEFAULT_SEED)), int(config.get("instances", DEFAULT_EVAL_INSTANCES))


def setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "no hyperparameters"


def cmd_paths(args: argparse.Namespace) -> int:
    from rl2bench.protocol import notice, prepare_agent, setting_key
    from rl2bench.registry import get_family, resolve_algorithms

    family = get_family(args.task)
    if family.name != "maze":
        raise UserError(f"paths are drawn for the maze task only (it has maps), not {family.name!r}")
    cell = family.parse_cell(args.cell)
    spec = family.spec(cell)
    writable_file(args.out, "--out", (".png",))
    instances = int_list(args.instances, "--instances")
    episodes = int_list(args.episodes, "--episodes")
    if any(not 1 <= e <= spec.n_episodes for e in episodes):
        raise UserError(f"--episodes: {cell.name} has episodes 1..{spec.n_episodes}, got {args.episodes!r}")
    seed, total = run_identity(args.run)
    seed = seed if args.seed is None else args.seed
    total = total if args.eval_instances is None else args.eval_instances
    if any(i >= total for i in instances):
        raise UserError(f"--instances: instance {max(instances)} is out of range: the evaluation phase has "
                        f"instances 0..{total - 1}")
    chosen = resolve_algorithms(args.algo, "maze")
    if len(chosen) != 1:
        raise UserError(f"--algo takes one algorithm, got {args.algo!r}")
    reason = chosen[0].unavailable(cell, spec)
    if reason is not None:
        raise UserError(reason)
    prepared = prepare_agent("maze", cell.name, args.algo, args.run)
    if args.run is not None:
        from rl2bench.results import RunStore

        store, name = RunStore.existing(args.run), prepared.agent_cls.name
        if not store.has_eval(cell.name, name):
            notice(f"{args.run} has no evaluation of {name} on {cell.name}; drawing its first grid setting")
        elif setting_key(store.eval_setting(cell.name, name)) != setting_key(prepared.setting):
            notice(f"{args.run} evaluated {name} on {cell.name} with a setting it no longer has; drawing "
                   f"{setting_key(prepared.setting)}")

    from .paths import draw_paths, record_paths

    paths = record_paths(prepared, instances, total, seed)
    name = prepared.agent_cls.name
    title = (f"{name} on {cell.name} ({setting_text(prepared.setting)}): held-out mazes "
             f"{', '.join(map(str, instances))} of {total}, seed {seed}")
    command = getattr(args, "command_line", "")
    caption = (f"Paths of {name} on held-out {cell.name} mazes, episodes {', '.join(map(str, episodes))}"
               + (f". Drawn by: `{command}`" if command else ""))
    figure = draw_paths(paths, title, episodes, args.columns)
    figure.savefig(args.out, dpi=80, metadata={"Description": caption})
    summary = "; ".join(
        f"maze {p.instance}: " + ", ".join(f"ep {e} {'target' if p.success[e - 1] else 'no target'} in "
                                            f"{int(p.lengths[e - 1])}" for e in episodes) for p in paths)
    print(f"{summary}\npaths written to {args.out}", file=sys.stdout)
    return 0


register_command(Command("paths", "draw an algorithm's paths on held-out mazes, episode by episode (maze task)",
                         add_arguments, cmd_paths))
