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
from .rollout import inverse_cdf


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
    """Play one trial on every instance of the given groups of ``env``. The network runs on its device;
    the batch is stored on the CPU (frames are large) and actions are sampled there from ``act_gen``, so
    the random stream is the same on every device. ``encoded``: store the frozen encoder's features of each
    frame (``ConvPolicy.encode``, computed once here) instead of the frame. ``deviations``: some actions are
    replaced by random ones and marked in ``explored`` (``maze_explore.py``). ``head_noise`` > 0: each
    trial plays a head perturbed by a draw from ``noise_gen`` (``maze_noise.py``); the stored logits are
    the perturbed ones, the behaviour policy's.

    An environment that steps each worker's rows on its own (``MazeVecEnv.send_step``) is played worker by
    worker: the network acts for one worker's games while the other workers' engines step theirs, and no
    worker waits for the slowest. Each row's numbers are those of the whole group stepping together (the
    uniforms of step t drawn for every row at once, a row's network output independent of the others':
    tested), so the batch is the same."""
    parts: list[dict[str, torch.Tensor]] = []
    metrics: list[dict[str, np.ndarray]] = []
    noises: list[torch.Tensor] = []
    for k in groups:
        n = env.select_group(k)
        if head_noise:
            assert noise_gen is not None
            noises.append(draw_head_noise(n, net.n_actions, net.hidden, noise_gen))
        group = _GroupPlay(net, env, n, act_gen, max_len, encoded, deviations,
                           (noises[-1], head_noise) if head_noise else None)
        parts.append(group.play())
        metrics.append(env.trial_metrics())
    length = max(int(p["valid"].sum(1).nonzero().max()) + 1 for p in parts)
    cat = {name: torch.cat([p[name][:length] for p in parts], dim=1) for name in parts[0]}
    merged = {name: np.concatenate([m[name] for m in metrics]) for name in metrics[0]}
    return MazeBatch(**cat, metrics=merged, head_noise=torch.cat(noises) if noises else None)


class _GroupPlay:
    """One group's trials through the network (``collect_maze``): the rows' state between steps, and
    the store of every step."""

    def __init__(self, net: ConvPolicy, env, n: int, act_gen: torch.Generator, max_len: int, encoded: bool,
                 deviations: Deviations | None, head_noise: tuple[torch.Tensor, float] | None):
        self.net, self.n, self.act_gen, self.max_len, self.encoded = net, n, act_gen, max_len, encoded
        self.deviations, self.head_noise = deviations, head_noise
        self.device = next(net.parameters()).device
        self.obs = torch.as_tensor(env.reset())
        width = (net.encode(self.obs[:1].to(self.device)).shape[1:] if encoded else self.obs.shape[1:])
        self.store = {"obs": torch.zeros(max_len, n, *width), "actions": torch.zeros(max_len, n, dtype=torch.long),
                      "rewards": torch.zeros(max_len, n), "dones": torch.zeros(max_len, n),
                      "valid": torch.zeros(max_len, n), "logits": torch.zeros(max_len, n, net.n_actions),
                      **({"explored": torch.zeros(max_len, n)} if deviations else {})}
        if deviations:
            deviations.start(n)
        self.lanes = _Lanes(env, n, by_worker=deviations is None and hasattr(env, "send_step"))
        self.a_prev = torch.full((n,), net.no_action, dtype=torch.long)
        self.r_prev, self.d_prev = torch.zeros(n), torch.zeros(n)
        self.going = np.ones(n, dtype=bool)
        self.h = net.initial_state(n)
        self.uniforms: list[torch.Tensor] = []  # step t's, for every row: the stream of all rows stepping together
        self.t_of = [0] * len(self.lanes.rows)

    def play(self) -> dict[str, torch.Tensor]:
        playing = list(range(len(self.lanes.rows)))
        for lane in playing:
            self.act(lane)
        while playing:
            for lane in self.lanes.ready(playing):
                if not self.observe(lane):
                    playing.remove(lane)
        return self.store

    def act(self, lane: int) -> None:
        """Lane ``lane``'s rows choose their actions of its step t and send them to the engines."""
        net, device, store = self.net, self.device, self.store
        t, rows = self.t_of[lane], self.lanes.rows[lane]
        while len(self.uniforms) <= t:
            self.uniforms.append(torch.rand(self.n, 1, generator=self.act_gen))
        live = rows.start + _rows_to_step(self.going[rows])
        x_live = net.encode(self.obs[live].to(device)) if self.encoded else self.obs[live].to(device)
        logits_live, _, h_live = net.step(x_live, self.a_prev[live].to(device), self.r_prev[live].to(device),
                                          self.d_prev[live].to(device), self.h[:, live], self.encoded)
        self.h = self.h.index_copy(1, live.to(device), h_live)
        width = rows.stop - rows.start
        logits = _scatter(logits_live.cpu(), live - rows.start, width)
        if self.head_noise:
            noise, scale = self.head_noise
            logits = perturb_logits(logits, self.h[0, rows].cpu(), noise[rows], scale)
        a = inverse_cdf(logits, self.uniforms[t][rows])
        if self.deviations:
            a, store["explored"][t] = self.deviations.apply(a)
        store["obs"][t, rows] = _scatter(x_live.cpu(), live - rows.start, width) if self.encoded else self.obs[rows]
        store["actions"][t, rows], store["logits"][t, rows] = a, logits
        store["valid"][t, rows] = torch.as_tensor(self.going[rows], dtype=torch.float32)
        self.lanes.send(lane, a.numpy())

    def observe(self, lane: int) -> bool:
        """Lane ``lane``'s step comes back; its rows act again unless their trials are over (False)."""
        store = self.store
        res = self.lanes.recv(lane)
        t, rows = self.t_of[lane], self.lanes.rows[lane]
        r = torch.as_tensor(res.reward, dtype=torch.float32)
        d = torch.as_tensor(res.episode_done, dtype=torch.float32)
        if self.deviations:
            self.deviations.observe(store["actions"][t, rows], r, d)
        valid = store["valid"][t, rows]
        store["rewards"][t, rows], store["dones"][t, rows] = r * valid, d * valid
        self.going[rows] = ~res.trial_done
        self.t_of[lane] += 1
        if res.trial_done.all() or self.t_of[lane] == self.max_len:
            return False
        self.obs[rows] = torch.as_tensor(res.obs)
        self.a_prev[rows], self.r_prev[rows], self.d_prev[rows] = store["actions"][t, rows], r, d
        self.act(lane)
        return True


class _Lanes:
    """How a group's rows reach the engines: one lane per worker, each stepping on its own
    (``by_worker``), or one lane of every row stepping together through ``env.step``."""

    def __init__(self, env, n: int, by_worker: bool):
        self.env, self.by_worker = env, by_worker
        self.rows = ([env.worker_rows(w) for w in range(env.n_workers)] if by_worker else [slice(0, n)])
        self.rows = [rows for rows in self.rows if rows.stop > rows.start]
        self._held: dict[int, np.ndarray] = {}

    def send(self, lane: int, actions: np.ndarray) -> None:
        if self.by_worker:
            self.env.send_step(lane, actions)
        else:
            self._held[lane] = actions

    def ready(self, lanes: list[int]) -> list[int]:
        return self.env.ready(lanes) if self.by_worker else list(lanes)

    def recv(self, lane: int):
        return self.env.recv_step(lane) if self.by_worker else self.env.step(self._held.pop(lane))


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
