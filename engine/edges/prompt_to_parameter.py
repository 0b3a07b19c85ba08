"""prompt -> parameter: context distillation of a prompt z into a LoRA adapter (2406.16377 §4).

Goal (Eq. 8): π*(y|x) = π0(y|x,z). Two objectives over teacher samples y ~ π0(·|x,z) on train inputs:
  kl         Eq. 9  — full-distribution KL[π0(·|x,z,y<t) ‖ π(·|x,y<t)] at every reply token
  imitation  Eq. 10 — log-likelihood of the teacher's sampled tokens under the student
Reports, held-out: KL(π0(·|x,z)‖π) before (π = π0) and after (π = student), and the reference reward
of base, teacher and student.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from engine import training
from engine.artifacts import Adapter
from engine.evaluation import (Scored, held_out, kl_to_cached, mean_stderr, pad_tables, reply_logprobs,
                               sample_and_score)
from engine.lora import lora_config
from engine.losses import context_distillation_kl_loss, imitation_loss
from engine.policies import BASE, Policy, with_adapter
from engine.config_pieces import Compute, HeldOut, LoRA, Training, opt
from engine.run_memo import reuse_text
from engine.run_types import Result, RunContext
from engine.methods import register

EDGE = "prompt->parameter"


@dataclass(frozen=True)
class DistillConfig(Training, LoRA, HeldOut, Compute):
    batch_size: int = opt(8, "Teacher samples per optimizer step.", 1, 64)
    teacher_samples: int = opt(2, "Teacher samples y ~ π0(·|x,z) per train input.", 1, 32)
    teacher_temperature: float = opt(1.0, "Sampling temperature of the teacher's training samples.", 0.05, 2.0)


def run(method: str, config: DistillConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    reward = sc.reward()
    student = with_adapter(f"cd-{ctx.run_id}", "student")
    # 1-2. the teacher side: the transfer set, held-out samples, KL before (from memory when an earlier run
    # computed it with the same teacher settings: engine/run_memo.py)
    side, reused = host.memo.get_or_compute(teacher_side_key(method, config, ctx),
                                            lambda: teacher_side(method, config, ctx, reward))
    progress(0.29, "the teacher side from memory: an earlier run had these teacher settings" if reused else
             "held-out: KL before", step=0, points=side.base_points)

    # 3. train the adapter (seeded LoRA init)
    torch.manual_seed(config.seed)
    host.add_lora(student.adapter, lora_config(config.lora_rank, config.lora_alpha, config.lora_targets))
    with host.removed_on_failure(student.adapter):
        _train(method, config, ctx, student, side.train, side.teacher_tables, side.eval_tables, side.held_teacher,
               reward)
        # 4. after
        held_student = held_out(ctx, config, student, reward, span=(0.88, 0.96))
        progress(0.96, "held-out: KL after")
        kl_after = kl_to_cached(host, side.eval_tables, student, side.held_teacher.inputs,
                                side.held_teacher.token_ids)
        out = host.save_adapter(student.adapter, ctx.out_dir)
    held_base, held_teacher = side.held_base, side.held_teacher
    metrics = {"kl_before": side.kl_before, "kl_after": kl_after, "reward_base": held_base.mean_reward,
               "reward_teacher": held_teacher.mean_reward, "reward_student": held_student.mean_reward}
    noise = gain_within_noise(held_base.rewards, held_teacher.rewards)
    metrics["gain_kept"] = None if noise else gain_kept(metrics["reward_base"], metrics["reward_teacher"],
                                                        metrics["reward_student"])
    metrics["teacher_side"] = reuse_text(reused)
    if noise:
        metrics["warnings"] = [noise]
    artifact = Adapter(str(out), {"adapter_name": student.adapter, "source_prompt": sc.prompt,
                                  "source_demonstrations": len(sc.demonstrations), "method": method})
    samples = held_base.rows() + held_teacher.rows() + held_student.rows()
    return Result(metrics=metrics, artifact=artifact, samples=samples)


@dataclass(frozen=True)
class TeacherSide:
    """What a distillation computes before its student exists, the same whatever the student trains with:
    the transfer set D (and, for Eq. 9, the teacher's tables over it), the held-out teacher and base samples,
    the teacher's tables over its held-out samples (the KL's reference), the KL before and the curves' step-0
    points. Read-only: a later run may share it."""
    train: Scored
    teacher_tables: list[torch.Tensor] | None
    held_teacher: Scored
    held_base: Scored
    eval_tables: list[torch.Tensor]
    kl_before: float
    base_points: dict[str, float]


def teacher_side_key(method: str, config: DistillConfig, ctx: RunContext) -> tuple:
    """Everything the teacher side depends on besides the model and precision (`host.memo_key` adds those)."""
    return ctx.host.memo_key(EDGE, "teacher side", ctx.scenario.digest(), method == "kl",
                             config.n_train, config.teacher_samples, config.teacher_temperature,
                             config.max_new_tokens, config.seed, config.n_heldout, config.eval_samples,
                             config.eval_temperature)


def teacher_side(method: str, config: DistillConfig, ctx: RunContext, reward) -> TeacherSide:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    teacher = sc.prompt_policy("teacher")
    # 1. the transfer set D: teacher samples on train inputs
    train = sample_and_score(host, teacher, sc.train_inputs[:config.n_train or None], reward,
                             config.teacher_samples, config.max_new_tokens, config.teacher_temperature, config.seed,
                             on_batch=lambda i, k: progress(0.12 * i / k, "sampling the teacher on train inputs"))
    teacher_tables = None
    if method == "kl":
        progress(0.12, "teacher distributions on the transfer set")
        with host.autocast():   # training targets, kept in bf16: computed in the training forwards' precision
            teacher_tables = reply_logprobs(host, teacher, train.inputs, train.token_ids, dtype=torch.bfloat16)

    # 2. held-out: teacher and base samples; the teacher's samples are also the KL evaluation set
    held_teacher = held_out(ctx, config, teacher, reward, span=(0.15, 0.22))
    held_base = held_out(ctx, config, BASE, reward, span=(0.22, 0.29))
    progress(0.29, "held-out: KL before")
    eval_tables = reply_logprobs(host, teacher, held_teacher.inputs, held_teacher.token_ids)
    kl_before = kl_to_cached(host, eval_tables, BASE, held_teacher.inputs, held_teacher.token_ids)
    base_points = _live_eval(config, ctx, BASE, eval_tables, held_teacher, reward)
    return TeacherSide(train, teacher_tables, held_teacher, held_base, eval_tables, kl_before, base_points)


def gain_kept(r_base: float, r_teacher: float, r_student: float) -> float | None:
    """Fraction of the teacher's reward gain over the base that the student keeps."""
    gain = r_teacher - r_base
    return (r_student - r_base) / gain if abs(gain) > 1e-9 else None


def gain_within_noise(base_rewards: list[float], teacher_rewards: list[float], z: float = 2.0) -> str | None:
    """A warning when the prompt's reward gain over the base is within z standard errors of the mean paired
    difference (held-out samples are coupled: the k-th sample of an input under each policy, one seed), so
    that `gain_kept` would divide noise by noise; None when the gain stands out."""
    n = len(base_rewards)
    mean, se = mean_stderr([t - b for b, t in zip(base_rewards, teacher_rewards)])
    se = se if n > 1 else math.inf     # one sample: no error bar at all
    if abs(mean) > z * se:
        return None
    return (f"The prompt's reward gain over the base, {mean:+.3f}, is within the noise of these {n} held-out "
            f"samples (±{z * se:.3f}, {z:g} standard errors): gain_kept is not rated. More held-out inputs or "
            "samples (n_heldout, eval_samples) would tell.")


def _train(method, config, ctx, student: Policy, train, teacher_tables, eval_tables, held_teacher, reward):
    host = ctx.host
    batches = shuffled_batches(len(train.inputs), config.batch_size, random.Random(config.seed))
    host.model.train()

    def step(i):
        return _loss(method, host, student, train, teacher_tables, next(batches)), {}
    training.train(host.trainable_parameters(student.adapter), config.steps, config.lr, step, ctx.on_progress,
                   (0.30, 0.88), host.model, config.eval_every,
                   lambda: _live_eval(config, ctx, student, eval_tables, held_teacher, reward))


def shuffled_batches(n: int, batch_size: int, rng: random.Random):
    """Batches of indices into n items, endlessly: each pass over the items in a fresh random order."""
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            order += rng.sample(range(n), n)
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def _loss(method, host, student, train, teacher_tables, idx) -> torch.Tensor:
    xs = [train.inputs[i] for i in idx]
    ys = [train.token_ids[i] for i in idx]
    with host.autocast():
        logits, targets, mask = host.batch_logits(student, xs, ys, grad=True)
    if method == "kl":
        teacher_logp = pad_tables([teacher_tables[i] for i in idx], logits.shape[1])
        return context_distillation_kl_loss(teacher_logp, logits, mask)
    return imitation_loss(logits, targets, mask)


def _live_eval(config, ctx, policy: Policy, eval_tables, held_teacher, reward) -> dict[str, float]:
    """Cheap points for the live curves (the same slice at every step, base at step 0): KL to the teacher
    on 16 held-out replies, reward of one sample on each of 12 held-out inputs."""
    n = min(16, len(eval_tables))
    kl = kl_to_cached(ctx.host, eval_tables[:n], policy, held_teacher.inputs[:n], held_teacher.token_ids[:n])
    scored = held_out(ctx, config, policy, reward, seed_offset=7, n_inputs=12, n_samples=1)
    return {"kl_heldout": kl, "reward": scored.mean_reward}


# ---------- the methods of this edge ----------
_METRICS = ("kl_before", "kl_after", "reward_base", "reward_teacher", "reward_student")
QUICK = {"steps": 16, "n_train": 32, "teacher_samples": 1, "eval_every": 4, "n_heldout": 8, "eval_samples": 2}
# Eq. 9 in many small updates: the same 320 teacher replies as 40 steps of 8, in about the same time on 2 CPU
# cores, leave less of the held-out KL (session 34, sentiment: kl_after / kl_before 0.238 -> 0.188; README and
# bench/distill_sweep.py)
KL_DEFAULTS = {"lr": 1e-3, "batch_size": 2, "steps": 160, "eval_every": 40}
register(EDGE, "kl", title="Context distillation, full-distribution KL",
         equation="min_π E_{x,y~D} KL[π0(y|x,z) ‖ π(y|x)]   (Eq. 9)",
         config=DistillConfig, run=run, metrics=_METRICS, artifact="adapter", defaults=KL_DEFAULTS,
         quick=QUICK | {"steps": 64, "eval_every": 16})
register(EDGE, "imitation", title="Context distillation, imitation of teacher samples",
         equation="max_π E_{x~D, y~π0(y|x,z)} log π(y|x)   (Eq. 10)",
         config=DistillConfig, run=run, metrics=_METRICS, artifact="adapter",
         defaults={"lr": 1e-4},   # at 1e-3 Eq. 10 over-fits the few samples and KL gets worse
         quick=QUICK)
