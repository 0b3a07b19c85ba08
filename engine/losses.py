"""Training objectives, each the equation it implements (Eq. numbers from arXiv 2406.16377)."""
from __future__ import annotations

import torch

from engine.kl import masked_mean, token_kl


def context_distillation_kl_loss(teacher_logp: torch.Tensor, student_logits: torch.Tensor,
                                 mask: torch.Tensor) -> torch.Tensor:
    """Eq. 9: E_{x,y~D} KL[π0(·|x,z,y<t) ‖ π(·|x,y<t)], full distribution, per token.

    Args:
        teacher_logp: (B, T, V) log-probs of the prompted base π0(·|x,z); no gradient.
        student_logits: (B, T, V) logits of the student π(·|x) (the adapter, no prompt).
        mask: (B, T) True at reply tokens.
    Returns:
        scalar mean KL in nats per token.
    """
    return masked_mean(token_kl(teacher_logp, torch.log_softmax(student_logits, -1)), mask)


def imitation_loss(student_logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 10: max E_{x, y~π0(·|x,z)} log π(y|x), as the mean negative log-likelihood per token.

    Args:
        student_logits: (B, T, V) logits of the student π(·|x).
        targets: (B, T) the teacher's sampled tokens y.
        mask: (B, T) True at reply tokens.
    """
    logp = torch.log_softmax(student_logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -masked_mean(logp, mask)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry reward-model loss: mean of −log σ(r(x, y+) − r(x, y−)).

    Args:
        r_chosen: (B,) rewards of the preferred replies y+.
        r_rejected: (B,) rewards of the other replies y− (same inputs).
    Returns:
        scalar; log 2 when the rewards cannot tell the pair apart.
    """
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()


def prompt_kl_loss(star_logp: torch.Tensor, prompted_logits: torch.Tensor, mask: torch.Tensor,
                   reverse: bool = False) -> torch.Tensor:
    """Eq. 12: min_z E_{x, y~π*} of the KL between π0(·|x,z,y<t) and π*(·|x,y<t), per reply token.

    The prompt z is what is learned (a soft prompt; gradients flow through `prompted_logits` to it).
    Args:
        star_logp: (B, T, V) log-probs of the adapter policy π*(·|x), the target; no gradient.
        prompted_logits: (B, T, V) logits of the prompted base π0(·|x,z).
        mask: (B, T) True at reply tokens.
        reverse: False gives KL[π* ‖ π0(·|x,z)], the number the lab reports (mass-covering, the roles of
            Eq. 9); True gives KL[π0(·|x,z) ‖ π*], Eq. 12 as printed (mode-seeking).
    Returns:
        scalar mean KL in nats per token.
    """
    logq = torch.log_softmax(prompted_logits, -1)
    kl = token_kl(logq, star_logp) if reverse else token_kl(star_logp, logq)
    return masked_mean(kl, mask)
