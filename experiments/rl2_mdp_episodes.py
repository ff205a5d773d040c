"""Return per episode along a tabular-MDP trial: does an agent keep improving as it learns the MDP, or
level off? Why RL^2 misses the paper on the long MDP cells (n25-n100).

    python experiments/rl2_mdp_episodes.py --cell n100 [--algos rl2,opsrl,psrl,greedy,oracle] \
        [--instances 500] [--plot experiments/results/rl2_mdp_episodes_n100.png] [--play argmax] [--record]

Each agent plays the same instances (drawn with their own seed, never the evaluation instances) with the
setting the committed leaderboard run evaluated (``leaderboard/runs/mdp``; ``prepare_agent``);
``--play`` says how rl2 picks its action (default: sampling, as trained).
Printed per agent: the trial's return and the mean return of episodes 1, 2, 5, 10, ... and of the last
tenth of the trial; ``--plot`` draws the whole per-episode curve (moving average over 5 episodes),
``--record`` appends the rows to experiments/results/rl2_mdp_episodes.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

from rl2bench.protocol import chunks, play_trials, prepare_agent
from rl2bench.results import append_jsonl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "rl2_mdp_episodes.jsonl"
SEED = 777  # not the leaderboards' root seed 0: these instances are none of the evaluation instances


def episode_returns(cell_name: str, algo: str, n_instances: int, play: str = "sample") -> tuple[np.ndarray, dict]:
    """(instances x episodes) returns of one agent, and the setting it played: the harness's own trial
    loop (``play_trials``, chunk by chunk), watched step by step."""
    agent = prepare_agent("mdp", cell_name, algo, ROOT / "leaderboard" / "runs" / "mdp",
                          **({"play": play} if algo == "rl2" else {}))
    family, cell = agent.family, agent.cell
    parts = []
    for chunk in range(len(chunks(n_instances, family.chunk_size))):
        returns: list[np.ndarray] = []  # one (instances,) array per episode of the chunk
        running: list[np.ndarray] = []

        def watch(actions: np.ndarray, step, running=running, returns=returns) -> None:
            running.append(np.asarray(step.reward, dtype=float))
            if np.all(step.episode_done):  # MDP episodes have a fixed length: every instance ends together
                returns.append(np.sum(running, axis=0))
                running.clear()

        outcome = play_trials(family, cell, agent.agent_cls, agent.setting, n_instances, SEED, "tune", chunk,
                              watch=watch)
        part = np.stack(returns, axis=1)
        assert np.allclose(part.sum(axis=1), outcome.returns)  # nothing was missed
        parts.append(part)
    return np.concatenate(parts), agent.setting


def summary(cell: str, algo: str, returns: np.ndarray, setting: dict) -> dict:
    n = returns.shape[1]
    marks = [e for e in (1, 2, 5, 10, 25, 50, 100) if e <= n]
    per_episode = returns.mean(axis=0)
    row = {"cell": cell, "algorithm": algo, "setting": json.dumps(setting, sort_keys=True),
           "instances": returns.shape[0], "return": round(float(returns.sum(axis=1).mean()), 2)}
    row.update({f"ep{e}": round(float(per_episode[e - 1]), 2) for e in marks})
    row["last_tenth"] = round(float(per_episode[n - max(1, n // 10):].mean()), 2)
    return row


def plot(curves: dict[str, np.ndarray], cell: str, path: Path, smooth: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for algo, per_episode in curves.items():
        kernel = np.ones(min(smooth, len(per_episode))) / min(smooth, len(per_episode))
        smoothed = np.convolve(per_episode, kernel, mode="valid")
        ax.plot(np.arange(len(smoothed)) + 1 + (len(per_episode) - len(smoothed)) / 2, smoothed, label=algo, lw=1.2)
    ax.set_xlabel("episode of the trial")
    ax.set_ylabel(f"return of the episode ({smooth}-episode moving average)", fontsize=9)
    ax.set_title(f"mdp {cell}: what each agent earns as the trial goes on", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="n100")
    parser.add_argument("--algos", default="rl2,opsrl,psrl,greedy,oracle")
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--plot", type=Path, help="write the per-episode curves to this PNG")
    parser.add_argument("--play", choices=("sample", "argmax"), default="sample", help="how rl2 picks its action")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    rows, curves = [], {}
    for algo in args.algos.split(","):
        returns, setting = episode_returns(args.cell, algo, args.instances, args.play)
        rows.append(summary(args.cell, algo, returns, setting))
        curves[algo] = returns.mean(axis=0)
    print(tabulate([{k: v for k, v in r.items() if k != "setting"} for r in rows], headers="keys", tablefmt="github"))
    if args.plot:
        plot(curves, args.cell, args.plot)
        print(f"per-episode curves written to {args.plot}")
    if args.record:
        append_jsonl(RESULTS, rows)


if __name__ == "__main__":
    main()
