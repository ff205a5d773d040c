"""Planning on tabular MDPs: backward induction against brute-force policy enumeration, and UCRL2's
extended value iteration on cases whose optimistic transition is known (and against a linear program)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from scipy.optimize import linprog

from rl2bench.algorithms.mdp_common import backward_induction, backward_induction_next_first, greedy_actions
from rl2bench.algorithms.mdp_ucrl2 import extended_backward_induction


def random_mdp(rng, batch, n_s, n_a):
    reward = rng.normal(1.0, 1.0, (batch, n_s, n_a))
    trans = rng.dirichlet(np.ones(n_s), size=(batch, n_s, n_a))
    return reward, trans


def policy_value(reward, trans, policy, start):
    """Expected return of a time-indexed deterministic policy (policy[h][s] = action), by pushing the state
    distribution forward: independent of backward induction."""
    n_s = reward.shape[0]
    dist = np.zeros(n_s)
    dist[start] = 1.0
    total = 0.0
    for actions in policy:
        total += sum(dist[s] * reward[s, actions[s]] for s in range(n_s))
        dist = sum(dist[s] * trans[s, actions[s]] for s in range(n_s))
    return total


def test_backward_induction_matches_best_of_all_policies():
    rng = np.random.default_rng(1)
    n_s, n_a, horizon = 2, 2, 3
    reward, trans = random_mdp(rng, 3, n_s, n_a)
    q = backward_induction(reward, trans, horizon)
    assert q.shape == (horizon, 3, n_s, n_a)
    per_step = list(itertools.product(range(n_a), repeat=n_s))  # a decision rule: one action per state
    for b in range(3):
        for start in range(n_s):
            best = max(policy_value(reward[b], trans[b], policy, start)
                       for policy in itertools.product(per_step, repeat=horizon))
            assert q[0, b, start].max() == pytest.approx(best, rel=1e-12)


def test_backward_induction_bonus_counts_remaining_steps():
    # One state, one action: Q_h = (H - h) r + b (1 + 2 + ... + (H - 1 - h)).
    reward, trans, bonus = np.array([[[2.0]]]), np.ones((1, 1, 1, 1)), np.array([[[0.5]]])
    q = backward_induction(reward, trans, 3, step_bonus=bonus)
    assert q[:, 0, 0, 0] == pytest.approx([3 * 2.0 + 3 * 0.5, 2 * 2.0 + 0.5, 2.0])


def test_envelope_is_the_max_over_separately_solved_samples():
    rng = np.random.default_rng(2)
    reward, trans = random_mdp(rng, 4, 3, 2)  # 4 "samples" of one instance
    joint = backward_induction(reward[:, None], trans[:, None], 4, envelope=True)
    separate = np.stack([backward_induction(reward[k:k + 1], trans[k:k + 1], 4) for k in range(4)])
    assert joint.shape == (4, 1, 3, 2)
    np.testing.assert_allclose(joint, separate.max(axis=0))
    np.testing.assert_allclose(backward_induction_next_first(reward, np.moveaxis(trans, -1, -3), 4),
                               backward_induction(reward, trans, 4))


def test_greedy_actions_break_ties_uniformly():
    rng = np.random.default_rng(3)
    q = np.tile(np.array([1.0, 3.0, 3.0, 0.0, 3.0]), (30000, 1))
    counts = np.bincount(greedy_actions(rng, q), minlength=5) / 30000
    np.testing.assert_allclose(counts, [0, 1 / 3, 1 / 3, 0, 1 / 3], atol=0.015)


def evi(reward, p_row, radius, horizon, inplace=False):
    """EVI on S = 2 states, A = 1 action, every state with the same estimated row."""
    trans = np.tile(np.asarray(p_row, dtype=np.float32), (1, 2, 1, 1))  # (1, S, A, S')
    return extended_backward_induction(np.asarray(reward, np.float32).reshape(1, 2, 1),
                                       np.moveaxis(trans, -1, 1), np.full((1, 2, 1), radius), horizon,
                                       inplace=inplace)[:, 0, :, 0]


def test_evi_moves_half_the_radius_to_the_best_state():
    # r = (0, 1): state 1 is better. Row (0.7, 0.3) with L1 radius 0.4 becomes (0.5, 0.5).
    q = evi([0.0, 1.0], [0.7, 0.3], 0.4, 2)
    np.testing.assert_allclose(q[1], [0.0, 1.0])
    np.testing.assert_allclose(q[0], [0.0 + 0.5, 1.0 + 0.5], rtol=1e-6)
    # A radius past the simplex puts all mass on the best state.
    np.testing.assert_allclose(evi([0.0, 1.0], [0.7, 0.3], 2.0, 2)[0], [1.0, 2.0], rtol=1e-6)
    # If state 0 is the better one, mass moves the other way: (0.7, 0.3) -> (0.9, 0.1).
    np.testing.assert_allclose(evi([1.0, 0.0], [0.7, 0.3], 0.4, 2)[0], [1.9, 0.9], rtol=1e-6)


def test_evi_three_steps_correct_and_tabularl_in_place():
    # Correct EVI shifts (0.7, 0.3) to (0.5, 0.5) at every backup: Q_1 = r + 0.5, Q_0 = r + 0.5 (0.5 + 1.5).
    np.testing.assert_allclose(evi([0.0, 1.0], [0.7, 0.3], 0.4, 3), [[1.0, 2.0], [0.5, 1.5], [0.0, 1.0]],
                               rtol=1e-6)
    # TabulaRL keeps each backup's shifted row: (0.5, 0.5) after step 2 (V = 0, ties: the last index is
    # "best"), (0.3, 0.7) used at step 1, (0.1, 0.9) at step 0: Q_1 = r + 0.7, Q_0 = r + 0.1*0.7 + 0.9*1.7.
    np.testing.assert_allclose(evi([0.0, 1.0], [0.7, 0.3], 0.4, 3, inplace=True),
                               [[1.6, 2.6], [0.7, 1.7], [0.0, 1.0]], rtol=1e-6)
    # Rows whose best state would pass 1 are not edited: same as the correct EVI.
    np.testing.assert_allclose(evi([0.0, 1.0], [0.7, 0.3], 2.0, 3, inplace=True),
                               evi([0.0, 1.0], [0.7, 0.3], 2.0, 3), rtol=1e-6)


def test_evi_backup_equals_linear_program():
    """One optimistic backup = max p.V over {p in simplex, |p - p_hat|_1 <= radius}, solved by linprog."""
    rng = np.random.default_rng(4)
    n_b, n_s, n_a = 3, 4, 2
    _, trans = random_mdp(rng, n_b, n_s, n_a)
    reward = rng.normal(size=(n_b, n_s, n_a)).astype(np.float32)
    radius = rng.uniform(0.05, 1.5, size=(n_b, n_s, n_a))
    q = extended_backward_induction(reward, np.moveaxis(trans, -1, 1).astype(np.float32), radius, 2)
    v = reward.max(axis=-1)  # V_1
    for b, s, a in itertools.product(range(n_b), range(n_s), range(n_a)):
        # variables p (S) and slack t (S) with |p - p_hat| <= t, sum t <= radius
        p_hat = trans[b, s, a]
        eye = np.eye(n_s)
        a_ub = np.block([[eye, -eye], [-eye, -eye], [np.zeros((1, n_s)), np.ones((1, n_s))]])
        b_ub = np.concatenate([p_hat, -p_hat, [radius[b, s, a]]])
        a_eq = np.concatenate([np.ones(n_s), np.zeros(n_s)])[None]
        lp = linprog(np.concatenate([-v[b], np.zeros(n_s)]), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0],
                     bounds=[(0, 1)] * n_s + [(0, None)] * n_s)
        assert q[0, b, s, a] == pytest.approx(reward[b, s, a] - lp.fun, abs=1e-5)


@pytest.mark.heavy
def test_plans_are_the_same_bits_whatever_blas_kernel_the_cpu_gets():
    """OpenBLAS picks its float32 kernel per CPU (Haswell, SkylakeX, ...), and kernels round sums
    differently; the planners break exact ties at random, so a BLAS product in the backup made two machines
    disagree on ~10% of greedy's MDP n10 instances. The backup uses no BLAS: every kernel gives the same bits."""
    import subprocess
    import sys

    script = ("import numpy as np, sys; from rl2bench.algorithms.mdp_common import backward_induction; "
              "rng = np.random.default_rng(3); p = rng.random((64, 10, 5, 10), dtype=np.float32); "
              "p /= p.sum(-1, keepdims=True); r = rng.random((64, 10, 5), dtype=np.float32); "
              "sys.stdout.buffer.write(backward_induction(r, p, 10).tobytes())")
    outputs = {core: subprocess.run([sys.executable, "-c", script], capture_output=True, check=True,
                                    env={**os.environ, "OPENBLAS_CORETYPE": core}).stdout
               for core in ("Haswell", "Sandybridge", "Prescott")}
    assert len(set(outputs.values())) == 1 and len(outputs["Haswell"]) == 10 * 64 * 10 * 5 * 4
