"""prompt -> parameter: context distillation of a prompt z into a LoRA adapter (2406.16377 §4).

Goal (Eq. 8): π*(y|x) = π0(y|x,z). Two objectives over teacher samples y ~ π0(·|x,z) on train inputs:
  kl         Eq. 9  — full-distribution KL[π0(·|x,z,y<t) ‖ π(·|x,y<t)] at every reply token
  imitation  Eq. 10 — log-likelihood of the teacher's sampled tokens under the student
Reports, held-out: KL(π0(·|x,z)‖π) before (π = π0) and after (π = student), and the reference reward
of base, teacher and student.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from engine import training
from engine.evaluation import kl_to_cached, pad_tables, reply_logprobs, sample_and_score
from engine.lora import lora_config, parse_targets
from engine.losses import context_distillation_kl_loss, imitation_loss
from engine.policies import BASE, Policy, with_adapter
from engine.run_types import Result, RunContext, opt, precision_opt
from engine.methods import register

EDGE = "prompt->parameter"


@dataclass(frozen=True)
class DistillConfig:
    steps: int = opt(40, "Optimizer steps on the LoRA adapter.", 1, 2000)
    batch_size: int = opt(8, "Teacher samples per optimizer step.", 1, 64)
    lr: float = opt(1e-3, "AdamW learning rate (cosine decay to 10%).", 1e-6, 1e-1)
    lora_rank: int = opt(8, "LoRA rank r.", 1, 128)
    lora_alpha: float = opt(16.0, "LoRA scaling α (the update is scaled by α/r).", 0.1, 512)
    lora_targets: str = opt("attention", "Modules that get LoRA: attention (the model's attention projections, found in the model), mlp, or a comma list of module names such as q_proj,v_proj.")
    teacher_samples: int = opt(2, "Teacher samples y ~ π0(·|x,z) per train input.", 1, 32)
    teacher_temperature: float = opt(1.0, "Sampling temperature of the teacher's training samples.", 0.05, 2.0)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)
    n_train: int = opt(0, "Use only the first N train inputs (0 = all).", 0, 10000)
    n_heldout: int = opt(24, "Use only the first N held-out inputs (0 = all).", 0, 10000)
    eval_samples: int = opt(4, "Samples per held-out input for reward and KL.", 1, 64)
    eval_temperature: float = opt(0.7, "Sampling temperature of held-out generations.", 0.05, 2.0)
    eval_every: int = opt(10, "Steps between live held-out KL / reward points (0 = only at the end).", 0, 2000)
    precision: str = precision_opt()
    seed: int = opt(0, "Seed for sampling, batching and LoRA init.", 0, 2**31 - 1)

    def validate(self) -> None:
        parse_targets(self.lora_targets)


METHODS = {
    "kl": {"lr": 1e-3},          # Eq. 9
    "imitation": {"lr": 1e-4},   # Eq. 10: at 1e-3 it over-fits the few samples and KL gets worse
}


def run(method: str, config: DistillConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    reward = sc.reward()
    train_x = sc.train_inputs[:config.n_train or None]
    held_x = sc.heldout_inputs[:config.n_heldout or None]
    teacher = sc.prompt_policy("teacher")
    student = with_adapter(f"cd-{ctx.run_id}", "student")
    sample = lambda policy, xs, n, temp, seed, lo, hi, stage: sample_and_score(
        host, policy, xs, reward, n, config.max_new_tokens, temp, seed,
        on_batch=lambda i, k: progress(lo + (hi - lo) * i / k, stage))

    # 1. the transfer set D: teacher samples on train inputs
    train = sample(teacher, train_x, config.teacher_samples, config.teacher_temperature, config.seed,
                   0.0, 0.12, "sampling the teacher on train inputs")
    teacher_tables = None
    if method == "kl":
        progress(0.12, "teacher distributions on the transfer set")
        teacher_tables = reply_logprobs(host, teacher, train.inputs, train.token_ids, dtype=torch.bfloat16)

    # 2. held-out: teacher and base samples; the teacher's samples are also the KL evaluation set
    held_teacher = sample(teacher, held_x, config.eval_samples, config.eval_temperature, config.seed + 1,
                          0.15, 0.22, "held-out: teacher generations")
    held_base = sample(BASE, held_x, config.eval_samples, config.eval_temperature, config.seed + 1,
                       0.22, 0.29, "held-out: base generations")
    progress(0.29, "held-out: KL before")
    eval_tables = reply_logprobs(host, teacher, held_teacher.inputs, held_teacher.token_ids)
    kl_before = kl_to_cached(host, eval_tables, BASE, held_teacher.inputs, held_teacher.token_ids)
    progress(0.29, "held-out: KL before", step=0,
             points=_live_eval(config, host, BASE, eval_tables, held_teacher, reward))

    # 3. train the adapter (seeded LoRA init)
    torch.manual_seed(config.seed)
    host.add_lora(student.adapter, lora_config(config.lora_rank, config.lora_alpha, config.lora_targets))
    try:
        _train(method, config, ctx, student, train, teacher_tables, eval_tables, held_teacher, reward)
        # 4. after
        held_student = sample(student, held_x, config.eval_samples, config.eval_temperature, config.seed + 1,
                              0.88, 0.96, "held-out: student generations")
        progress(0.96, "held-out: KL after")
        kl_after = kl_to_cached(host, eval_tables, student, held_teacher.inputs, held_teacher.token_ids)
        out = host.save_adapter(student.adapter, ctx.out_dir)
    except BaseException:
        host.delete_adapter(student.adapter)
        raise
    metrics = {"kl_before": kl_before, "kl_after": kl_after, "reward_base": held_base.mean_reward,
               "reward_teacher": held_teacher.mean_reward, "reward_student": held_student.mean_reward}
    metrics["gain_kept"] = gain_kept(metrics["reward_base"], metrics["reward_teacher"], metrics["reward_student"])
    artifact = {"kind": "adapter", "vertex": "parameter", "path": str(out),
                "data": {"adapter_name": student.adapter, "source_prompt": sc.prompt,
                         "source_demonstrations": len(sc.demonstrations), "method": method}}
    samples = held_base.rows() + held_teacher.rows() + held_student.rows()
    return Result(metrics=metrics, artifact=artifact, samples=samples)


def gain_kept(r_base: float, r_teacher: float, r_student: float) -> float | None:
    """Fraction of the teacher's reward gain over the base that the student keeps."""
    gain = r_teacher - r_base
    return (r_student - r_base) / gain if abs(gain) > 1e-9 else None


def _train(method, config, ctx, student: Policy, train, teacher_tables, eval_tables, held_teacher, reward):
    host = ctx.host
    batches = shuffled_batches(len(train.inputs), config.batch_size, random.Random(config.seed))
    host.model.train()

    def step(i):
        return _loss(method, host, student, train, teacher_tables, next(batches)), {}
    training.train(host.trainable_parameters(student.adapter), config.steps, config.lr, step, ctx.on_progress,
                   (0.30, 0.88), host.model, config.eval_every,
                   lambda: _live_eval(config, host, student, eval_tables, held_teacher, reward))


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


def _live_eval(config, host, policy: Policy, eval_tables, held_teacher, reward) -> dict[str, float]:
    """Cheap points for the live curves (the same slice at every step, base at step 0): KL to the teacher
    on 16 held-out replies, reward of one sample on each of 12 held-out inputs."""
    n = min(16, len(eval_tables))
    kl = kl_to_cached(host, eval_tables[:n], policy, held_teacher.inputs[:n], held_teacher.token_ids[:n])
    xs = list(dict.fromkeys(held_teacher.inputs))[:12]
    scored = sample_and_score(host, policy, xs, reward, 1, config.max_new_tokens, config.eval_temperature,
                              config.seed + 7)
    return {"kl_heldout": kl, "reward": scored.mean_reward}


# ---------- the methods of this edge ----------
_METRICS = ("kl_before", "kl_after", "reward_base", "reward_teacher", "reward_student")
register(EDGE, "kl", title="Context distillation, full-distribution KL",
         equation="min_π E_{x,y~D} KL[π0(y|x,z) ‖ π(y|x)]   (Eq. 9)",
         config=DistillConfig, run=run, metrics=_METRICS, artifact="adapter", defaults=METHODS["kl"])
register(EDGE, "imitation", title="Context distillation, imitation of teacher samples",
         equation="max_π E_{x~D, y~π0(y|x,z)} log π(y|x)   (Eq. 10)",
         config=DistillConfig, run=run, metrics=_METRICS, artifact="adapter", defaults=METHODS["imitation"])
