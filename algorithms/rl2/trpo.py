"""Trust region policy optimisation (Schulman et al. 2015) as the paper uses it: the natural gradient by
conjugate gradient on Fisher-vector products, scaled to the KL limit, then a backtracking line search.

One ``trpo_step``: g = grad of the surrogate; x ~ F^-1 g by ``cg_iters`` CG iterations on F + damping I
(F v is the Hessian of the mean KL(old || new) at the old parameters times v, by double backprop);
full step sqrt(2 delta / x^T F x) x; try fractions ``backtrack**k`` of it and accept the first that
improves the surrogate with mean KL <= delta; if none does, keep the old parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def fisher_subsample(n_trials: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of the trials the Fisher-vector products use: a random ``fraction`` of them (rllab's
    ``subsample_factor``; the Fisher is an average, so a subsample estimates it at a fraction of the
    cost), or all of them when ``fraction`` >= 1."""
    if fraction >= 1.0:
        return torch.arange(n_trials)
    return torch.randperm(n_trials, generator=generator)[: max(1, int(n_trials * fraction))]


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive definite A given only x -> A x."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr <= tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(kl: torch.Tensor, params: list[nn.Parameter],
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H_KL + damping I) v, where ``kl`` is the mean KL(old || current) evaluated at the old
    parameters (its Hessian there is the Fisher matrix). The first derivative is built once."""
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])

    def matvec(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat @ v, params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]) + damping * v

    return matvec


@dataclass
class StepInfo:
    surrogate_before: float
    surrogate_after: float
    kl_full_step: float  # mean KL of the unshrunk natural-gradient step
    kl: float  # mean KL of the accepted step (0 when rejected)
    backtracks: int
    accepted: bool


def trpo_step(module: nn.Module, evaluate: Callable[[], tuple[torch.Tensor, torch.Tensor]],
              fisher_kl: Callable[[], torch.Tensor], max_kl: float = 0.01, cg_iters: int = 10,
              damping: float = 1e-3, backtrack: float = 0.8, max_backtracks: int = 15) -> StepInfo:
    """Update ``module``'s parameters in place.

    ``evaluate()`` gives (surrogate, mean KL(old || current)) on the whole batch at the module's current
    parameters (one forward pass for both); ``fisher_kl()`` the KL on the (possibly subsampled) batch
    used for Fisher-vector products.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    old = parameters_to_vector(params).detach().clone()
    surr = evaluate()[0]
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(surr, params)])
    surr_before = float(surr.detach())
    if not torch.isfinite(g).all() or float(g.norm()) == 0.0:
        return StepInfo(surr_before, surr_before, 0.0, 0.0, 0, False)
    fvp = fisher_vector_product(fisher_kl(), params, damping)
    x = conjugate_gradient(fvp, g, cg_iters)
    shs = float(x @ fvp(x))
    full = x * (2.0 * max_kl / max(shs, 1e-12)) ** 0.5
    del fvp
    kl_full = float("nan")
    with torch.no_grad():
        for k in range(max_backtracks):
            vector_to_parameters(old + backtrack**k * full, params)
            new_surr, kl = (float(v) for v in evaluate())
            if k == 0:
                kl_full = kl
            if kl <= max_kl and new_surr > surr_before:  # NaN fails both tests
                return StepInfo(surr_before, new_surr, kl_full, kl, k, True)
        vector_to_parameters(old, params)
    return StepInfo(surr_before, surr_before, kl_full, 0.0, max_backtracks, False)
