"""parameter -> reward: the log-ratio of two policies as a reward, and decoding-time steering (2406.16377 §3).

  Eq. 4  r*(x,y) = log π*(y|x) − log π0(y|x)   (π*: typically an adapter from another edge; π0: the base)
  Eq. 7  log π2 = log π1 + w (log π* − log π0), w = 1/β: steer a third policy π1 with r* while decoding
Reports, on held-out inputs:
  pair_accuracy   pairs of replies to the same input from a pool of π0 and π* samples: how often r* orders
                  them like the scenario's reference reward (reference ties skipped)
  reward_*        mean reference reward of π0, π*, π1 and the steered π2 (eval_samples per input each)
  gap_closed      (R(π2) − R(π1)) / (R(π*) − R(π0))
  kl_steered_to_pi1  exact KL(π2 ‖ π1) per token on π2's samples
  tokens_per_s_plain / _steered   decoding speed of π1 alone and of π2 (one batched forward per step)
  tokens_per_s_plain_same_rows    plain π1 over the rows steering computes (P per reply, P distinct policies),
                                  in reply tokens/s (row tokens / P): steering's floor; _steered / it ≤ 1
The artifact is the reward spec {"kind": "log-ratio", "star", "zero"}, usable wherever a reward is.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from engine.artifacts import Reward
from engine.errors import LabInputError
from engine.evaluation import Scored, reply_logprobs
from engine.kl import token_kl
from engine.policies import Policy
from engine.references import policy_spec, resolve_policy
from engine.reward_models import contrastive_token_table
from engine.rewards import pair_accuracy
from engine.rl_objectives import steered_logprobs
from engine.config_pieces import Compute, HeldOut, like, opt
from engine.run_types import Result, RunContext
from engine.steering import PRESETS, Steer, apply_preset, same_policy, steered_generate
from engine.methods import register

EDGE = "parameter->reward"
TOKEN_VIEW_ROWS = 24   # replies per policy that keep their per-token log-ratios for the page


@dataclass(frozen=True)
class LogRatioConfig(HeldOut, Compute):
    REFERENCES: ClassVar[dict] = {"source_run": "policy", "pi0": "policy", "pi1": "policy"}

    source_run: str = opt("", "π*: a run that made an adapter (or a prompt); also `prompt` (this scenario's z) "
                              "or `scenario:NAME`.")
    pi0: str = opt("base", "π0, the reference of the log-ratio: `base`, `prompt`, `scenario:NAME` or a run id "
                           "(DExperts: the anti-expert's run).")
    pi1: str = opt("base", "π1, the policy steered while decoding: `base`, `prompt`, `scenario:NAME`, a run id, "
                           "or `star` (π1 = π*: contrastive / context-aware decoding).")
    w: float = opt(1.0, "Steering strength w = 1/β in Eq. 7 (0 = π1 unchanged).", 0.0, 10.0)
    preset: str = opt("custom", "Steering preset: proxy-tuning (π1 ≠ π0), contrastive-decoding (π1 = π*), "
                                "context-aware (π* = with the prompt, π0 = without, π1 = π*), dexperts "
                                "(π0 = the anti-expert's run).", choices=tuple(PRESETS))
    n_heldout: int = like(HeldOut, "n_heldout", 0)
    eval_temperature: float = opt(0.7, "Sampling temperature of all held-out generations.", 0.05, 2.0)
    batch_size: int = opt(32, "Replies decoded together (steering runs 2–3 rows per reply).", 1, 256)
    seed: int = opt(0, "Seed shared by all policies (coupled sampling).", 0, 2**31 - 1)


def resolve_steer(config: LogRatioConfig, ctx) -> Steer:
    """(π1, π*, π0) from the config's references and preset; the adapters get loaded in the host."""
    source_run, pi0, pi1_ref = apply_preset(config.preset, config.source_run.strip(), config.pi0.strip(),
                                            config.pi1.strip())
    star = _labelled(resolve_policy(source_run, ctx, "source_run"), "π*")
    zero = _labelled(resolve_policy(pi0, ctx, "pi0"), "π0")
    pi1 = star if pi1_ref == "star" else _labelled(resolve_policy(pi1_ref, ctx, "pi1"), "π1")
    if same_policy(star, zero):
        raise LabInputError("pi0: the same policy as π* (source_run); the log-ratio would be zero everywhere")
    return Steer(pi1=pi1, star=star, zero=zero, w=config.w)


def _labelled(p: Policy, label: str) -> Policy:
    return dataclasses.replace(p, label=label)   # keeps every field: prompt, adapter, soft prompt


def run(method: str, config: LogRatioConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    reward = sc.reward()
    steer = resolve_steer(config, ctx)
    xs = sc.heldout_inputs[:config.n_heldout or None]
    gen = lambda policy, lo, hi: _timed_samples(host, policy, xs, config, reward, steer,
                                                 lambda i, k: progress(lo + (hi - lo) * i / k, f"held-out: {policy}"))
    zero, t0 = gen("π0", 0.0, 0.15)
    star, _ = gen("π*", 0.15, 0.3)
    pi1, t_plain = gen("π1", 0.3, 0.45)
    steered, t_steered = gen("π2", 0.45, 0.7)
    t_same_rows = plain_speed_same_rows(host, steer, xs, config)
    progress(0.7, "scoring the pool with r* = log π*/π0")
    tokens_star = contrastive_token_table(host, steer.star, steer.zero, zero.inputs + star.inputs,
                                          zero.token_ids + star.token_ids)
    r_star = [float(s.sum()) for s, _ in tokens_star]
    acc, n_pairs = pair_accuracy(r_star, zero.rewards + star.rewards, zero.inputs + star.inputs)
    progress(0.85, "KL(π2 ‖ π1)")
    kl = kl_steered(host, steer, steered)
    R = {name: s.mean_reward for name, s in (("pi0", zero), ("star", star), ("pi1", pi1), ("steered", steered))}
    metrics = {"pair_accuracy": acc, "n_pairs": n_pairs, **{f"reward_{k}": v for k, v in R.items()},
               "gap_closed": gap_closed(R["pi0"], R["star"], R["pi1"], R["steered"]),
               "kl_steered_to_pi1": kl, "tokens_per_s_plain": t_plain, "tokens_per_s_steered": t_steered,
               "tokens_per_s_plain_same_rows": t_same_rows, "w": config.w}
    metrics |= _pi1_scenario_rewards(config, (zero, star, pi1, steered))
    spec = {"kind": "log-ratio", "star": policy_spec(steer.star, host), "zero": policy_spec(steer.zero, host),
            "aggregate": "sum", "steering": {"pi1": policy_spec(steer.pi1, host), "w": config.w}}
    samples = _rows(host, steer, (zero, star, pi1, steered), tokens_star)
    return Result(metrics=metrics, artifact=Reward(None, spec),
                  samples=samples)


@torch.no_grad()
def preview(host, spec: dict, scenario, w: float, n_inputs: int = 4, max_new_tokens: int = 32,
            temperature: float = 0.7, seed: int = 0) -> list[dict]:
    """π1 and the steered π2 at strength w on the first held-out inputs (the page's w slider).

    `spec` is a stored log-ratio reward artifact; the same seed couples the two columns."""
    from engine.references import policy_from_spec
    if spec.get("kind") != "log-ratio" or "steering" not in spec:
        raise LabInputError("this run's reward is not a log-ratio reward with a steering setup")
    star, zero = policy_from_spec(spec["star"], host), policy_from_spec(spec["zero"], host)
    pi1 = policy_from_spec(spec["steering"]["pi1"], host)
    xs = scenario.heldout_inputs[:n_inputs]
    kw = dict(n_samples=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    plain = host.generate(pi1, xs, **kw)
    steered = steered_generate(host, Steer(pi1, star, zero, w), xs, **kw)
    reward = scenario.reward()
    ys1, ys2 = [t[0] for t in plain.texts], [t[0] for t in steered.texts]
    return [{"input": x, "pi1": a, "steered": b, "reward_pi1": r1, "reward_steered": r2}
            for x, a, b, r1, r2 in zip(xs, ys1, ys2, reward(xs, ys1), reward(xs, ys2))]


def gap_closed(r_pi0: float, r_star: float, r_pi1: float, r_steered: float) -> float | None:
    """(R(π2) − R(π1)) / (R(π*) − R(π0)): the share of π*'s gain over π0 that steering adds to π1."""
    gap = r_star - r_pi0
    return (r_steered - r_pi1) / gap if abs(gap) > 1e-9 else None


def _timed_samples(host, which: str, xs, config, reward, steer: Steer, on_batch) -> tuple[Scored, float]:
    """Samples of π0, π*, π1 (plain decoding) or π2 (steered), scored, and the decoding speed in tokens/s."""
    kw = dict(n_samples=config.eval_samples, max_new_tokens=config.max_new_tokens,
              temperature=config.eval_temperature, seed=config.seed + 1, batch_size=config.batch_size,
              on_batch=on_batch)
    t0 = time.perf_counter()
    if which == "π2":
        s = steered_generate(host, steer, xs, **kw)
    else:
        s = host.generate({"π0": steer.zero, "π*": steer.star, "π1": steer.pi1}[which], xs, **kw)
    seconds = time.perf_counter() - t0
    fx, fy, ids = s.flat()
    scored = Scored(policy=which, inputs=fx, outputs=fy, token_ids=ids, rewards=reward(fx, fy),
                    sample_index=[k for _ in xs for k in range(config.eval_samples)])
    return scored, s.n_new_tokens / seconds


def plain_speed_same_rows(host, steer: Steer, xs: list[str], config: LogRatioConfig) -> float:
    """Reply tokens/s of plain π1 decoding as many rows as steering does (P per reply): its first batch's
    replies, each repeated P times, every row its own prefill (as steering prefills every row), π1's prompt."""
    P = len(steer.distinct())
    replies = [x for x in xs for _ in range(config.eval_samples)][:config.batch_size]
    t0 = time.perf_counter()
    s = host.generate(steer.pi1, [x for x in replies for _ in range(P)], max_new_tokens=config.max_new_tokens,
                      temperature=config.eval_temperature, seed=config.seed + 1, batch_size=P * len(replies),
                      share_prefixes=False)
    return s.n_new_tokens / P / (time.perf_counter() - t0)


@torch.no_grad()
def kl_steered(host, steer: Steer, samples: Scored, batch_size: int = 16) -> float:
    """Exact KL(π2 ‖ π1) per token, teacher-forced on π2's samples (π2 at temperature 1, Eq. 7)."""
    total, count = 0.0, 0
    for b in range(0, len(samples.inputs), batch_size):
        xs, ys = samples.inputs[b:b + batch_size], samples.token_ids[b:b + batch_size]
        lp1, lps, lp0 = (reply_logprobs(host, p, xs, ys) for p in (steer.pi1, steer.star, steer.zero))
        for a, s, z in zip(lp1, lps, lp0):
            total += float(token_kl(steered_logprobs(a, s, z, steer.w), a).sum())
            count += a.shape[0]
    return total / max(count, 1)


def _pi1_scenario_rewards(config, pools) -> dict:
    """With π1 = another scenario's prompt, that scenario's reward of every policy too (does π2 keep it?)."""
    if not config.pi1.startswith("scenario:"):
        return {}
    from engine.scenarios import load_scenario
    other = load_scenario(config.pi1.split(":", 1)[1])
    r = other.reward()
    return {f"{other.name}_reward_{key}": sum(r(s.inputs, s.outputs)) / len(s.outputs)
            for key, s in zip(("pi0", "star", "pi1", "steered"), pools)}


def _rows(host, steer: Steer, pools, star_table) -> list[dict]:
    """Sample rows of every policy. Rows of π0, π* and π2 carry r* (`log_ratio`); the first few of each also
    their tokens and per-token log-ratios (the page colours each token by it)."""
    zero, star, pi1, steered = pools
    n0 = len(zero.outputs)
    steered_table = contrastive_token_table(host, steer.star, steer.zero, steered.inputs, steered.token_ids)
    return (_token_view(host, zero, star_table[:n0]) + _token_view(host, star, star_table[n0:]) + pi1.rows()
            + _token_view(host, steered, steered_table))


def _token_view(host, scored: Scored, table) -> list[dict]:
    rows = scored.rows()
    for k, (row, ids, (scores, mask)) in enumerate(zip(rows, scored.token_ids, table)):
        row["log_ratio"] = float(scores.sum())
        if k < TOKEN_VIEW_ROWS:
            n = int(mask.sum())
            row |= {"tokens": [host.tok.decode([t]) for t in ids[:n]],
                    "token_log_ratios": [round(v, 4) for v in scores[:n].tolist()]}
    return rows


# ---------- the method of this edge ----------
register(EDGE, "log-ratio", title="log π*/π0 as a reward; decoding-time steering of π1",
         equation="r*(x,y) = log π*(y|x) − log π0(y|x) (Eq. 4);  log π2 ∝ log π1 + w·(log π* − log π0), w = 1/β (Eq. 7)",
         config=LogRatioConfig, run=run, artifact="reward",
         metrics=("pair_accuracy", "gap_closed", "reward_pi0", "reward_star", "reward_pi1", "reward_steered",
                  "kl_steered_to_pi1", "tokens_per_s_plain", "tokens_per_s_steered", "tokens_per_s_plain_same_rows"),
         quick={"n_heldout": 8, "eval_samples": 2})
