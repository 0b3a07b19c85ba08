"""Held-out measurements shared by the edges: rewards over samples, exact KL between policies."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.kl import token_kl
from engine.policies import Policy


@dataclass
class Scored:
    """Samples of one policy with their rewards, flat: one entry per (input, sample)."""
    policy: str
    inputs: list[str]
    outputs: list[str]
    token_ids: list[list[int]]
    rewards: list[float]
    sample_index: list[int]

    @property
    def mean_reward(self) -> float:
        return sum(self.rewards) / len(self.rewards)

    def rows(self) -> list[dict]:
        return [{"policy": self.policy, "input": x, "output": y, "reward": r, "sample_index": k}
                for x, y, r, k in zip(self.inputs, self.outputs, self.rewards, self.sample_index)]


def sample_and_score(host, policy: Policy, inputs: list[str], reward, n_samples: int, max_new_tokens: int,
                     temperature: float, seed: int, batch_size: int = 64, on_batch=None) -> Scored:
    """Generate n_samples replies per input under `policy` and score them with the reference reward."""
    s = host.generate(policy, inputs, n_samples=n_samples, max_new_tokens=max_new_tokens,
                      temperature=temperature, seed=seed, batch_size=batch_size, on_batch=on_batch)
    xs, ys, ids = s.flat()
    return Scored(policy=policy.label, inputs=xs, outputs=ys, token_ids=ids, rewards=reward(xs, ys),
                  sample_index=[k for _ in inputs for k in range(n_samples)])


def held_out(ctx, config, policy: Policy, reward, *, seed_offset: int = 1, span: tuple[float, float] | None = None,
             stage: str = "", n_inputs: int | None = None, n_samples: int | None = None) -> Scored:
    """The held-out measurement every method makes, in one place (settings: config_pieces.HeldOut).

    `config.eval_samples` replies (or n_samples) at `config.eval_temperature` on the scenario's first
    `config.n_heldout` held-out inputs (then the first n_inputs of those: the live curves' cheap slice),
    scored with `reward`. The seed is `config.seed + seed_offset` whatever the policy, so two policies'
    samples are coupled: their difference is the policies', not the sampler's. Progress moves over `span`."""
    xs = ctx.scenario.heldout_inputs[:config.n_heldout or None][:n_inputs]
    on_batch = None
    if span is not None:
        lo, hi = span
        text = stage or f"held-out: {policy.label} generations"
        on_batch = lambda i, k: ctx.on_progress(lo + (hi - lo) * i / k, text)
    ctx.host.model.eval()   # sampling refuses training mode
    return sample_and_score(ctx.host, policy, xs, reward, n_samples or config.eval_samples, config.max_new_tokens,
                            config.eval_temperature, config.seed + seed_offset, on_batch=on_batch)


@torch.no_grad()
def reply_logprobs(host, policy: Policy, xs: list[str], ys_ids: list[list[int]], batch_size: int = 16,
                   dtype=torch.float32) -> list[torch.Tensor]:
    """Full next-token log-prob tables over each reply: a list of (T_i, V) tensors."""
    out = []
    for b in range(0, len(xs), batch_size):
        logits, _, mask = host.batch_logits(policy, xs[b:b + batch_size], ys_ids[b:b + batch_size])
        logp = torch.log_softmax(logits, -1)
        out += [logp[i, :int(mask[i].sum())].to(dtype) for i in range(len(logp))]
    return out


def kl_to_cached(host, cached_p: list[torch.Tensor], q: Policy, xs: list[str], ys_ids: list[list[int]],
                 batch_size: int = 16) -> float:
    """KL(p‖q) per token over the replies, with p's log-prob tables precomputed (`reply_logprobs`)."""
    return mean_per_token(token_kls_to_cached(host, cached_p, q, xs, ys_ids, batch_size))


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error s/√n (s with n − 1); the error is 0 for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def mean_per_token(values: list[torch.Tensor]) -> float:
    """The mean over every token of every reply (a long reply weighs more than a short one)."""
    return sum(float(v.sum()) for v in values) / max(sum(len(v) for v in values), 1)


@torch.no_grad()
def token_kls_to_cached(host, cached_p: list[torch.Tensor], q: Policy, xs: list[str], ys_ids: list[list[int]],
                        batch_size: int = 16) -> list[torch.Tensor]:
    """KL(p‖q) at every reply token, one (T_i,) float32 tensor per reply: where a mean KL lives."""
    out = []
    for b in range(0, len(xs), batch_size):
        logits, _, mask = host.batch_logits(q, xs[b:b + batch_size], ys_ids[b:b + batch_size])
        logq = torch.log_softmax(logits, -1)
        for i in range(len(logq)):
            T = int(mask[i].sum())
            out.append(token_kl(cached_p[b + i].to(logq.device, torch.float32), logq[i, :T]).cpu())
    return out


def kl_concentration(kls: list[torch.Tensor], top: float = 0.05) -> float:
    """The share of the summed KL that the `top` fraction of tokens with the largest KL carry (0.05 under a
    uniform spread; 1.0 when those few tokens carry all of it)."""
    flat = torch.cat(kls).sort(descending=True).values
    total = float(flat.sum())
    return float(flat[:max(1, round(top * len(flat)))].sum()) / total if total > 0 else 0.0


def pad_tables(tables: list[torch.Tensor], T: int) -> torch.Tensor:
    """Stack (T_i, V) tables into (B, T, V), zero-padded (padding is masked out by the caller)."""
    V = tables[0].shape[-1]
    out = torch.zeros((len(tables), T, V), dtype=torch.float32, device=tables[0].device)
    for i, t in enumerate(tables):
        out[i, :t.shape[0]] = t.float()
    return out
