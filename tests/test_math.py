"""Exact numbers for the math: KL, masked means, the two context-distillation losses, top-p."""
import math

import torch

from engine.kl import masked_mean, mean_token_kl, token_kl
from engine.losses import context_distillation_kl_loss, imitation_loss
from engine.model_host import top_p_filter
from engine.edges.prompt_to_parameter import gain_kept, gain_within_noise
from engine.training import lr_at


def test_token_kl_matches_hand_computation():
    p = torch.tensor([0.5, 0.25, 0.25])
    q = torch.tensor([0.25, 0.25, 0.5])
    # 0.5 ln 2 + 0.25 ln 1 + 0.25 ln 0.5 = 0.25 ln 2
    assert math.isclose(float(token_kl(p.log(), q.log())), 0.25 * math.log(2), rel_tol=1e-6)


def test_token_kl_is_zero_for_equal_and_asymmetric_otherwise():
    p = torch.tensor([0.7, 0.2, 0.1]).log()
    q = torch.tensor([0.1, 0.2, 0.7]).log()
    assert float(token_kl(p, p)) == 0.0
    # KL(p||q) = 0.7 ln 7 + 0.1 ln(1/7) = 0.6 ln 7; symmetric here by construction, so check a skewed pair
    assert math.isclose(float(token_kl(p, q)), 0.6 * math.log(7), rel_tol=1e-6)
    r = torch.tensor([0.6, 0.3, 0.1]).log()
    assert not math.isclose(float(token_kl(p, r)), float(token_kl(r, p)), rel_tol=1e-3)


def test_masked_mean_ignores_padding():
    v = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[True, True, False], [True, False, False]])
    assert float(masked_mean(v, m)) == 2.0


def test_mean_token_kl_from_logits_equals_per_token_average():
    p = torch.tensor([[[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]]).log()  # logits = log-probs (normalized)
    q = torch.tensor([[[0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]]).log()
    mask = torch.tensor([[True, True]])
    assert math.isclose(float(mean_token_kl(p, q, mask)), 0.125 * math.log(2), rel_tol=1e-5)
    # logits are shift-invariant
    assert math.isclose(float(mean_token_kl(p + 3.0, q - 1.0, mask)), 0.125 * math.log(2), rel_tol=1e-5)


def test_eq9_loss_is_kl_teacher_to_student_and_has_gradient():
    teacher = torch.tensor([[[0.5, 0.25, 0.25]]]).log()
    student_logits = torch.tensor([[[0.25, 0.25, 0.5]]]).log().requires_grad_()
    loss = context_distillation_kl_loss(teacher, student_logits, torch.tensor([[True]]))
    assert math.isclose(loss.item(), 0.25 * math.log(2), rel_tol=1e-6)
    loss.backward()
    # d KL / d student_logits = softmax(student) - p_teacher
    assert torch.allclose(student_logits.grad, torch.tensor([[[-0.25, 0.0, 0.25]]]), atol=1e-6)


def test_eq10_imitation_loss_is_mean_nll_of_teacher_tokens():
    logits = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1, 1, 1]]]).log()
    targets = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[True, True, False]])
    expected = -(math.log(0.5) + math.log(0.8)) / 2
    assert math.isclose(float(imitation_loss(logits, targets, mask)), expected, rel_tol=1e-6)


def test_top_p_keeps_smallest_set_reaching_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = top_p_filter(probs, 0.8)
    assert torch.allclose(kept, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert torch.allclose(top_p_filter(probs, 0.1), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


def test_a_reward_gain_within_two_standard_errors_is_not_rated():
    base = [0.1, 0.5, 0.3, 0.7]
    assert gain_within_noise(base, [b + 0.2 for b in base]) is None            # the same +0.2 on every pair
    noisy = [0.5, 0.2, 0.6, 0.6]                                               # +0.4, -0.3, +0.3, -0.1: mean 0.075
    warning = gain_within_noise(base, noisy)
    assert "+0.075" in warning and "4 held-out samples" in warning and "not rated" in warning
    assert gain_within_noise([0.2], [0.9]) is not None                         # one sample: no error bar at all


def test_gain_kept_and_schedule():
    assert math.isclose(gain_kept(0.3, 0.5, 0.45), 0.75)
    assert gain_kept(0.3, 0.3, 0.4) is None
    assert math.isclose(lr_at(0, 100, 1.0, warmup=4), 0.25)
    assert math.isclose(lr_at(4, 100, 1.0, warmup=4), 1.0)
    assert math.isclose(lr_at(100, 100, 1.0, warmup=4), 0.1)


def test_gumbel_sampling_matches_the_distribution_and_couples_close_policies():
    from engine.model_host import sample_next
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(20000, 3)
    gen = torch.Generator().manual_seed(0)
    freq = torch.bincount(sample_next(logits, 1.0, 1.0, gen), minlength=3).float() / 20000
    assert torch.allclose(freq, torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1), atol=0.015)
    # the same seed on a slightly different policy picks the same token almost always
    a = sample_next(logits, 1.0, 1.0, torch.Generator().manual_seed(1))
    b = sample_next(logits + torch.tensor([0.05, 0.0, 0.0]), 1.0, 1.0, torch.Generator().manual_seed(1))
    assert (a == b).float().mean() > 0.95
    assert sample_next(logits[:2], 0.0, 1.0, gen).tolist() == [0, 0]
