"""Write benchmarks/README.md: one row per target, its script and the figure its last recorded result says.

    python benchmarks/make_readme.py [--check]

Each benchmark script records its measurements under benchmarks/results/; this table is generated from
those records, never typed by hand, so it cannot drift from them. ``--check`` exits 1 if the README on disk
differs from what the records give (CI-style use after recording a new result).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def last_json_line(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text().splitlines()[-1])


def read_json(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def mab_table1() -> str:
    r = read_json("mab_table1.json")
    return f"{r['wall_seconds']:.1f} s with {r['jobs']} workers ({r['when'][:10]})"


def mdp_table2() -> str:
    runs = [json.loads(line) for line in (RESULTS / "mdp_table2_runs.jsonl").read_text().splitlines()]
    best = min((r for r in runs if r.get("tune_instances") == 100), key=lambda r: r["wall_seconds"])
    return (f"{best['wall_seconds']:.1f} s with {best['jobs']} workers ({best['when'][:10]}; "
            f"{len(runs)} recorded runs, slowest {max(r['wall_seconds'] for r in runs):.0f} s under load)")


def maze_env() -> str:
    rows = read_json("maze_env.json")["rows"]
    return "; ".join(f"{r['cell']} {r['workers']} worker{'s' if r['workers'] > 1 else ''}: "
                     f"{r['steps_per_s']:,.0f} steps/s" for r in rows)


def rl2_throughput() -> str:
    rows = read_json("rl2_throughput.json")["results"]
    return "; ".join(f"{r['task']} {r['cell']} GRU {r['hidden']}: {r['iteration_s']:.2f} s per 25k-step TRPO "
                     f"iteration ({r['iteration_over_fwd_bwd']:.0f}x a plain fwd+bwd)" for r in rows[:2])


def rl2_fused_backward() -> str:
    r = last_json_line("rl2_fused_backward.jsonl")
    return "; ".join(f"{x['task']} {x['cell']} ({x['activation']}): {x['nn_gru_s_per_iter']:.1f} -> "
                     f"{x['fused_s_per_iter']:.1f} s per iteration ({x['speedup']:.2f}x)" for x in r["rows"])


def rl2_maze() -> str:
    records = read_json("rl2_maze.json")
    records = {records["preset"]: records} if "preset" in records else records
    parts = []
    for key, r in records.items():
        all_in = r.get("all_in_steps_per_second") or r["env_steps"] / r["iterations"] / r["seconds_per_iteration"]
        engines = r.get("engine_only_steps_per_second")
        low_level = r.get("all_in_low_level_actions_per_second")
        if low_level and low_level != all_in:  # a -move cell: decisions, and the strides they walked
            all_in_text = f"{all_in:,.0f} decisions/s ({low_level:,.0f} low-level actions/s) all in"
        else:
            all_in_text = f"{all_in:,.0f} env steps/s all in"
        parts.append(f"{key} on {r['cell']}: {all_in_text}, rollout alone "
                     f"{r['rollout_steps_per_second']:,.0f}" + (f", engines alone {engines:,.0f}" if engines else "")
                     + f" ({r['time'][:10]}, load {r['load_average']:.1f})")
    return "; ".join(parts)


def rl2_maze_profile() -> str:
    r = read_json("rl2_maze_profile.json")
    return "; ".join(f"GRU {x['hidden']}: whole network fwd+bwd {x['whole_forward_backward_ms']:.0f}, conv fwd+bwd "
                     f"{x['conv_forward_backward_ms']:.0f}, fc+GRU+heads on cached conv features "
                     f"{x['fc_gru_heads_forward_backward_ms']:.0f}, rollout fwd {x['rollout_forward_ms']:.0f} ms per "
                     f"1000 steps" for x in r["rows"]) + f" ({r['time'][:10]}, load {r['load_average']:.1f})"


def rl2_posterior_diagnostic() -> str:
    records = read_json("rl2_posterior_diagnostic.json")
    return "; ".join(f"{r['cell']}: {r['evaluation_mean']:.1f} ± {r['evaluation_se']:.1f} after "
                     f"{r['env_steps'] / 1e6:.0f} M steps (zoo GRU {r['zoo_rl2']:.1f}, paper RL^2 "
                     f"{r['paper_rl2']:.1f}; {r['time'][:10]})" for r in records.values())


def rl2_training_speed() -> str:
    rows = [json.loads(line) for line in (RESULTS / "rl2_training_speed.jsonl").read_text().splitlines()]
    fastest = max(rows, key=lambda r: r["env_steps_per_s"])
    return (f"fastest recorded: {fastest['env_steps_per_s']:,} env steps/s, {fastest['s_per_iteration']:.2f} s "
            f"per iteration (mdp {fastest['cell']}, GRU {fastest['hidden']}; {len(rows)} rows)")


def ots_tuning() -> str:
    rows = read_json("ots_tuning_stability.json")["rows"]
    return f"{len(rows)} cells compared; table in results/ots_tuning_stability.txt"


def bayes_optimal() -> str:
    path = RESULTS / "bayes_optimal.json"
    if not path.exists():
        return "not recorded yet"
    rows = [r for r in json.loads(path.read_text()).get("rows", []) if r.get("value") is not None]
    return "; ".join(f"{r['cell']}: {r['value']:.4f}" for r in rows) or "not recorded yet"


def sealed_overhead() -> str:
    r = read_json("sealed_overhead.json")
    rows = r["rows"]
    return "; ".join(f"{x['sealed_s']:.1f} s sealed, {x['in_process_s']:.1f} s in-process ({x['ratio']:.2f}x)"
                     for x in rows) + f" (load {r['load_average_1min']}, {r['when'][:10]})"


def gym_vector() -> str:
    r = read_json("gym_vector.json")
    return (f"{r['vector_env_steps_per_s'] / 1e6:.1f}M instance-steps/s against the harness's "
            f"{r['harness_steps_per_s'] / 1e6:.1f}M ({r['ratio']:.0%}; load {r['load_average_1min']}, "
            f"{r['when'][:10]})")


@dataclass(frozen=True)
class Target:
    script: str
    what: str
    target: str
    figure: Callable[[], str]


TARGETS = [
    Target("mab_table1.py", "full classical Table 1 (9 cells x 7 algorithms x 1000 instances, grids searched)",
           "60 s", mab_table1),
    Target("mdp_table2.py", "full Table 2 (5 cells, every algorithm, 1000 instances, grids searched)", "60 s",
           mdp_table2),
    Target("ots_tuning_stability.py", "OTS tuned on 250 instances chooses as well as on 1000", "paired diff ~0",
           ots_tuning),
    Target("mdp_tune_stability.py", "MDP settings tuned on 100 instances choose as well as on 1000",
           "paired diff ~0", lambda: "run on demand; see leaderboard/NOTES.md"),
    Target("maze_env.py", "ViZDoom maze environment steps per second, 1 and 2 workers", "-", maze_env),
    Target("rl2_maze.py", "RL^2 maze trainer, environment steps per second all in", "2,000 steps/s", rl2_maze),
    Target("rl2_maze_profile.py", "where a maze training step's time goes: the network's parts, per 1000 steps",
           "-", rl2_maze_profile),
    Target("rl2_posterior_diagnostic.py", "PPO on exact posterior statistics instead of a GRU: memory or outer "
           "loop?", "paper's RL^2", rl2_posterior_diagnostic),
    Target("rl2_throughput.py", "RL^2 bandit/MDP trainer next to a plain GRU forward/backward", "-",
           rl2_throughput),
    Target("rl2_fused_backward.py", "hand-written GRU backward against nn.GRU's (CPU updates)", "faster",
           rl2_fused_backward),
    Target("rl2_training_speed.py", "RL^2 training speed read from real runs' curves (GPU runs too)", "-",
           rl2_training_speed),
    Target("sealed_overhead.py", "README's copy-the-leaderboard-and-add-yours example, sealed vs in-process",
           "small", sealed_overhead),
    Target("bayes_optimal.py", "exact Bayes-optimal bandit values (dynamic programming)", "-", bayes_optimal),
    Target("gym_vector.py", "Gymnasium VectorEnv (rl2bench.gym) on 1000 n100-k10 bandits, random actions, "
           "against the harness's own env", ">= 50% of the harness", gym_vector),
]

HEADER = """# Benchmarks

Speed and quality targets, each a script that records its measurements under `results/`. This page is
generated from those records by `python benchmarks/make_readme.py`; do not edit it by hand. Timings are on the
project's 2-core, 24 GB machine without a GPU unless a row says otherwise; research tools for RL^2 training
runs live in `experiments/`.

| script | what | target | last recorded |
|---|---|---|---|
"""


def render() -> str:
    rows = []
    for t in TARGETS:
        if not (HERE / t.script).exists():
            continue
        try:
            figure = t.figure()
        except FileNotFoundError:
            figure = "not recorded yet"
        rows.append(f"| [`{t.script}`]({t.script}) | {t.what} | {t.target} | {figure} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not what the records give")
    args = parser.parse_args()
    text, path = render(), HERE / "README.md"
    if args.check:
        same = path.exists() and path.read_text() == text
        print("benchmarks/README.md is up to date" if same else "benchmarks/README.md differs from the records")
        return 0 if same else 1
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
