"""data -> parameter: supervised fine-tuning on expert demonstrations (Sun et al. 2024, §3.1.1).

θ is optimized, the prompter fixed (P_ψ(x) = x: the neutral system message, no z), L = 1. The adapter
maximizes the likelihood of the expert's reply,
    min_θ −E_{(x, y*) ~ D_demo} (1/|y*|) Σ_t log π_θ(y*_t | x, y*_<t),
the objective of Cai et al.'s Eq. 10 on y* written by an expert instead of sampled from π0(·|x, z).
Reports, held-out: the reference reward of π0 and of the SFT policy, the exact KL(π‖π0) per token on its own
samples, and the per-token negative log-likelihood of the held-out demonstrations before (π0) and after.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from engine import training
from engine.artifacts import Adapter
from engine.demonstrations import Demonstration, require, split_heldout
from engine.edges.prompt_to_parameter import shuffled_batches
from engine.edges.reward_to_parameter import kl_to_base
from engine.evaluation import held_out
from engine.lora import lora_config
from engine.losses import imitation_loss
from engine.policies import BASE, Policy, with_adapter
from engine.config_pieces import Compute, HeldOut, LoRA, Training, like
from engine.run_types import Result, RunContext
from engine.methods import register

TASK = "demonstrations"
LIVE_DEMOS = 16   # held-out demonstrations on the live NLL curve


@dataclass(frozen=True)
class SFTConfig(Training, LoRA, HeldOut, Compute):
    steps: int = like(Training, "steps", 40)
    lr: float = like(Training, "lr", 1e-3)


def demonstration_ids(host, demos: list[Demonstration]) -> tuple[list[str], list[list[int]]]:
    """(inputs, reply token ids closed by the end-of-turn token): what the model is trained to write."""
    return [d.input for d in demos], [host.reply_ids(d.reply) for d in demos]


def demonstration_nll(host, policy: Policy, xs: list[str], ys: list[list[int]]) -> float | None:
    """−log π(y*|x) per token over the demonstrations (None without any)."""
    if not xs:
        return None
    total = sum(host.sequence_logprobs(policy, xs, ys))
    return -total / sum(len(y) for y in ys)


def run(method: str, config: SFTConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    reward = sc.reward()
    train, held = split_heldout(sc.expert_demonstrations, sc.heldout_inputs)
    train, held = train[:config.n_train or None], held[:config.n_heldout or None]
    require(train, sc.name)
    xs, ys = demonstration_ids(host, train)
    held_xs, held_ys = demonstration_ids(host, held)
    policy = with_adapter(f"sft-{ctx.run_id}", "SFT")

    def live(p: Policy) -> dict:
        s = held_out(ctx, config, p, reward, seed_offset=7, n_inputs=12, n_samples=1)
        nll = demonstration_nll(host, p, held_xs[:LIVE_DEMOS], held_ys[:LIVE_DEMOS])
        return {"reward": s.mean_reward} | ({"nll_heldout": nll} if nll is not None else {})

    held_base = held_out(ctx, config, BASE, reward, span=(0.0, 0.1))
    nll_before = demonstration_nll(host, BASE, held_xs, held_ys)
    progress(0.1, "held-out: base", step=0, points=live(BASE))
    torch.manual_seed(config.seed)
    host.add_lora(policy.adapter, lora_config(config.lora_rank, config.lora_alpha, config.lora_targets))
    with host.removed_on_failure(policy.adapter):
        batches = shuffled_batches(len(xs), config.batch_size, random.Random(config.seed))
        host.model.train()

        def step(i):
            idx = next(batches)
            with host.autocast():
                logits, targets, mask = host.batch_logits(policy, [xs[j] for j in idx], [ys[j] for j in idx],
                                                          grad=True)
            return imitation_loss(logits, targets, mask), {}
        training.train(host.trainable_parameters(policy.adapter), config.steps, config.lr, step, progress,
                       (0.1, 0.85), host.model, config.eval_every, lambda: live(policy))
        held_after = held_out(ctx, config, policy, reward, span=(0.85, 0.93))
        progress(0.93, "held-out: KL to π0, likelihood of the demonstrations")
        kl, kl_seq = kl_to_base(host, policy, held_after)
        nll_after = demonstration_nll(host, policy, held_xs, held_ys)
        out = host.save_adapter(policy.adapter, ctx.out_dir)
    metrics = {"reward_base": held_base.mean_reward, "reward_sft": held_after.mean_reward, "kl_to_base": kl,
               "kl_to_base_seq": kl_seq, "nll_before": nll_before, "nll_after": nll_after,
               "n_demonstrations": len(train), "n_heldout_demonstrations": len(held)}
    artifact = Adapter(str(out), {"adapter_name": policy.adapter, "method": method,
                                  "demonstrations": len(train)})
    return Result(metrics=metrics, artifact=artifact, samples=held_base.rows() + held_after.rows())


register(TASK, "sft", title="Supervised fine-tuning on expert demonstrations",
         equation="min_θ −E_{(x,y*)~D_demo} log π_θ(y*|x)   (Sun et al. §3.1.1)",
         config=SFTConfig, run=run, metrics=("reward_base", "reward_sft", "kl_to_base", "nll_before", "nll_after"),
         artifact="adapter", default=True,
         quick={"steps": 20, "eval_every": 5, "n_heldout": 8, "eval_samples": 2})
