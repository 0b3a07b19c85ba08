"""data -> reward without a golden metric: the adversarial discriminator of Sun et al. 2024, §4.2.

D_ω(y|x) = σ(w · features(x, y) + b), a linear head on π0's pooled hidden states (π0 frozen), is fitted by
Eq. 6 to tell the expert demonstrations (D → 1) from a policy's own replies to the same inputs (D → 0); its
logit is the reward r_ω = log D − log(1 − D) (Eq. 7), a reward artifact like any other: best-of-N,
reward→parameter (Eq. 5 is RL on it) and Compare use it. No golden metric is read to build it; the scenario's
reference reward only measures it afterwards.

Held out (demonstrations of held-out inputs against fresh replies of the policy there): the discriminator's
accuracy and AUC, and the reward's agreement with the reference reward (Spearman over the policy's replies,
and pair accuracy between replies to the same input).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from engine.adversarial import discriminator_accuracy
from engine.artifacts import Reward
from engine.config_pieces import LinearHead, opt
from engine.demonstrations import Demonstration, require, split_heldout
from engine.edges.prompt_to_reward import DERIVED
from engine.evaluation import Scored, sample_and_score
from engine.methods import register
from engine.references import resolve_policy
from engine.reward_models import build_model_reward, reply_features, save_head, train_discriminator_head
from engine.rewards import pair_accuracy, spearman
from engine.run_types import Result, RunContext
from engine.tasks.reward_from_data import auc

TASK = "reward-model"


@dataclass(frozen=True)
class DiscriminatorConfig(LinearHead):
    REFERENCES: ClassVar[dict] = {"policy": "policy"}

    policy: str = opt("base", "Policy whose replies D_ω learns to tell from the demonstrations (Eq. 6): `base`, "
                              "`prompt`, `scenario:NAME` or a run id.")
    samples_per_input: int = opt(2, "The policy's replies per demonstrated train input.", 1, 16)
    pooling: str = opt("mean+last", "Features of a reply from π0's last hidden states: `mean+last`, "
                                    "`reply-mean` or `last`.", choices=("mean+last", "reply-mean", "last"))
    n_train: int = opt(0, "Use only the first N train demonstrations (0 = all).", 0, 100000)
    n_heldout: int = opt(0, "Use only the first N held-out demonstrations (0 = all).", 0, 100000)
    heldout_samples: int = opt(2, "The policy's replies per held-out demonstrated input.", 1, 16)
    temperature: float = opt(1.0, "Sampling temperature of the policy's replies.", 0.05, 2.0)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)
    seed: int = opt(0, "Seed for sampling.", 0, 2**31 - 1)


def capped_replies(host, demos: list[Demonstration], max_new_tokens: int) -> list[str]:
    """Each demonstration's reply as the policy's sampled reply would read under the same cap: cut after
    `max_new_tokens` tokens (its end-of-turn token counted, as sampling counts it), decoded as a sample is.
    Uncapped, a discriminator tells the two apart by completeness alone — the demonstrations run past the cap
    (sentiment's: 47 tokens on average, 77 of 90 longer than 40) and end their sentences, the policy's replies are
    cut mid-sentence — and RL on r_ω learns to stop early, not to write like the demonstrations (Table 1's
    adversarial row on sentiment: reference reward 0.58 → 0.26 while r_ω rose −2.5 → −0.2)."""
    return [host.decode(host.reply_ids(d.reply)[:max_new_tokens]) for d in demos]


def demo_features(host, demos: list[Demonstration], pooling: str, max_new_tokens: int, on_batch=None) -> torch.Tensor:
    """π0's pooled features of the demonstrations, read as r_ω reads a policy's reply under the same cap."""
    return reply_features(host, [d.input for d in demos], capped_replies(host, demos, max_new_tokens),
                          pooling=pooling, on_batch=on_batch)


def fit_discriminator(host, demo: torch.Tensor, replies: Scored, config, on_step=None):
    """Eq. 6 on π0's features of the demonstrations (`demo_features`: π0 is frozen, so one computation serves
    every refit) and of the policy's replies: the head and its train accuracy."""
    policy = reply_features(host, replies.inputs, replies.outputs, pooling=config.pooling)   # as r_ω reads them
    head = train_discriminator_head(demo, policy, config.head_steps, config.head_lr, config.head_l2, config.seed,
                                    on_step)
    with torch.no_grad():
        return head, discriminator_accuracy(head(demo), head(policy))


def agreement(scores: list[float], reference: list[float], inputs: list[str]) -> dict:
    """How far r_ω orders replies as the reference reward does (which it never saw)."""
    return {"agreement_spearman": spearman(scores, reference),
            "agreement_pair_accuracy": pair_accuracy(scores, reference, inputs)[0]}


def run(method: str, config: DiscriminatorConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    policy = resolve_policy(config.policy, ctx, "policy")
    reward = sc.reward()
    train, held = split_heldout(sc.expert_demonstrations, sc.heldout_inputs)
    train, held = train[:config.n_train or None], held[:config.n_heldout or None]
    require(train, sc.name)
    replies = sample_and_score(host, policy, [d.input for d in train], reward, config.samples_per_input,
                               config.max_new_tokens, config.temperature, config.seed + 1,
                               on_batch=lambda i, k: progress(0.4 * i / k, "sampling the policy on train inputs"))
    progress(0.4, "features of demonstrations and replies; fitting D (Eq. 6)")

    def on_step(step, loss):
        if step % 25 == 0 or step == config.head_steps:
            progress(0.45 + 0.1 * step / config.head_steps, f"fitting the discriminator (Eq. 6), step {step}",
                     step=step, points={"loss": loss})
    head, train_accuracy = fit_discriminator(host, demo_features(host, train, config.pooling, config.max_new_tokens),
                                             replies, config, on_step)
    path = save_head(head, ctx.out_dir / "discriminator.safetensors", host.model_name, config.pooling)
    spec = {"kind": "outcome", "objective": "discriminator", "head": str(path), "pooling": config.pooling,
            "context_system": None, "trained_on": f"{len(train)} demonstrations vs replies of {policy.label}"}
    metrics = {"train_accuracy": train_accuracy, "n_demonstrations": len(train), "n_heldout_demonstrations": len(held)}
    rows = []
    if held:
        r = build_model_reward(spec, host)   # the stored reward is what is measured
        fresh = sample_and_score(host, policy, [d.input for d in held], reward, config.heldout_samples,
                                 config.max_new_tokens, config.temperature, config.seed + 2,
                                 on_batch=lambda i, k: progress(0.6 + 0.3 * i / k, "sampling held-out replies"))
        progress(0.9, "held-out: discriminator accuracy, agreement with the reference reward")
        held_replies = capped_replies(host, held, config.max_new_tokens)   # compared as the policy's are read
        r_demo, r_policy = r([d.input for d in held], held_replies), r(fresh.inputs, fresh.outputs)
        labels = [1.0] * len(r_demo) + [0.0] * len(r_policy)
        metrics |= {"heldout_accuracy": discriminator_accuracy(torch.tensor(r_demo), torch.tensor(r_policy)),
                    "heldout_auc": auc(r_demo + r_policy, labels),
                    "reward_demonstrations": sum(r_demo) / len(r_demo),
                    "reward_policy": sum(r_policy) / len(r_policy),
                    "reference_reward_demonstrations": sum(reward([d.input for d in held], held_replies)) / len(held),
                    "reference_reward_policy": fresh.mean_reward}
        metrics |= agreement(r_policy, fresh.rewards, fresh.inputs)
        rows = fresh.rows()
        for row, s in zip(rows, r_policy):
            row[DERIVED] = s
    return Result(metrics=metrics, samples=rows, artifact=Reward(str(path), spec))


register(TASK, "discriminator", title="Adversarial discriminator: demonstrations vs the policy's replies",
         equation="max_ω E_demo[log D_ω(y|x)] + E_π[log(1 − D_ω(y|x))] (Eq. 6);  r_ω = log D − log(1 − D) (Eq. 7)",
         config=DiscriminatorConfig, run=run,
         metrics=("heldout_accuracy", "heldout_auc", "agreement_spearman", "agreement_pair_accuracy"),
         artifact="reward",
         quick={"n_train": 32, "n_heldout": 8, "head_steps": 150})
