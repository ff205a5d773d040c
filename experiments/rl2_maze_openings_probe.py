"""Does a maze policy know which ways out of its cell are open, from its view or from its memory?

In a perfect maze a purely reactive rule that knows the openings of the cell it stands in (keep a wall on
one hand) covers every cell, so a policy that stops finding new cells after ~10 of 25
(``rl2_maze_novelty_drift.py``) either does not know where the openings are or does not act on it. Facing
along a corridor at a cell's centre, the side openings of that cell are outside the 90-degree view: the
policy can know them only from what it saw while walking in, that is, from its memory.

This probe plays a run's policy in episode 1 on its training mazes and, at every step where the agent
stands at a cell's centre on a quarter heading, reads from the engine (diagnosis only: nothing here
trains) whether the way ahead, to the left and to the right is open. Held-out logistic probes (half the
games fit, the other half score) then ask how well each is decoded from the encoded frame alone and from
the GRU's state after that frame. Prints one JSON line per probe target.

    python experiments/rl2_maze_openings_probe.py RUN_FOLDER [--groups 4]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from maze_play import GroupPlay

from rl2bench.algorithms.rl2.maze_ppo import load_maze_trainer
from rl2bench.algorithms.rl2.rollout import sample_actions
from rl2bench.tasks.maze.engine import FORWARD, LEFT, RIGHT
from rl2bench.tasks.maze.layout import STEPS

CENTRE_TOLERANCE = 2.0  # map units: standing on a cell's centre (strides end at rest on a fixed grid)
SIDES = {"ahead": 0, "left": 1, "right": 3}  # quarter turns from the heading


def play_group(trainer, group: int, tolerance: float = CENTRE_TOLERANCE) -> dict[str, np.ndarray]:
    """Episode 1 of one group: at each step at a cell's centre, the frame's features, the GRU state and
    which ways are open (ahead, left, right)."""
    play = GroupPlay.start(trainer, group)
    env, n = play.env, play.n
    rows: dict[str, list] = {"frame": [], "memory": [], "game": [], "probs": [], "arrived": [],
                             **{k: [] for k in SIDES}, **{f"{k}_new": [] for k in SIDES}}
    live = np.ones(n, bool)
    size = env.privileged_info()["open_dirs"].shape[1]
    visited = np.zeros((n, size, size), dtype=bool)  # cells reached in episode 1 so far
    with torch.no_grad():
        for _ in range(trainer.trial_len):
            info = env.privileged_info()
            arrived = play.a_prev == FORWARD  # a stride brought it here: a decision
            x, logits = play.policy()
            geo = info["geometry"]
            fx = (info["x"] - geo.wall - geo.cell / 2) / geo.pitch
            fy = (info["y"] - geo.wall - geo.cell / 2) / geo.pitch
            col, row = np.rint(fx).astype(int), np.rint(fy).astype(int)
            quarter = info["angle"] / 90.0
            at = (live & (np.maximum(np.abs(fx - col), np.abs(fy - row)) * geo.pitch < tolerance)
                  & np.isclose(quarter, np.rint(quarter), atol=1e-3))
            inside = at & (row >= 0) & (row < size) & (col >= 0) & (col < size)
            visited[np.flatnonzero(inside), row[inside], col[inside]] = True
            probs = torch.softmax(logits, -1).numpy()
            for g in np.flatnonzero(inside):
                heading = int(np.rint(quarter[g])) % 4
                rows["frame"].append(x[g].numpy())
                rows["memory"].append(play.h[0, g].numpy())
                rows["game"].append(group * 1000 + g)
                rows["probs"].append(probs[g])
                rows["arrived"].append(bool(arrived[g]))
                for side, turn in SIDES.items():
                    d = (heading + turn) % 4
                    is_open = bool(info["open_dirs"][g, row[g], col[g], d])
                    r2, c2 = row[g] + STEPS[d, 0], col[g] + STEPS[d, 1]
                    rows[side].append(is_open)
                    rows[f"{side}_new"].append(is_open and not visited[g, r2, c2])
            a = sample_actions(logits, play.gen)
            res = env.step(a.numpy())
            live &= ~(res.episode_done | res.trial_done)  # episode 1 only
            if not live.any():
                break
            play.advance(a, res)
    return {k: np.asarray(v) for k, v in rows.items()}


def heldout_probe(x: np.ndarray, y: np.ndarray, fit: np.ndarray, seed: int = 0) -> dict[str, float]:
    """A logistic probe (L2, standardised inputs) fitted on the ``fit`` rows, scored on the others:
    accuracy, balanced accuracy and AUC."""
    mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
    xt = torch.as_tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    torch.manual_seed(seed)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    f = torch.as_tensor(fit)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt[f] @ w + b, yt[f]) + 1e-2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        score = (xt[~f] @ w + b).numpy()
    truth = y[~fit].astype(bool)
    pred = score > 0
    tpr, tnr = (pred[truth]).mean(), (~pred[~truth]).mean()
    ranks = score.argsort().argsort()
    auc = (ranks[truth].sum() - truth.sum() * (truth.sum() - 1) / 2) / (truth.sum() * (~truth).sum())
    return {"accuracy": round(float((pred == truth).mean()), 3), "balanced": round(float((tpr + tnr) / 2), 3),
            "auc": round(float(auc), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=CENTRE_TOLERANCE,
                        help="map units from a cell's centre that count as standing on it (a stride is 24.4: "
                             "after a blocked stride the engine's pushback leaves the agent off the centres)")
    args = parser.parse_args()
    trainer = load_maze_trainer(args.run)
    if not trainer.cfg.freeze_encoder or trainer.cell.turn != 90:
        raise SystemExit("the probe reads stored features of a frozen encoder on a -turn90 cell")
    try:
        parts = [play_group(trainer, g, args.tolerance) for g in range(args.groups)]
    finally:
        trainer.close()
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    games = np.unique(data["game"])
    fit_games = np.random.default_rng(0).permutation(games)[: len(games) // 2]
    fit = np.isin(data["game"], fit_games)
    for side in SIDES:
        y = data[side]
        out = {"run": args.run, "side": side, "steps": int(len(y)), "open_share": round(float(y.mean()), 3),
               "majority": round(float(max(y[~fit].mean(), 1 - y[~fit].mean())), 3)}
        for source in ("frame", "memory"):
            out[source] = heldout_probe(data[source], y, fit)
        print(json.dumps(out))
    # what the policy does on arriving at a centre, by what lies each way: wall, a cell reached before, new
    arrived, probs = data["arrived"], data["probs"]
    state = {side: np.where(data[f"{side}_new"], "new", np.where(data[side], "old", "wall")) for side in SIDES}
    keys = np.char.add(np.char.add(np.char.add("ahead ", state["ahead"]), np.char.add(", left ", state["left"])),
                       np.char.add(", right ", state["right"]))
    for key in sorted(set(keys[arrived]), key=lambda k: (-int((keys[arrived] == k).sum()), str(k))):
        sel = arrived & (keys == key)
        mean = probs[sel].mean(0)
        print(json.dumps({"arrival": str(key), "n": int(sel.sum()), "forward": round(float(mean[FORWARD]), 3),
                          "left": round(float(mean[LEFT]), 3), "right": round(float(mean[RIGHT]), 3)}))


if __name__ == "__main__":
    main()
