"""The reward ⇄ parameter equations (2406.16377 §2–3), each a small pure function on tensors.

  Eq. 1   max_π E_{x, y~π}[r(x,y)] − β KL[π(y|x) ‖ π0(y|x)]        kl_regularized_objective
          its sample estimate shapes the reward: r − β (log π(y|x) − log π0(y|x))   kl_shaped_reward
          RLOO baseline: each sample against the mean of the other k−1            rloo_advantages
          policy gradient (REINFORCE with that baseline)                         policy_gradient_loss
  DPO     −log σ(β [(log π(y_w) − log π0(y_w)) − (log π(y_l) − log π0(y_l))])    dpo_loss
  signal  share of groups of k whose rewards differ (else every advantage is 0)   reward_signal
  Eq. 4   r*(x,y) = log π*(y|x) − log π0(y|x)                                    log_ratio_reward
  Eq. 7   log π2(y_t|·) ∝ log π1(y_t|·) + (1/β)(log π*(y_t|·) − log π0(y_t|·))    steered_logprobs
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_shaped_reward(reward: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """The per-sample quantity whose mean is the Eq. 1 objective: r − β (log π(y|x) − log π0(y|x)).

    Args:
        reward: (...) r(x, y) of each sample y ~ π.
        logp, logp_ref: (...) log π(y|x) and log π0(y|x), summed over the reply tokens.
        beta: the KL coefficient β.
    """
    return reward - beta * (logp - logp_ref)


def reward_signal(rewards: list[float], k: int) -> float:
    """The share of groups (k samples of one input, in order) whose rewards are not all equal.

    A group whose k replies all score the same gives RLOO a zero leave-one-out advantage for every reply and
    DPO no best-vs-worst pair: only the groups counted here carry a reward signal (β·KL shaping aside)."""
    groups = [rewards[g * k:(g + 1) * k] for g in range(len(rewards) // k)]
    if not groups:
        raise ValueError(f"reward_signal: {len(rewards)} rewards hold no group of k={k}")
    return sum(max(g) > min(g) for g in groups) / len(groups)


def kl_regularized_objective(reward: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor,
                             beta: float) -> torch.Tensor:
    """Eq. 1 estimated from samples y ~ π: mean r − β · mean log(π/π0) (an unbiased estimate of the KL)."""
    return kl_shaped_reward(reward, logp, logp_ref, beta).mean()


def rloo_advantages(returns: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out: A_i = R_i − mean_{j≠i} R_j within each group of k samples of one input.

    Args:
        returns: (B, k) returns of k ≥ 2 samples for each of B inputs.
    Returns:
        (B, k) advantages; each row sums to zero.
    """
    k = returns.shape[-1]
    if k < 2:
        raise ValueError("RLOO needs k >= 2 samples per input")
    others = (returns.sum(-1, keepdim=True) - returns) / (k - 1)
    return returns - others


def policy_gradient_loss(advantages: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """−mean A · log π(y|x): its gradient is the REINFORCE estimate of −∇ (the Eq. 1 objective).

    Args:
        advantages: (N,) fixed advantages (no gradient flows through them).
        logp: (N,) log π(y|x) of each sample, with gradient.
    """
    return -(advantages.detach() * logp).mean()


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Direct preference optimization: mean −log σ(β [log π/π0 (y_w) − log π/π0 (y_l)]).

    Args:
        logp_chosen, logp_rejected: (N,) log π(y|x) of the preferred and the other reply (with gradient).
        ref_chosen, ref_rejected: (N,) the same under π0 (no gradient).
        beta: DPO's β (the KL strength of the implicit Eq. 1 objective).
    """
    margin = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def log_ratio_reward(logp_star: torch.Tensor, logp_zero: torch.Tensor) -> torch.Tensor:
    """Eq. 4: r*(x, y) = log π*(y|x) − log π0(y|x) (per token, or summed over a reply)."""
    return logp_star - logp_zero


def steered_logprobs(logp1: torch.Tensor, logp_star: torch.Tensor, logp_zero: torch.Tensor,
                     w: float) -> torch.Tensor:
    """Eq. 7 with w = 1/β: log π2 = log π1 + w (log π* − log π0), renormalized over the vocabulary.

    Args:
        logp1, logp_star, logp_zero: (..., V) next-token log-probs of π1, π* and π0 at the same step.
        w: steering strength 1/β (0 gives back π1).
    Returns:
        (..., V) normalized log-probs of π2.
    """
    return torch.log_softmax(logp1 + w * log_ratio_reward(logp_star, logp_zero), -1)


def best_of_n_kl_bound(n: int) -> float:
    """KL(π_BoN ‖ π0) ≤ log N − (N − 1)/N (Beirami et al.; Sun et al. §3)."""
    import math
    return math.log(n) - (n - 1) / n
