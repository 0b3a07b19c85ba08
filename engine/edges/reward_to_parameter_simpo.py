"""reward -> parameter by SimPO (Meng et al. 2024): a reference-free, length-normalized preference loss on the
best and worst of k samples, into LoRA. The whole method is this file: its equation, its config, its loss and
its registration; sampling, training, evaluation and the adapter come from reward_to_parameter.py.

    L = −log σ( β/|y_w| · log π(y_w|x) − β/|y_l| · log π(y_l|x) − γ )          (SimPO, Eq. 6)

Unlike DPO it needs no π0 forward in the loss (π0 only serves the reported KL): the implicit reward is the
average log-likelihood, and γ is a target margin between the best and the worst reply.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.methods import register
from engine.edges.reward_to_parameter import EDGE, QUICK, RLConfig, best_worst_pairs, run, sequence_logps
from engine.config_pieces import opt


def simpo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, len_w: torch.Tensor, len_l: torch.Tensor,
               beta: float, gamma: float) -> torch.Tensor:
    """SimPO's loss (Eq. 6), averaged over pairs.

    Args:
        logp_w, logp_l: (P,) log π(y|x) summed over the tokens of the preferred / the other reply.
        len_w, len_l: (P,) their lengths in tokens.
        beta: scale of the length-normalized reward β/|y| · log π(y|x).
        gamma: target reward margin γ.
    Returns:
        scalar mean of −log σ(β logp_w/len_w − β logp_l/len_l − γ).
    """
    margin = beta * logp_w / len_w - beta * logp_l / len_l - gamma
    return -torch.nn.functional.logsigmoid(margin).mean()


@dataclass(frozen=True)
class SimPOConfig(RLConfig):
    gamma: float = opt(1.0, "Target margin γ between the best and the worst reply's length-normalized reward.",
                       0.0, 10.0)


def simpo_step(config: SimPOConfig, host, policy, batch) -> tuple[torch.Tensor | None, dict]:
    pairs = best_worst_pairs(batch.rewards, config.k)
    if not pairs:   # every group tied: nothing to learn from this batch
        return None, {"pairs": 0.0}
    idx = [i for pair in pairs for i in pair]
    xs, ys = [batch.inputs[i] for i in idx], [batch.token_ids[i] for i in idx]
    host.model.train()
    logp = sequence_logps(host, policy, xs, ys, grad=True)
    lengths = torch.tensor([len(y) for y in ys], dtype=logp.dtype, device=logp.device)
    loss = simpo_loss(logp[0::2], logp[1::2], lengths[0::2], lengths[1::2], config.beta, config.gamma)
    return loss, {"pairs": float(len(pairs))}


register(EDGE, "simpo", title="SimPO: reference-free, length-normalized preference optimization",
         equation="min −log σ(β/|y_w| log π(y_w|x) − β/|y_l| log π(y_l|x) − γ)   (SimPO, Eq. 6)",
         config=SimPOConfig, run=lambda method, config, ctx: run(method, config, ctx, loss=simpo_step),
         metrics=("reward_before", "reward_after", "kl_to_base"), artifact="adapter",
         defaults={"beta": 2.0, "lr": 2e-3},
         quick=QUICK)
