"""Decoding-time steering with a log-ratio reward (2406.16377 §3, Eq. 7):

    log π2(y_t | x, y<t) ∝ log π1(y_t | ·) + w · (log π*(y_t | ·) − log π0(y_t | ·)),   w = 1/β

Each decoding step is ONE batched forward over the distinct policies of (π1, π*, π0): every input gets
one row per policy (prompt variants are rows with their own prefix and KV cache; adapters are mixed in
the batch by `masked_adapters`: each adapter's LoRA delta computed over all rows and zeroed on the rows of
other policies), the rows' next-token log-probs are combined by
`steered_logprobs`, one token is sampled per input and fed to all of its rows. The prompts are prefilled
in one forward, or per policy with the caches merged where one long prompt would pad the others.

`steered_generate_sequential` is the naive reference: the same steps with one forward per policy after
another. Both draw the Gumbel noise like `ModelHost.generate` does, so with the same seed and batch size
π1's plain samples, the naive and the batched steered samples are coupled (identical where they agree).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from engine.adapter_rows import masked_adapters
from engine.model_host import Samples, left_pad, sample_next
from engine.policies import Policy
from engine.rl_objectives import steered_logprobs

# Named presets of the literature: how each sets (π*, π0, π1) — `star` means π1 = π*.
PRESETS = {
    "custom": "π*, π0 and π1 exactly as given",
    "proxy-tuning": "Proxy-tuning / EFT: move another policy π1 (≠ π0) by the adapter's log-ratio",
    "contrastive-decoding": "Contrastive decoding: π* sharpened against π0 (π1 = π*)",
    "context-aware": "Context-aware decoding: π* = π0 with the prompt, π0 without it (π1 = π*)",
    "dexperts": "DExperts: π1 + w (expert − anti-expert); π* = expert run, π0 = anti-expert run",
}


def apply_preset(preset: str, source_run: str, pi0: str, pi1: str) -> tuple[str, str, str]:
    """(source_run, pi0, pi1) after a preset; raises LabInputError when the preset's shape is not met."""
    from engine.errors import LabInputError
    if preset not in PRESETS:
        raise LabInputError(f"preset: {preset!r} is not one of {', '.join(PRESETS)}")
    if preset == "proxy-tuning" and pi1 in (pi0, "star"):
        raise LabInputError("pi1: proxy-tuning steers a policy other than π0 and π*, e.g. scenario:concise")
    if preset == "contrastive-decoding":
        pi1 = "star"
    if preset == "context-aware":
        source_run, pi0, pi1 = source_run or "prompt", "base", "star"
    if preset == "dexperts" and (pi0 in ("base", "prompt", "") or pi0.startswith("scenario:")):
        raise LabInputError("pi0: DExperts needs the anti-expert adapter's run id as pi0")
    return source_run, pi0, pi1


@dataclass(frozen=True)
class Steer:
    pi1: Policy
    star: Policy
    zero: Policy
    w: float

    def distinct(self) -> list[Policy]:
        """The policies to run, each once: π1 may equal π* (contrastive decoding) or π0."""
        out: list[Policy] = []
        for p in (self.pi1, self.star, self.zero):
            if not any(same_policy(p, q) for q in out):
                out.append(p)
        return out

    def slots(self) -> tuple[int, int, int]:
        """Row of π1, π*, π0 within one input's group of distinct policies."""
        d = self.distinct()
        find = lambda p: next(i for i, q in enumerate(d) if same_policy(p, q))
        return find(self.pi1), find(self.star), find(self.zero)


def same_policy(a: Policy, b: Policy) -> bool:
    return a.system_text == b.system_text and a.adapter == b.adapter and a.soft == b.soft


@torch.no_grad()
def steered_generate(host, steer: Steer, inputs: list[str], n_samples: int = 1, max_new_tokens: int = 40,
                     temperature: float = 1.0, seed: int = 0, batch_size: int = 32,
                     on_batch=None) -> Samples:
    """Sample from π2 (Eq. 7), one batched forward per step over all policies of all inputs."""
    return _generate(host, steer, inputs, n_samples, max_new_tokens, temperature, seed, batch_size,
                     on_batch, _batched_step_fn)


@torch.no_grad()
def steered_generate_sequential(host, steer: Steer, inputs: list[str], n_samples: int = 1,
                                max_new_tokens: int = 40, temperature: float = 1.0, seed: int = 0,
                                batch_size: int = 32, on_batch=None) -> Samples:
    """The naive baseline: π1, π* and π0 run one after another at every step, each with its own cache."""
    return _generate(host, steer, inputs, n_samples, max_new_tokens, temperature, seed, batch_size,
                     on_batch, _sequential_step_fn)


def _generate(host, steer, inputs, n_samples, max_new_tokens, temperature, seed, batch_size, on_batch,
              make_step) -> Samples:
    flat = [x for x in inputs for _ in range(n_samples)]
    gen = torch.Generator().manual_seed(seed)
    texts, ids, n_new = [], [], 0
    i1, i_star, i0 = steer.slots()
    with host.lock:
        host.model.eval()   # no dropout while sampling (a fresh adapter leaves the model in training mode)
        for b in range(0, len(flat), batch_size):
            with contextlib.ExitStack() as batch:   # what a step function sets up lives for its batch
                step = make_step(host, steer, flat[b:b + batch_size], batch)
                rows = _decode_loop(host, step, len(flat[b:b + batch_size]), steer.w, (i1, i_star, i0),
                                    max_new_tokens, temperature, gen)
            for reply in rows:
                ids.append(reply), texts.append(host.decode(reply))
                n_new += len(reply)
            if on_batch:
                on_batch(min(b + batch_size, len(flat)), len(flat))
    shape = lambda xs: [xs[i * n_samples:(i + 1) * n_samples] for i in range(len(inputs))]
    return Samples(inputs=list(inputs), texts=shape(texts), token_ids=shape(ids), n_new_tokens=n_new)


def _decode_loop(host, step, G: int, w: float, slots, max_new_tokens, temperature, gen) -> list[list[int]]:
    """The host's decode loop over `step(tokens or None)` -> (G, P, V) logits, each token drawn from Eq. 7."""
    i1, i_star, i0 = slots

    def next_token(logits):
        logp = torch.log_softmax(logits.float(), -1)                           # (G, P, V)
        return sample_next(steered_logprobs(logp[:, i1], logp[:, i_star], logp[:, i0], w), temperature, 1.0, gen)
    return host.decode_loop(step, G, max_new_tokens, next_token)


def _batched_step_fn(host, steer: Steer, xs: list[str], batch: contextlib.ExitStack):
    """One forward per decoding step over all G×P rows (policy-major), adapters mixed per row.

    The prompts are prefilled in one forward over all rows when that pads little (`one_prefill_pays`); a
    long prompt z on one policy would pad every other row to its length, so then each policy is prefilled
    alone, padded only to its own longest prefix, and the caches are merged."""
    policies = steer.distinct()
    P, G = len(policies), len(xs)
    host.ensure_loaded(p.adapter for p in policies)                 # rows mix adapters: all of them at once
    masks = {name: torch.tensor([float(p.adapter == name) for p in policies for _ in xs], device=host.device)
             for name in dict.fromkeys(p.adapter for p in policies) if name}
    prefixes = [[host.prefix_ids(p, x) for x in xs] for p in policies]
    state = {}
    from engine.kv_cache import BufferedCache

    def prefill():       # inside the decode loop's precision context, like every forward
        if one_prefill_pays(prefixes):
            batch.enter_context(masked_adapters(host, masks))
            ids, attn = (t.to(host.device) for t in left_pad([q for per in prefixes for q in per], host.pad_id))
            state.update(attn=attn, cache=BufferedCache())
            out = host.model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
                             past_key_values=state["cache"], use_cache=True, logits_to_keep=1)
            first = out.logits[:, -1].view(P, G, -1).transpose(0, 1)      # (G, P, V)
        else:
            prefills = [_prefill(host, p, per) for p, per in zip(policies, prefixes)]   # [(cache, attn, logits)]
            L = max(a.shape[1] for _, a, _ in prefills)
            state.update(attn=torch.cat([_left_pad_to(a, L) for _, a, _ in prefills]),
                         cache=_merge_caches([c for c, _, _ in prefills], L))
            first = torch.stack([lg for _, _, lg in prefills], 1)         # (G, P, V)
            batch.enter_context(masked_adapters(host, masks))
        state["pos"] = state["attn"].sum(-1, keepdim=True) - 1
        return first

    def step(tokens):
        if tokens is None:
            return prefill()
        state["attn"] = torch.cat([state["attn"], state["attn"].new_ones((P * G, 1))], 1)
        state["pos"] = state["pos"] + 1
        out = host.model(input_ids=tokens.repeat(P)[:, None], attention_mask=state["attn"],
                         position_ids=state["pos"], past_key_values=state["cache"], use_cache=True)
        return out.logits[:, -1].view(P, G, -1).transpose(0, 1)     # (G, P, V)
    return step


PREFILL_PAD_LIMIT = 1.25   # one prefill over every policy's rows while it computes ≤ 25 % more tokens


def one_prefill_pays(prefixes: list[list[list[int]]]) -> bool:
    """Whether one prefill over all policies' rows (each padded to the longest prefix of all) computes at most
    PREFILL_PAD_LIMIT × the tokens of one prefill per policy (each padded to its own longest). A forward
    costs nearly the same for 3 rows as for 1 at small batches (bf16, here: one prefill of 25 tokens
    ≈ 105 ms for 1 row, 110 ms for 3), so separate prefills cost P forwards where one would do."""
    merged = sum(len(per) for per in prefixes) * max(len(q) for per in prefixes for q in per)
    split = sum(len(per) * max(len(q) for q in per) for per in prefixes)
    return merged <= PREFILL_PAD_LIMIT * split


def _prefill(host, policy: Policy, prefixes: list[list[int]]):
    """Run one policy over its prompts of all inputs: (cache, attention mask, next-token logits (G, V))."""
    from engine.kv_cache import BufferedCache
    ids, attn = (t.to(host.device) for t in left_pad(prefixes, host.pad_id))
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    cache = BufferedCache()
    with host.use(policy) as model:
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True,
                    logits_to_keep=1)
    return cache, attn, out.logits[:, -1]


def _left_pad_to(t: torch.Tensor, L: int, dim: int = 1) -> torch.Tensor:
    """Zero-pad `t` on the left along `dim` to length L (masked-out positions: their values never count)."""
    pad = L - t.shape[dim]
    if pad == 0:
        return t
    shape = list(t.shape)
    shape[dim] = pad
    return torch.cat([t.new_zeros(shape), t], dim)


def _merge_caches(caches, L: int):
    """One batch cache from per-policy caches of different prompt lengths (keys/values (B, H, T, D))."""
    from engine.kv_cache import BufferedCache
    layers = []
    for i in range(len(caches[0].layers)):
        k = torch.cat([_left_pad_to(c.layers[i].keys, L, 2) for c in caches])
        v = torch.cat([_left_pad_to(c.layers[i].values, L, 2) for c in caches])
        layers.append((k, v))
    return BufferedCache(layers)


def _sequential_step_fn(host, steer: Steer, xs: list[str], batch: contextlib.ExitStack):
    """Naive: a separate batch (prefixes, cache, forward) per policy, run one after another."""
    def plain(policy):
        def forward(**kw):
            with host.use(policy) as model:
                return model(**kw)
        return _rows_step(host, [policy], xs, forward)
    steps = [plain(p) for p in steer.distinct()]

    def step(tokens):
        return torch.cat([s(tokens) for s in steps], 1)   # (G, P, V), P in `distinct` order
    return step


def _rows_step(host, policies: list[Policy], xs: list[str], forward):
    """A KV-cached step function over one row per (input, policy), input-major: (G, P, V) logits."""
    from engine.kv_cache import BufferedCache
    P = len(policies)
    prefixes = [host.prefix_ids(p, x) for x in xs for p in policies]
    ids, attn = (t.to(host.device) for t in left_pad(prefixes, host.pad_id))
    state = {"attn": attn, "pos": (attn.cumsum(-1) - 1).clamp(min=0), "cache": BufferedCache()}

    def step(tokens):
        if tokens is None:
            inp = ids
        else:
            state["attn"] = torch.cat([state["attn"], attn.new_ones((len(prefixes), 1))], 1)
            state["pos"] = state["pos"][:, -1:] + 1
            inp = tokens.repeat_interleave(P)[:, None]
        out = forward(input_ids=inp, attention_mask=state["attn"], position_ids=state["pos"],
                      past_key_values=state["cache"], use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].view(len(xs), P, -1)
    return step
