"""Does the odometry novelty bonus pay a looping policy for points it has already been to?

The maze trainer's novelty bonus (``novelty.odometry_bonus``) pays for points of the agent's dead-reckoned
path that are new to the trial. Dead reckoning drifts at walls (a blocked stride is pushed back by up to
~0.6 stride, and the next stride from there counts as a move), so a policy that walks a corridor to its end
and back again may keep finding "new" points in cells it has already crossed. This probe plays a run's
policy on its training mazes, reads the true pose from the engine (diagnosis only: nothing here trains),
and compares, over each trial's first episode, the points dead reckoning counts as new (as the trainer
does, and with ``snap_on_hit``) with the stride points and cells the agent really reached. Prints one
JSON line.

    python experiments/rl2_maze_novelty_drift.py RUN_FOLDER [--groups 2] [--temperature 1]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from maze_play import GroupPlay

from rl2bench.algorithms.rl2.maze_ppo import load_maze_trainer
from rl2bench.algorithms.rl2.novelty import cell_of, new_points, odometry_poses
from rl2bench.algorithms.rl2.rollout import sample_actions
from rl2bench.tasks.maze.engine import GEOMETRY


def play_group(trainer, group: int, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """A trial of each game of one group, with the engine's true pose after every action; actions are
    sampled from softmax(logits / temperature)."""
    play = GroupPlay.start(trainer, group)
    env, n = play.env, play.n
    start = env.privileged_info()
    x0, y0 = start["x"].copy(), start["y"].copy()
    cols: dict[str, list] = {k: [] for k in ("actions", "rewards", "dones", "valid", "x", "y", "episode")}
    episode, live = np.zeros(n, int), np.ones(n, bool)
    with torch.no_grad():
        for _ in range(trainer.trial_len):
            _, logits = play.policy()
            a = sample_actions(logits / temperature, play.gen)
            res = env.step(a.numpy())
            r = torch.as_tensor(res.reward, dtype=torch.float32)
            d = torch.as_tensor(res.episode_done, dtype=torch.float32)
            for key, value in (("actions", a.clone()), ("rewards", r * torch.as_tensor(live)),
                               ("dones", d * torch.as_tensor(live)),
                               ("valid", torch.as_tensor(live, dtype=torch.float32))):
                cols[key].append(value)
            cols["x"].append(res.info["x"].copy())  # where the action left the player, before any restart
            cols["y"].append(res.info["y"].copy())
            cols["episode"].append(episode.copy())
            episode += live & res.episode_done
            live = ~res.trial_done
            if not (live & (episode == 0)).any():  # only episode 1 is read
                break
            play.advance(a, res)
    out = {k: torch.stack(v) if k in ("actions", "rewards", "dones", "valid") else np.stack(v)
           for k, v in cols.items()}
    out["x0"], out["y0"], out["success_ep1"] = x0, y0, env.trial_metrics()["success_ep1"]
    return out


def summarise(g: dict, turn_degrees: float) -> dict[str, np.ndarray]:
    """Per trial, over episode 1: new points by dead reckoning (plain, snapped, and as 4-stride cells)
    against the true new cells, in all and after the last true new cell (the loop the episode ends in)."""
    ep1 = (g["episode"] == 0) & (g["valid"].numpy() > 0)
    plain = odometry_poses(g["actions"], g["rewards"], g["dones"], g["valid"], turn_degrees)[0]
    snapped = odometry_poses(g["actions"], g["rewards"], g["dones"], g["valid"], turn_degrees, snap_on_hit=True)[0]
    cells = np.stack([np.floor((g[k] - GEOMETRY.wall / 2) / GEOMETRY.pitch) for k in ("x", "y")], -1)
    start_cell = np.stack([np.floor((g[k] - GEOMETRY.wall / 2) / GEOMETRY.pitch) for k in ("x0", "y0")], -1)
    new_cell = new_points((cells - start_cell).astype(np.int64), ep1)  # the start's cell counts as reached
    flags = {"plain": new_points(plain, ep1), "snap": new_points(snapped, ep1),
             "odo_cell": new_points(cell_of(plain), ep1), "odo_cell_snap": new_points(cell_of(snapped), ep1)}
    steps = ep1.sum(0)
    t = np.arange(ep1.shape[0])[:, None]
    last_new = np.where(new_cell, t, -1).max(0)  # the step of the last true new cell (-1: none)
    loop = ep1 & (t > last_new)
    out = {"steps": steps, "success": np.asarray(g["success_ep1"]), "true_cells": new_cell.sum(0),
           "loop_steps": loop.sum(0)}
    for name, f in flags.items():
        out[name] = f.sum(0)
        out[f"{name}_in_loop"] = (f & loop).sum(0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="play softmax(logits / T): does a less sure policy leave its loops?")
    args = parser.parse_args()
    trainer = load_maze_trainer(args.run)
    try:
        parts = [summarise(play_group(trainer, g, args.temperature), trainer.cell.turn) for g in range(args.groups)]
    finally:
        trainer.close()
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ok = cols["success"].astype(bool)
    report: dict[str, object] = {"run": args.run, "cell": trainer.cell.name, "temperature": args.temperature,
                                 "trials": int(len(ok)), "success_ep1": float(ok.mean())}
    for name, rows in (("failed", ~ok), ("succeeded", ok)):
        report[name] = {k: round(float(cols[k][rows].mean()), 2) for k in cols if k != "success"}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
