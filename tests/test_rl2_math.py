"""RL^2 trainer maths: conjugate gradient, Fisher-vector products, GAE, checked against known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector

from rl2bench.algorithms.rl2.fused_gru import fused_gru, gru_sequence
from rl2bench.algorithms.rl2.gae import discounted_returns, gae
from rl2bench.algorithms.rl2.policy import Policy, input_size
from rl2bench.algorithms.rl2.trpo import conjugate_gradient, fisher_vector_product


def test_cg_solves_hand_system():
    a = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=2)  # exact in n steps: x = (1/11, 7/11)
    assert torch.allclose(x, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64), atol=1e-12)


def test_cg_matches_direct_solve_on_random_spd():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(20, 20, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=200, tol=1e-20)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)


def _tiny(activation: str = "tanh"):
    g = torch.Generator().manual_seed(0)
    net = Policy(n_states=1, n_actions=3, hidden=4, generator=g, activation=activation).double()
    x = torch.randn(3, 2, input_size(1, 3), generator=g, dtype=torch.float64)
    return net, x


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fisher_vector_product_matches_hessian_of_kl(activation):
    net, x = _tiny(activation)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    theta0 = parameters_to_vector(net.parameters()).detach().clone()
    with torch.no_grad():
        old_logp = torch.log_softmax(net(x)[0], -1)

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = flat[i:i + s.numel()].view(s)
            i += s.numel()
        logp = torch.log_softmax(functional_call(net, params, (x,))[0], -1)
        return (old_logp.exp() * (old_logp - logp)).sum(-1).mean()

    hessian = torch.autograd.functional.hessian(kl_of, theta0)
    logp = torch.log_softmax(net(x)[0], -1)
    kl = (old_logp.exp() * (old_logp - logp)).sum(-1).mean()
    fvp = fisher_vector_product(kl, list(net.parameters()), damping=0.0)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(theta0.numel(), generator=g, dtype=torch.float64)
        assert torch.allclose(fvp(v), hessian @ v, atol=1e-10)
    fvp_damped = fisher_vector_product(kl, list(net.parameters()), damping=0.1)
    assert torch.allclose(fvp_damped(v), hessian @ v + 0.1 * v, atol=1e-10)


def test_gae_hand_example():
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [0.0]])
    # deltas 1 + 0.9*1 - 0.5 = 1.4, 0 + 0 - 1 = -1, 2; A2 = 2, A1 = -1 + 0.45*2 = -0.1, A0 = 1.4 - 0.045
    adv = gae(rewards, values, gamma=0.9, lam=0.5)
    assert torch.allclose(adv[:, 0], torch.tensor([1.355, -0.1, 2.0]))
    assert torch.allclose(discounted_returns(rewards, 0.9)[:, 0], torch.tensor([2.62, 1.8, 2.0]))
    # lambda = 1: advantages are returns minus values
    assert torch.allclose(gae(rewards, values, 0.9, 1.0), discounted_returns(rewards, 0.9) - values)


def test_gae_runs_across_episode_ends():
    """A trial's value flows back from later episodes: a reward in the last step reaches step 0."""
    rewards = torch.zeros(6, 1)
    rewards[-1] = 1.0
    adv = gae(rewards, torch.zeros(6, 1), gamma=1.0, lam=1.0)
    assert float(adv[0, 0]) == pytest.approx(1.0)


def test_policy_init_follows_appendix_a():
    net = Policy(1, 5, 16, torch.Generator().manual_seed(0))
    w_hh = net.gru.weight_hh_l0.detach()
    for block in w_hh.chunk(3, dim=0):  # orthogonal per gate
        assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
    for bias in (net.gru.bias_ih_l0, net.gru.bias_hh_l0, net.head.bias):
        assert float(bias.detach().abs().max()) == 0.0
    # weight norm without data-dependent init: gains are the initial rows' norms
    gain = net.gru.parametrizations.weight_hh_l0.original0.detach().squeeze()
    assert np.allclose(gain.numpy(), w_hh.norm(dim=1).numpy(), atol=1e-6)


class _Logits(torch.nn.Module):
    """A bare categorical distribution: the parameters are the logits."""

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))


def _kl_to(old_p: torch.Tensor, module: _Logits) -> torch.Tensor:
    logp = torch.log_softmax(module.theta, -1)
    return (old_p * (old_p.log() - logp)).sum()


def test_trpo_step_respects_the_trust_region():
    from rl2bench.algorithms.rl2.trpo import trpo_step

    net = _Logits()
    adv = torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64)
    old_p = torch.softmax(net.theta.detach(), -1)

    def evaluate():
        p = torch.softmax(net.theta, -1)
        return (p / old_p * old_p * adv).sum(), _kl_to(old_p, net)

    info = trpo_step(net, evaluate, lambda: _kl_to(old_p, net), max_kl=0.01, damping=0.0)
    assert info.accepted and 0.0 < info.kl <= 0.01 and info.surrogate_after > info.surrogate_before
    assert info.kl_full_step == pytest.approx(0.01, rel=0.1)  # the quadratic model is close for a small step
    theta = net.theta.detach()
    assert float(theta[0]) > 0 > float(theta[3])


def test_trpo_step_keeps_old_parameters_when_no_step_improves():
    from rl2bench.algorithms.rl2.trpo import trpo_step

    net = _Logits()
    adv = torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64)
    old_p = torch.softmax(net.theta.detach(), -1)

    def evaluate():  # gradient points uphill, but the objective falls off at once in every direction
        d = net.theta
        return (adv * d).sum() - 1e6 * (d ** 2).sum(), _kl_to(old_p, net)

    info = trpo_step(net, evaluate, lambda: _kl_to(old_p, net), max_kl=0.01)
    assert not info.accepted and info.backtracks == 15 and info.kl == 0.0
    assert float(net.theta.detach().abs().max()) == 0.0


def test_fused_gru_backward_passes_gradcheck_and_matches_nn_gru():
    """The hand-written BPTT against finite differences (float64), and against nn.GRU's autograd, for
    gradients arriving through every output and through the last hidden state."""
    g = torch.Generator().manual_seed(3)
    gru = torch.nn.GRU(5, 4).double()
    x = torch.randn(7, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weights = [p.detach().clone().requires_grad_() for p in
               (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)]
    assert torch.autograd.gradcheck(fused_gru, (x, h0, *weights))

    w_out = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    w_last = torch.randn(1, 3, 4, generator=g, dtype=torch.float64)

    def grads(run):
        out, last = run()
        loss = (out * w_out).sum() + (last * w_last).sum()
        return out.detach(), torch.autograd.grad(loss, [x, h0, *weights])

    ours, ours_grads = grads(lambda: fused_gru(x, h0, *weights))
    theirs, theirs_grads = grads(lambda: torch._VF.gru(x, h0, weights, True, 1, 0.0, False, False, False))
    assert torch.equal(ours, theirs)  # the forward pass is nn.GRU's own
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_policy_gradients_are_the_same_with_the_fused_backward():
    """Through weight normalisation and the head, float32: the switch changes speed, not the update."""
    g = torch.Generator().manual_seed(4)
    net = Policy(n_states=3, n_actions=4, hidden=16, generator=g)
    x = torch.randn(20, 6, input_size(3, 4), generator=g)

    def grads(fused):
        net.fused_backward = fused
        net.zero_grad()
        torch.log_softmax(net(x)[0], -1)[..., 1].sum().backward()
        return [p.grad.clone() for p in net.parameters()]

    for a, b in zip(grads(True), grads(False), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _gru_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(5, 4).double()
    x = torch.randn(7, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weights = [p.detach().clone().requires_grad_() for p in
               (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)]
    return x, h0, weights


def test_gru_sequence_is_nn_gru_with_tanh():
    """The loop that computes the ReLU cell computes nn.GRU's cell when given tanh: the same equations."""
    x, h0, weights = _gru_case(5)
    ours, last = gru_sequence(x, h0, *weights, activation="tanh")
    theirs, their_last = torch._VF.gru(x, h0, weights, True, 1, 0.0, False, False, False)
    assert torch.allclose(ours, theirs, atol=1e-12) and torch.allclose(last, their_last, atol=1e-12)


def test_fused_relu_gru_backward_passes_gradcheck_and_matches_autograd():
    """The ReLU cell's hand-written BPTT: finite differences (float64) and plain autograd through the loop."""
    x, h0, weights = _gru_case(6)
    assert torch.autograd.gradcheck(lambda *a: fused_gru(*a, activation="relu"), (x, h0, *weights))
    g = torch.Generator().manual_seed(7)
    w_out = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)

    def grads(run):
        out, last = run()
        return out.detach(), torch.autograd.grad((out * w_out).sum() + last.sum(), [x, h0, *weights])

    ours, ours_grads = grads(lambda: fused_gru(x, h0, *weights, activation="relu"))
    plain, plain_grads = grads(lambda: gru_sequence(x, h0, *weights, activation="relu"))
    assert torch.equal(ours, plain)
    for a, b in zip(ours_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_relu_policy_steps_like_its_sequence_and_its_state_is_unbounded():
    """Rollouts step the GRU one step at a time and updates run it over whole sequences: the same function.
    The ReLU candidate is what the paper asks for, and what tells it from tanh is that a unit can grow past 1
    (a count) where tanh's stays in (-1, 1)."""
    g = torch.Generator().manual_seed(8)
    x = 3.0 * torch.randn(40, 6, input_size(3, 4), generator=g)
    peaks = {}
    for activation in ("relu", "tanh"):
        net = Policy(3, 4, 16, torch.Generator().manual_seed(0), activation=activation)
        with torch.no_grad():
            out, last = net(x)
            h, stepped = net.initial_state(6), []
            for t in range(40):
                o, h = net.step(x[t], h)
                stepped.append(o)
        assert torch.allclose(torch.stack(stepped), out, atol=1e-5) and torch.allclose(h, last, atol=1e-5)
        peaks[activation] = float(last.abs().max())
        if activation == "relu":
            assert float(last.min()) >= 0.0  # from h0 = 0 a ReLU GRU's state stays non-negative
    assert peaks["tanh"] < 1.0 < peaks["relu"]
