"""The `conditioned` method of reward -> prompt (Eq. 17): max_{π,z} E_{(x,y)~D}[π(y | x, z(r(x,y)))].

The training set D is sampled on the train inputs (by π0, and by default also π0 with the scenario's z and z−
for a wide spread of rewards) and scored; the rewards are binned into k equal-count levels; a LoRA adapter
learns y from (z(s), x), z(s) a readable control prompt in the system message, with a level-contrast term
(reward_conditioning.py). At test time z(s) asks for level s on held-out inputs, all levels sampled with the
same seed; reported are the achieved reward per level, its Spearman correlation with the level, and Eq. 18.
"""
from __future__ import annotations

import random

import torch

from engine import training
from engine.artifacts import ReadablePrompt
from engine.errors import LabInputError
from engine.evaluation import Scored, held_out, sample_and_score
from engine.kl import sequence_logprob
from engine.lora import lora_config
from engine.losses import imitation_loss
from engine.policies import BASE, Policy, Prompt
from engine.references import resolve_reward
from engine.reward_conditioning import (
    control_prompt,
    control_reward,
    level_batches,
    level_contrast_loss,
    level_of,
    level_thresholds,
    other_level,
    quantile_levels,
)
from engine.edges.reward_to_prompt import EDGE, ConditionedConfig, data_policies
from engine.rewards import spearman
from engine.run_types import Result, RunContext
from engine.methods import register


def run_conditioned(config: ConditionedConfig, ctx: RunContext) -> Result:
    host = ctx.host
    reward = resolve_reward(config.reward, ctx)
    k, name = config.levels, f"rc-{ctx.run_id}"
    data = _training_set(config, ctx, reward)
    levels = quantile_levels(data.rewards, k)
    if len(set(levels)) < 2:
        raise LabInputError(f"reward: all {len(levels)} training samples scored the same "
                            f"({data.rewards[0]:.3g}); there are no levels to learn — try another reward, more "
                            f"data_policies or a higher data_temperature")
    thresholds = level_thresholds(data.rewards, levels, k)
    torch.manual_seed(config.seed)
    host.add_lora(name, lora_config(config.lora_rank, config.lora_alpha, config.lora_targets))
    with host.removed_on_failure(name):
        _train(config, ctx, name, data, levels, reward)
        held_base = held_out(ctx, config, BASE, reward, span=(0.75, 0.8))
        by_level = [held_out(ctx, config, level_policy(config, name, s), reward,
                             span=(0.8 + 0.2 * (s - 1) / k, 0.8 + 0.2 * s / k)) for s in range(1, k + 1)]
        out = host.save_adapter(name, ctx.out_dir)
    metrics = _level_metrics(by_level, thresholds, data.rewards, levels, k) | {"reward_base": held_base.mean_reward,
                                                                               "n_train_samples": len(levels)}
    # the prompt vertex: the control prompt z(s) of the top level, which works through the adapter trained with
    # it (Eq. 17 optimizes both); used as a policy, the artifact is that adapter + z(top level)
    artifact = ReadablePrompt(str(out), {
        "prompt_text": control_prompt(config.control_format, k, k), "adapter_name": name, "method": "conditioned",
        "control_format": config.control_format, "levels": k, "level_thresholds": thresholds,
        "reward": config.reward.strip() or "reference"})
    samples = held_base.rows() + [row for s in by_level for row in s.rows()]
    return Result(metrics=metrics, artifact=artifact, samples=samples)


def _training_set(config: ConditionedConfig, ctx: RunContext, reward) -> Scored:
    """D: replies of each data policy on the train inputs, scored; only the rewards decide the levels."""
    sc = ctx.scenario
    prompts = {"base": None, "prompt": sc.z, "negative": Prompt(sc.negative_prompt.strip())}
    names = data_policies(config.data_policies)
    if "negative" in names and not prompts["negative"].text:
        raise LabInputError("data_policies: the scenario has no negative_prompt; drop 'negative'")
    xs = sc.train_inputs[:config.n_train or None]
    parts = []
    for i, n in enumerate(names):
        policy = BASE if prompts[n] is None else prompts[n].policy(n)
        parts.append(sample_and_score(ctx.host, policy, xs, reward, config.data_samples, config.max_new_tokens,
                                      config.data_temperature, config.seed + 100 * i, on_batch=lambda j, m, i=i:
                                      ctx.on_progress(0.2 * (i + j / m) / len(names), f"training set: {n}")))
    flat = lambda f: [v for p in parts for v in getattr(p, f)]
    return Scored("data", flat("inputs"), flat("outputs"), flat("token_ids"), flat("rewards"), flat("sample_index"))


def _level_metrics(by_level: list[Scored], thresholds, train_rewards, train_levels, k: int) -> dict:
    """Target vs achieved: mean held-out reward per level, its Spearman with the level (over the k means
    and over every sample), Eq. 18's control reward, and the mean training reward of each bin."""
    means = [s.mean_reward for s in by_level]
    all_levels = [s for s, scored in enumerate(by_level, 1) for _ in scored.rewards]
    all_rewards = [r for scored in by_level for r in scored.rewards]
    eq18 = [control_reward(s, level_of(r, thresholds)) for s, r in zip(all_levels, all_rewards)]
    train_means = [sum(r for r, s in zip(train_rewards, train_levels) if s == level)
                   / max(1, train_levels.count(level)) for level in range(1, k + 1)]
    return {"levels": k, "reward_by_level": means,
            "spearman_level_vs_reward": spearman(list(range(1, k + 1)), means),
            "spearman_per_sample": spearman(all_levels, all_rewards),
            "control_reward": sum(eq18) / len(eq18), "train_reward_by_level": train_means}


def level_policy(config: ConditionedConfig, name: str, level: int) -> Policy:
    """π(·|x, z(s)): the adapter being trained, with level s's control prompt."""
    return Policy(control_prompt(config.control_format, level, config.levels), name, f"level {level}")


def _train(config: ConditionedConfig, ctx: RunContext, name: str, data: Scored, levels: list[int], reward) -> None:
    """Eq. 17 as the likelihood of y under its own level's z(s), plus `contrast` × the level-contrast term
    against a random other level; one level per batch. Live points: the top level's held-out reward."""
    host, k = ctx.host, config.levels
    rng, batches = random.Random(config.seed), []
    host.model.train()

    def step(i):
        nonlocal batches
        if not batches:
            batches = level_batches(levels, config.batch_size, rng)
        idx = batches.pop()
        xs, ys = [data.inputs[i] for i in idx], [data.token_ids[i] for i in idx]
        logits, targets, mask = _logits(config, host, name, levels[idx[0]], xs, ys)
        nll = imitation_loss(logits, targets, mask)   # Eq. 17, per token
        points = {"loss": nll.item()}
        if config.contrast <= 0:
            return nll, points
        other = _logits(config, host, name, other_level(levels[idx[0]], k, rng), xs, ys)
        contrast = level_contrast_loss(sequence_logprob(logits, targets, mask), sequence_logprob(*other))
        return nll + config.contrast * contrast, points | {"level_contrast": contrast.item()}
    top = level_policy(config, name, k)
    live = lambda: {"reward_top_level": held_out(ctx, config, top, reward, seed_offset=7, n_inputs=12,
                                                 n_samples=1).mean_reward}
    training.train(host.trainable_parameters(name), config.steps, config.lr, step, ctx.on_progress, (0.2, 0.75),
                   host.model, config.eval_every, live)


def _logits(config: ConditionedConfig, host, name: str, level: int, xs, ys):
    with host.autocast():
        return host.batch_logits(level_policy(config, name, level), xs, ys, grad=True)


register(EDGE, "conditioned", title="Reward-conditioned training with control prompts z(s)",
         equation="max_{π,z} E_{(x,y)~D}[π(y|x, z(r(x,y)))]   (Eq. 17)",
         config=ConditionedConfig, run=lambda method, config, ctx: run_conditioned(config, ctx), artifact="prompt",
         metrics=("levels", "reward_by_level", "spearman_level_vs_reward"),
         quick={"steps": 16, "n_train": 32, "n_heldout": 8})
