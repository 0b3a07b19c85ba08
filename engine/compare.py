"""Compare: the policies of one scenario side by side, on the same held-out inputs and the same seed.

Every policy samples the same inputs with the same seed and batch size, so the host's Gumbel sampling
couples them (identical tokens wherever two policies agree) and their reward differences carry little
sampling noise. Reported per policy: the reference reward (mean ± standard error over its outputs) and
optionally a stored reward; between policies: the exact KL matrix, per token, teacher-forced on the row
policy's own samples,

    KL(p‖q) = mean over (x, t) of Σ_v p(v|x,y<t) (log p(v|x,y<t) − log q(v|x,y<t)),   y ∼ p.

A policy choice is text: `base`, `prompt`, `scenario:NAME` or a run id (resolved by engine/references.py),
or `KIND:ARG` for a kind registered in `POLICY_KINDS` (best-of-N, steering, ... plug in there).

`frontier` turns stored runs (and a compare's measurements) into the reward-vs-KL chart's data.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch

from engine.errors import LabInputError
from engine.evaluation import mean_stderr, reply_logprobs
from engine.kl import token_kl
from engine.references import resolve_policy, resolve_reward, same_model, stored_artifact
from engine.registry import MethodSpec, build_config
from engine.config_pieces import opt
from engine.scenarios import Scenario

POLICY_ARTIFACTS = ("adapter", "prompt", "soft_prompt")  # artifact kinds that are a policy to compare
MAX_POLICIES = 8
ARTIFACT_NOUN = {"adapter": "LoRA", "prompt": "prompt", "soft_prompt": "soft prompt"}


@dataclass(frozen=True)
class CompareConfig:
    n_inputs: int = opt(8, "Held-out inputs compared (the scenario's first N).", 1, 32)
    n_samples: int = opt(2, "Replies per input and policy.", 1, 4)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 128)
    temperature: float = opt(1.0, "Sampling temperature (1 samples the policy itself, which the KL assumes).",
                             0.05, 2.0)
    seed: int = opt(0, "One seed shared by every policy: their samples are coupled.", 0, 2**31 - 1)
    kl_samples: int = opt(1, "Replies per input teacher-forced for the KL matrix (the first ones; each costs "
                             "one forward pass per pair of policies).", 1, 4)
    # the host's lock is held one batch at a time: 16 rows (one default policy) take ~5–15 s on 2 cores
    batch_size: int = opt(16, "Sampling batch size (same for every policy, which keeps the coupling).", 1, 64)


COMPARE_SPEC = MethodSpec("compare", "Compare policies", "", CompareConfig, {}, run=None, metrics=())


def compare_config(overrides: dict | None = None) -> CompareConfig:
    """Defaults, then overrides (text or typed), each checked like a run's settings."""
    return build_config(COMPARE_SPEC, overrides or {})


@dataclass
class CompareContext:
    """What `resolve_policy` / `resolve_reward` need: the scenario, the model host, run id -> stored run."""
    scenario: Scenario
    host: object
    lookup: Callable[[str], dict | None]


@dataclass
class Sampled:
    """One policy's replies on the compare's inputs, flat and input by input: n_samples entries per input
    (the order `Samples.flat` gives; the KL matrix keeps the first `kl_samples` of each)."""
    label: str
    inputs: list[str]
    outputs: list[str]
    token_ids: list[list[int]]
    # (xs, ys_ids) -> one (T_i, V) next-token log-prob table per reply; None for a policy with no
    # token-level distribution (best-of-N), which then has no exact KL
    logprobs: Callable[[list[str], list[list[int]]], list[torch.Tensor]] | None
    kl_bound: float | None = None  # a known upper bound on KL(π‖π0) per reply, for such policies


# A sampler: (ctx, arg, inputs, config, on_batch(done, total)) -> Sampled, for one kind of policy choice.
Sampler = Callable[[CompareContext, str, list[str], CompareConfig, Callable], Sampled]


def sample_policy(ctx: CompareContext, ref: str, xs: list[str], cfg: CompareConfig, on_batch) -> Sampled:
    """A plain policy (base, a prompt, an adapter, a soft prompt): sample it, score with it."""
    policy = resolve_policy(ref, ctx, field=f"policy {ref!r}")
    s = ctx.host.generate(policy, xs, n_samples=cfg.n_samples, max_new_tokens=cfg.max_new_tokens,
                          temperature=cfg.temperature, seed=cfg.seed, batch_size=cfg.batch_size, on_batch=on_batch)
    fx, fy, ids = s.flat()
    return Sampled(label=choice_label(ref, ctx.lookup), inputs=fx, outputs=fy, token_ids=ids,
                   logprobs=lambda a, b: reply_logprobs(ctx.host, policy, a, b))


POLICY_KINDS: dict[str, Sampler] = {"policy": sample_policy}


def split_choice(choice: str) -> tuple[str, str]:
    """`KIND:ARG` for a registered kind, else a plain policy reference (which may be `scenario:NAME`)."""
    head, sep, rest = choice.strip().partition(":")
    if sep and head in POLICY_KINDS and head != "policy":
        return head, rest
    return "policy", choice.strip()


def edge_of(choice: str, lookup) -> str:
    """What a choice is, for colours: `base`, `prompt` (any prompt z), a kind, or the edge of its run."""
    kind, ref = split_choice(choice)
    if kind != "policy":
        return kind
    if ref == "base" or ref == "prompt" or ref.startswith("scenario:"):
        return "base" if ref == "base" else "prompt"
    return (lookup(ref) or {}).get("edge", "")


def choice_label(choice: str, lookup) -> str:
    """A short name for charts: `π0`, `π0 + z`, `LoRA (kl) 1a2b3c`, ..."""
    if choice == "base":
        return "π0 (base)"
    if choice == "prompt":
        return "π0 + z (prompt)"
    if choice.startswith("scenario:"):
        return f"π0 + z of {choice.split(':', 1)[1]}"
    run = lookup(choice) or {}
    kind = next((a["kind"] for a in run.get("artifacts") or [] if a["kind"] in POLICY_ARTIFACTS), "")
    return f"{ARTIFACT_NOUN.get(kind, kind or 'run')} ({run.get('method', '?')}) {choice[:6]}"


# ---------- the compare ----------
def run_compare(ctx: CompareContext, choices: list[str], config: CompareConfig, reward_ref: str = "",
                on_progress: Callable[[float, str], None] | None = None) -> dict:
    """Sample every chosen policy (base always included), score, and measure the KL matrix.

    Returns a JSON-ready dict: policies (label, rewards, KL to π0), the KL matrix, every sample."""
    progress = on_progress or (lambda f, s: None)
    choices = _checked_choices(choices)
    for c in choices:  # refuse a bad reference before minutes of sampling
        check_choice(c, ctx.lookup, ctx.host.model_name)
    t0 = time.perf_counter()
    xs = ctx.scenario.heldout_inputs[:config.n_inputs]
    reference = ctx.scenario.reward()
    extra = resolve_reward(reward_ref, ctx, "reward") if reward_ref.strip() else None
    sampled = []
    for i, c in enumerate(choices):
        kind, arg = split_choice(c)
        name = choice_label(c, ctx.lookup) if kind == "policy" else c
        on_batch = _span(progress, 0.6 * i / len(choices), 0.6 * (i + 1) / len(choices),
                         f"sampling {name} ({i + 1} of {len(choices)})")
        on_batch(0, 1)
        sampled.append(POLICY_KINDS[kind](ctx, arg, xs, config, on_batch))
    _distinct_labels(sampled)
    progress(0.6, "scoring with the rewards")
    rewards = [reference(s.inputs, s.outputs) for s in sampled]
    extras = [extra(s.inputs, s.outputs) if extra else None for s in sampled]
    kl = kl_matrix([_first(s, config.n_samples, config.kl_samples) for s in sampled],
                   lambda k, n: progress(0.65 + 0.35 * k / n, f"exact KL: row {k + 1} of {n}"))
    lengths = [sum(map(len, s.token_ids)) / len(s.token_ids) for s in sampled]
    progress(1.0, "done")
    return {"scenario": ctx.scenario.name, "inputs": xs, "config": dataclasses.asdict(config),
            "reward": reward_ref.strip(), "choices": choices,
            "policies": [_policy_row(c, s, r, e, kl[i][0], lengths[i]) | {"edge": edge_of(c, ctx.lookup)}
                         for i, (c, s, r, e) in enumerate(zip(choices, sampled, rewards, extras))],
            "kl": {"labels": [s.label for s in sampled], "matrix": kl},
            "samples": _sample_rows(sampled, rewards, extras, config.n_samples),
            "duration_s": round(time.perf_counter() - t0, 1)}


def _span(progress, lo: float, hi: float, stage: str):
    """on_batch(done, total) mapped onto the [lo, hi] part of the compare's progress."""
    return lambda done, total: progress(lo + (hi - lo) * done / max(total, 1), stage)


def _distinct_labels(sampled: list[Sampled]) -> None:
    """Labels key the table's columns and the heatmap's axes: number any repeats."""
    seen: dict[str, int] = {}
    for s in sampled:
        seen[s.label] = seen.get(s.label, 0) + 1
        if seen[s.label] > 1:
            s.label = f"{s.label} #{seen[s.label]}"


def _checked_choices(choices: list[str]) -> list[str]:
    """Base first (the reference of every KL to π0), no repeats, at most MAX_POLICIES."""
    out = ["base"] + [c.strip() for c in choices if c and c.strip() and c.strip() != "base"]
    out = list(dict.fromkeys(out))
    if len(out) > MAX_POLICIES:
        raise LabInputError(f"policies: {len(out)} chosen; compare at most {MAX_POLICIES} at once (base included)")
    return out


def _policy_row(choice: str, s: Sampled, rewards: list[float], extras: list[float] | None,
                kl_to_base: float | None, mean_len: float) -> dict:
    """One policy's numbers; KL to π0 per token and per reply (= per token × mean reply length)."""
    mean, se = mean_stderr(rewards)
    row = {"choice": choice, "label": s.label, "kind": split_choice(choice)[0], "n": len(rewards),
           "mean_reward": mean, "stderr": se, "kl_to_base": kl_to_base,
           "kl_to_base_seq": None if kl_to_base is None else kl_to_base * mean_len,
           "kl_bound": s.kl_bound, "mean_tokens": mean_len}
    if extras is not None:
        row["mean_extra"], row["stderr_extra"] = mean_stderr(extras)
    return row


def _sample_rows(sampled: list[Sampled], rewards, extras, n_samples: int) -> list[dict]:
    rows = []
    for s, rs, es in zip(sampled, rewards, extras):
        for k, (x, y, r) in enumerate(zip(s.inputs, s.outputs, rs)):
            row = {"policy": s.label, "input": x, "output": y, "reward": r, "sample_index": k % n_samples}
            if es is not None:
                row["extra_reward"] = es[k]
            rows.append(row)
    return rows


# ---------- exact KL between policies ----------
@torch.no_grad()
def kl_matrix(sampled: list[Sampled], on_row=None, chunk: int = 16) -> list[list[float | None]]:
    """M[i][j] = KL(p_i ‖ p_j) per token on p_i's own samples: 0 on the diagonal, None where a policy has
    no token-level distribution. Replies go in chunks so at most two (chunk, T, V) tables live at once."""
    P = len(sampled)
    M: list[list[float | None]] = [[None] * P for _ in range(P)]
    for i, p in enumerate(sampled):
        if on_row:
            on_row(i, P)
        if p.logprobs is None:
            continue
        totals, count = [0.0] * P, 0
        for b in range(0, len(p.inputs), chunk):
            xs, ys = p.inputs[b:b + chunk], p.token_ids[b:b + chunk]
            tp = p.logprobs(xs, ys)
            count += sum(t.shape[0] for t in tp)
            for j, q in enumerate(sampled):
                if j != i and q.logprobs is not None:
                    tq = q.logprobs(xs, ys)
                    totals[j] += sum(float(token_kl(a.float(), c.float()).sum()) for a, c in zip(tp, tq))
        M[i] = [0.0 if j == i else (totals[j] / max(count, 1) if q.logprobs is not None else None)
                for j, q in enumerate(sampled)]
    return M


def _first(s: Sampled, n_samples: int, k: int) -> Sampled:
    """The first k samples of every input (samples are stored input by input, n_samples each)."""
    keep = [i for i in range(len(s.inputs)) if i % n_samples < k]
    pick = lambda xs: [xs[i] for i in keep]
    return dataclasses.replace(s, inputs=pick(s.inputs), outputs=pick(s.outputs), token_ids=pick(s.token_ids))


# ---------- choices ----------
def policy_runs(runs: list[dict]) -> list[dict]:
    """Succeeded runs whose artifact is a policy (adapter, prompt, soft prompt), newest first."""
    return [r for r in runs if r["status"] == "succeeded"
            and any(a["kind"] in POLICY_ARTIFACTS for a in r.get("artifacts") or [])]


def check_choice(choice: str, lookup, model: str | None = None) -> None:
    """Refuse a run id that names no policy (or one made on another model) before any sampling starts."""
    kind, ref = split_choice(choice)
    if kind == "policy" and ref not in ("base", "prompt") and not ref.startswith("scenario:"):
        stored_artifact(lookup, ref, f"policy {ref!r}", POLICY_ARTIFACTS, model)


def other_models(runs: list[dict], model: str | None) -> dict[str, int]:
    """How many of `runs` were made on each model other than `model` (what a chart or menu leaves out)."""
    out: dict[str, int] = {}
    for r in runs:
        if not same_model(r, model):
            out[r["model"]] = out.get(r["model"], 0) + 1
    return out


# ---------- the reward-vs-KL frontier ----------
# A frontier point: {"label", "edge", "run_id", "kl", "reward", "source"}, KL(π‖π0) in nats per reply (the
# unit of best-of-N's bound log N − (N−1)/N); source "stored" (the run's own held-out numbers), "measured"
# (this compare) or "bound" (an upper bound on the KL, best-of-N). Curves add {"kind", "kl", "reward", "text"}.
FrontierReader = Callable[[dict, Callable[[str], list[dict]]], dict | None]


def _rl_frontier(run: dict, points_of) -> dict | None:
    """An RL run: its final (KL, reward), and its curve over training steps (reward in the scenario's unit)."""
    m = run.get("metrics") or {}
    if not isinstance(m.get("kl_to_base_seq"), (int, float)):
        return None
    beta = (run["config"].get("method_config") or {}).get("beta", 0.0)
    label = f"RL {run['method']} β={beta:g} · {run['run_id'][:6]}"
    derived = "reference_reward_after" in m  # trained on another reward: plot the scenario's reward
    reward = m["reference_reward_after"] if derived else m.get("reward_after")
    out = {"points": [_point(label, run, m["kl_to_base_seq"], reward, "stored")], "curves": []}
    if not derived:  # the step points are in the training reward's unit, the same one here
        steps: dict[int, dict] = {}
        for p in points_of(run["run_id"]):
            steps.setdefault(p["step"], {})[p["name"]] = p["value"]
        curve = [(v["kl_to_base_seq"], v["reward"]) for _, v in sorted(steps.items())
                 if "kl_to_base_seq" in v and "reward" in v] + [(m["kl_to_base_seq"], reward)]
        out["curves"].append({"label": label, "edge": run["edge"], "kind": "rl", "method": run["method"],
                              "run_id": run["run_id"],
                              "kl": [c[0] for c in curve], "reward": [c[1] for c in curve], "text": []})
    return out


def _bon_frontier(run: dict, points_of) -> dict | None:
    """Best-of-N sampled from π0: reward against its KL bound, one point per N."""
    res = (run.get("metrics") or {}).get("results") or []
    if not res or (run["config"].get("method_config") or {}).get("policy", "base") != "base":
        return None  # from another policy the bound is to that policy, not to π0
    label = f"best-of-N · {run['run_id'][:6]}"
    return {"points": [], "curves": [{"label": label, "edge": run["edge"], "kind": "best-of-n", "run_id": run["run_id"],
                                      "kl": [r["kl_bound"] for r in res], "reward": [r["reward"] for r in res],
                                      "text": [f"N={r['n']}" for r in res]}]}


FRONTIER_READERS: dict[str, FrontierReader] = {"reward->parameter": _rl_frontier, "best-of-n": _bon_frontier}


def _point(label: str, run: dict | None, kl: float, reward: float, source: str, stderr: float | None = None) -> dict:
    return {"label": label, "edge": (run or {}).get("edge", ""), "run_id": (run or {}).get("run_id"),
            "kl": kl, "reward": reward, "source": source, "stderr": stderr}


def frontier(runs: list[dict], points_of: Callable[[str], list[dict]], compare: dict | None = None,
             model: str | None = None) -> dict:
    """Every stored run of a scenario that has a KL to π0 and a reward, plus what a compare measured.

    Args:
        runs: the scenario's stored runs (with "artifacts" for policy runs not placed).
        points_of: run id -> its metric points (read only for runs with curves).
        compare: a `run_compare` result, whose policies become "measured" points.
        model: the lab's model; runs of other models stay off the chart (a KL to another π0 is another
            axis) and are counted in "other_models".
    Returns:
        {"points": [...], "curves": [...], "unplaced": [labels of policy runs with no KL to π0 yet],
         "other_models": {model: number of runs left off}}.
    """
    out: dict = {"points": [], "curves": [], "unplaced": [], "model": model, "other_models": other_models(runs, model)}
    runs = [r for r in runs if same_model(r, model)]
    measured = {p["choice"]: p for p in (compare or {}).get("policies", [])}
    by_id = {r["run_id"]: r for r in runs}
    for r in runs:
        reader = FRONTIER_READERS.get(r["edge"])
        got = reader(r, points_of) if reader and r["status"] == "succeeded" else None
        if got:
            out["points"] += got["points"]
            out["curves"] += got["curves"]
        elif r["run_id"] not in measured and policy_runs([r]):
            out["unplaced"].append(choice_label(r["run_id"], by_id.get))
    for p in measured.values():
        kl, source = (p["kl_to_base_seq"], "measured") if p["kl_to_base_seq"] is not None else (p["kl_bound"], "bound")
        if kl is not None:
            run = by_id.get(p["choice"]) or {"edge": p["edge"]}
            out["points"].append(_point(p["label"], run, kl, p["mean_reward"], source, p["stderr"]))
    return out
