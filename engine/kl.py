"""Exact KL divergence over the whole vocabulary, per token, in nats (DESIGN.md):

    KL(p‖q) = mean over (x, t) of Σ_v p(v|x,y<t) (log p(v|x,y<t) − log q(v|x,y<t))
"""
from __future__ import annotations

import torch


def token_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Per-position KL(p‖q) from log-probs.

    Args:
        logp: (..., V) log-probabilities of p (normalized).
        logq: (..., V) log-probabilities of q (normalized).
    Returns:
        (...) KL in nats at each position.
    """
    return (logp.exp() * (logp - logq)).sum(-1)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log π(y_t | x, y<t) of the given tokens: (B, T, V) logits, (B, T) targets -> (B, T), in float32.
    The one log-prob gather of the lab."""
    return torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def sequence_logprob(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) log π(y|x): the token log-probs summed over the reply positions marked in `mask`."""
    return (token_logprobs(logits, targets) * mask).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over positions where `mask` is True (0 if none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def mean_token_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) averaged over the reply tokens marked in `mask`; logits (B, T, V), mask (B, T)."""
    return masked_mean(token_kl(torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)), mask)
