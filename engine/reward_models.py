"""Rewards read off the base model π0 (2406.16377 §6), as plain callables `(inputs, outputs) -> list[float]`.

  judge          Eq. 14  r(x,y) = π0(s | x, y, z): the probability-weighted mean of the score digits
                         "1".."9" right after a grading prompt z and "Score: " (G-Eval style; no parsing)
  contrastive    Eq. 15  R(x,y) = log π0(y|x,z+) − log π0(y|x,z−), per token, summed (or averaged)
  bradley-terry  a linear head on π0's mean-pooled last hidden states over the reply (π0 frozen),
                 trained with −log σ(r(x,y+) − r(x,y−)) on preference pairs: RLCD pairs
                 y+ ~ π0(·|x,z+), y− ~ π0(·|x,z−), or a user's JSONL file {"prompt","chosen","rejected"}

Each kind is rebuilt from the JSON spec a run stores by `build_model_reward(spec, host)`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from engine.errors import LabInputError
from engine.kl import token_logprobs
from engine.limits import MAX_PREFERENCE_BYTES, MAX_PREFERENCE_PAIRS, check_count, check_size, check_text
from engine.losses import bradley_terry_loss, outcome_loss
from engine.policies import BASE, Policy, policy_from_spec, prompted

Reward = Callable[[list[str], list[str]], list[float]]
SCORE_PREFIX = "Score: "          # the judge's reply starts here; the next token is the score digit
SCORES = tuple(range(1, 10))      # "1".."9": each must follow "Score: " as one token (checked per tokenizer)
BATCH = 16


# ---------- the math (pure) ----------
def judge_score(logits: torch.Tensor, score_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Eq. 14 read as an expectation: Σ_s s · π0(s | x, y, z), renormalized over the score tokens.

    Args:
        logits: (B, V) next-token logits right after "Score: ".
        score_ids: (K,) token ids of the scores ("1".."9").
        values: (K,) the number each score token stands for.
    Returns:
        (B,) expected score, in [min(values), max(values)].
    """
    p = torch.softmax(logits[:, score_ids].float(), -1)  # (B, K)
    return p @ values.to(p.dtype)


def contrastive_token_scores(logits_plus: torch.Tensor, logits_minus: torch.Tensor, targets: torch.Tensor,
                             mask: torch.Tensor) -> torch.Tensor:
    """Eq. 15 per token: log π0(y_t | x, z+, y<t) − log π0(y_t | x, z−, y<t), 0 at padding.

    Args:
        logits_plus, logits_minus: (B, T, V) teacher-forced logits under z+ and z−.
        targets: (B, T) reply tokens y_t.  mask: (B, T) True at reply tokens.
    Returns:
        (B, T) per-token scores.
    """
    return (token_logprobs(logits_plus, targets) - token_logprobs(logits_minus, targets)) * mask


def contrastive_score(token_scores: torch.Tensor, mask: torch.Tensor, aggregate: str = "sum") -> torch.Tensor:
    """Eq. 15 per sequence: "sum" is log π0(y|x,z+)/π0(y|x,z−); "mean" divides it by the reply length."""
    total = (token_scores * mask).sum(-1)
    return total if aggregate == "sum" else total / mask.sum(-1).clamp(min=1)


# ---------- judge (Eq. 14) ----------
def judge_reward(spec: dict, host) -> Reward:
    system, template = _field(spec, "system"), _field(spec, "template")
    policy = Policy(system=system, label="judge")
    prefix, ids = host.token_after(SCORE_PREFIX, [str(s) for s in SCORES])   # found from the tokenizer
    score_ids = torch.tensor(ids, device=host.device)
    values = torch.tensor(SCORES, dtype=torch.float32, device=host.device)

    @torch.no_grad()
    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        out: list[float] = []
        for b in range(0, len(inputs), BATCH):
            asks = [fill_template(template, x, y) for x, y in zip(inputs[b:b + BATCH], outputs[b:b + BATCH])]
            # the judge's reply is "Score: " + one more token; logits at that slot are the score distribution
            logits, _, _ = host.batch_logits(policy, asks, [prefix + [host.eos_id]] * len(asks))
            out += judge_score(logits[:, len(prefix)], score_ids, values).tolist()
        return out
    return reward


def fill_template(template: str, x: str, y: str) -> str:
    """The judge's user message: {input} and {output} replaced (not str.format: texts may hold braces)."""
    return template.replace("{input}", x).replace("{output}", y)


# ---------- contrastive scoring (Eq. 15) ----------
def contrastive_reward(spec: dict, host) -> Reward:
    plus, minus = (prompted(_field(spec, k), label, tuple(tuple(t) for t in spec.get(f"{k}_turns") or ()))
                   for k, label in (("z_plus", "z+"), ("z_minus", "z-")))
    aggregate = spec.get("aggregate", "sum")
    if aggregate not in ("sum", "mean"):
        raise LabInputError(f"reward.aggregate: {aggregate!r} is not one of sum, mean")

    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        ys_ids = [host.reply_ids(y) for y in outputs]
        return [float(contrastive_score(s, m, aggregate)) for s, m in
                contrastive_token_table(host, plus, minus, inputs, ys_ids)]
    return reward


@torch.no_grad()
def contrastive_token_table(host, plus: Policy, minus: Policy, xs: list[str],
                            ys_ids: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-token log π_plus(y_t|·) − log π_minus(y_t|·) of each reply — Eq. 15 for a prompt pair, Eq. 4 for
    (π*, π0): a list of ((T_i,) scores, (T_i,) mask)."""
    out = []
    for b in range(0, len(xs), BATCH):
        xb, yb = xs[b:b + BATCH], ys_ids[b:b + BATCH]
        lp, targets, mask = host.batch_logits(plus, xb, yb)
        lm, _, _ = host.batch_logits(minus, xb, yb)
        scores = contrastive_token_scores(lp, lm, targets, mask)
        out += [(scores[i], mask[i]) for i in range(len(xb))]
    return out


# ---------- Bradley-Terry reward model ----------
class BradleyTerryHead(torch.nn.Module):
    """r(x, y) = w · standardize(mean-pooled last hidden state of π0 over the reply) + b."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(dim, 1)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (N, H) -> (N,)
        return self.linear((feats - self.mean) / self.std).squeeze(-1)


POOLINGS = ("reply-mean", "last", "mean+last")


def pool_hidden(h: torch.Tensor, reply: torch.Tensor, pooling: str = "reply-mean") -> torch.Tensor:
    """Features of each reply from hidden states.

    Args:
        h: (B, L, H) last hidden states; reply: (B, L) 1.0 at the reply's tokens (one contiguous run).
        pooling: "reply-mean" (mean over the reply), "last" (the reply's last token, which has read the
            whole reply: where an answer's correctness can show) or "mean+last" (both, concatenated).
    Returns:
        (B, H), or (B, 2H) for "mean+last".
    """
    if pooling not in POOLINGS:
        raise LabInputError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
    mean = (h * reply[..., None]).sum(1) / reply.sum(1, keepdim=True).clamp(min=1)
    last_pos = (reply * torch.arange(reply.shape[1], dtype=reply.dtype, device=reply.device)).argmax(1)
    last = h[torch.arange(h.shape[0], device=h.device), last_pos]            # at the reply's last token
    return {"reply-mean": mean, "last": last, "mean+last": torch.cat([mean, last], -1)}[pooling]


@torch.no_grad()
def pooled_features(host, xs: list[str], ys_ids: list[list[int]], batch_size: int = BATCH,
                    on_batch=None, pooling: str = "reply-mean", system: str | None = None) -> torch.Tensor:
    """(N, H) features of π0's last hidden states over each reply's tokens (`pool_hidden` says how), reading
    the chat with the system message `system` (None: the neutral one). Computed once, without gradients: the
    base stays frozen; replies to one prompt share its prefix (`ModelHost.reply_hidden_states`). Features come
    back on the CPU, where the small heads train."""
    feats = []
    context = prompted(system) if system else BASE
    for b in range(0, len(xs), batch_size):
        h, reply = host.reply_hidden_states(context, xs[b:b + batch_size], ys_ids[b:b + batch_size])
        feats.append(pool_hidden(h, reply, pooling).cpu())
        if on_batch:
            on_batch(min(b + batch_size, len(xs)), len(xs))
    return torch.cat(feats)


def reply_features(host, xs: list[str], ys: list[str], **kw) -> torch.Tensor:
    """`pooled_features` of replies given as text, tokenized as a head reads them when it is used
    (`head_reward`: the text closed by the end-of-turn token). A head is fitted on these, not on the sampled
    token ids: a sampled reply cut at max_new_tokens has no end-of-turn token, its text read as a reward does,
    so a head fitted on sampled ids sees a feature at training that is never there in use (the discriminator
    learned "cut short = the policy's" and put every held-out reply on the demonstrations' side)."""
    return pooled_features(host, xs, [host.reply_ids(y) for y in ys], **kw)


def train_head(chosen: torch.Tensor, rejected: torch.Tensor, steps: int, lr: float, l2: float,
               seed: int = 0, on_step=None) -> BradleyTerryHead:
    """Fit a BradleyTerryHead on pooled features of preference pairs: full batch Adam on
    −log σ(r(x,y+) − r(x,y−)) + l2·‖w‖².

    With a few hundred pairs and H = 576 features the pairs are separable, so without the penalty the
    head memorizes them; a strong l2 keeps w near the mean difference of y+ and y− (better held out).

    Args:
        chosen, rejected: (N, H) features of y+ and y− (row i is one pair).
        on_step: called as on_step(step, loss) after each step.
    """
    return _fit_head(torch.cat([chosen, rejected]), lambda head: bradley_terry_loss(head(chosen), head(rejected)),
                     steps, lr, l2, seed, on_step)


def train_outcome_head(feats: torch.Tensor, correct: torch.Tensor, steps: int, lr: float, l2: float,
                       seed: int = 0, on_step=None) -> BradleyTerryHead:
    """Fit the outcome reward model (Sun et al. Eq. 8) on pooled features of replies labelled right/wrong:
    full batch Adam on `outcome_loss` + l2·‖w‖². The reward is the head's logit.

    Args:
        feats: (N, H) features of the replies; correct: (N,) 1.0 where the reply is right (Eq. 9).
    """
    return _fit_head(feats, lambda head: outcome_loss(head(feats), correct), steps, lr, l2, seed, on_step)


def train_discriminator_head(demo: torch.Tensor, policy: torch.Tensor, steps: int, lr: float, l2: float,
                             seed: int = 0, on_step=None) -> BradleyTerryHead:
    """Fit the discriminator D_ω = σ(head) of Sun et al. Eq. 6 on pooled features: expert demonstrations
    (D → 1) against the policy's own replies (D → 0), full batch Adam on −Eq. 6 + l2·‖w‖². Its logit is the
    reward of Eq. 7.

    Args:
        demo: (N, H) features of the expert replies; policy: (M, H) features of the policy's replies.
    """
    from engine.adversarial import discriminator_loss
    return _fit_head(torch.cat([demo, policy]), lambda head: discriminator_loss(head(demo), head(policy)),
                     steps, lr, l2, seed, on_step)


def _fit_head(stats_from: torch.Tensor, loss_of, steps: int, lr: float, l2: float, seed: int,
              on_step) -> BradleyTerryHead:
    """A linear head on standardized features (mean/std of `stats_from`), from zero, by full-batch Adam."""
    torch.manual_seed(seed)
    head = BradleyTerryHead(stats_from.shape[1])
    head.mean.copy_(stats_from.mean(0))
    head.std.copy_(stats_from.std(0).clamp(min=1e-4))
    torch.nn.init.zeros_(head.linear.weight), torch.nn.init.zeros_(head.linear.bias)
    opt = torch.optim.Adam(head.linear.parameters(), lr=lr)
    for step in range(steps):
        loss = loss_of(head)
        penalized = loss + l2 * head.linear.weight.pow(2).sum()
        opt.zero_grad(set_to_none=True)
        penalized.backward()
        opt.step()
        if on_step:
            on_step(step + 1, loss.item())
    return head.eval()


def preference_accuracy(head: BradleyTerryHead, chosen: torch.Tensor, rejected: torch.Tensor) -> float | None:
    """Fraction of pairs the head ranks the right way round (None for no pairs)."""
    if len(chosen) == 0:
        return None
    with torch.no_grad():
        return float((head(chosen) > head(rejected)).float().mean())


def save_head(head: BradleyTerryHead, path: Path, model_name: str, pooling: str = "reply-mean") -> Path:
    from safetensors.torch import save_file
    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(path), metadata={"pooling": pooling, "model": model_name})
    return path


def load_head(path: str | Path) -> BradleyTerryHead:
    from safetensors.torch import load_file
    if not Path(path).is_file():
        raise LabInputError(f"reward.head: no saved reward head at {path}")
    tensors = load_file(str(path))
    head = BradleyTerryHead(tensors["mean"].shape[0])
    head.load_state_dict(tensors)
    return head.eval()


def head_reward(spec: dict, host) -> Reward:
    """A linear head on π0's pooled hidden states: the Bradley-Terry reward (Eq. 4 of Sun et al.) and the
    outcome reward model (Eq. 8, r = the classifier's logit) are read the same way."""
    head = load_head(_field(spec, "head"))
    pooling = spec.get("pooling", "reply-mean")
    dim = host.model.config.hidden_size * (2 if pooling == "mean+last" else 1)
    if head.mean.shape[0] != dim:
        raise LabInputError(f"reward.head: built for {head.mean.shape[0]} features ({pooling}), "
                            f"this model gives {dim}")

    @torch.no_grad()
    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        feats = reply_features(host, inputs, outputs, pooling=pooling, system=spec.get("context_system"))
        return head(feats).tolist()
    return reward


# ---------- preference files ----------
def load_preference_file(path: str, field: str = "preference_file") -> list[dict]:
    """Read a JSONL file of {"prompt", "chosen", "rejected"} (other keys are ignored).

    Every problem raises LabInputError naming the setting, the line and the key.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise LabInputError(f"{field}: no such file {path!r}; give a JSONL file with one "
                            '{"prompt": ..., "chosen": ..., "rejected": ...} per line')
    check_size(p.stat().st_size, f"{field} {p.name}", MAX_PREFERENCE_BYTES)   # before reading it
    pairs = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise LabInputError(f"{field}: {p.name} is not UTF-8 text") from None
    check_count([x for x in lines if x.strip()], f"{field} {p.name}", MAX_PREFERENCE_PAIRS, "preference pairs")
    for n, line in enumerate(lines, 1):
        if line.strip():
            pairs.append(_preference_line(line, n, field))
    if len(pairs) < 2:
        raise LabInputError(f"{field}: {p.name} holds {len(pairs)} preference pair(s); at least 2 are needed")
    return pairs


def _preference_line(line: str, n: int, field: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise LabInputError(f"{field}, line {n}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise LabInputError(f'{field}, line {n}: expected an object {{"prompt", "chosen", "rejected"}}')
    for key in ("prompt", "chosen", "rejected"):
        if key not in row:
            raise LabInputError(f"{field}, line {n}: missing {key!r}")
        if not isinstance(row[key], str) or not row[key].strip():
            raise LabInputError(f"{field}, line {n}: {key!r} must be non-empty text")
        check_text(row[key], f"{field}, line {n}: {key!r}")
    if row["chosen"].strip() == row["rejected"].strip():
        raise LabInputError(f"{field}, line {n}: 'chosen' and 'rejected' are the same text")
    return {k: row[k].strip() for k in ("prompt", "chosen", "rejected")}


# ---------- log-ratio of two policies (Eq. 4, parameter->reward) ----------
def log_ratio_reward(spec: dict, host) -> Reward:
    """r*(x,y) = log π*(y|x) − log π0(y|x) for the two policies stored in the spec (engine/references.py)."""
    for key in ("star", "zero"):
        if not isinstance(spec.get(key), dict):
            raise LabInputError(f"reward.{key}: missing policy for kind 'log-ratio'")
    star, zero = policy_from_spec(spec["star"], host), policy_from_spec(spec["zero"], host)
    aggregate = spec.get("aggregate", "sum")

    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        ys_ids = [host.reply_ids(y) for y in outputs]
        return [float(contrastive_score(s, m, aggregate)) for s, m in
                contrastive_token_table(host, star, zero, inputs, ys_ids)]
    return reward


# ---------- rebuild from a spec ----------
BUILDERS: dict[str, Callable[[dict, object], Reward]] = {
    "judge": judge_reward,
    "contrastive": contrastive_reward,
    "bradley-terry": head_reward,
    "outcome": head_reward,
    "log-ratio": log_ratio_reward,
}


def build_model_reward(spec: dict, host) -> Reward:
    """Rebuild a model-based reward from the JSON spec a run stores: {"kind": "judge" | "contrastive" |
    "bradley-terry" | "outcome" | "log-ratio", ...}. `host` serves the base model π0."""
    if not isinstance(spec, dict) or spec.get("kind") not in BUILDERS:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        raise LabInputError(f"reward.kind: {kind!r} is not a model reward; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[spec["kind"]](spec, host)


def _field(spec: dict, key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise LabInputError(f"reward.{key}: missing for kind {spec.get('kind')!r}")
    return value
