"""parameter -> prompt: a prompt z whose prompted base imitates an adapter, π0(·|x,z) ≈ π*(·|x) (2406.16377 §5).

Goal (Eq. 11): π0(y|x,z) = π*(y|x) for all x, y. The transfer set D holds samples y ~ π*(·|x) on train inputs,
with π*'s full next-token tables, so the KL of any prompt to π* is one teacher-forced pass of π0(·|x,z).
  soft      n learned virtual-token embeddings in the system turn (served by engine/model_host.py), trained
            on D with Eq. 12 (`kl`: KL[π* ‖ π0(·|x,z)], the number reported; `reverse-kl`: Eq. 12 as printed,
            KL[π0(·|x,z) ‖ π*]) or Eq. 13 (`imitation`: max log π0(y|x,z) of π*'s sampled tokens)
  discrete  a readable z: candidates (the scenario's prompts, assets/prompts/behaviour_candidates.json,
            descriptions of π* that the model writes itself from π* vs π0 sample pairs, the nearest-token
            projection of a soft prompt) scored by KL[π* ‖ π0(·|x,z)] on D; then rounds of model rewrites
            and edits of the best few
Reports, on held-out inputs with y ~ π*: kl_before = KL(π* ‖ π0(·|x)), kl_after = KL(π* ‖ π0(·|x,z)), and the
reference reward of π*, π0 and π0 + z.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from dataclasses import dataclass
from typing import ClassVar

import torch

from engine import training
from engine.artifacts import ReadablePrompt, SoftPrompt
from engine.evaluation import (
    Scored,
    held_out,
    kl_to_cached,
    pad_tables,
    reply_logprobs,
    sample_and_score,
)
from engine.losses import imitation_loss, prompt_kl_loss
from engine.policies import BASE, NEUTRAL_SYSTEM, Policy, Prompt, prompted
from engine.prompt_search import (
    clean_prompt,
    propose_edits,
    propose_rewrites,
    trim_reply,
)
from engine.edges.prompt_to_parameter import shuffled_batches
from engine.references import resolve_policy, stored_artifact
from engine.config_pieces import Compute, HeldOut, like, opt
from engine.run_memo import reuse_text
from engine.run_types import Result, RunContext
from engine.settings import ASSETS_DIR
from engine.methods import register

EDGE = "parameter->prompt"
CANDIDATES_FILE = ASSETS_DIR / "prompts" / "behaviour_candidates.json"
DESCRIBER = Policy(system="You write short instructions (system prompts) for a chatbot.", label="describer")
DESCRIBE_TASK = ('Question: "{x}"\nReply A: "{a}"\nReply B: "{b}"\n'
                 "Write one instruction for a chatbot so that it answers like Reply A, not like Reply B. "
                 "Reply with the instruction only.")


@dataclass(frozen=True)
class FitConfig(HeldOut, Compute):
    REFERENCES: ClassVar[dict] = {"source_run": "adapter"}

    source_run: str = opt("", "π*: the id of a run that made an adapter (e.g. a context distillation run).")
    n_train: int = opt(0, "Use only the first N train inputs (0 = all).", 0, 10000)
    train_samples: int = opt(1, "Samples y ~ π*(·|x) per train input: the transfer set D.", 1, 16)
    sample_temperature: float = opt(1.0, "Sampling temperature of π* on train inputs.", 0.05, 2.0)
    n_heldout: int = like(HeldOut, "n_heldout", 16)
    eval_samples: int = opt(2, "Samples y ~ π* per held-out input for the KL (and of π0, π0 + z for rewards).",
                            1, 16)


@dataclass(frozen=True)
class SoftConfig(FitConfig):
    n_tokens: int = opt(8, "Virtual tokens in the soft prompt.", 1, 64)
    init_text: str = opt(NEUTRAL_SYSTEM, "Text whose token embeddings start the soft prompt (cycled to n_tokens).")
    objective: str = opt("kl", "kl: Eq. 12 as KL[π* ‖ π0(·|x,z)] (what is reported); reverse-kl: Eq. 12 as "
                               "printed, KL[π0(·|x,z) ‖ π*]; imitation: Eq. 13, log π0(y|x,z) of π*'s samples.",
                         choices=("kl", "reverse-kl", "imitation"))
    # many small steps: the same 192 replies as 24 steps of 8, in the same time on 2 CPU cores, reach a lower
    # held-out KL (session 34: 0.0299 -> 0.0237 from the 0.147 of π0; README, context distillation)
    steps: int = opt(96, "Optimizer steps on the soft prompt.", 1, 2000)
    batch_size: int = opt(2, "Replies of D per step.", 1, 64)
    lr: float = opt(0.02, "Adam learning rate (warm-up, cosine decay to 10%); embeddings have norm ≈3.", 1e-5, 1.0)
    eval_every: int = opt(32, "Steps between live held-out KL points (0 = only at the end).", 0, 2000)


@dataclass(frozen=True)
class DiscreteConfig(FitConfig):
    REFERENCES: ClassVar[dict] = {"source_run": "adapter", "soft_run": "soft_prompt"}

    n_train: int = opt(8, "Train inputs the candidates are scored on (0 = all).", 0, 10000)
    train_samples: int = opt(2, "Samples y ~ π*(·|x) per scoring input.", 1, 16)
    soft_run: str = opt("", "Optional: a soft-prompt run; its nearest-token projection joins the candidates.")
    scenario_prompts: bool = opt(True, "Score the scenario's own z and z− too (off: can the search find a prompt "
                                       "without knowing the one an adapter was distilled from?).")
    descriptions: int = opt(4, "Descriptions of π* the model writes from π* vs π0 sample pairs.", 0, 32)
    rounds: int = opt(2, "Rounds of improving the best: model rewrites and edits of the top prompts.", 0, 10)
    proposals: int = opt(6, "New prompts per round (half model rewrites, half edits).", 1, 64)
    keep_top: int = opt(3, "Parents per round: the best prompts so far.", 1, 16)
    rewrite_temperature: float = opt(0.8, "Sampling temperature of descriptions and rewrites.", 0.05, 2.0)
    rewrite_tokens: int = opt(48, "Longest description or rewrite the model writes, in tokens.", 8, 256)


@dataclass
class Target:
    """Samples y ~ π* with π*'s next-token tables over them: KL(π* ‖ q) for any q is one pass of q."""
    scored: Scored
    tables: list[torch.Tensor]   # (T_i, V) log π*(·|x, y<t) per reply

    def kl(self, host, q: Policy, fast: bool = False) -> float:
        """KL(π* ‖ q) per token; `fast` scores in the host's precision (a search's many scores), else float32
        (reported numbers)."""
        with host.autocast() if fast else contextlib.nullcontext():
            return kl_to_cached(host, self.tables, q, self.scored.inputs, self.scored.token_ids)


def run(method: str, config: FitConfig, ctx: RunContext) -> Result:
    return {"soft": run_soft, "discrete": run_discrete}[method](config, ctx)


def sample_target(ctx: RunContext, config: FitConfig, star: Policy, xs: list[str], n: int, temperature: float,
                  seed: int, span: tuple[float, float], stage: str, dtype=torch.float32) -> tuple[Target, bool]:
    """n samples of π* per input (scored with the reference reward) and π*'s tables over them — from memory
    when an earlier run drew the same ones (engine/run_memo.py; π* is a stored run's adapter, never changed).
    Returns (the target, whether it came from memory)."""
    key = ctx.host.memo_key(EDGE, "target", config.source_run, star, ctx.scenario.digest(), tuple(xs), n,
                            temperature, seed, config.max_new_tokens, str(dtype))
    target, reused = ctx.host.memo.get_or_compute(
        key, lambda: _sample_target(ctx, config, star, xs, n, temperature, seed, span, stage, dtype))
    if reused:
        ctx.on_progress(span[1], f"{stage}: from memory (an earlier run drew the same samples)")
    return target, reused


def _sample_target(ctx: RunContext, config: FitConfig, star: Policy, xs: list[str], n: int, temperature: float,
                   seed: int, span: tuple[float, float], stage: str, dtype) -> Target:
    lo, hi = span
    scored = sample_and_score(ctx.host, star, xs, ctx.scenario.reward(), n, config.max_new_tokens, temperature,
                              seed, on_batch=lambda i, k: ctx.on_progress(lo + (hi - lo) * 0.8 * i / k, stage))
    ctx.on_progress(lo + (hi - lo) * 0.8, f"{stage}: π* distributions")
    return Target(scored, reply_logprobs(ctx.host, star, scored.inputs, scored.token_ids, dtype=dtype))


def _star(config: FitConfig, ctx: RunContext) -> Policy:
    """π*, the source run's adapter (loaded in the host)."""
    return dataclasses.replace(resolve_policy(config.source_run, ctx, "source_run"), label="π*")


def _heldout(config: FitConfig, ctx: RunContext, star: Policy, span) -> tuple[Target, bool]:
    held_x = ctx.scenario.heldout_inputs[:config.n_heldout or None]
    return sample_target(ctx, config, star, held_x, config.eval_samples, config.eval_temperature, config.seed + 1, span,
                         "held-out: π* generations")


def _rewards(config: FitConfig, ctx: RunContext, policies: list[Policy]) -> list[Scored]:
    """Held-out samples of more policies, coupled to π*'s (same inputs and seed), for rewards and the table."""
    return [held_out(ctx, config, p, ctx.scenario.reward()) for p in policies]


# ---------- soft ----------
def run_soft(config: SoftConfig, ctx: RunContext) -> Result:
    host, progress = ctx.host, ctx.on_progress
    star = _star(config, ctx)
    train_x = ctx.scenario.train_inputs[:config.n_train or None]
    table_dtype = torch.bfloat16   # D's tables only feed the loss; bf16 halves their memory
    train, train_reused = sample_target(ctx, config, star, train_x, config.train_samples, config.sample_temperature,
                                        config.seed, (0.0, 0.2), "π* on train inputs (the transfer set D)",
                                        table_dtype)
    held, held_reused = _heldout(config, ctx, star, (0.2, 0.3))
    kl_before = held.kl(host, BASE)
    progress(0.3, "held-out: KL before", step=0, points={"kl_heldout": kl_before})
    soft = Policy(soft=f"soft-{ctx.run_id}", label="soft prompt")
    embeds = torch.nn.Parameter(init_embeddings(host, config.init_text, config.n_tokens))
    host.add_soft_prompt(soft.soft, embeds)
    with host.removed_on_failure(soft.soft):
        _train_soft(config, ctx, soft, embeds, train, held)
        embeds.requires_grad_(False)
        progress(0.85, "held-out: KL after")
        kl_after = held.kl(host, soft)
        projection = nearest_token_text(host, embeds)
        kl_projected = held.kl(host, prompted(projection)) if projection else None
        base_s, soft_s = _rewards(config, ctx, [BASE, soft])
        path = host.save_soft_prompt(soft.soft, ctx.out_dir / "soft_prompt.safetensors",
                                     {"init_text": config.init_text, "model": host.model_name})
    metrics = {"kl_before": kl_before, "kl_after": kl_after, "kl_projected": kl_projected,
               "reward_star": held.scored.mean_reward, "reward_base": base_s.mean_reward,
               "reward_prompt": soft_s.mean_reward, "teacher_side": reuse_text(train_reused, held_reused)}
    data = {"n_tokens": config.n_tokens, "init_text": config.init_text, "objective": config.objective,
            "nearest_tokens": projection, "source_run": config.source_run, "system": None}
    return Result(metrics=metrics, artifact=SoftPrompt(str(path), data),
                  samples=held.scored.rows() + base_s.rows() + soft_s.rows())


def init_embeddings(host, text: str, n: int) -> torch.Tensor:
    """(n, d) start of a soft prompt: the token embeddings of `text`, cycled or cut to n rows.

    With n = len(tokens of the neutral system text) the soft policy starts exactly at π0 (kl_before)."""
    ids = host.tok(text or NEUTRAL_SYSTEM, add_special_tokens=False)["input_ids"]
    ids = [ids[i % len(ids)] for i in range(n)]
    return host.model.get_input_embeddings().weight[ids].detach().float().clone()


def nearest_token_ids(embeds: torch.Tensor, table: torch.Tensor, banned: list[int]) -> list[int]:
    """The vocabulary token closest in cosine similarity to each soft-prompt vector.

    Args:
        embeds: (n, d) soft prompt; table: (V, d) input embeddings; banned: ids never chosen (special tokens).
    Returns:
        n token ids.
    """
    sim = torch.nn.functional.normalize(embeds.float(), dim=-1) @ torch.nn.functional.normalize(table.float(), dim=-1).T
    sim[:, banned] = -2.0   # (n, V); cosine is ≥ −1
    return sim.argmax(-1).tolist()


def nearest_token_text(host, embeds: torch.Tensor) -> str:
    table = host.model.get_input_embeddings().weight.detach()
    ids = nearest_token_ids(embeds.detach(), table, list(host.tok.all_special_ids))
    return host.tok.decode(ids, skip_special_tokens=True).strip()


OBJECTIVES = {   # (logits, targets, mask, π* log-probs or None) -> loss
    "kl": lambda logits, targets, mask, star: prompt_kl_loss(star, logits, mask),
    "reverse-kl": lambda logits, targets, mask, star: prompt_kl_loss(star, logits, mask, reverse=True),
    "imitation": lambda logits, targets, mask, star: imitation_loss(logits, targets, mask),
}


def _train_soft(config: SoftConfig, ctx: RunContext, soft: Policy, embeds: torch.nn.Parameter, train: Target,
                held: Target) -> None:
    """Only the soft prompt gets a gradient; the weights stay untouched."""
    host = ctx.host
    batches = shuffled_batches(len(train.tables), config.batch_size, random.Random(config.seed))
    n = min(16, len(held.tables))   # the same held-out slice every time: a cheap live curve

    def live_eval():
        return {"kl_heldout": kl_to_cached(host, held.tables[:n], soft, held.scored.inputs[:n],
                                           held.scored.token_ids[:n])}
    training.train([embeds], config.steps, config.lr, lambda i: (_soft_loss(config, host, soft, train, next(batches)), {}),
                   ctx.on_progress, (0.3, 0.85), host.model, config.eval_every, live_eval, optimizer=torch.optim.Adam)


def _soft_loss(config: SoftConfig, host, soft: Policy, train: Target, idx: list[int]) -> torch.Tensor:
    xs = [train.scored.inputs[i] for i in idx]
    ys = [train.scored.token_ids[i] for i in idx]
    with host.autocast():
        logits, targets, mask = host.batch_logits(soft, xs, ys, grad=True)
    star = None if config.objective == "imitation" else pad_tables([train.tables[i] for i in idx], logits.shape[1])
    return OBJECTIVES[config.objective](logits, targets, mask, star)


# ---------- discrete ----------
@dataclass
class Candidate:
    text: str
    origin: str        # "scenario prompt", "candidate list", "model description", "soft projection", ...
    round: int
    kl_train: float    # KL(π* ‖ π0(·|x,z)) on D: the search's score (lower is better)


def run_discrete(config: DiscreteConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    star = _star(config, ctx)
    xs = sc.train_inputs[:config.n_train or None]
    train, train_reused = sample_target(ctx, config, star, xs, config.train_samples, config.sample_temperature,
                                        config.seed, (0.0, 0.12), "π* on scoring inputs (the transfer set D)",
                                        torch.bfloat16)
    soft_policy, projection = _soft_run(config, ctx)
    seeds = seed_candidates(sc, config.scenario_prompts) + ([(projection, "soft projection")] if projection else [])
    seeds += describe_behaviour(host, star, train, config)
    pool: list[Candidate] = []
    _score_all(ctx, config, train, pool, seeds, 0, (0.15, 0.5))
    for r in range(1, config.rounds + 1):
        span = (0.5 + 0.3 * (r - 1) / config.rounds, 0.5 + 0.3 * r / config.rounds)
        _score_all(ctx, config, train, pool, _proposals(host, pool, train, config, r), r, span)
    best = min(pool, key=lambda c: c.kl_train)
    held, held_reused = _heldout(config, ctx, star, (0.8, 0.9))
    progress(0.9, "held-out: KL of none, the best prompt (and the soft prompt)")
    best_policy = prompted(best.text, "readable prompt")
    metrics = {"kl_before": held.kl(host, BASE), "kl_after": held.kl(host, best_policy),
               "kl_soft": held.kl(host, soft_policy) if soft_policy else None,
               "kl_train_best": best.kl_train, "n_candidates": len(pool)}
    base_s, best_s = _rewards(config, ctx, [BASE, best_policy])
    metrics |= {"reward_star": held.scored.mean_reward, "reward_base": base_s.mean_reward,
                "reward_prompt": best_s.mean_reward, "teacher_side": reuse_text(train_reused, held_reused)}
    ranked = sorted(pool, key=lambda c: c.kl_train)[:12]
    data = {"prompt_text": best.text, "origin": best.origin, "source_run": config.source_run,
            "candidates": [vars(c) for c in ranked]}
    return Result(metrics=metrics, artifact=ReadablePrompt(None, data),
                  samples=held.scored.rows() + base_s.rows() + best_s.rows())


def seed_candidates(scenario, with_scenario: bool = True) -> list[tuple[str, str]]:
    """The scenario's prompts (z and z−, unless left out) and the shipped list of behaviour prompts."""
    listed = [(z, "candidate list") for z in json.loads(CANDIDATES_FILE.read_text())["candidates"]]
    if not with_scenario:
        return listed
    own = [(scenario.prompt, "scenario prompt")]
    if scenario.negative_prompt:
        own.append((scenario.negative_prompt, "scenario negative prompt"))
    return own + listed


def _soft_run(config: DiscreteConfig, ctx: RunContext) -> tuple[Policy | None, str]:
    """The soft prompt of `soft_run` (loaded) and its nearest-token projection; (None, "") without one."""
    if not config.soft_run.strip():
        return None, ""
    from engine.references import artifact_policy_spec, policy_from_spec
    ref = config.soft_run.strip()
    artifact = stored_artifact(ctx.lookup, ref, "soft_run", ("soft_prompt",), ctx.host.model_name)
    policy = policy_from_spec(artifact_policy_spec(artifact, ref), ctx.host)
    return policy, nearest_token_text(ctx.host, ctx.host.soft_prompts[policy.soft]["embeds"])


def describe_behaviour(host, star: Policy, train: Target, config: DiscreteConfig) -> list[tuple[str, str]]:
    """Instructions the model writes itself from pairs (π* reply, π0 reply) to the same train input."""
    n = min(config.descriptions, len(train.scored.inputs))
    if n == 0:
        return []
    xs = train.scored.inputs[:n]
    base = host.generate(BASE, xs, max_new_tokens=config.max_new_tokens, temperature=config.eval_temperature,
                         seed=config.seed + 2)
    tasks = [DESCRIBE_TASK.format(x=x, a=trim_reply(a), b=trim_reply(b[0]))
             for x, a, b in zip(xs, train.scored.outputs[:n], base.texts)]
    s = host.generate(DESCRIBER, tasks, max_new_tokens=config.rewrite_tokens, temperature=config.rewrite_temperature,
                      seed=config.seed + 3)
    return [(z, "model description") for z in (clean_prompt(t[0]) for t in s.texts) if z]


def _proposals(host, pool: list[Candidate], train: Target, config: DiscreteConfig, r: int) -> list[tuple[str, str]]:
    """Half model rewrites of the best prompts (goal: reply like π*'s samples), half pure edits of them."""
    parents = [Prompt(c.text) for c in sorted(pool, key=lambda c: c.kl_train)[:config.keep_top]]
    n_rewrite = config.proposals // 2 + config.proposals % 2
    goal = f'reply in the style of this example: "{trim_reply(train.scored.outputs[r % len(train.scored.outputs)])}"'
    rewrites = propose_rewrites(host, parents, goal, n_rewrite, config.rewrite_temperature, config.rewrite_tokens,
                                config.seed + 10 * r)
    edits = propose_edits(parents, [Prompt(c.text) for c in pool], config.proposals - n_rewrite,
                          random.Random(config.seed + r))
    return [(z.text, f"{origin} (round {r})") for z, origin in rewrites + edits]


def _score_all(ctx: RunContext, config: DiscreteConfig, train: Target, pool: list[Candidate],
               proposals: list[tuple[str, str]], r: int, span: tuple[float, float]) -> None:
    """Score new prompts (duplicates skipped) by KL(π* ‖ π0(·|x,z)) on D; the best so far is a live curve."""
    seen, fresh = {c.text for c in pool}, []
    for z, origin in proposals:
        if z not in seen:
            seen.add(z)
            fresh.append((z, origin))
    lo, hi = span
    for i, (z, origin) in enumerate(fresh):
        pool.append(Candidate(z, origin, r, train.kl(ctx.host, prompted(z), fast=True)))
        best = min(c.kl_train for c in pool)
        ctx.on_progress(lo + (hi - lo) * (i + 1) / len(fresh), f"scoring prompt {len(pool)} ({origin})",
                        step=len(pool), points={"kl_candidate": pool[-1].kl_train, "kl_train_best": best})


# ---------- the methods of this edge ----------
register(EDGE, "soft", title="Soft prompt tuning: virtual tokens that imitate the adapter",
         equation="min_z E_{x, y~π*} KL[π*(y|x) ‖ π0(y|x,z)]   (Eq. 12; Eq. 13 as an option)",
         config=SoftConfig, run=run, artifact="soft_prompt",
         metrics=("kl_before", "kl_after", "kl_projected", "reward_star", "reward_base", "reward_prompt"),
         quick={"steps": 48, "n_train": 24, "eval_every": 16, "n_heldout": 8, "eval_samples": 1})
register(EDGE, "discrete", title="Readable prompt: search over candidates scored by KL to π*",
         equation="min_z E_{x, y~π*} KL[π*(y|x) ‖ π0(y|x,z)] over readable z   (Eq. 12)",
         config=DiscreteConfig, run=run, artifact="prompt",
         metrics=("kl_before", "kl_after", "kl_train_best", "reward_star", "reward_base", "reward_prompt"),
         quick={"n_train": 4, "rounds": 1, "proposals": 4, "train_samples": 1, "n_heldout": 8, "eval_samples": 1})
