"""A maze iteration's batch: every trial of the chosen engine groups played together through the network
(``collect_maze``), stored time-major with a mask (``MazeBatch``). Shared by the TRPO and PPO maze updates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .conv_policy import ConvPolicy
from .maze_explore import Deviations
from .maze_noise import draw_head_noise, perturb_logits
from .rollout import sample_actions


@dataclass
class MazeBatch:
    """Time-major (steps, trials) arrays; ``valid`` marks steps played before the trial ended."""

    obs: torch.Tensor  # (steps, trials, 3, 30, 40)
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor  # this step ended an episode
    valid: torch.Tensor  # float mask
    logits: torch.Tensor  # behaviour policy's
    metrics: dict[str, np.ndarray]  # env.trial_metrics() of every trial
    explored: torch.Tensor | None = None  # float mask: the action was a random deviation (maze_explore.py)
    head_noise: torch.Tensor | None = None  # (trials, actions, hidden): each trial's head perturbation (maze_noise.py)

    def prev_inputs(self, no_action: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Previous action, reward, done flag for every step (placeholders at t = 0)."""
        def shifted(x: torch.Tensor, fill: float) -> torch.Tensor:
            return torch.cat([torch.full_like(x[:1], fill), x[:-1]], dim=0)

        return shifted(self.actions, no_action), shifted(self.rewards, 0.0), shifted(self.dones, 0.0)

    @property
    def steps(self) -> int:
        return int(self.valid.sum())

    def to(self, device: torch.device) -> MazeBatch:
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                 if f.name != "metrics" and getattr(self, f.name) is not None}
        return MazeBatch(**moved, metrics=self.metrics)


@torch.no_grad()
def collect_maze(net: ConvPolicy, env, groups: list[int], act_gen: torch.Generator, max_len: int,
                 encoded: bool = False, deviations: Deviations | None = None, head_noise: float = 0.0,
                 noise_gen: torch.Generator | None = None) -> MazeBatch:
    """Play one trial on every instance of the given groups of ``env``, all stepping together. The network
    runs on its device; the batch is stored on the CPU (frames are large) and actions are sampled there
    from ``act_gen``, so the random stream is the same on every device. ``encoded``: store the frozen
    encoder's features of each frame (``ConvPolicy.encode``, computed once here) instead of the frame.
    ``deviations``: some actions are replaced by random ones and marked in ``explored`` (``maze_explore.py``).
    ``head_noise`` > 0: each trial plays a head perturbed by a draw from ``noise_gen`` (``maze_noise.py``);
    the stored logits are the perturbed ones, the behaviour policy's."""
    device = next(net.parameters()).device
    parts: list[dict[str, torch.Tensor]] = []
    metrics: list[dict[str, np.ndarray]] = []
    noises: list[torch.Tensor] = []
    for k in groups:
        n = env.select_group(k)
        obs = torch.as_tensor(env.reset())
        width = (net.encode(obs[:1].to(device)).shape[1:] if encoded else obs.shape[1:])
        store = {"obs": torch.zeros(max_len, n, *width), "actions": torch.zeros(max_len, n, dtype=torch.long),
                 "rewards": torch.zeros(max_len, n), "dones": torch.zeros(max_len, n),
                 "valid": torch.zeros(max_len, n), "logits": torch.zeros(max_len, n, net.n_actions),
                 **({"explored": torch.zeros(max_len, n)} if deviations else {})}
        if deviations:
            deviations.start(n)
        if head_noise:
            assert noise_gen is not None
            noises.append(draw_head_noise(n, net.n_actions, net.hidden, noise_gen))
        a_prev = torch.full((n,), net.no_action, dtype=torch.long)
        r_prev, d_prev = torch.zeros(n), torch.zeros(n)
        active = torch.ones(n)
        h = net.initial_state(n)
        live = torch.arange(n)  # rows whose trial goes on: the network steps only those (see below)
        for t in range(max_len):
            x_live = net.encode(obs[live].to(device)) if encoded else obs[live].to(device)
            logits_live, _, h_live = net.step(x_live, a_prev[live].to(device), r_prev[live].to(device),
                                              d_prev[live].to(device), h[:, live], encoded)
            x, logits = _scatter(x_live, live, n), _scatter(logits_live.cpu(), live, n)
            h = h.index_copy(1, live.to(device), h_live)
            if head_noise:
                logits = perturb_logits(logits, h[0].cpu(), noises[-1], head_noise)
            a = sample_actions(logits, act_gen)
            if deviations:
                a, store["explored"][t] = deviations.apply(a)
            res = env.step(a.numpy())
            r = torch.as_tensor(res.reward, dtype=torch.float32)
            d = torch.as_tensor(res.episode_done, dtype=torch.float32)
            if deviations:
                deviations.observe(a, r, d)
            store["obs"][t], store["actions"][t], store["logits"][t] = x.cpu() if encoded else obs, a, logits
            store["rewards"][t], store["dones"][t], store["valid"][t] = r * active, d * active, active
            if res.trial_done.all():
                break
            active = torch.as_tensor(~res.trial_done, dtype=torch.float32)
            live = _rows_to_step(~res.trial_done)
            obs, a_prev, r_prev, d_prev = torch.as_tensor(res.obs), a, r, d
        parts.append(store)
        metrics.append(env.trial_metrics())
    length = max(int(p["valid"].sum(1).nonzero().max()) + 1 for p in parts)
    cat = {name: torch.cat([p[name][:length] for p in parts], dim=1) for name in parts[0]}
    merged = {name: np.concatenate([m[name] for m in metrics]) for name in metrics[0]}
    return MazeBatch(**cat, metrics=merged, head_noise=torch.cat(noises) if noises else None)


MIN_ROWS = 8  # below ~4 rows, a matrix product's rows come out of another kernel, a rounding apart


def _rows_to_step(going_on: np.ndarray) -> torch.Tensor:
    """The rows the network steps: those whose trial goes on, and finished ones up to MIN_ROWS, so that
    every row's numbers are those of the whole batch's product (tested)."""
    rows = np.flatnonzero(going_on)
    if len(rows) < MIN_ROWS:
        rows = np.sort(np.concatenate([rows, np.flatnonzero(~going_on)[: MIN_ROWS - len(rows)]]))
    return torch.as_tensor(rows)


def _scatter(rows: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """``rows`` placed at ``index`` of n rows, zeros elsewhere: a finished trial's steps are masked out of
    every loss (``valid``), so its rows are not computed. A row's numbers do not depend on the other rows
    in the batch (tested), so the stream is the same as stepping every row."""
    if len(index) == n:
        return rows
    return rows.new_zeros(n, *rows.shape[1:]).index_copy(0, index.to(rows.device), rows)
