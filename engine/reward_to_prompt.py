"""reward -> prompt: a prompt that steers π0 toward high reward (2406.16377 §7).

Two methods; the reward is the scenario's reference reward or any reward artifact (`reward` = a run id):
  search       Eq. 16 — max_z E_{x~D, y~π0(·|x,z)}[r(x,y)] over readable prompts. Seeds (the scenario's z,
               a candidate list in assets/prompts/, the user's) are scored by their mean reward on train
               inputs; each iteration the best few are rewritten by the model itself and by edit operators,
               and the new prompts scored, until the budget of model calls is spent. Every candidate is
               sampled with the same seed (coupled Gumbel noise), so their differences are measured with
               little noise; the finalists are re-scored on other train inputs before the pick.
  conditioned  Eq. 17 — samples y ~ π0(·|x) are scored and binned into k levels; a LoRA adapter learns y
               from (z(s), x) with z(s) a readable control prompt; at test time z(s) asks for level s.
Reports, held-out: search — reward of no prompt, the seed prompt and the best prompt; conditioned — the
achieved reward at each level and its Spearman correlation with the level.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from engine.errors import LabInputError
from engine.evaluation import Scored, sample_and_score
from engine.lora import lora_config, parse_targets
from engine.losses import imitation_loss
from engine.policies import BASE, Policy, prompted
from engine.prompt_to_parameter import lr_at
from engine.prompt_search import (Candidate, add_demonstration, calls_per_candidate, n_demonstrations,
                                  per_input_means, pick_best, propose_edits, propose_rewrites, top_candidates)
from engine.references import resolve_reward
from engine.reward_conditioning import (DEFAULT_FORMAT, check_format, control_prompt, control_reward,
                                        level_batches, level_of, level_thresholds, quantile_levels)
from engine.rewards import spearman
from engine.run_types import Result, RunContext, opt
from engine.settings import ASSETS_DIR

EDGE = "reward->prompt"
PROMPTS_DIR = ASSETS_DIR / "prompts"
MAX_DEMONSTRATIONS = 3
SEPARATOR = "|"   # between typed seed prompts: --set seed_prompts="Be kind. | Be warm."


@dataclass(frozen=True)
class SearchConfig:
    REFERENCES: ClassVar[dict] = {"reward": "reward"}

    reward: str = opt("", "Reward to maximize: empty = the scenario's reference reward, or the id of a run "
                          "that made a reward (prompt->reward, ...).")
    seed_prompts: str = opt("", "Your own seed prompts, separated by '|' (searched beside the scenario's "
                                "prompt and the candidate list).")
    candidates_file: str = opt("", "Text file of seed prompts, one per line ('#' starts a comment). Empty = "
                                   "assets/prompts/<scenario>.txt, else assets/prompts/generic.txt.")
    budget: int = opt(600, "Model calls the search may spend: every reply sampled to score a prompt "
                           "(search_inputs × search_samples each) and every rewrite the model writes.", 1, 100000)
    search_inputs: int = opt(12, "Train inputs every candidate is scored on (the same ones for all).", 1, 1000)
    search_samples: int = opt(2, "Samples per input when scoring a candidate.", 1, 16)
    beam: int = opt(4, "Best candidates kept as parents of each iteration's proposals.", 1, 32)
    rewrites: int = opt(2, "Rewrites of the parents the model writes per iteration.", 0, 32)
    edits: int = opt(2, "Edit-operator proposals (drop, swap, repeat, splice sentences) per iteration.", 0, 32)
    demonstrations: int = opt(1, "Proposals per iteration that append a parent's best-scoring reply to it as a "
                                 "worked example (a ChatML turn in z; at most 3 per prompt).", 0, 8)
    rewrite_temperature: float = opt(0.9, "Sampling temperature of the model's rewrites.", 0.05, 2.0)
    finalists: int = opt(3, "Best candidates re-scored, with the seed, on the other train inputs (1 sample "
                            "each) before the pick; guards against a lucky score. 0 = search score only.", 0, 16)
    margin: float = opt(1.0, "The best finalist replaces the seed only if it beats it by more than this many "
                             "standard errors of their paired per-input difference.", 0.0, 5.0)
    n_heldout: int = opt(0, "Use only the first N held-out inputs (0 = all).", 0, 10000)
    eval_samples: int = opt(2, "Samples per held-out input for each reported reward.", 1, 64)
    eval_temperature: float = opt(0.7, "Sampling temperature of scored generations (search and held-out).",
                                  0.05, 2.0)
    max_new_tokens: int = opt(32, "Longest reply sampled, in tokens.", 4, 256)
    seed: int = opt(0, "Seed for sampling and proposals.", 0, 2**31 - 1)

    def validate(self) -> None:
        cost = calls_per_candidate(self.search_inputs, self.search_samples)
        if self.budget < cost:
            raise LabInputError(f"budget: {self.budget} model calls cannot score one prompt (search_inputs × "
                                f"search_samples = {cost}); raise budget to at least {cost}")
        if self.candidates_file.strip():
            read_candidates(self.candidates_file.strip())


@dataclass(frozen=True)
class ConditionedConfig:
    REFERENCES: ClassVar[dict] = {"reward": "reward"}

    reward: str = opt("", "Reward to condition on: empty = the scenario's reference reward, or the id of a "
                          "run that made a reward.")
    levels: int = opt(4, "Reward levels k the training samples are binned into (equal counts).", 2, 10)
    control_format: str = opt(DEFAULT_FORMAT, "The control prompt z(s), given as the system message; "
                                              "{level} and {levels} are filled in.")
    data_samples: int = opt(4, "Samples y ~ π0(·|x) per train input, scored and binned.", 1, 32)
    data_temperature: float = opt(1.0, "Sampling temperature of the training samples (higher = wider "
                                       "spread of rewards).", 0.05, 2.0)
    steps: int = opt(64, "Optimizer steps on the LoRA adapter.", 1, 2000)
    batch_size: int = opt(8, "Samples per step (each batch holds one level).", 1, 64)
    lr: float = opt(1e-3, "AdamW learning rate (cosine decay to 10%).", 1e-6, 1e-1)
    lora_rank: int = opt(8, "LoRA rank r.", 1, 128)
    lora_alpha: float = opt(16.0, "LoRA scaling α (the update is scaled by α/r).", 0.1, 512)
    lora_targets: str = opt("q_proj,k_proj,v_proj,o_proj", "Comma list of modules that get LoRA.")
    bf16: bool = opt(True, "bf16 autocast for sampling and training forwards.")
    n_train: int = opt(0, "Use only the first N train inputs (0 = all).", 0, 10000)
    n_heldout: int = opt(24, "Use only the first N held-out inputs (0 = all).", 0, 10000)
    eval_samples: int = opt(2, "Samples per held-out input at each level.", 1, 64)
    eval_temperature: float = opt(0.7, "Sampling temperature of held-out generations.", 0.05, 2.0)
    max_new_tokens: int = opt(32, "Longest reply sampled, in tokens.", 4, 256)
    seed: int = opt(0, "Seed for sampling, batching and LoRA init.", 0, 2**31 - 1)

    def validate(self) -> None:
        check_format(self.control_format)
        parse_targets(self.lora_targets)


METHODS = {"search": {}, "conditioned": {}}


def run(method: str, config, ctx: RunContext) -> Result:
    return {"search": _search, "conditioned": _conditioned}[method](config, ctx)


# ---------- seeds ----------
def read_candidates(path: str, field: str = "candidates_file") -> list[str]:
    """Prompts from a text file, one per line; blank lines and '#' comments skipped."""
    from pathlib import Path
    p = Path(path)
    if not p.is_file():
        raise LabInputError(f"{field}: no such file {path!r}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise LabInputError(f"{field}: {p.name} is not UTF-8 text") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise LabInputError(f"{field}: {p.name} holds no prompts; write one prompt per line")
    return prompts


def default_candidates_file(scenario_name: str) -> str:
    own = PROMPTS_DIR / f"{scenario_name}.txt"
    return str(own if own.is_file() else PROMPTS_DIR / "generic.txt")


def seed_pool(config: SearchConfig, scenario) -> list[tuple[str, str]]:
    """(prompt, origin) to start from, without repeats: the scenario's z first, then yours, then the list."""
    typed = [s.strip() for s in config.seed_prompts.split(SEPARATOR) if s.strip()]
    listed = read_candidates(config.candidates_file.strip() or default_candidates_file(scenario.name))
    out: list[tuple[str, str]] = []
    for text, origin in ([(scenario.prompt, "seed")] + [(t, "yours") for t in typed]
                         + [(t, "candidate list") for t in listed]):
        if all(text != t for t, _ in out):
            out.append((text, origin))
    return out


# ---------- held-out, shared ----------
def held_out(config, ctx, policy, reward, seed_offset: int, lo: float, hi: float) -> Scored:
    """Held-out samples of one policy; the same seed for every policy couples their samples."""
    xs = ctx.scenario.heldout_inputs[:config.n_heldout or None]
    return sample_and_score(ctx.host, policy, xs, reward, config.eval_samples, config.max_new_tokens,
                            config.eval_temperature, config.seed + seed_offset,
                            on_batch=lambda i, k: ctx.on_progress(lo + (hi - lo) * i / k,
                                                                  f"held-out: {policy.label} generations"))


def relabel(s: Scored, label: str) -> Scored:
    return Scored(label, s.inputs, s.outputs, s.token_ids, s.rewards, s.sample_index)


# ---------- search (Eq. 16) ----------
class _Scorer:
    """Scores prompts on fixed inputs with a fixed seed (common random numbers) and counts the model calls."""

    def __init__(self, config: SearchConfig, ctx: RunContext, reward):
        self.config, self.ctx, self.reward = config, ctx, reward
        self.calls = 0

    def __call__(self, z: str, xs: list[str], seed: int, n_samples: int) -> tuple[dict[str, float], tuple]:
        """({x: mean reward of n_samples replies to x under π0(·|x,z)}, (x, y) of the best reply)."""
        c = self.config
        s = sample_and_score(self.ctx.host, prompted(z, "candidate"), xs, self.reward, n_samples,
                             c.max_new_tokens, c.eval_temperature, seed)
        self.calls += calls_per_candidate(len(xs), n_samples)
        # an input quoted in z (a demonstration turn) would be scored on a copied reply: leave it out
        keep = [j for j, x in enumerate(s.inputs) if x not in z] or list(range(len(s.inputs)))
        i = max(keep, key=lambda j: s.rewards[j])
        return (per_input_means([s.rewards[j] for j in keep], [s.inputs[j] for j in keep]),
                (s.inputs[i], s.outputs[i]))


def _search(config: SearchConfig, ctx: RunContext) -> Result:
    sc, progress = ctx.scenario, ctx.on_progress
    reward = resolve_reward(config.reward, ctx)
    xs = sc.train_inputs[:config.search_inputs]
    xs_val = _validation_inputs(config, sc.train_inputs)
    score = _Scorer(config, ctx, reward)
    reserve = (config.finalists + 1) * len(xs_val)   # the finalists' re-scoring (1 sample per input), paid up front
    pool = _search_loop(config, ctx, score, xs, reserve)
    seed_c = next(c for c in pool if c.text == sc.prompt)
    others = [c for c in top_candidates(pool, config.finalists + 1) if c is not seed_c][:config.finalists]
    if xs_val and score.calls + reserve <= config.budget:
        for i, c in enumerate([seed_c] + others):
            progress(0.7 + 0.05 * i / (len(others) + 1), "re-scoring the finalists on the other train inputs")
            val, _ = score(c.text, xs_val, config.seed + 5, 1)
            c.val_score = sum(val.values()) / len(val)
            c.per_input |= val
    challengers = others if config.finalists else top_candidates([c for c in pool if c is not seed_c], 1)
    best = pick_best(seed_c, challengers, config.margin)

    held_none = held_out(config, ctx, BASE, reward, 1, 0.75, 0.83)
    held_seed = held_out(config, ctx, prompted(sc.prompt, "seed"), reward, 1, 0.83, 0.91)
    held_best = (relabel(held_seed, "best") if best.text == sc.prompt else
                 held_out(config, ctx, prompted(best.text, "best"), reward, 1, 0.91, 0.99))
    metrics = {"reward_none": held_none.mean_reward, "reward_seed": held_seed.mean_reward,
               "reward_best": held_best.mean_reward, "search_score_seed": seed_c.score,
               "search_score_best": best.score, "n_candidates": len(pool), "model_calls": score.calls,
               "iterations": max(c.iteration for c in pool), "best_iteration": best.iteration}
    artifact = {"kind": "prompt", "vertex": "prompt", "path": None,
                "data": {"prompt_text": best.text, "origin": best.origin, "seed_prompt": sc.prompt,
                         "search_score": best.score, "val_score": best.val_score,
                         "reward": config.reward.strip() or "reference"}}
    samples = held_none.rows() + held_seed.rows() + held_best.rows() + candidate_rows(pool)
    return Result(metrics=metrics, artifact=artifact, samples=samples)


def _validation_inputs(config: SearchConfig, train: list[str]) -> list[str]:
    """The train inputs after the search inputs, for the finalists' re-scoring: at most a third of the
    budget goes there; none if fewer than 2 inputs are left (no standard error)."""
    if not config.finalists:
        return []
    n = min(len(train) - config.search_inputs, config.budget // (3 * (config.finalists + 1)))
    return train[config.search_inputs:config.search_inputs + n] if n >= 2 else []


def _search_loop(config: SearchConfig, ctx: RunContext, score: _Scorer, xs: list[str], reserve: int) -> list[Candidate]:
    """Score the seeds, then iterate: propose from the best `beam`, score what is new, until the budget
    (less the finalists' `reserve`) cannot pay for another candidate."""
    rng = random.Random(config.seed)
    cost = calls_per_candidate(len(xs), config.search_samples)
    can_pay = lambda extra=0: score.calls + extra + cost + reserve <= config.budget
    pool: list[Candidate] = []

    def add(text: str, origin: str, it: int) -> None:
        per_input, best_reply = score(text, xs, config.seed, config.search_samples)
        pool.append(Candidate(text, origin, it, per_input, best_reply))
        best = top_candidates(pool, 1)[0].score
        ctx.on_progress(0.7 * min(1.0, score.calls / config.budget), f"search iteration {it}: "
                        f"{len(pool)} prompts scored, best {best:.3f}", step=it,
                        points={"candidate_reward": pool[-1].score, "best_reward": best,
                                "model_calls": float(score.calls)})

    for text, origin in seed_pool(config, ctx.scenario):
        if pool and not can_pay():
            break
        add(text, origin, 0)
    it, stalls = 0, 0
    while can_pay(config.rewrites) and stalls < 3:
        it += 1
        proposals = _proposals(config, ctx, score, pool, rng, it)
        new = [(t, o) for t, o in dict(proposals).items() if all(t != c.text for c in pool)]
        stalls = stalls + 1 if not new else 0
        for text, origin in new:
            if not can_pay():
                break
            add(text, origin, it)
    return pool


def _proposals(config: SearchConfig, ctx: RunContext, score: _Scorer, pool: list[Candidate],
               rng: random.Random, it: int) -> list[tuple[str, str]]:
    parents = [c.text for c in top_candidates(pool, config.beam)]
    goal = ctx.scenario.description.strip() or "replies that score high on the reward"
    rewrites = propose_rewrites(ctx.host, parents, goal, config.rewrites, config.rewrite_temperature,
                                max_new_tokens=48, seed=config.seed * 1009 + it)
    score.calls += config.rewrites
    edits = propose_edits(parents, [c.text for c in pool], config.edits, rng)
    return _demonstration_proposals(pool, config.demonstrations) + rewrites + edits


def _demonstration_proposals(pool: list[Candidate], n: int) -> list[tuple[str, str]]:
    """The best prompts that can take one more worked example, each with its own best reply appended."""
    seen, out = {c.text for c in pool}, []
    for c in top_candidates(pool, len(pool)):
        if len(out) == n:
            break
        if c.best_reply and n_demonstrations(c.text) < MAX_DEMONSTRATIONS:
            z = add_demonstration(c.text, *c.best_reply)
            if z not in seen:
                out.append((z, "edit: its best reply added as an example"))
    return out


def candidate_rows(pool: list[Candidate]) -> list[dict]:
    """Every scored prompt as a sample row (policy "candidate", sample_index −1: a prompt, not a generation),
    so the result page can chart the search trajectory from the stored samples."""
    return [{"policy": "candidate", "input": c.text, "output": c.origin, "reward": c.score, "sample_index": -1,
             "iteration": c.iteration, "candidate": i, "val_score": c.val_score} for i, c in enumerate(pool)]


# ---------- conditioned (Eq. 17) ----------
def _conditioned(config: ConditionedConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    reward = resolve_reward(config.reward, ctx)
    k, name = config.levels, f"rc-{ctx.run_id}"
    data = sample_and_score(host, BASE, sc.train_inputs[:config.n_train or None], reward, config.data_samples,
                            config.max_new_tokens, config.data_temperature, config.seed,
                            on_batch=lambda i, n: progress(0.2 * i / n, "sampling π0 on train inputs"))
    levels = quantile_levels(data.rewards, k)
    if len(set(levels)) < 2:
        raise LabInputError(f"reward: all {len(levels)} training samples scored the same "
                            f"({data.rewards[0]:.3g}); there are no levels to learn — try another reward or "
                            f"a higher data_temperature")
    thresholds = level_thresholds(data.rewards, levels, k)
    torch.manual_seed(config.seed)
    host.add_lora(name, lora_config(config.lora_rank, config.lora_alpha, config.lora_targets))
    try:
        _train_conditioned(config, ctx, name, data, levels)
        held_base = held_out(config, ctx, BASE, reward, 1, 0.75, 0.8)
        by_level = [held_out(config, ctx, Policy(control_prompt(config.control_format, s, k), name, f"level {s}"),
                             reward, 1, 0.8 + 0.2 * (s - 1) / k, 0.8 + 0.2 * s / k) for s in range(1, k + 1)]
        out = host.save_adapter(name, ctx.out_dir)
    except BaseException:
        host.delete_adapter(name)
        raise
    metrics = _level_metrics(by_level, thresholds, data.rewards, levels, k) | {"reward_base": held_base.mean_reward}
    artifact = {"kind": "adapter", "vertex": "parameter", "path": str(out),
                "data": {"adapter_name": name, "method": "conditioned", "control_format": config.control_format,
                         "levels": k, "level_thresholds": thresholds,
                         "system": control_prompt(config.control_format, k, k),   # the top level, as a policy
                         "reward": config.reward.strip() or "reference"}}
    samples = held_base.rows() + [row for s in by_level for row in s.rows()]
    return Result(metrics=metrics, artifact=artifact, samples=samples)


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


def _train_conditioned(config: ConditionedConfig, ctx: RunContext, name: str, data: Scored, levels: list[int]):
    """Eq. 17 as imitation: maximize log π(y | x, z(s)) over the scored samples, one level per batch."""
    host, progress, k = ctx.host, ctx.on_progress, config.levels
    params = host.trainable_parameters(name)
    opt_ = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    rng, batches = random.Random(config.seed), []
    host.model.train()
    t0 = time.perf_counter()
    for step in range(config.steps):
        if not batches:
            batches = level_batches(levels, config.batch_size, rng)
        idx = batches.pop()
        policy = Policy(control_prompt(config.control_format, levels[idx[0]], k), name)
        for g in opt_.param_groups:
            g["lr"] = lr_at(step, config.steps, config.lr)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits, targets, mask = host.batch_logits(policy, [data.inputs[i] for i in idx],
                                                      [data.token_ids[i] for i in idx], grad=True)
        loss = imitation_loss(logits, targets, mask)
        opt_.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt_.step()
        progress(0.2 + 0.55 * (step + 1) / config.steps, f"training step {step + 1}/{config.steps}", step=step + 1,
                 points={"loss": loss.item(), "step_s": (time.perf_counter() - t0) / (step + 1)})
    host.model.eval()
