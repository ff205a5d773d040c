"""Do the route-recall targets lead to the target in the real engine?

A maze run's policy plays episode 1 of each trial on its training mazes; in episode 2 every game with a
route (an episode-1 success) is steered by ``maze_route.route_targets`` alone, read from the trial's
history so far, the way the trainer reads them. If dead reckoning from actions and rewards is exact on
90-degree cells, episode 2 never leaves the route and always reaches the target, in no more strides
than episode 1 took. Prints one JSON line.

    python experiments/rl2_maze_route_probe.py RUN_FOLDER [--groups 2]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from maze_play import GroupPlay

from rl2bench.algorithms.rl2.maze_ppo import load_maze_trainer
from rl2bench.algorithms.rl2.maze_route import route_targets
from rl2bench.algorithms.rl2.rollout import sample_actions
from rl2bench.tasks.maze.engine import FORWARD
from rl2bench.tasks.maze.env import REWARD_STEP


def probe_group(trainer, group: int) -> dict[str, list]:
    play = GroupPlay.start(trainer, group)
    env, n = play.env, play.n
    actions, rewards, dones, valid = [], [], [], []
    episode, live = np.zeros(n, int), np.ones(n, bool)
    steered, off_route = np.zeros(n, bool), np.zeros(n, int)
    with torch.no_grad():
        for _ in range(trainer.trial_len):
            _, logits = play.policy()
            a = sample_actions(logits, play.gen)
            if (episode == 1).any():  # the pose before this action is fixed by the history: any action will do
                hist = [torch.stack(v + [pad]) for v, pad in ((actions, torch.full((n,), FORWARD)),
                                                              (rewards, torch.full((n,), REWARD_STEP)),
                                                              (dones, torch.zeros(n)), (valid, torch.ones(n)))]
                now = route_targets(*hist, trainer.cell.turn, trainer.cell.cell_moves)[-1]
                for g in np.flatnonzero((episode == 1) & live):
                    if steered[g]:
                        if now[g].sum() > 0:
                            a[g] = int(torch.nonzero(now[g])[0])
                        else:
                            off_route[g] += 1
            res = env.step(a.numpy())
            r = torch.as_tensor(res.reward, dtype=torch.float32)
            d = torch.as_tensor(res.episode_done, dtype=torch.float32)
            actions.append(a.clone())
            rewards.append(r * torch.as_tensor(live))
            dones.append(d * torch.as_tensor(live))
            valid.append(torch.as_tensor(live, dtype=torch.float32))
            ended = live & res.episode_done
            steered |= ended & (episode == 0) & (res.reward > 0.5)
            episode += ended
            live = ~res.trial_done
            if not live.any():
                break
            play.advance(a, res)
    m = env.trial_metrics()
    return {"steered": steered.tolist(), "off_route": off_route.tolist(),
            "success_ep1": m["success_ep1"].tolist(), "success_ep2": m["success_ep2"].tolist(),
            "len_ep1": m["len_ep1"].tolist(), "len_ep2": m["len_ep2"].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--groups", type=int, default=2)
    args = parser.parse_args()
    trainer = load_maze_trainer(args.run)
    try:
        parts = [probe_group(trainer, g) for g in range(args.groups)]
    finally:
        trainer.close()
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    s = cols["steered"].astype(bool)
    print(json.dumps({
        "run": args.run, "cell": trainer.cell.name, "trials": int(len(s)), "episode1_successes": int(s.sum()),
        "steered_success_ep2": float(cols["success_ep2"][s].mean()),
        "steered_off_route_steps": int(cols["off_route"][s].sum()),
        "steered_len_ep1": float(cols["len_ep1"][s].mean()), "steered_len_ep2": float(cols["len_ep2"][s].mean()),
        "steered_ep2_shorter": float((cols["len_ep2"][s] < cols["len_ep1"][s]).mean()),
        "steered_ep2_longer": float((cols["len_ep2"][s] > cols["len_ep1"][s]).mean()),
    }))


if __name__ == "__main__":
    main()
