"""Two RL^2 training runs that differ in one setting, compared at equal iterations (an A/B of a recipe).

    python experiments/rl2_compare_runs.py RUN_A RUN_B [--block 100] [--window 200] [--plot out.png] [--record]

Both runs must train the same cell from the same seed with the same batch (so iteration i saw the same
training instances and environment stream in both); the script checks that from their meta.json files and
names the settings in which they differ. Two branches resumed from one checkpoint (`--resume` of two copies
of a run folder, one with a `--set`) share their curve up to the branch point: the shared rows are found
(identical iteration, steps and return) and left out, so only what the branches did differently is
compared. It prints the training-batch means of both in blocks of ``--block`` iterations, and the mean of
the last ``--window`` iterations the two have in common with its standard error (iteration means taken as
independent), a Welch t-test of the difference (``scipy.stats.ttest_ind``) and a paired one by iteration
(``ttest_rel``: iteration i drew the same instances in both, so pairing removes their share of the noise).
A setting that changes the cost of an iteration (fewer baseline epochs, say) is judged at equal wall
time too: each run's curve cut at the wall time both reached since the branch (or since their start), and
the last ``--window`` iterations before the cut compared by Welch's test (meaningful when both ran side by
side under the same load). ``--plot`` draws both curves (25-iteration moving averages) against
environment steps; ``--record`` appends the comparison to experiments/results/rl2_compare_runs.jsonl.

The 2026-11-27 experiments compared this way nn.GRU's tanh candidate activation with the paper's ReLU on MDP
n25 from scratch, a lower late policy rate and fewer baseline epochs against the zoo's n25 continued as it
was, as branches of its checkpoint, and fewer baseline epochs on n100 the same way (leaderboard/HISTORY.md).
Caveat measured the same day: two runs of one recipe that differ only by floating-point rounding drift
apart by more than these standard errors allow (MDP n25 from scratch: +4.0 at Welch t 5.6), since a curve's
iteration means are not independent; judge a difference against such an A/A pair, not by its p-value alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd
from scipy import stats
from tabulate import tabulate

from rl2bench.algorithms.rl2.config import stored_config
from rl2bench.results import append_jsonl

RESULTS = Path(__file__).parent / "results" / "rl2_compare_runs.jsonl"
SAME = ("task", "cell", "seed")  # what must agree for iteration i to mean the same training data


def load(run: Path) -> tuple[dict, pd.DataFrame]:
    return json.loads((run / "meta.json").read_text()), pd.read_csv(run / "curve.csv")


def differences(meta_a: dict, meta_b: dict) -> dict[str, tuple]:
    """The config settings in which the two runs differ (besides the number of iterations). A setting a run's
    meta.json predates is the default it ran with (``stored_config``), not a difference."""
    a, b = (dataclasses.asdict(stored_config(m.get("config", {}))) for m in (meta_a, meta_b))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k != "iters"}


def shared_rows(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """How many leading curve rows the two runs share (the history of a checkpoint both resumed from)."""
    keys = ["iteration", "env_steps", "mean_return"]
    n = min(len(a), len(b))
    same = (a[keys].iloc[:n].to_numpy() == b[keys].iloc[:n].to_numpy()).all(axis=1)
    return n if same.all() else int(same.argmin())


def compare(run_a: Path, run_b: Path, block: int, window: int) -> dict:
    (meta_a, a), (meta_b, b) = load(run_a), load(run_b)
    clash = {k: (meta_a.get(k), meta_b.get(k)) for k in SAME if meta_a.get(k) != meta_b.get(k)}
    if meta_a.get("config", {}).get("batch_steps") != meta_b.get("config", {}).get("batch_steps"):
        clash["batch_steps"] = (meta_a["config"].get("batch_steps"), meta_b["config"].get("batch_steps"))
    if clash:
        raise SystemExit(f"the runs are not comparable iteration by iteration: {clash}")
    shared = shared_rows(a, b)
    branch_wall = float(a["wall_seconds"].iloc[shared - 1]) if shared else 0.0
    a, b = a.iloc[shared:].reset_index(drop=True), b.iloc[shared:].reset_index(drop=True)
    common = min(len(a), len(b))
    if common < 2:
        raise SystemExit(f"the runs have {common} iteration(s) in common after the {shared} they share")
    window = min(window, common)
    blocks = []
    for start in range(0, common - block + 1, block):
        ma, mb = (float(f["mean_return"].iloc[start:start + block].mean()) for f in (a, b))
        first = int(a["iteration"].iloc[start])
        blocks.append({"iterations": f"{first}-{first + block - 1}", "A": round(ma, 1), "B": round(mb, 1),
                       "B - A": round(mb - ma, 1)})
    last_a, last_b = (f["mean_return"].iloc[common - window:common].to_numpy() for f in (a, b))
    test = stats.ttest_ind(last_b, last_a, equal_var=False)
    paired = stats.ttest_rel(last_b, last_a)
    seconds = [float((f["wall_seconds"].iloc[common - 1] - f["wall_seconds"].iloc[0]) / max(common - 1, 1))
               for f in (a, b)]
    return {
        "task": meta_a["task"], "cell": meta_a["cell"], "seed": meta_a["seed"], "run_a": str(run_a),
        "run_b": str(run_b), "differ": {k: list(v) for k, v in differences(meta_a, meta_b).items()},
        "shared_iterations": shared, "common_iterations": common,
        "env_steps_common": int(a["env_steps"].iloc[common - 1]),
        "window": window, "a_mean": float(last_a.mean()), "a_se": float(stats.sem(last_a)),
        "b_mean": float(last_b.mean()), "b_se": float(stats.sem(last_b)),
        "b_minus_a": float(last_b.mean() - last_a.mean()), "t": float(test.statistic), "p": float(test.pvalue),
        "paired_se": float(stats.sem(last_b - last_a)), "paired_t": float(paired.statistic),
        "paired_p": float(paired.pvalue),
        "seconds_per_iteration_a": seconds[0], "seconds_per_iteration_b": seconds[1],
        "equal_wall_time": at_equal_wall_time(a, b, branch_wall, window),
        "blocks": blocks,
    }


def at_equal_wall_time(a: pd.DataFrame, b: pd.DataFrame, branch_wall: float, window: int) -> dict:
    """Both curves cut at the wall time (since the branch) that both reached; the last iterations before it."""
    cut = min(float(f["wall_seconds"].iloc[-1]) for f in (a, b)) - branch_wall
    before = [f[f["wall_seconds"] - branch_wall <= cut] for f in (a, b)]
    last = [f["mean_return"].iloc[-window:].to_numpy() for f in before]
    iterations = [len(f) for f in before]
    test = stats.ttest_ind(last[1], last[0], equal_var=False)
    return {"wall_seconds": cut, "iterations_a": iterations[0], "iterations_b": iterations[1],
            "a_mean": float(last[0].mean()), "a_se": float(stats.sem(last[0])), "b_mean": float(last[1].mean()),
            "b_se": float(stats.sem(last[1])), "b_minus_a": float(last[1].mean() - last[0].mean()),
            "t": float(test.statistic), "p": float(test.pvalue)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    for key, label in (("run_a", "A"), ("run_b", "B")):
        curve = pd.read_csv(Path(result[key]) / "curve.csv").iloc[result.get("shared_iterations", 0):]
        setting = ", ".join(f"{k}={v[0 if label == 'A' else 1]}" for k, v in result["differ"].items())
        ax.plot(curve["env_steps"] / 1e6, curve["mean_return"].rolling(25, min_periods=1).mean(),
                label=f"{label}: {setting}")
    ax.set_xlabel("environment steps (M)")
    ax.set_ylabel("training-batch mean trial return")
    ax.set_title(f"{result['task']} {result['cell']}, seed {result['seed']} (25-iteration moving average)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--record", action="store_true", help=f"append the result to {RESULTS}")
    args = parser.parse_args()
    result = compare(args.run_a, args.run_b, args.block, args.window)
    shared = result["shared_iterations"]
    branched = f"; branched after {shared} shared iterations" if shared else ""
    print(f"{result['task']} {result['cell']}, seed {result['seed']}; differ in: {result['differ']}{branched}")
    print(tabulate(result["blocks"], headers="keys"))
    print(f"last {result['window']} of {result['common_iterations']} common iterations "
          f"({result['env_steps_common'] / 1e6:.1f} M steps): A {result['a_mean']:.1f} +- {result['a_se']:.1f}, "
          f"B {result['b_mean']:.1f} +- {result['b_se']:.1f}; B - A {result['b_minus_a']:+.1f} "
          f"(Welch t {result['t']:+.2f}, p {result['p']:.3g}; paired by iteration: se {result['paired_se']:.1f}, "
          f"t {result['paired_t']:+.2f}, p {result['paired_p']:.3g}); seconds per iteration A "
          f"{result['seconds_per_iteration_a']:.2f}, B {result['seconds_per_iteration_b']:.2f}")
    wall = result["equal_wall_time"]
    print(f"at equal wall time ({wall['wall_seconds'] / 60:.0f} minutes since the branch: A {wall['iterations_a']}, "
          f"B {wall['iterations_b']} iterations), last {result['window']} of each: A {wall['a_mean']:.1f} +- "
          f"{wall['a_se']:.1f}, B {wall['b_mean']:.1f} +- {wall['b_se']:.1f}; B - A {wall['b_minus_a']:+.1f} "
          f"(Welch t {wall['t']:+.2f}, p {wall['p']:.3g})")
    if args.plot:
        plot(result, args.plot)
        print(f"written {args.plot}")
    if args.record:
        append_jsonl(RESULTS, result)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
