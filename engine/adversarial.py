"""A reward from expert demonstrations without a golden metric: adversarial imitation (Sun et al. 2024, §4.2).

A discriminator D_ω(y|x) = σ(logit_ω(x, y)) tells demonstrations from the policy's own replies:
  Eq. 6  max_ω E_{(x,y)~D_demo}[log D_ω(y|x)] + E_{(x,y)~π}[log(1 − D_ω(y|x))]
  Eq. 7  r_ω(y|x) = log D_ω(y|x) − log(1 − D_ω(y|x)), which is the logit itself
  Eq. 5  max_π E_{(x,y)~π}[log D_ω(y|x) − log(1 − D_ω(y|x))] = E_π[r_ω]: RL on the reward of Eq. 7
Alternating Eq. 6 (refit D on fresh policy samples) and Eq. 5 (a few RL steps against r_ω) is the
"InverseRLignment" row of Sun et al.'s Table 1 (engine/tasks/adversarial_imitation.py). Pure math, no I/O.
"""
from __future__ import annotations

import torch
from torch.nn.functional import logsigmoid


def discriminator_objective(logit_demo: torch.Tensor, logit_policy: torch.Tensor) -> torch.Tensor:
    """Eq. 6, the value D_ω maximizes: E_demo[log D] + E_π[log(1 − D)], with D = σ(logit).

    Args:
        logit_demo: (N,) the discriminator's logits on expert replies.
        logit_policy: (M,) its logits on the policy's replies.
    Returns:
        scalar ≤ 0; −2·log 2 when every logit is 0 (D cannot tell them apart).
    """
    return logsigmoid(logit_demo).mean() + logsigmoid(-logit_policy).mean()   # log(1 − σ(l)) = log σ(−l)


def discriminator_loss(logit_demo: torch.Tensor, logit_policy: torch.Tensor) -> torch.Tensor:
    """−Eq. 6, for a minimizer."""
    return -discriminator_objective(logit_demo, logit_policy)


def adversarial_reward(logit: torch.Tensor) -> torch.Tensor:
    """Eq. 7: r_ω(y|x) = log D_ω(y|x) − log(1 − D_ω(y|x)) with D = σ(logit), computed in log space (exact for
    large |logit|, where D rounds to 0 or 1). It equals the logit, as the paper notes.

    Args:
        logit: (N,) discriminator logits.
    Returns:
        (N,) rewards.
    """
    return logsigmoid(logit) - logsigmoid(-logit)


def policy_objective(logit_policy: torch.Tensor) -> torch.Tensor:
    """Eq. 5, the value the policy maximizes over its own samples: E_π[log D − log(1 − D)] = E_π[r_ω]."""
    return adversarial_reward(logit_policy).mean()


def discriminator_accuracy(logit_demo: torch.Tensor, logit_policy: torch.Tensor) -> float:
    """The share of replies D puts on the right side of 1/2 (demonstrations above, policy replies below),
    each class weighing half: 0.5 is chance however unequal the counts."""
    return 0.5 * float((logit_demo > 0).float().mean()) + 0.5 * float((logit_policy < 0).float().mean())
