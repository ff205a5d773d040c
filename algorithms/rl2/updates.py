"""The network updates of one bandit/MDP iteration, given the batch and its advantages: the policy step
(TRPO's natural-gradient step, the paper's, or PPO's clipped-surrogate epochs) and the baseline's
regression on the discounted returns. The trainer keeps the networks, optimisers and random streams."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .config import TrainConfig
from .policy import Policy
from .posterior_net import AnyBaseline, AnyPolicy
from .rollout import Batch
from .trpo import StepInfo, fisher_subsample, trpo_step


def behaviour(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampling policy's log-probabilities of every action, of the actions taken, and its
    probabilities: what both policy steps measure their surrogate and KL against."""
    logp_all = torch.log_softmax(batch.logits, -1)
    return logp_all, logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1), logp_all.exp()


def minibatch_count(n_trials: int, trials_per_minibatch: int, default: int) -> int:
    """How many minibatches to cut ``n_trials`` into: about ``trials_per_minibatch`` trials each when that
    is set (> 0), else ``default``."""
    return max(1, round(n_trials / trials_per_minibatch)) if trials_per_minibatch else default


def trpo_update(policy: AnyPolicy, batch: Batch, x: torch.Tensor, adv: torch.Tensor, cfg: TrainConfig,
                ent_coef: float, fvp_gen: torch.Generator, device: torch.device) -> tuple[StepInfo, float]:
    """One TRPO step; the Fisher-vector products use the ``fvp_fraction`` of the trials ``fvp_gen`` picks.
    Returns the step's record and the behaviour policy's entropy."""
    old_logp_all, old_logp, old_p = behaviour(batch)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        logp_all = torch.log_softmax(policy(x)[0], -1)
        logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        surr = (torch.exp(logp - old_logp) * adv).mean()
        if ent_coef:
            surr = surr - ent_coef * (logp_all.exp() * logp_all).sum(-1).mean()
        kl = (old_p * (old_logp_all - logp_all)).sum(-1).mean()
        return surr, kl

    idx = fisher_subsample(x.shape[1], cfg.fvp_fraction, fvp_gen).to(device)

    def fisher_kl() -> torch.Tensor:
        logp_all = torch.log_softmax(policy(x[:, idx])[0], -1)
        return (old_p[:, idx] * (old_logp_all[:, idx] - logp_all)).sum(-1).mean()

    info = trpo_step(policy, evaluate, fisher_kl, cfg.max_kl, cfg.cg_iters, cfg.damping)
    entropy = float(-(old_p * old_logp_all).sum(-1).mean())  # of the behaviour policy
    return info, entropy


def ppo_update(policy: AnyPolicy, optimizer: torch.optim.Optimizer, batch: Batch, x: torch.Tensor, adv: torch.Tensor,
               cfg: TrainConfig, ent_coef: float, gen: torch.Generator, device: torch.device,
               aux: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> tuple[StepInfo, float]:
    """The clipped surrogate of PPO (Schulman et al. 2017) with an entropy bonus: ``ppo_epochs`` passes
    of Adam over ``ppo_minibatches`` minibatches of whole trials (the GRU runs each trial from its
    start, so the hidden state stays exact), gradients clipped to ``max_grad_norm``; minibatches are
    drawn from ``gen``. ``aux(memory, trials)``, if given, is a weighted auxiliary loss on the GRU's
    outputs for those trials (``belief.py``), added to the minibatch's loss. Returns the step's record and
    the behaviour policy's entropy."""
    old_logp_all, old_logp, old_p = behaviour(batch)
    params = [p for p in policy.parameters() if p.requires_grad]
    surr_before = float(adv.mean())  # the surrogate at the old policy: ratio 1 everywhere
    n_trials = x.shape[1]
    minibatches = minibatch_count(n_trials, cfg.ppo_minibatch_trials, cfg.ppo_minibatches)
    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n_trials, generator=gen).to(device)
        for idx in order.chunk(minibatches):
            if aux is None:
                logits, extra = policy(x[:, idx])[0], torch.zeros(())
            else:
                assert isinstance(policy, Policy), "an auxiliary loss reads a GRU's memory"
                memory = policy.memory(x[:, idx])[0]
                logits, extra = policy.head(memory), aux(memory, idx)
            logp_all = torch.log_softmax(logits, -1)
            logp = logp_all.gather(-1, batch.actions[:, idx].unsqueeze(-1)).squeeze(-1)
            ratio = torch.exp(logp - old_logp[:, idx])
            a = adv[:, idx]
            surr = torch.min(ratio * a, ratio.clamp(1 - cfg.ppo_clip, 1 + cfg.ppo_clip) * a).mean()
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = -(surr + ent_coef * entropy) + extra
            optimizer.zero_grad()
            loss.backward()
            if math.isfinite(cfg.max_grad_norm):  # at inf, clipping scales finite gradients by exactly 1
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()

    def surrogate_and_kl() -> tuple[float, float]:
        with torch.no_grad():
            logp_all = torch.log_softmax(policy(x)[0], -1)
            logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
            return (float((torch.exp(logp - old_logp) * adv).mean()),
                    float((old_p * (old_logp_all - logp_all)).sum(-1).mean()))

    surr_after, kl = surrogate_and_kl()
    kl_full, backtracks = kl, 0
    if cfg.ppo_kl_backtrack:  # the authors' PPOSGD: halve the step until the mean KL is within bounds
        step = torch.nn.utils.parameters_to_vector(params).detach() - start
        while kl > cfg.max_kl and backtracks < 10:
            backtracks += 1
            torch.nn.utils.vector_to_parameters(start + 0.5 ** backtracks * step, params)
            surr_after, kl = surrogate_and_kl()
    info = StepInfo(surr_before, surr_after, kl_full, kl, backtracks, True)
    return info, float(-(old_p * old_logp_all).sum(-1).mean())


def fit_baseline(baseline: AnyBaseline, optimizer: torch.optim.Optimizer, x: torch.Tensor, returns: torch.Tensor,
                 cfg: TrainConfig, gen: torch.Generator, device: torch.device) -> None:
    """A few Adam epochs of squared error on the discounted returns, minibatches of whole trials drawn
    from ``gen``."""
    n = x.shape[1]
    target = returns / baseline.scale
    minibatches = minibatch_count(n, cfg.baseline_minibatch_trials, cfg.baseline_minibatches)
    for _ in range(cfg.baseline_epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for idx in order.chunk(minibatches):
            pred = baseline(x[:, idx])[0].squeeze(-1)
            loss = ((pred - target[:, idx]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
