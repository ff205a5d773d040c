"""How much of what the exact posterior knows about the current state's MDP rows does RL^2's memory hold?

    OMP_NUM_THREADS=1 python experiments/rl2_memory_probe.py [--cell n25] [--instances 4000] [--fit-steps 40] \
        [--mlp 256] [--record]

rl2-belief's auxiliary head (``algorithms/rl2/belief.py``) asks the policy's GRU output ("memory") at step t
to predict the true MDP's rows of the current state s_t: every action's mean reward (squared error) and
next-state distribution (cross-entropy). Trained as a side loss, it moved little (3.32 -> 3.12). Is that the
memory's fault, or is that simply what can be known from the trial so far? This measures it on the zoo's
trained policy: the policy plays the trainer's own rollout (``rollout.collect``) on fresh training-style
instances (``sample_instances`` on a seeded training stream, never a training run's own), its GRU output is
recorded at every step, and the current state's rows are predicted, with BeliefHead's loss per step, by

* ``prior``: the prior mean (reward 1, uniform transitions; the task's prior is R ~ N(1, 1), rows ~ flat
  Dirichlet, reward noise N(0, 1));
* ``posterior``: the exact Bayesian posterior mean given the trial so far (normal-normal for the means,
  ``(1 + sum) / (1 + N)``, Dirichlet counts for the rows, ``(1 + N(s, a, s')) / (S + N(s, a))``), from
  ``posterior_net``'s recurrence. Under this loss it is the best any function of the history can do in
  expectation (the expected cross-entropy is minimised by the expected row), so it bounds every probe;
* ``linear``: a BeliefHead (linear map of the memory, as trained under rl2-belief) fitted to convergence
  (L-BFGS; the loss is convex in it) on ``--fit-steps`` random steps of each trial of the first half,
  evaluated at every step of the other half (all steps of a trial share one MDP: a probe fitted on too few
  trials learns to recognise them, hence many trials and few steps of each);
* ``linear_per_state``: one such head per current state (a linear readout of the memory that may differ
  by state): does the memory hold other states' statistics linearly, if not selected for the current one;
* ``mlp``: (``--mlp H``) a one-hidden-layer probe (Adam, early-stopped on a tenth of the fitting trials);
* ``floor``: the true MDP known (squared error 0, cross-entropy = the true rows' entropy).

All predictors are scored on the evaluation half. Printed: the loss over the whole trial and by episode,
its two parts, and the fraction of the prior-to-posterior gap each probe closes. ``--record`` appends the
result to experiments/results/rl2_memory_probe.jsonl.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from torch import nn

from rl2bench import seeding
from rl2bench.algorithms.rl2.agent import load_policy
from rl2bench.algorithms.rl2.belief import BeliefHead, mdp_rows, posterior_rows
from rl2bench.algorithms.rl2.devices import torch_generator
from rl2bench.algorithms.rl2.policy import Policy
from rl2bench.algorithms.rl2.rollout import Batch, TaskShape, collect, sample_instances, task_shape
from rl2bench.algorithms.rl2.zoo import policy_path, policy_version
from rl2bench.results import append_jsonl

RESULTS = Path(__file__).parent / "results" / "rl2_memory_probe.jsonl"
SEED = 4242  # a training-style stream no zoo run trained on (those used seeds 0-10)

Rows = tuple[torch.Tensor, torch.Tensor]  # reward means (steps, trials, A), next-state log-probs (steps, trials, A, S)


def play(policy: Policy, shape: TaskShape, n: int, seed: int) -> tuple[dict[str, np.ndarray], Batch, torch.Tensor]:
    """The trainer's rollout on ``n`` instances of the training distribution, and the GRU's output at
    every step (steps, trials, H): what the policy head, and rl2-belief's head, read."""
    s = shape
    instances = sample_instances(s, seeding.instance_rng(seed, "train", s.task, s.cell), n)
    env_gen = torch_generator(seeding.env_rng(seed, "train", s.task, s.cell))
    act_gen = torch_generator(seeding.agent_rng(seed, "train", s.task, s.cell, "rl2"))
    batch = collect(policy, s, instances, env_gen, act_gen)
    with torch.no_grad():
        x = batch.inputs(s.n_states, s.n_actions)
        memory = policy.memory(x)[0]
        assert torch.allclose(policy.head(memory), batch.logits, atol=1e-4), "memory does not replay the rollout"
    return instances, batch, memory


def posterior_log_rows(shape: TaskShape, batch: Batch) -> Rows:
    """The exact posterior mean of the current state's rows at every step (``belief.posterior_rows``, the
    target of ``aux_target=posterior``), with the transitions as log-probabilities."""
    with torch.no_grad():
        rewards, rows = posterior_rows(shape, batch.inputs(shape.n_states, shape.n_actions), batch.obs)
    return rewards, rows.log()


def check_posterior(shape: TaskShape, batch: Batch, post: Rows, trials: int = 3) -> None:
    """Recount a few trials by hand (a Python loop over their steps) against ``posterior_rows``."""
    S, A = shape.n_states, shape.n_actions
    obs, act, rew, done = (t.numpy() for t in (batch.obs, batch.actions, batch.rewards, batch.dones))
    for i in range(trials):
        n, sums, moves = np.zeros((S, A)), np.zeros((S, A)), np.zeros((S, A, S))
        for t in range(obs.shape[0]):
            if t > 0:
                s, a = obs[t - 1, i], act[t - 1, i]
                n[s, a] += 1
                sums[s, a] += rew[t - 1, i]
                if not done[t - 1, i]:  # the step after an episode's last is a reset to state 0, not a move
                    moves[s, a, obs[t, i]] += 1
            s = obs[t, i]
            assert np.allclose((1 + sums[s]) / (1 + n[s]), post[0][t, i].numpy(), atol=1e-4)
            expected = (1 + moves[s]) / (S + moves[s].sum(-1, keepdims=True))
            assert np.allclose(np.log(expected), post[1][t, i].numpy(), atol=1e-4)


def step_losses(pred: Rows, truth: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """BeliefHead.loss's two terms per (step, trial), averaged over actions: squared error of the reward
    means and cross-entropy of the true rows against the predicted log-probabilities."""
    (reward, log_prob), (reward_means, transitions) = pred, truth
    squared = ((reward - reward_means) ** 2).mean(-1)
    cross_entropy = -(transitions * log_prob).sum(-1).mean(-1)
    return squared, cross_entropy


def fit_linear(memory: torch.Tensor, truth: tuple[torch.Tensor, torch.Tensor], shape: TaskShape, seed: int,
               iters: int = 300) -> BeliefHead:
    """A BeliefHead on memory (samples, H), fitted full-batch by L-BFGS to convergence (a convex loss)."""
    gen = torch_generator(seeding.generator(seed, "probe", shape.task, shape.cell))
    head = BeliefHead(memory.shape[-1], shape.n_states, shape.n_actions, gen)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=iters, history_size=20, tolerance_grad=1e-7,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = head.loss(memory, *truth)
        loss.backward()
        return loss

    opt.step(closure)
    return head


class MLPHead(nn.Module):
    """A one-hidden-layer probe with BeliefHead's outputs."""

    def __init__(self, hidden: int, width: int, n_states: int, n_actions: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.Tanh(), nn.Linear(width, n_actions * (1 + n_states)))
        self.n_states, self.n_actions = n_states, n_actions

    def forward(self, memory: torch.Tensor) -> Rows:
        out, a = self.net(memory), self.n_actions
        return out[..., :a], torch.log_softmax(out[..., a:].unflatten(-1, (a, self.n_states)), -1)


def fit_mlp(memory: torch.Tensor, truth: tuple[torch.Tensor, torch.Tensor], trial: torch.Tensor, shape: TaskShape,
            width: int, seed: int, epochs: int = 30, batch: int = 1024) -> MLPHead:
    """Adam on minibatches; the epoch with the lowest loss on the samples of a held-out tenth of the fitting
    trials (``trial``: each sample's trial)."""
    torch.manual_seed(seed)
    head = MLPHead(memory.shape[-1], width, shape.n_states, shape.n_actions)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    gen = torch_generator(seeding.generator(seed, "mlp-probe", shape.task, shape.cell))
    trials = trial.unique()
    out = torch.isin(trial, trials[torch.randperm(len(trials), generator=gen)[: max(1, len(trials) // 10)]])
    held, fit = out.nonzero().squeeze(1), (~out).nonzero().squeeze(1)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return sum(p.mean() for p in step_losses(head(memory[idx]), (truth[0][idx], truth[1][idx])))

    best, best_state = float("inf"), None
    for _ in range(epochs):
        for part in fit[torch.randperm(len(fit), generator=gen)].split(batch):
            opt.zero_grad()
            loss(part).backward()
            opt.step()
        with torch.no_grad():
            value = float(loss(held))
        if value < best:
            best, best_state = value, {k: v.clone() for k, v in head.state_dict().items()}
    assert best_state is not None
    head.load_state_dict(best_state)
    return head


def probe(shape: TaskShape, memory: torch.Tensor, obs: torch.Tensor, truth: tuple[torch.Tensor, torch.Tensor],
          train: slice, fit_steps: int, mlp: int, seed: int) -> tuple[dict[str, Rows], dict[str, float]]:
    """Every probe fitted on ``fit_steps`` random steps of each ``train`` trial (steps of one trial share its
    MDP, so trials, not steps, are what a probe must not memorise); their predictions at every step of every
    trial, and their losses on the steps they were fitted on."""
    steps, trials, H = memory.shape
    gen = torch_generator(seeding.generator(seed, "probe-steps", shape.task, shape.cell))
    fit_trials = torch.arange(trials)[train]
    at_step = torch.stack([torch.randperm(steps, generator=gen)[:fit_steps] for _ in fit_trials], 1).reshape(-1)
    at_trial = fit_trials.repeat(min(fit_steps, steps))
    flat_m = memory[at_step, at_trial]
    flat_t = tuple(t[at_step, at_trial] for t in truth)
    preds: dict[str, Rows] = {}
    fitted: dict[str, float] = {}
    with torch.enable_grad():
        head = fit_linear(flat_m, flat_t, shape, seed)
    with torch.no_grad():
        fitted["linear"] = float(head.loss(flat_m, *flat_t))
        r, logits = head(memory)
        preds["linear"] = (r, torch.log_softmax(logits, -1))
    # one head per current state: fitted on that state's steps, read at the steps where it is current
    reward = torch.zeros(steps, trials, shape.n_actions)
    log_prob = torch.zeros(steps, trials, shape.n_actions, shape.n_states)
    flat_s, total = obs[at_step, at_trial], 0.0
    for s in range(shape.n_states):
        where = flat_s == s
        if not where.any():  # a state the fitting steps never saw: its steps keep the prior's prediction
            at = obs == s
            reward[at], log_prob[at] = 1.0, -math.log(shape.n_states)
            continue
        with torch.enable_grad():
            head = fit_linear(flat_m[where], tuple(t[where] for t in flat_t), shape, seed)
        with torch.no_grad():
            total += float(head.loss(flat_m[where], *(t[where] for t in flat_t))) * int(where.sum())
            at = obs == s
            r, logits = head(memory[at])
            reward[at], log_prob[at] = r, torch.log_softmax(logits, -1)
    fitted["linear_per_state"] = total / len(flat_s)
    preds["linear_per_state"] = (reward, log_prob)
    if mlp:
        with torch.enable_grad():
            net = fit_mlp(flat_m, flat_t, at_trial, shape, mlp, seed)
        with torch.no_grad():
            fitted["mlp"] = float(sum(p.mean() for p in step_losses(net(flat_m), flat_t)))
            preds["mlp"] = net(memory)
    return preds, fitted


def summarise(shape: TaskShape, losses: dict[str, tuple[torch.Tensor, torch.Tensor]], marks: list[int]) -> dict:
    """Per predictor: the total loss over the trial and by episode, and its two parts over the trial."""
    out = {}
    for name, (squared, cross_entropy) in losses.items():
        total = squared + cross_entropy
        per_episode = total.view(shape.n_episodes, shape.horizon, -1).mean(dim=(1, 2))
        row = {"all": float(total.mean()), "mse": float(squared.mean()), "ce": float(cross_entropy.mean())}
        row.update({f"ep{e}": float(per_episode[e - 1]) for e in marks})
        out[name] = row
    return out


def gap_closed(summary: dict, probes: list[str], keys: list[str]) -> dict:
    """(prior - probe) / (prior - posterior) per column: the share of what the posterior learned that the
    probe recovers from the memory."""
    prior, post = summary["prior"], summary["posterior"]
    return {p: {k: (prior[k] - summary[p][k]) / (prior[k] - post[k]) if abs(prior[k] - post[k]) > 1e-9 else None
                for k in keys} for p in probes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="n25")
    parser.add_argument("--instances", type=int, default=4000, help="trials; half fit the probes, half score them")
    parser.add_argument("--fit-steps", type=int, default=40, help="random steps of each fitting trial the probes see")
    parser.add_argument("--policy", type=Path, default=None, help="a policy.pt (default: the zoo's for the cell)")
    parser.add_argument("--seed", type=int, default=SEED, help="root seed of the instance/noise/action streams")
    parser.add_argument("--mlp", type=int, default=256, help="width of the MLP probe (0: none)")
    parser.add_argument("--record", action="store_true", help=f"append the result to {RESULTS}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    shape = task_shape("mdp", args.cell)
    path = args.policy or policy_path("mdp", args.cell)
    policy, meta = load_policy(str(path), policy_version(path))
    if not isinstance(policy, Policy):
        raise SystemExit(f"{path} is not a GRU policy (network {meta.get('network')!r}): it has no memory to probe")
    instances, batch, memory = play(policy, shape, args.instances, args.seed)
    truth = mdp_rows(shape, instances, batch.obs)
    post = posterior_log_rows(shape, batch)
    check_posterior(shape, batch, post)
    S, A = shape.n_states, shape.n_actions
    steps, n = batch.obs.shape
    prior = (torch.ones(steps, n, A), torch.full((1, 1, 1, S), -float(np.log(S))).expand(steps, n, A, S))
    train, test = slice(0, n // 2), slice(n // 2, n)
    preds, fitted = probe(shape, memory, batch.obs, truth, train, args.fit_steps, args.mlp, args.seed)
    truth_test = tuple(t[:, test] for t in truth)
    losses = {name: step_losses(tuple(p[:, test] for p in pred), truth_test)  # type: ignore[arg-type]
              for name, pred in {"prior": prior, "posterior": post, **preds}.items()}
    transitions = truth_test[1]
    losses["floor"] = (torch.zeros(steps, n - n // 2), -torch.special.xlogy(transitions, transitions).sum(-1).mean(-1))
    marks = [e for e in (1, 2, 5, 10, 15, 20, 25, 50, 100) if e <= shape.n_episodes]
    summary = summarise(shape, losses, marks)
    keys = ["all", "mse", "ce", *[f"ep{e}" for e in marks]]
    gaps = gap_closed(summary, list(preds), keys)
    episodes = {"trial_return": float(batch.trial_returns().mean())}

    print(f"mdp {args.cell}: {path} (GRU {policy.hidden}, {policy.activation}), {n} trials of {steps} steps "
          f"(mean return {episodes['trial_return']:.1f}); probes fitted on {args.fit_steps} steps of each of "
          f"{n // 2}, all scored on {n - n // 2}")
    print(tabulate([{"predictor": k, **{c: round(v[c], 3) for c in keys}} for k, v in summary.items()],
                   headers="keys", tablefmt="github"))
    print("\nshare of the prior-to-posterior gap closed (1 = all the posterior knows):")
    print(tabulate([{"probe": k, **{c: None if v[c] is None else round(v[c], 3) for c in keys}}
                    for k, v in gaps.items()], headers="keys", tablefmt="github"))
    print("probes' loss on their own fitting half: " + ", ".join(f"{k} {v:.3f}" for k, v in fitted.items()))
    seconds = time.perf_counter() - start
    print(f"{seconds:.0f} s")
    if args.record:
        append_jsonl(RESULTS, {
            "task": "mdp", "cell": args.cell, "policy": str(path), "policy_version": policy_version(path),
            "hidden": policy.hidden, "activation": policy.activation, "seed": args.seed, "instances": n,
            "fit_trials": n // 2, "mean_return": episodes["trial_return"], "mlp_width": args.mlp,
            "losses": summary, "gap_closed": gaps, "fit_losses": fitted, "seconds": round(seconds, 1),
            "torch": torch.__version__})
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
