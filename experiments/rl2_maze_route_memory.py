"""Does a maze policy's memory hold the way episode 1 found, when episode 2 starts?

A maze run's policy plays trials of its training mazes. For each trial whose episode 1 succeeded, the label
is the side of the start on which its route (``maze_route``: the loop-free cells of the agent's own dead
reckoning) leaves: ahead, left, behind or right. A logistic probe is fitted on half the trials and scored
on the other half, from the GRU's output at the first step of episode 2 (which has seen episode 1) and,
as the control, at the first step of episode 1 (the same pose and view, nothing remembered yet). If the
first is no better than the control, the memory does not hold the route, and no update can teach the
policy to use it; if it is better, the memory holds it, and the policy's own probability of the route's
first action, at the start of episode 2 against the start of episode 1, says whether it acts on it.
Prints one JSON line.

    python experiments/rl2_maze_route_memory.py RUN_FOLDER [--groups 16]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from rl2bench.algorithms.rl2.maze_ppo import load_maze_trainer
from rl2bench.algorithms.rl2.maze_rollout import collect_maze
from rl2bench.algorithms.rl2.maze_route import episode_route, route_targets
from rl2bench.algorithms.rl2.novelty import odometry_poses

SIDES = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}  # ahead, left, behind, right of the start pose


def first_side(actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray, turn: float) -> tuple[int, int]:
    """One trial: (the step episode 2 starts at, the side its episode-1 route leaves the start cell by);
    (-1, -1) when episode 1 failed or its route never left the start cell."""
    end = int(np.flatnonzero(dones > 0)[0])
    if rewards[end] < 0.5:
        return -1, -1
    t = torch.as_tensor
    points = odometry_poses(t(actions[:, None]), t(rewards[:, None]), t(dones[:, None]),
                            torch.ones(len(actions), 1), turn, snap_on_hit=True)[0][: end + 1, 0]
    route = episode_route(points)
    return (end + 1, SIDES[route[1]]) if len(route) > 1 else (-1, -1)


def probe_accuracy(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 300) -> float:
    """Held-out accuracy of a multinomial logistic regression (L2, standardised inputs), half/half split."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    xs = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    ys = torch.as_tensor(y)
    model = torch.nn.Linear(x.shape[1], 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(model(xs[train]), ys[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((model(xs[test]).argmax(-1) == ys[test]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--groups", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    trainer = load_maze_trainer(args.run)
    net, encoded = trainer.net, trainer.cfg.freeze_encoder
    gen = torch.Generator().manual_seed(0)
    start_feats, ep2_feats, labels, p_start, p_ep2 = [], [], [], [], []
    try:
        env = trainer.open_env()
        for g in range(args.groups):
            batch = collect_maze(net, env, [g % env.n_groups], gen, trainer.trial_len, encoded)
            with torch.no_grad():
                out, _ = net.trunk(batch.obs, *batch.prev_inputs(net.no_action), encoded=encoded)
            targets = route_targets(batch.actions, batch.rewards, batch.dones, batch.valid, trainer.cell.turn)
            probs = torch.softmax(batch.logits, -1)
            for b in range(batch.valid.shape[1]):
                t2, side = first_side(batch.actions[:, b].numpy(), batch.rewards[:, b].numpy(),
                                      batch.dones[:, b].numpy(), trainer.cell.turn)
                if side >= 0 and batch.valid[t2, b] > 0:
                    start_feats.append(out[0, b].numpy())
                    ep2_feats.append(out[t2, b].numpy())
                    labels.append(side)
                    # the same pose and view at both starts: the route's first action, before and after
                    p_start.append(float((probs[0, b] * targets[t2, b]).sum()))
                    p_ep2.append(float((probs[t2, b] * targets[t2, b]).sum()))
    finally:
        trainer.close()
    y = np.array(labels)
    counts = np.bincount(y, minlength=4)
    print(json.dumps({
        "run": args.run, "cell": trainer.cell.name, "trials": int(len(y)),
        "sides_ahead_left_behind_right": counts.tolist(), "majority": float(counts.max() / len(y)),
        "probe_episode1_start": probe_accuracy(np.stack(start_feats), y),
        "probe_episode2_start": probe_accuracy(np.stack(ep2_feats), y),
        "policy_p_route_action_episode1_start": float(np.mean(p_start)),
        "policy_p_route_action_episode2_start": float(np.mean(p_ep2)),
    }))


if __name__ == "__main__":
    main()
