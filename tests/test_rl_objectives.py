"""Exact numbers for the reward ⇄ parameter equations: Eq. 1, RLOO, DPO, Eq. 4, Eq. 7, best-of-N."""
import itertools
import math
import random

import pytest
import torch

from engine.tasks.best_of_n import bon_expected, parse_ns
from engine.errors import LabInputError
from engine.edges.parameter_to_reward import gap_closed
from engine.edges.reward_to_parameter import best_worst_pairs
from engine.rl_objectives import (best_of_n_kl_bound, dpo_loss, kl_regularized_objective, kl_shaped_reward,
                                  log_ratio_reward, policy_gradient_loss, rloo_advantages, steered_logprobs)


def test_eq1_shaped_reward_and_objective():
    r = torch.tensor([1.0, 0.0])
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -2.0])
    # r − β (log π − log π0): 1 − 0.5·1 = 0.5 and 0 − 0.5·0 = 0
    assert kl_shaped_reward(r, logp, ref, 0.5).tolist() == [0.5, 0.0]
    assert kl_regularized_objective(r, logp, ref, 0.5).item() == 0.25
    assert kl_regularized_objective(r, logp, ref, 0.0).item() == 0.5   # β = 0: plain expected reward


def test_rloo_advantage_is_each_sample_against_the_mean_of_the_others():
    adv = rloo_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert adv.tolist() == [[-1.5, 0.0, 1.5], [0.0, 0.0, 0.0]]
    assert rloo_advantages(torch.tensor([[0.0, 4.0]])).tolist() == [[-4.0, 4.0]]
    with pytest.raises(ValueError):
        rloo_advantages(torch.tensor([[1.0]]))


def test_policy_gradient_loss_gradient_is_minus_advantage_over_n():
    logp = torch.tensor([-3.0, -1.0], requires_grad=True)
    adv = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = policy_gradient_loss(adv, logp)
    assert loss.item() == pytest.approx(-(2 * -3 + -1 * -1) / 2)
    loss.backward()
    assert logp.grad.tolist() == [-1.0, 0.5]
    assert adv.grad is None   # advantages are constants of the update


def test_dpo_loss_matches_an_independent_scalar_computation():
    rng = random.Random(0)
    vals = [[rng.uniform(-30, -5) for _ in range(4)] for _ in range(3)]   # (N=3 pairs) × 4 log-probs
    beta = 0.3
    expected = 0.0
    for lw, ll, rw, rl in vals:
        z = beta * ((lw - rw) - (ll - rl))
        expected += math.log1p(math.exp(-z)) / len(vals)                 # −log σ(z) = log(1 + e^−z)
    t = torch.tensor(vals, dtype=torch.float64)
    loss = dpo_loss(t[:, 0], t[:, 1], t[:, 2], t[:, 3], beta)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # no preference signal yet (π = π0): log 2
    same = torch.tensor([-4.0, -7.0])
    assert dpo_loss(same[:1], same[1:], same[:1], same[1:], 0.1).item() == pytest.approx(math.log(2))


def test_eq4_log_ratio():
    assert log_ratio_reward(torch.tensor([-1.0, -5.0]), torch.tensor([-3.0, -2.0])).tolist() == [2.0, -3.0]


def test_eq7_steering_by_hand():
    p1, ps, p0 = (torch.tensor(v).log() for v in ([0.5, 0.5], [0.8, 0.2], [0.5, 0.5]))
    # w = 1: π2 ∝ π1 · π*/π0 = [0.4, 0.1] -> [0.8, 0.2]
    assert steered_logprobs(p1, ps, p0, 1.0).exp().tolist() == pytest.approx([0.8, 0.2])
    # w = 2: ∝ 0.5·1.6², 0.5·0.4² = 1.28, 0.08
    assert steered_logprobs(p1, ps, p0, 2.0).exp().tolist() == pytest.approx([1.28 / 1.36, 0.08 / 1.36])
    # w = 0: π1 unchanged
    assert steered_logprobs(p1, ps, p0, 0.0).exp().tolist() == pytest.approx([0.5, 0.5])
    # π1 = π0: π2 = π* exactly at w = 1
    q1 = torch.tensor([0.2, 0.3, 0.5]).log()
    qs = torch.tensor([0.6, 0.3, 0.1]).log()
    assert steered_logprobs(q1, qs, q1, 1.0).exp().tolist() == pytest.approx([0.6, 0.3, 0.1])


def test_best_of_n_kl_bound():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl_bound(16) == pytest.approx(math.log(16) - 15 / 16)


def test_bon_expected_by_hand_and_against_all_subsets():
    select, ref = [3.0, 1.0, 2.0], [10.0, 20.0, 30.0]
    assert bon_expected(select, ref, 1) == pytest.approx(20.0)          # the mean
    assert bon_expected(select, ref, 3) == pytest.approx(10.0)          # argmax of select is sample 0
    assert bon_expected(select, ref, 2) == pytest.approx((10 + 10 + 30) / 3)
    rng = random.Random(1)
    s = [rng.random() for _ in range(7)]
    r = [rng.random() for _ in range(7)]
    for n in range(1, 8):
        subsets = list(itertools.combinations(range(7), n))
        brute = sum(r[max(c, key=lambda i: s[i])] for c in subsets) / len(subsets)
        assert bon_expected(s, r, n) == pytest.approx(brute)
    with pytest.raises(ValueError):
        bon_expected(s, r, 8)


def test_parse_ns_and_its_errors():
    assert parse_ns("16, 1,4,4") == [1, 4, 16]
    for bad, msg in (("0", "out of range"), ("-2", "out of range"), ("2,x", "not a whole number"), (" , ", "empty")):
        with pytest.raises(LabInputError, match=msg):
            parse_ns(bad)


def test_best_worst_pairs_skip_tied_groups():
    assert best_worst_pairs([0.1, 0.5, 0.3, 1.0, 1.0, 1.0, -1.0, 0.0, -2.0], 3) == [(1, 0), (7, 8)]


def test_gap_closed():
    assert gap_closed(0.2, 0.6, 0.0, 0.2) == pytest.approx(0.5)
    assert gap_closed(0.3, 0.3, 0.0, 0.2) is None
