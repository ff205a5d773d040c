"""The RL^2 maze network (algorithms/rl2/conv_policy.py): shapes, recurrence, step == sequence."""

from __future__ import annotations

import pytest
import torch

from rl2bench.algorithms.rl2.conv_policy import ConvPolicy

T, B, A = 6, 3, 3


def _net(hidden: int = 32, activation: str = "tanh") -> ConvPolicy:
    gen = torch.Generator().manual_seed(0)
    return ConvPolicy(A, hidden=hidden, action_embed=8, fc=16, generator=gen, activation=activation)


def _inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.rand(T, B, 3, 30, 40, generator=gen) * 2 - 1
    actions = torch.randint(0, A, (T, B), generator=gen)
    prev_a = torch.cat([torch.full((1, B), A), actions[:-1]])
    prev_r = torch.randn(T, B, generator=gen)
    prev_d = (torch.rand(T, B, generator=gen) < 0.3).float()
    return obs, prev_a, prev_r, prev_d


def test_shapes_and_paper_sizes():
    net = ConvPolicy(3, generator=torch.Generator().manual_seed(0))
    # conv: 30x40 -> 13x18 -> 5x7, 16 filters = 560 features; + 256 action embedding + reward + flag
    assert net.fc.in_features == 16 * 5 * 7 + 256 + 2
    assert net.fc.out_features == 256 and net.gru.hidden_size == 256
    obs, a, r, d = _inputs()
    logits, values, h = net(obs, a, r, d)
    assert logits.shape == (T, B, 3) and values.shape == (T, B) and h.shape == (1, B, 256)
    assert ConvPolicy(3, hidden=64).gru.hidden_size == 64


def test_same_seed_same_weights():
    a, b = _net(), _net()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_step_by_step_equals_sequence(activation):
    net = _net(activation=activation)
    obs, a, r, d = _inputs()
    with torch.no_grad():
        logits, values, h_seq = net(obs, a, r, d)
        h = net.initial_state(B)
        for t in range(T):
            lt, vt, h = net.step(obs[t], a[t], r[t], d[t], h)
            torch.testing.assert_close(lt, logits[t], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(vt, values[t], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_seq, rtol=1e-5, atol=1e-5)


def test_hidden_state_carries_memory_and_starts_at_zero():
    net = _net()
    obs, a, r, d = _inputs()
    assert torch.count_nonzero(net.initial_state(B)) == 0
    with torch.no_grad():
        logits, _, _ = net(obs, a, r, d)
        # Change only the first step's reward: a later step's output must change (memory) ...
        r2 = r.clone()
        r2[0] += 5.0
        logits2, _, _ = net(obs, a, r2, d)
        assert not torch.allclose(logits[-1], logits2[-1])
        # ... and a fresh trial started from the zero state forgets everything before it.
        _, _, h_mid = net(obs[:3], a[:3], r[:3], d[:3])
        cont, _, _ = net(obs[3:], a[3:], r[3:], d[3:], h_mid)
        fresh, _, _ = net(obs[3:], a[3:], r[3:], d[3:], net.initial_state(B))
        torch.testing.assert_close(cont, logits[3:], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(cont, fresh)
        fresh_again, _, _ = net(obs[3:], a[3:], r2[3:], d[3:])
        torch.testing.assert_close(fresh, fresh_again)


def test_policy_and_baseline_share_the_trunk():
    net = _net()
    obs, a, r, d = _inputs()
    logits, values, _ = net(obs, a, r, d)
    g_pi = torch.autograd.grad(logits.sum(), net.fc.weight, retain_graph=True)[0]
    g_v = torch.autograd.grad(values.sum(), net.fc.weight)[0]
    assert g_pi.abs().sum() > 0 and g_v.abs().sum() > 0


def test_relu_gru_is_another_function_of_the_same_weights():
    """The paper's ReLU candidate: same parameters as the tanh cell, other outputs, a state that stays >= 0."""
    tanh, relu = _net(), _net(activation="relu")
    assert all(torch.equal(p, q) for p, q in zip(tanh.parameters(), relu.parameters(), strict=True))
    obs, a, r, d = _inputs()
    with torch.no_grad():
        h_tanh, h_relu = tanh(obs, a, r, d)[2], relu(obs, a, r, d)[2]
    assert not torch.allclose(h_tanh, h_relu) and float(h_relu.min()) >= 0.0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_a_widened_network_computes_the_narrow_ones_function_and_its_new_units_learn(activation):
    narrow = _net(hidden=8, activation=activation)
    with torch.no_grad():  # a trained narrow network has nonzero biases and head weights everywhere
        for p in narrow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    wide = ConvPolicy(A, hidden=24, action_embed=8, fc=16, generator=torch.Generator().manual_seed(5),
                      activation=activation)
    inputs = _inputs()
    before = wide(*inputs)[0].clone()
    wide.widen_from(narrow)
    logits, values, h = wide(*inputs)
    n_logits, n_values, n_h = narrow(*inputs)
    assert not torch.allclose(before, n_logits)  # the copy, not the fresh network, gives the match below
    torch.testing.assert_close(logits, n_logits)
    torch.testing.assert_close(values, n_values)
    torch.testing.assert_close(h[..., :8], n_h)
    assert h[..., 8:].abs().sum() > 0  # the new units run from the start
    (logits.sum() + values.sum()).backward()
    assert wide.pi.weight.grad[:, 8:].abs().sum() > 0  # ... and the heads can learn to read them
    with pytest.raises(ValueError, match="cannot widen"):
        narrow.widen_from(wide)
    other = "tanh" if activation == "relu" else "relu"
    with pytest.raises(ValueError, match="cannot widen"):
        ConvPolicy(A, hidden=24, action_embed=8, fc=16, activation=other).widen_from(narrow)


@pytest.mark.parametrize("flushing_before", [False, True])
def test_subnormals_flushed_puts_back_what_was_set(flushing_before):
    from rl2bench.algorithms.rl2.maze_trainer import subnormals_flushed

    def survives() -> bool:
        return bool((torch.tensor([1e-39]) * 1.0).item() != 0.0)

    torch.set_flush_denormal(flushing_before)
    try:
        with subnormals_flushed():
            assert not survives()
        assert survives() is not flushing_before
    finally:
        torch.set_flush_denormal(False)
