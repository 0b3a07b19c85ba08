"""reward -> parameter: train a LoRA adapter to maximize a reward while staying close to π0 (2406.16377 §2).

Objective (Eq. 1): max_π E_{x, y~π}[r(x,y)] − β KL[π(y|x) ‖ π0(y|x)]. Two methods, both on-policy:
  rloo  k samples per input; the KL-shaped reward r − β log(π/π0) (Eq. 1's sample estimate) with a
        leave-one-out baseline; REINFORCE on the adapter.
  dpo   k samples per input, scored; DPO on the best-vs-worst pair of each input, refreshed every step
        (online). π0 is the same weights with the adapter switched off — never a second model copy.
The reward is the scenario's reference reward or any reward artifact in storage (`reward` = a run id).
The adapter starts fresh (seeded) or from another run's adapter (`init` = a run id, e.g. context
distillation of a prompt that earns the reward: the triangle's way around a reward too sparse for RL).
With `prompt` set (a prompt reference, e.g. a prompt search's run) the policy answers under that prompt z while
it trains and after: π_θ(y | z, x), Sun et al.'s "optimized prompt + RL" (ψ and θ jointly). Its reference in
the KL penalty is then where training starts, π0(y | z, x) (as RLHF regularizes to its SFT model); the reported
`kl_to_base` is always to π0 with the neutral system message.
Reports, held-out: reward before (π0) and after (the adapter), exact KL(π ‖ π0) per token; per step the
train reward, loss, the reward signal (the share of groups whose rewards differ), and every `eval_every`
steps held-out reward and KL to π0 (the reward-vs-KL curve). A run whose signal stays low says so
(metrics["warnings"]) with what to try.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from engine import training
from engine.artifacts import Adapter
from engine.evaluation import Scored, held_out, kl_to_cached, reply_logprobs, sample_and_score
from engine.kl import sequence_logprob
from engine.lora import lora_config
from engine.policies import BASE, Policy
from engine.edges.prompt_to_parameter import shuffled_batches
from engine.errors import LabInputError
from engine.references import resolve_policy, resolve_reward, stored_artifact
from engine.rl_objectives import (
    dpo_loss,
    kl_shaped_reward,
    policy_gradient_loss,
    reward_signal,
    rloo_advantages,
)
from engine.config_pieces import Compute, HeldOut, LoRA, Training, like, opt
from engine.run_types import Result, RunContext
from engine.methods import register

EDGE = "reward->parameter"
MICRO_BATCH = 16   # sequences per forward/backward (gradients accumulate over the step's samples)


@dataclass(frozen=True)
class RLConfig(Training, LoRA, HeldOut, Compute):
    REFERENCES: ClassVar[dict] = {"reward": "reward", "init": "initial_adapter", "prompt": "prompt"}

    reward: str = opt("", "Reward to maximize: empty = the scenario's reference reward, or the id of a run "
                          "that made a reward (prompt->reward, parameter->reward, ...).")
    init: str = opt("", "Warm start: the id of a run that made an adapter (e.g. context distillation of a "
                        "prompt that earns the reward); training starts from its weights, rank, α and targets "
                        "(the lora_* settings are then unused). KL is still measured to π0. Empty = a fresh "
                        "LoRA.")
    prompt: str = opt("", "The prompt z the policy answers under while it trains and after (ψ and θ jointly): "
                          "empty = the neutral system message; `prompt`, `instruction`, `few-shot`, "
                          "`scenario:NAME` or the id of a run that made a prompt (e.g. a prompt search).")
    k: int = opt(4, "Samples per input (the RLOO group, or the pool DPO picks best and worst from).", 2, 16)
    beta: float = opt(0.05, "KL strength β of Eq. 1 (rloo: reward − β log π/π0; dpo: DPO's β).", 0.0, 10.0)
    temperature: float = opt(1.0, "Sampling temperature of the training samples.", 0.05, 2.0)
    steps: int = opt(20, "Optimizer steps; each samples fresh replies from the current adapter.", 1, 2000)
    batch_size: int = opt(8, "Train inputs per step.", 1, 64)
    lr: float = like(Training, "lr", 2e-3)
    eval_every: int = like(Training, "eval_every", 5)


def run(method: str, config: RLConfig, ctx: RunContext, loss: Callable | None = None) -> Result:
    """Train a LoRA adapter on the reward with `loss(config, host, policy, batch) -> (loss, points)` (default:
    this edge's own LOSS[method]); another file's method passes its own loss (reward_to_parameter_simpo.py)."""
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    reward = resolve_reward(config.reward, ctx)
    start = start_policy(config, ctx)
    policy = dataclasses.replace(start, adapter=f"rl-{ctx.run_id}", label="trained")
    held_base = held_out(ctx, config, start, reward, span=(0.0, 0.08))
    progress(0.08, f"held-out: {start.label}", step=0, points=_live_eval(config, ctx, start, reward))
    start_adapter(config, ctx, policy.adapter)
    with host.removed_on_failure(policy.adapter):
        signals, train_rewards = _train(loss or LOSS[method], config, ctx, policy, reward)
        held_after = held_out(ctx, config, policy, reward, span=(0.9, 0.96))
        progress(0.96, "held-out: KL to π0")
        kl, kl_seq = kl_to_base(host, policy, held_after)
        out = host.save_adapter(policy.adapter, ctx.out_dir)
    metrics = {"reward_before": held_base.mean_reward, "reward_after": held_after.mean_reward, "kl_to_base": kl,
               "kl_to_base_seq": kl_seq}
    metrics |= _reference_metrics(config, sc, held_base, held_after)
    metrics["reward_signal"] = sum(signals) / len(signals)
    warning = low_signal_warning(signals, config.k, train_rewards=train_rewards)
    if warning:
        metrics["warnings"] = [warning]
    artifact = Adapter(str(out), {"adapter_name": policy.adapter, "method": method,
                                  "reward": config.reward or "reference", "beta": config.beta,
                                  "init": config.init.strip() or None, "prompt": config.prompt.strip() or None}
                        | prompt_data(policy))
    return Result(metrics=metrics, artifact=artifact, samples=held_base.rows() + held_after.rows())


def kl_to_base(host, policy: Policy, samples: Scored) -> tuple[float, float]:
    """Exact KL(π ‖ π0) teacher-forced on π's own samples: (per reply token, per reply).

    Per reply (the sum over its tokens) is the unit of best-of-N's bound log N − (N−1)/N."""
    tables = reply_logprobs(host, policy, samples.inputs, samples.token_ids)
    per_token = kl_to_cached(host, tables, BASE, samples.inputs, samples.token_ids)
    n_tokens = sum(len(t) for t in samples.token_ids)
    return per_token, per_token * n_tokens / len(samples.token_ids)


def _reference_metrics(config, sc, before: Scored, after: Scored) -> dict:
    """When training on a derived reward, also report the scenario's reference reward (reward hacking shows)."""
    if not config.reward.strip():
        return {}
    ref = sc.reward()
    mean = lambda s: sum(ref(s.inputs, s.outputs)) / len(s.outputs)
    return {"reference_reward_before": mean(before), "reference_reward_after": mean(after)}


# ---------- the starting policy, the adapter, the signal ----------
def start_policy(config: RLConfig, ctx: RunContext) -> Policy:
    """Where training starts, and the reference of its KL penalty: π0, or π0 + z when `prompt` is set."""
    if not config.prompt.strip() or config.prompt.strip() == "base":
        return BASE
    z = resolve_policy(config.prompt, ctx, "prompt")
    if z.adapter or z.soft:
        raise LabInputError(f"prompt: {config.prompt.strip()} is not a readable prompt (it needs an adapter or a "
                            "soft prompt); pick a prompt search or a built-in prompt")
    return Policy(system=z.system, turns=z.turns, label="π0 + prompt")


def untrained(policy: Policy) -> Policy:
    """The policy with its adapter switched off: π0 under the same prompt (π0 itself when there is none)."""
    return BASE if not (policy.system or policy.turns) else dataclasses.replace(policy, adapter=None, label="start")


def prompt_data(policy: Policy) -> dict:
    """What an adapter artifact records of the prompt its policy answers under (resolved with it)."""
    if not (policy.system or policy.turns):
        return {}
    return {"system": policy.system, "turns": [list(t) for t in policy.turns]}


def start_adapter(config: RLConfig, ctx: RunContext, name: str) -> None:
    """The adapter RL trains, under `name`: a fresh seeded LoRA, or a trainable copy of run `init`'s adapter
    (the source run's files are not touched: the result is saved in this run's own directory)."""
    if config.init.strip():
        source = stored_artifact(ctx.lookup, config.init.strip(), "init", ("adapter",), ctx.host.model_name)
        ctx.host.load_adapter(name, source["path"], trainable=True)
        return
    torch.manual_seed(config.seed)
    ctx.host.add_lora(name, lora_config(config.lora_rank, config.lora_alpha, config.lora_targets))


LOW_SIGNAL = 0.25   # a step where fewer groups than this have unequal rewards learns (almost) nothing
PATIENCE = 3        # consecutive such steps (or all of a shorter run) before the run says so


def low_signal_steps(signals: list[float], threshold: float = LOW_SIGNAL) -> int:
    """The longest run of consecutive steps whose reward signal was under `threshold`."""
    longest = current = 0
    for s in signals:
        current = current + 1 if s < threshold else 0
        longest = max(longest, current)
    return longest


def low_signal_warning(signals: list[float], k: int, threshold: float = LOW_SIGNAL,
                       patience: int = PATIENCE, train_rewards: list[float] | None = None) -> str | None:
    """A plain warning when the reward signal stayed low for `patience` steps in a row; None otherwise.

    Ties have two causes, told apart by the train reward (one mean per step): a reward no reply earns (the
    signal is low from the start) or a reward the policy has saturated (the low steps come once the train reward
    has climbed to its top: every reply scores the same maximum, often by exploiting the reward)."""
    if not signals or low_signal_steps(signals, threshold) < min(patience, len(signals)):
        return None
    n_low = sum(s < threshold for s in signals)
    if train_rewards and _saturated(signals, train_rewards, threshold):
        top = max(train_rewards)
        return (f"The reward saturated: from step {_first_low_run(signals, threshold) + 1} on, every reply of "
                f"most inputs scored the same, the top train reward ({top:.4g}, up from {train_rewards[0]:.4g}), "
                f"so the last steps had nothing left to learn from it ({n_low} of {len(signals)} steps under "
                f"{threshold:.0%} of groups with different rewards). A reward that can be maxed out is often "
                "being exploited: read the generations and the KL to π0, and consider a larger β or a bounded "
                "reward.")
    return (f"Little reward signal: in {n_low} of {len(signals)} steps fewer than {threshold:.0%} of the groups "
            f"of k={k} replies to one input had different rewards (mean {sum(signals) / len(signals):.0%}). "
            "Where every reply of an input scores the same, RLOO's leave-one-out advantage is zero and DPO has "
            "no pair, so the adapter learns (almost) nothing from the reward. Go around through another vertex: "
            "warm-start from a context-distillation adapter of a prompt that earns the reward (init=RUN_ID), "
            "or use best-of-N with this reward (it needs no signal to train); a larger k or temperature helps "
            "a little.")


def _first_low_run(signals: list[float], threshold: float, patience: int = PATIENCE) -> int:
    """The step index where the first run of `patience` low-signal steps starts."""
    for i in range(len(signals)):
        if all(s < threshold for s in signals[i:i + patience]):
            return i
    return 0


def _saturated(signals: list[float], train_rewards: list[float], threshold: float) -> bool:
    """The low-signal steps came after the train reward had risen to (near) its top, not from the start."""
    start = _first_low_run(signals, threshold)
    top, first = max(train_rewards), train_rewards[0]
    return start > 0 and top > first and min(train_rewards[start:]) >= first + 0.9 * (top - first)


# ---------- training ----------
def _train(loss_fn: Callable, config: RLConfig, ctx: RunContext, policy: Policy, reward,
           span: tuple[float, float] = (0.1, 0.9), first_step: int = 0) -> tuple[list[float], list[float]]:
    """On-policy: every step samples k replies per input from the current policy, then takes one update.
    Returns each step's reward signal and mean train reward. `first_step` numbers the steps of a later round
    of training (adversarial imitation alternates rounds) after the earlier ones, on the curves and seeds."""
    host = ctx.host
    train_x = ctx.scenario.train_inputs[:config.n_train or None]
    batches = shuffled_batches(len(train_x), config.batch_size, random.Random(config.seed))
    signals: list[float] = []
    train_rewards: list[float] = []

    def step(i):
        xs = [train_x[j] for j in next(batches)]
        host.model.eval()   # sampling (and mixed-adapter batches) refuse training mode
        batch = sample_and_score(host, policy, xs, reward, config.k, config.max_new_tokens, config.temperature,
                                 seed=config.seed * 100003 + first_step + i + 17)
        signals.append(reward_signal(batch.rewards, config.k))
        train_rewards.append(batch.mean_reward)
        loss, points = loss_fn(config, host, policy, batch)
        return loss, points | {"train_reward": batch.mean_reward, "signal": signals[-1]}

    def note() -> str:
        low = low_signal_steps(signals) >= PATIENCE
        return " · little reward signal: every reply of most inputs scores the same" if low else ""
    training.train(host.trainable_parameters(policy.adapter), config.steps, config.lr, step, ctx.on_progress,
                   span, host.model, config.eval_every,
                   lambda: _live_eval(config, ctx, policy, reward), note=note, first_step=first_step)
    return signals, train_rewards


def sequence_logps(host, policy: Policy, xs: list[str], ys: list[list[int]], grad: bool) -> torch.Tensor:
    """(N,) log π(y|x) summed over reply tokens, in micro-batches."""
    out = []
    for b in range(0, len(xs), MICRO_BATCH):
        with host.autocast():
            logits, targets, mask = host.batch_logits(policy, xs[b:b + MICRO_BATCH], ys[b:b + MICRO_BATCH], grad=grad)
        out.append(sequence_logprob(logits, targets, mask))
    return torch.cat(out)


def _rloo_loss(config, host, policy, batch: Scored) -> tuple[torch.Tensor, dict]:
    """Eq. 1 with the RLOO baseline: the policy-gradient loss on KL-shaped rewards."""
    r = torch.tensor(batch.rewards, device=host.device)
    with torch.no_grad():
        logp_ref = sequence_logps(host, untrained(policy), batch.inputs, batch.token_ids, grad=False)
    host.model.train()
    logp = sequence_logps(host, policy, batch.inputs, batch.token_ids, grad=True)
    shaped = kl_shaped_reward(r, logp.detach(), logp_ref, config.beta)        # (B*k,)
    adv = rloo_advantages(shaped.view(-1, config.k)).flatten()
    loss = policy_gradient_loss(adv, logp)
    n_tokens = sum(len(t) for t in batch.token_ids)
    return loss, {"kl_sample": float((logp.detach() - logp_ref).sum()) / n_tokens}


def _dpo_loss(config, host, policy, batch: Scored) -> tuple[torch.Tensor | None, dict]:
    """Online DPO on the best and worst reply of each group of k (no loss when every group is tied)."""
    pairs = best_worst_pairs(batch.rewards, config.k)
    if not pairs:   # every group tied: nothing to learn from this batch
        return None, {"pairs": 0.0}
    idx = [i for pair in pairs for i in pair]
    xs, ys = [batch.inputs[i] for i in idx], [batch.token_ids[i] for i in idx]
    with torch.no_grad():
        ref = sequence_logps(host, untrained(policy), xs, ys, grad=False)
    host.model.train()
    logp = sequence_logps(host, policy, xs, ys, grad=True)
    loss = dpo_loss(logp[0::2], logp[1::2], ref[0::2], ref[1::2], config.beta)
    return loss, {"pairs": float(len(pairs))}


def best_worst_pairs(rewards: list[float], k: int) -> list[tuple[int, int]]:
    """(chosen, rejected) flat indices: the best and worst of each group of k samples; tied groups skipped."""
    pairs = []
    for g in range(len(rewards) // k):
        group = range(g * k, (g + 1) * k)
        best, worst = max(group, key=lambda i: rewards[i]), min(group, key=lambda i: rewards[i])
        if rewards[best] > rewards[worst]:
            pairs.append((best, worst))
    return pairs


LOSS = {"rloo": _rloo_loss, "dpo": _dpo_loss}


def _live_eval(config, ctx, policy: Policy, reward) -> dict[str, float]:
    """Cheap points for the live curves, on the same slice every time: 12 held-out inputs × 2 samples."""
    s = held_out(ctx, config, policy, reward, seed_offset=7, n_inputs=12, n_samples=2)
    kl, kl_seq = (0.0, 0.0) if policy == BASE else kl_to_base(ctx.host, policy, s)
    return {"reward": s.mean_reward, "kl_to_base": kl, "kl_to_base_seq": kl_seq}


# ---------- the methods of this edge ----------
_METRICS = ("reward_before", "reward_after", "kl_to_base")
# every RL method's quick preset: few short replies per step learn only at a high lr (RLOO on sentiment, 2 cores of
# an AVX2 CPU: 8 steps at 2e-3 and 40 tokens 0.654 → 0.595 in 283 s; 10 steps at 6e-3 and 24 tokens 0.508 → 0.854 in
# 185 s, KL 0.58 nats/token: it moves fast and far — the defaults are the careful run)
QUICK = {"steps": 10, "batch_size": 4, "lr": 6e-3, "max_new_tokens": 24, "n_heldout": 8, "eval_samples": 2}
register(EDGE, "rloo", title="KL-regularized policy gradient (RLOO)",
         equation="max_π E_{x, y~π}[r(x,y)] − β KL[π(y|x) ‖ π0(y|x)]   (Eq. 1)",
         config=RLConfig, run=run, metrics=_METRICS, artifact="adapter", defaults={"beta": 0.05},
         quick=QUICK)
register(EDGE, "dpo", title="Online DPO on best-vs-worst samples",
         equation="min −log σ(β[log π/π0 (y_best) − log π/π0 (y_worst)])   (Eq. 1's implicit form)",
         config=RLConfig, run=run, metrics=_METRICS, artifact="adapter",
         defaults={"beta": 0.1},   # lr 2e-3 too: Adam steps ~lr whatever the loss scale; 5e-4 gained only +0.08
         quick=QUICK)
