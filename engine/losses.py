"""Training objectives, each the equation it implements (Eq. numbers from arXiv 2406.16377)."""
from __future__ import annotations

import torch

from engine.kl import masked_mean, token_kl, token_logprobs


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
    return -masked_mean(token_logprobs(student_logits, targets), mask)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry reward-model loss: mean of −log σ(r(x, y+) − r(x, y−)).

    Args:
        r_chosen: (B,) rewards of the preferred replies y+.
        r_rejected: (B,) rewards of the other replies y− (same inputs).
    Returns:
        scalar; log 2 when the rewards cannot tell the pair apart.
    """
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()


def outcome_loss(logits: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Sun et al. Eq. 8, the outcome-supervised reward model (ORM):
    L(ω) = −E_{i | E(y_i, y_i*) = 1}[log R_ω(x_i, y_i)] − E_{i | E(y_i, y_i*) = 0}[log(1 − R_ω(x_i, y_i))].

    R_ω = σ(logit); each expectation is over its own class, so right and wrong replies weigh the same however
    rare one is. (The paper prints "+" before the second term; read literally that would push R up on wrong
    replies, so the sign is the usual one of the binary cross-entropy.)
    Args:
        logits: (N,) the head's logits, which are the reward r_ω(x, y) (Sun et al. Eq. 7).
        correct: (N,) E(y_i, y_i*) ∈ {0, 1} (Eq. 9).
    Returns:
        scalar; 2·log 2 when the logits are all 0 and both classes are present.
    """
    pos, neg = correct.bool(), ~correct.bool()
    logsig = torch.nn.functional.logsigmoid
    loss = logits.new_zeros(())
    if pos.any():
        loss = loss - logsig(logits[pos]).mean()
    if neg.any():
        loss = loss - logsig(-logits[neg]).mean()
    return loss


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
