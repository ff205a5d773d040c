"""Command line: ``python -m rl2bench {list,run,table,check}`` and the RL^2 package's ``train`` and ``zoo``.

The core defines list, run, table and check; the floors above it add their subcommands through
``rl2bench.registry.register_command`` (the RL^2 package registers train and zoo).

Every user mistake ends in one line on stderr naming the valid choices and exit code 2, never a
traceback; Ctrl-C and SIGTERM keep every finished job on disk and say how to resume (exit 130 and 143).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rl2bench.errors import (
    AlgorithmFailed,
    UserError,
    claim_folder,
    held_folders,
    release_folders,
    writable_file,
    writable_folder,
)
from rl2bench.processes import exit_code, interrupt_on_sigterm
from rl2bench.registry import commands


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the whole usage otherwise)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(minimum: int, kind: str):
    """An argparse type: an integer >= ``minimum``, with a one-line error naming what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "positive")
nonneg_int = _int_at_least(0, "non-negative")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rl2bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="task families, cells, algorithms and their hyperparameter grids")
    p.add_argument("--task", help="only this task family")

    p = sub.add_parser("run", help="tune and evaluate algorithms on a task's cells, write a leaderboard")
    p.add_argument("--task", required=True, help="task family (see `list`)")
    p.add_argument("--algos", default="all",
                   help="'all' (default: every baseline, and rl2 where it has a policy; variants such as "
                        "ucb1-textbook only by name, see `list`) or a comma list of names and module:Class paths")
    p.add_argument("--cells", default="paper",
                   help="'paper' (default: the paper's cells) or a comma list, e.g. n200-k20")
    p.add_argument("--instances", type=positive_int, default=1000,
                   help="evaluation instances per cell (default 1000)")
    p.add_argument("--tune-instances", type=positive_int, default=None,
                   help="tuning instances per cell (disjoint from evaluation; default: the family's)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="root seed of every random stream (default 0)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: results/<task>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out, skipping finished jobs; an agent whose one setting "
                        "changed (a retrained rl2 policy) is evaluated again")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="worker processes (default: 2; with --backend dask and no --cluster: local workers)")
    p.add_argument("--backend", default="loky",
                   help="where jobs run, through joblib: loky (processes here, default), dask or ray; same "
                        "numbers on every backend")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="the cluster to use: a Dask scheduler (tcp://host:8786) or a Ray address (auto, "
                        "ray://host:10001); without it, dask and ray start a local one")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--publish", type=Path, default=None,
                   help="also write the leaderboard page here (e.g. leaderboard/mab.md)")
    p.add_argument("--force", action="store_true",
                   help="run even when the up-front estimate of memory or work is past its limit")
    p.add_argument("--in-process", action="store_true",
                   help="play plug-ins (module:Class, entry points) in the protocol's own process instead of a "
                        "sealed one: faster to debug one's own code; the run's page says it was not sealed")

    p = sub.add_parser("table", help="re-render the leaderboard of a stored run")
    p.add_argument("run", type=Path)
    p.add_argument("--publish", type=Path, default=None, help="also write the leaderboard page here")

    p = sub.add_parser("check", help="compare a run with the paper (or another run); exit 1 on a regression")
    p.add_argument("run", type=Path)
    p.add_argument("--against", default="paper", help="'paper' or another run folder")
    p.add_argument("--tolerance", type=float, default=None, help="largest accepted |z| (default 3)")
    p.add_argument("--exact", action="store_true",
                   help="with --against RUN: a reproduction check, every instance's return must be the same, and "
                        "both runs must hold the same algorithm-cells")
    p.add_argument("--subset", action="store_true",
                   help="with --exact: the run may hold only part of the reference's algorithm-cells (a rerun of "
                        "some columns of a leaderboard); every one it holds must be in the reference")

    p = sub.add_parser("site", help="a static leaderboard site (HTML pages and plots) from run folders")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders, one per task family")
    p.add_argument("--out", type=Path, required=True, help="the site's folder (index.html and one page per family)")
    p.add_argument("--extra-image", action="append", default=[], metavar="[FAMILY=]PATH",
                   help="a PNG to show on every family page, or on FAMILY's only (repeatable)")

    for command in commands().values():  # the floors above the core add theirs (the RL^2 package: train, zoo)
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def grid_summary(grid: list[dict[str, Any]]) -> str:
    """A grid as the values each key takes, e.g. '21 settings: scaling in {0.0001, 0.0001585, ..., 1}';
    a key that some settings leave out shows as 'default' there."""
    if grid == [{}]:
        return "-"

    def fmt(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    parts = []
    for key in dict.fromkeys(k for setting in grid for k in setting):
        values = list(dict.fromkeys(fmt(s[key]) if key in s else "default" for s in grid))
        if len(values) == 1:
            parts.append(f"{key}={values[0]}")
        else:
            shown = values if len(values) <= 4 else [*values[:2], "...", values[-1]]
            parts.append(f"{key} in {{{', '.join(shown)}}}")
    return f"{len(grid)} setting{'s' if len(grid) > 1 else ''}: " + "; ".join(parts)


def cmd_list(args) -> int:
    from tabulate import tabulate

    from rl2bench.registry import algorithms, families, get_family

    fams = [get_family(args.task)] if args.task else list(families().values())
    for fam in fams:
        print(f"task {fam.name}: cells {fam.cell_help}")
        print(f"  paper cells: {', '.join(fam.default_cells)}")
        rows = []
        example = fam.parse_cell(fam.default_cells[0])
        for name, cls in algorithms(fam.name).items():
            grid = cls.grid(example, fam.spec(example))
            summary = (cls.__doc__ or "").strip().split("\n")[0]
            in_all = "by name" if cls.exclude_from_all else "yes"
            rows.append([name, in_all, grid_summary(grid), textwrap.shorten(summary, 70, placeholder="...")])
        print(tabulate(rows, ["algorithm", "in `all`", f"grid (at {example.name})", "description"],
                       tablefmt="simple"))
        print()
    return 0


def _resolve_cells(family, spec: str) -> list[str]:
    if spec.strip() in ("paper", "default", "all"):
        return list(family.default_cells)
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise UserError("no cell given; use --cells paper or a comma list such as n100-k10")
    return list(dict.fromkeys(family.parse_cell(c).name for c in names))  # a cell named twice runs once


def cmd_run(args) -> int:
    from rl2bench.backends import check_backend
    from rl2bench.leaderboard import (
        build_summary,
        reference_algorithms,
        render_terminal,
        run_references,
        write_leaderboards,
    )
    from rl2bench.limits import check_footprint
    from rl2bench.processes import WorkerLost
    from rl2bench.protocol import RunConfig, default_n_jobs, run_benchmark
    from rl2bench.registry import get_family, resolve_algorithms
    from rl2bench.results import RunStore
    from rl2bench.sealed import is_builtin

    if args.resume and args.out is None:
        raise UserError("--resume needs --out RUN_FOLDER (the run to continue)")
    check_backend(args.backend, args.cluster)
    family = get_family(args.task)
    cells = _resolve_cells(family, args.cells)
    algos = resolve_algorithms(args.algos, family.name)
    out = args.out or Path("results") / f"{family.name}-{datetime.now():%Y%m%d-%H%M%S}"
    tune_instances = args.tune_instances or family.tune_instances or args.instances
    config = RunConfig(family.name, cells, algos, args.instances, tune_instances, args.seed,
                       args.jobs or default_n_jobs(), backend=args.backend, cluster=args.cluster,
                       skip_unavailable="all" in (a.strip() for a in args.algos.split(",")),
                       sealed=not args.in_process)
    check_footprint(family, cells, len(algos), args.instances, tune_instances, args.force)  # before any file
    if args.publish is not None:
        writable_file(args.publish, "--publish", (".md", ".markdown"))
    store = RunStore(writable_folder(out, "--out"))
    claim_folder(out, "--out")
    store.open(config.identity(), args.resume)
    command = args.command_line
    started = time.perf_counter()
    try:
        run_benchmark(config, store, progress=not args.no_progress)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (processes.interrupt_on_sigterm)
        print(f"\ninterrupted: finished jobs are saved in {out}; continue with the same command plus "
              f"--resume --out {out}", file=sys.stderr)
        return exit_code(exc)
    except (AlgorithmFailed, WorkerLost) as exc:
        raise UserError(f"{exc}; the finished jobs are saved in {out}: continue with the same command plus "
                        f"--resume --out {out}") from None
    wall = time.perf_counter() - started
    plug_ins = [a.name for a in algos if not is_builtin(a)]
    results = store.assemble({"command": command, "cells": cells, "algorithms": [a.name for a in algos],
                              "wall_seconds": round(wall, 2), "n_jobs": config.n_jobs,
                              "backend": config.backend, "references": sorted(reference_algorithms(family.name)),
                              "unsealed": plug_ins if args.in_process else []})
    summary = build_summary(results, run_references(out))
    write_leaderboards(summary, out, command, results, publish=args.publish)
    print(render_terminal(summary))
    print(f"\n{len(results)} rows in {out}/results.csv; leaderboard.{{md,csv,tex}} and run.json written "
          f"({wall:.1f} s)")
    return 0


def cmd_table(args) -> int:
    from rl2bench.leaderboard import build_summary, render_terminal, run_references, write_leaderboards
    from rl2bench.results import RunStore

    store = RunStore.existing(args.run)
    if args.publish is not None:
        writable_file(args.publish, "--publish", (".md", ".markdown"))
    results = store.results()
    summary = build_summary(results, run_references(args.run))  # what `run` rendered, plug-ins imported or not
    command = ""
    run_json = args.run / "run.json"
    if run_json.exists():
        from rl2bench.results import read_json

        command = read_json(run_json).get("command", "")
    if not os.access(args.run, os.W_OK):  # a read-only copy (a mounted archive, another user's run): show it
        print(render_terminal(summary))
        print(f"rl2bench: {args.run} is not writable: the leaderboard is shown here, its files are not rewritten",
              file=sys.stderr)
        return 0
    write_leaderboards(summary, args.run, command, results, publish=args.publish)
    print(render_terminal(summary))
    return 0


def cmd_check(args) -> int:
    from rl2bench.check import DEFAULT_TOLERANCE, check_run, render

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not 0 < tolerance < float("inf"):  # also refuses nan, which would fail every row
        raise UserError(f"--tolerance must be a positive number, got {tolerance:g}")
    if args.against != "paper" and not Path(args.against).is_dir():
        raise UserError(f"--against must be 'paper' or a run folder; {args.against!r} is neither")
    if args.exact:
        from rl2bench.check import render_reproduction, reproduce_run

        if args.against == "paper" or args.tolerance is not None:
            raise UserError("--exact compares two runs instance by instance: give --against RUN_FOLDER and "
                            "no --tolerance")
        table, ok, only_ours, only_theirs = reproduce_run(args.run, Path(args.against))
        print(render_reproduction(table))
        counts = table["status"].value_counts().to_dict()
        print(f"\n{counts.get('ok', 0)} reproduced exactly, {counts.get('FAIL', 0)} FAIL (some instance's "
              f"return differs from {args.against}, or only one run has it)")
        unverified = only_ours + ([] if args.subset else only_theirs)
        if unverified:
            print("FAIL, not in both runs: " + "; ".join(unverified))
        if args.subset and only_theirs:
            print("not rerun (--subset): " + "; ".join(only_theirs))
        return 0 if ok and not unverified else 1
    table, ok = check_run(args.run, args.against, tolerance)
    print(render(table))
    counts = table["status"].value_counts().to_dict()
    print(f"\n{counts.get('ok', 0)} ok, {counts.get('explained', 0)} explained (see leaderboard/NOTES.md), "
          f"{counts.get('FAIL', 0)} FAIL at |z| <= {tolerance:g}")
    return 0 if ok else 1


def cmd_site(args) -> int:
    from rl2bench.site import build_site

    started = time.perf_counter()
    written = build_site(args.runs, args.out, args.extra_image, command=args.command_line)
    print(f"{len(written)} files written to {args.out}; open {args.out / 'index.html'} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "table": cmd_table, "check": cmd_check, "site": cmd_site}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m rl2bench " + " ".join(shlex.quote(a) for a in argv)  # for provenance
    held_before = held_folders()
    try:
        run = COMMANDS.get(args.command) or commands()[args.command].run
        with interrupt_on_sigterm():  # `kill`, a batch scheduler's stop: as Ctrl-C
            return run(args)
    except KeyboardInterrupt as exc:  # where the command has nothing to save or to say
        print("\nrl2bench: interrupted", file=sys.stderr)
        return exit_code(exc)
    except UserError as exc:
        print(f"rl2bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rl2bench list | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        release_folders(keep=held_before)  # the command's own folders (main() may run inside a longer process)


if __name__ == "__main__":
    sys.exit(main())
