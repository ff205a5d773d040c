"""What the RL^2 policy zoo holds: one row per trained cell, and its learning curves on one figure.

The zoo is ``leaderboard/zoo/<task>/<cell>/`` (``$RL2BENCH_ZOO`` overrides it); each cell folder has the
trainer's ``meta.json`` and ``curve.csv``. ``python -m rl2bench zoo`` prints the table and can draw the
normalized curves (random = 0, the paper's Gittins / OPSRL = 1) of every bandit and MDP cell, so a
reader sees at a glance which cells reached the paper's RL^2 and which are still climbing.
``python -m rl2bench zoo --budget`` turns each curve into the budget its cell would need: the rate at
which the current recipe still gains (return per doubling of environment steps) and where that rate,
kept up, would meet the paper's RL^2 number.
``python -m rl2bench zoo --promote RUN_DIR`` installs a trainer run as its cell's policy, only if its
last training-batch means beat the policy it replaces (judged on the training stream, never on the
evaluation instances, so that promotion cannot overfit the leaderboard).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from rl2bench.errors import UserError
from rl2bench.results import DamagedRun, read_json
from rl2bench.stats import normalize

POLICY_FILE = "policy.pt"


def zoo_dir() -> Path:
    """``$RL2BENCH_ZOO`` if set, else the zoo that comes with the package: ``leaderboard/zoo`` in a source
    checkout, the ``rl2bench.zoo`` data package (policy files and their metadata) where it is installed."""
    env = os.environ.get("RL2BENCH_ZOO")
    if env:
        return Path(env)
    import rl2bench.zoo

    return Path(rl2bench.zoo.__file__).resolve().parent


def policy_path(task: str, cell: str) -> Path:
    return zoo_dir() / task / cell / POLICY_FILE


def train_hint(task: str, cell: str, preset: str = "fast") -> str:
    """The commands that train the missing policy and install it in the zoo (``zoo --promote``: the one
    way into the zoo, which checks the run's files agree and swaps the cell folder in whole)."""
    run = f"runs/rl2/{task}-{cell}"
    return (f"python -m rl2bench train --task {task} --cell {cell} --preset {preset} --out {run}, then "
            f"python -m rl2bench zoo --promote {run}")


def zoo_task(meta: dict) -> str:
    """The zoo folder a run's policy belongs in: its task's, or ``mdp-belief`` for a run trained with the
    hidden MDP in view (``critic_mdp``, ``aux_coef``: the ``rl2-belief`` row), itself or anywhere up its
    ``--init-from`` chain, which ``rl2``'s own policies must never come from."""
    config = meta.get("config") or {}
    if config.get("network", "gru") != "gru":
        raise UserError(f"a network={config['network']} run is a diagnostic, not an RL^2 policy: the zoo takes "
                        "none (evaluate it from a zoo of its own, RL2BENCH_ZOO=...)")
    if (config.get("critic_mdp") or config.get("aux_coef")
            or any(a.get("saw_the_mdp") for a in meta.get("ancestry") or [])):
        return f"{meta['task']}-belief"
    return str(meta["task"])


def policy_version(path: Path) -> str:
    """The first 12 hex digits of the policy file's sha256: part of the rl2 setting, so a run (or a
    resumed run) never mixes chunks played by two versions of a policy that is still being trained."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]



COLUMNS = ["task", "cell", "status", "preset", "seed", "iterations", "env_steps", "wall_seconds",
           "final_batch_mean", "paper_rl2", "total_env_steps", "total_wall_seconds", "initialized_from"]


def inherited(meta: dict) -> tuple[int, float, bool]:
    """Environment steps and wall seconds a run's starting networks had already cost (the sum over its
    ``--init-from`` ancestry), and whether that chain is known to its root. A run started from another
    counts its own steps from zero; its learning curve sits at this offset on the policy's real axis."""
    ancestry = meta.get("ancestry") or []
    steps = sum(int(a.get("env_steps", 0)) for a in ancestry)
    seconds = sum(float(a.get("wall_seconds", 0.0)) for a in ancestry)
    recorded = bool(ancestry) or not meta.get("initialized_from")  # runs from before the record have none
    complete = recorded and not any(a.get("earlier_unknown") for a in ancestry)
    return steps, seconds, complete


def _cell_order(task: str, cell: str) -> tuple:
    """n10-k5 < n10-k10 < n100-k5 ...: numbers compare as numbers."""
    parts = [int(p[1:]) if p[1:].isdigit() else p for p in cell.split("-")]
    return (task, *[(0, p) if isinstance(p, int) else (1, p) for p in parts])


def zoo_table(root: Path) -> pd.DataFrame:
    """One row per cell folder with a meta.json, in task then cell order."""
    if not root.is_dir():
        raise UserError(f"no policy zoo at {root} (set RL2BENCH_ZOO or train a policy first)")
    rows = []
    for meta_path in sorted(root.glob("*/*/meta.json")):
        meta = read_json(meta_path)
        start = meta.get("initialized_from") or {}
        steps_before, seconds_before, complete = inherited(meta)
        rows.append({
            "task": meta["task"], "cell": meta["cell"], "status": meta.get("status", "?"),
            "preset": meta.get("preset"), "seed": meta.get("seed"), "iterations": meta.get("iterations"),
            "env_steps": meta.get("env_steps"), "wall_seconds": meta.get("wall_seconds"),
            "final_batch_mean": meta.get("final_mean_return"),
            "paper_rl2": (meta.get("paper") or {}).get("rl2"),
            "initialized_from": f"{start['task']} {start['cell']}" if start else "",
            # ">=": part of the chain predates the ancestry record, so the total is a lower bound
            "total_env_steps": (meta.get("env_steps") or 0) + steps_before if complete
            else f">={(meta.get('env_steps') or 0) + steps_before}",
            "total_wall_seconds": int(round((meta.get("wall_seconds") or 0) + seconds_before)),
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    if table.empty:
        return table
    order = sorted(range(len(table)), key=lambda i: _cell_order(table.task[i], table.cell[i]))
    return table.iloc[order].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class GainRate:
    """How fast a training curve still rises: return gained per doubling of environment steps."""

    per_doubling: float
    stderr: float
    level: float  # the fitted return at the window's last step
    end_steps: float
    seconds_per_step: float

    def steps_to(self, target: float, z: float = 2.0, horizon: float = 1000.0) -> float:
        """Environment steps at which the fitted log-linear trend reaches ``target``. ``inf`` when the
        rate is not significantly above zero (its lower ``z``-standard-error bound is <= 0) or when
        the trend gets there only beyond ``horizon`` times the steps so far, where a straight line in
        log-steps fitted to one window says nothing any more."""
        if self.level >= target:
            return self.end_steps
        if self.per_doubling - z * self.stderr <= 0:
            return math.inf
        steps = self.end_steps * 2.0 ** ((target - self.level) / self.per_doubling)
        return steps if steps <= horizon * self.end_steps else math.inf


def gain_rate(env_steps: npt.ArrayLike, returns: npt.ArrayLike, wall_seconds: npt.ArrayLike,
              blocks: int = 10) -> GainRate:
    """Least-squares slope of the training return on log2(environment steps), fitted to ``blocks``
    block means: consecutive iterations share a policy, so single iterations are not independent
    points and would understate the slope's standard error."""
    env_steps, returns, wall_seconds = (np.asarray(a, dtype=float) for a in (env_steps, returns, wall_seconds))
    if len(env_steps) < 2 * blocks:
        raise ValueError(f"need at least {2 * blocks} iterations to fit a rate, got {len(env_steps)}")
    parts = np.array_split(np.arange(len(env_steps)), blocks)
    x = np.array([np.log2(env_steps[i]).mean() for i in parts])
    y = np.array([returns[i].mean() for i in parts])
    from scipy import stats  # here, not at the top: the rl2 agent imports this module on every run

    fit = stats.linregress(x, y)
    speed = (wall_seconds[-1] - wall_seconds[0]) / max(env_steps[-1] - env_steps[0], 1.0)
    end = float(env_steps[-1])
    return GainRate(per_doubling=float(fit.slope), stderr=float(fit.stderr),
                    level=float(fit.intercept + fit.slope * np.log2(end)), end_steps=end,
                    seconds_per_step=float(speed))


def recipe_window(curve: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The iterations that measure the current recipe's rate: those after the last recipe change
    (``--resume --set``), and of them the later half, past the fast early rise of a fresh recipe."""
    changes = [c["iteration"] for c in meta.get("config_changes") or []]
    since = curve[curve["iteration"] > max(changes, default=0)]
    return since.iloc[len(since) // 2:]


BUDGET_COLUMNS = ["task", "cell", "paper_rl2", "fitted_now", "gain_per_doubling", "se", "window_iterations",
                  "steps_now_M", "steps_needed_x", "hours_needed", "device"]


def budget_table(root: Path, min_iterations: int = 40) -> pd.DataFrame:
    """One row per zoo cell: how fast its current recipe still gains, and how many times its steps so
    far and how many more wall hours (at the speed of the fitted iterations, on the device of the last
    invocation) it would need to reach the paper's RL^2 number at that rate. ``inf``: not at this
    rate (not rising significantly, or beyond 1000x); empty: too few iterations since the last
    recipe change to fit a rate."""
    rows = []
    for _, row in zoo_table(root).iterrows():
        folder = root / row.task / row.cell
        meta = read_json(folder / "meta.json")
        paper = (meta.get("paper") or {}).get("rl2")
        if paper is None or not (folder / "curve.csv").exists():
            continue
        window = recipe_window(read_curve(folder / "curve.csv"), meta)
        offset = inherited(meta)[0]  # a continuation's steps count from its start; the policy's from its root
        out = {"task": row.task, "cell": row.cell, "paper_rl2": paper, "window_iterations": len(window),
               "steps_now_M": (row.env_steps + offset) / 1e6, "device": meta.get("device", "cpu")}
        if len(window) >= min_iterations:
            rate = gain_rate(window["env_steps"] + offset, window["mean_return"], window["wall_seconds"])
            steps = rate.steps_to(paper)
            out.update(fitted_now=rate.level, gain_per_doubling=rate.per_doubling, se=rate.stderr,
                       steps_needed_x=steps / rate.end_steps,
                       hours_needed=(steps - rate.end_steps) * rate.seconds_per_step / 3600)
        rows.append(out)
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def plot_curves(root: Path, path: Path, smooth: int = 25) -> None:
    """Normalized training curves of every bandit and MDP cell (moving average over ``smooth``
    iterations), one panel per task, the paper's RL^2 level of each cell marked at the right edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = ("mab", "mdp")
    fig, axes = plt.subplots(1, len(tasks), figsize=(11, 4), sharey=True)
    for ax, task in zip(axes, tasks, strict=True):
        for folder in sorted((root / task).glob("*/"), key=lambda f: _cell_order(task, f.name)):
            curve_path, meta_path = folder / "curve.csv", folder / "meta.json"
            if not curve_path.exists() or not meta_path.exists():
                continue
            curve = read_curve(curve_path)
            if curve["normalized"].isna().all():
                continue
            meta = read_json(meta_path)
            steps = (curve["env_steps"] + inherited(meta)[0]) / 1e6
            line = ax.plot(steps, curve["normalized"].rolling(smooth, min_periods=1).mean(),
                           lw=1.1, label=folder.name)[0]
            paper = meta.get("paper") or {}
            if {"random", "reference", "rl2"} <= paper.keys():
                level = normalize(paper["rl2"], paper["random"], paper["reference"])
                if math.isfinite(level):
                    ax.plot([steps.iloc[-1]], [level], marker="<", color=line.get_color())
        ax.axhline(1.0, color="k", ls="--", lw=0.7)
        ax.axhline(0.0, color="grey", ls=":", lw=0.7)
        ax.set_title(f"{task}: RL$^2$ training batch, normalized (reference = 1, random = 0)", fontsize=9)
        ax.set_xlabel("environment steps (millions), counted from each policy's first run")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2, loc="lower right")
    axes[0].set_ylabel("normalized return (markers: paper RL$^2$)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


RUN_FILES = ("checkpoint.pt", "policy.pt", "curve.csv", "meta.json")  # curve.png is copied when present


@dataclasses.dataclass(frozen=True)
class Promotion:
    """What ``promote`` decided: the training means compared, and whether the zoo now holds the run."""

    task: str
    cell: str
    window: int
    candidate_mean: float
    incumbent_mean: float | None  # None: the cell had no policy
    promoted: bool
    z: float | None = None  # Welch t of candidate minus incumbent window means; None: nothing to compare
    incumbent_window: int | None = None  # batches averaged on the zoo's side (its curve may be shorter)
    folder: str = ""  # the zoo folder it went to (``zoo_task``): the task's, or ``mdp-belief``

    @property
    def algorithm(self) -> str:
        """The registered algorithm that plays the policies of ``folder``."""
        return "rl2-belief" if self.folder.endswith("-belief") else "rl2"


def read_curve(path: Path) -> pd.DataFrame:
    """A trainer's curve.csv, or a one-line error naming it."""
    try:
        curve = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        raise DamagedRun(f"{path} cannot be read as a learning curve (empty, damaged or cut?)") from None
    if not {"iteration", "mean_return"} <= set(curve.columns):
        raise DamagedRun(f"{path} lacks the iteration or mean_return column (damaged?)")
    return curve


def welch_z(candidate: pd.Series, incumbent: pd.Series) -> float:
    """Welch's t statistic of the difference of two windows of training-batch means (how many standard
    errors the candidate is ahead). Successive batches share a slowly moving policy, so this understates the
    noise somewhat: a margin, not a p-value. Windows too short or too constant for a spread give +-inf or 0."""
    diff = float(candidate.mean() - incumbent.mean())
    t = np.nan
    if min(len(candidate), len(incumbent)) > 1:
        from scipy import stats

        with warnings.catch_warnings():  # constant windows: scipy warns, and the answer is NaN, handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            t = stats.ttest_ind(candidate, incumbent, equal_var=False).statistic
    if np.isnan(t):
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return float(t)


def training_mean(curve: pd.DataFrame, window: int) -> float:
    """Mean trial return of the last ``window`` training batches (all of them if there are fewer)."""
    return float(curve["mean_return"].tail(window).mean())


def promote(run_dir: Path, root: Path, window: int = 100, force: bool = False, min_z: float = 0.0) -> Promotion:
    """Copy a trainer run into ``root/<task>/<cell>/`` if its last ``window`` training-batch means beat
    the current policy's by more than ``min_z`` standard errors (Welch; 0: any higher mean), or the cell
    is empty, or ``force``. The files are staged and checked for one
    consistent iteration first (a run still training rewrites them), and the cell folder is swapped in
    by renames, so the zoo never holds half a run."""
    import torch

    run_dir = Path(run_dir)
    if window < 1:
        raise UserError(f"--window must be >= 1, got {window}")
    if not np.isfinite(min_z) or min_z < 0:
        raise UserError(f"--min-z must be a finite number >= 0, got {min_z}")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir} is not a trainer run folder: no {', '.join(missing)}")
    meta = read_json(run_dir / "meta.json")
    if not {"task", "cell", "iterations"} <= meta.keys():
        raise DamagedRun(f"{run_dir}/meta.json lacks its task, cell or iterations (damaged?)")
    task, cell = meta["task"], meta["cell"]
    if any(c in task + cell for c in "/\\") or task.startswith(".") or cell.startswith("."):
        raise UserError(f"{run_dir}/meta.json names an odd cell {task!r} {cell!r}")
    folder = zoo_task(meta)
    (root / folder).mkdir(parents=True, exist_ok=True)
    stage, old = root / folder / f".{cell}.incoming", root / folder / f".{cell}.replaced"
    for leftover in (stage, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        stage.mkdir()
        for name in (*RUN_FILES, "curve.png"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, stage / name)
        staged_meta = read_json(stage / "meta.json")
        curve = read_curve(stage / "curve.csv")
        iterations = {
            "meta.json": staged_meta["iterations"],
            "curve.csv": int(curve["iteration"].iloc[-1]) if len(curve) else 0,
            "policy.pt": torch.load(stage / "policy.pt", map_location="cpu", weights_only=False)["iteration"],
            "checkpoint.pt": torch.load(stage / "checkpoint.pt", map_location="cpu", weights_only=False)["iteration"],
        }
        if len(set(iterations.values())) != 1 or (staged_meta["task"], staged_meta["cell"]) != (task, cell):
            found = ", ".join(f"{k} at {v}" for k, v in iterations.items())
            raise UserError(f"{run_dir} changed while it was copied ({found}): is it still training? "
                            "Copy it when it has stopped, or try again")
        if curve.empty:
            raise UserError(f"{run_dir} has no training iterations yet")
        candidate = training_mean(curve, window)
        target = root / folder / cell
        incumbent: float | None = None
        z: float | None = None
        incumbent_window: int | None = None
        if (target / "curve.csv").is_file():
            incumbent_curve = read_curve(target / "curve.csv")
            incumbent, incumbent_window = training_mean(incumbent_curve, window), min(window, len(incumbent_curve))
            z = welch_z(curve["mean_return"].tail(window), incumbent_curve["mean_return"].tail(window))
        promoted = force or incumbent is None or (z is not None and candidate > incumbent and z > min_z)
        if promoted:
            if target.exists():
                target.rename(old)
            stage.rename(target)
        return Promotion(task, cell, min(window, len(curve)), candidate, incumbent, promoted, z, incumbent_window,
                         folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def policy_provenance(setting: dict) -> dict | None:
    """The leaderboard's provenance row for a setting that names a zoo policy and its file version: how far
    that policy had been trained, from the zoo's meta.json when it is still there."""
    if "version" not in setting or "policy" not in setting:
        return None
    meta_path = zoo_dir() / setting["policy"] / "meta.json"
    meta = read_json(meta_path) if meta_path.exists() else {}
    start = meta.get("initialized_from") or {}
    return {"policy": setting["policy"], "version": setting["version"], "play": setting.get("play", "sample"),
            "status": meta.get("status", ""), "preset": meta.get("preset", ""),
            "recipe": _recipe(meta.get("config", {})), "iterations": meta.get("iterations", ""),
            "env steps (M)": "" if "env_steps" not in meta else round(meta["env_steps"] / 1e6, 1),
            "started from": f"{start['cell']}" if start else "",
            "steps with its start (M)": _steps_with_ancestry(meta)}


def _recipe(config: dict) -> str:
    """The final training recipe in a few words (``--set`` can take a run far from its preset's sizes)."""
    parts = []
    update = config.get("update", "trpo" if "max_kl" in config else None)  # runs from before PPO: TRPO
    if update:
        parts.append(str(update).upper())
    if "hidden" in config:  # a stored config without the activation is a tanh GRU's
        if config.get("network") == "posterior":
            parts.append(f"posterior-statistics MLP {config['hidden']}")
        else:
            parts.append(f"GRU {config['hidden']}" + (" (ReLU)" if config.get("gru_activation") == "relu" else ""))
    if "batch_steps" in config:
        parts.append(f"{config['batch_steps'] / 1000:g}k steps/it")
    return ", ".join(parts)


def _steps_with_ancestry(meta: dict) -> str:
    """The policy's environment steps counted from its first run (``>=`` where the --init-from chain
    predates the ancestry record)."""
    if "env_steps" not in meta:
        return ""
    before, _, complete = inherited(meta)
    return ("" if complete else ">=") + f"{(meta['env_steps'] + before) / 1e6:.1f}"
