"""Reward models from data, for a task with a golden metric (Sun et al. 2024, §4.3 and §4.1).

No preference labels are needed: sample replies of a policy on the train inputs (the `arithmetic` scenario)
and label each right or wrong with the golden metric, E(y, y*) ∈ {0, 1} (Eq. 9). Then fit a linear head on
π0's pooled hidden states (π0 frozen), whose logit is the reward (Eq. 7):
  outcome   the outcome-supervised reward model, R_ω = σ(logit) by Eq. 8 (each reply on its own);
  pairwise  Bradley-Terry (Eq. 4) on (right, wrong) pairs of replies to the same input, which is the
            comparison best-of-N makes (a pointwise model also learns which inputs are easy).
The head is a reward artifact that best-of-N, reward→parameter and the page's scoring use like any other.

Held out, on fresh replies of the same policy: AUC (right vs wrong over all replies), pair accuracy within an
input, and best-of-N reward for each N selecting by the learned reward, by the policy's own confidence
(mean token log-prob: the baseline to beat) and by the golden metric itself (the oracle, the ceiling), each
exact over subsets of the samples (`bon_expected`); N = 1 is the policy alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from engine.artifacts import Reward
from engine.tasks.best_of_n import bon_expected, parse_ns
from engine.errors import LabInputError
from engine.evaluation import sample_and_score
from engine.edges.prompt_to_reward import DERIVED
from engine.references import resolve_policy
from engine.reward_models import build_model_reward
from engine.rewards import pair_accuracy
from engine.config_pieces import LinearHead, opt
from engine.run_types import Result, RunContext
from engine.methods import register

TASK = "reward-model"
EQUATION = {"outcome": "Eq. 8", "pairwise": "Eq. 4"}


@dataclass(frozen=True)
class OutcomeRMConfig(LinearHead):
    REFERENCES: ClassVar[dict] = {"policy": "policy"}

    policy: str = opt("prompt", "Policy whose replies are labelled and later reranked: `base`, `prompt`, "
                                "`scenario:NAME` or a run id.")
    samples_per_input: int = opt(8, "Replies sampled per train input, each labelled right/wrong.", 1, 64)
    threshold: float = opt(0.5, "A reply is right (E = 1, Eq. 9) when its reference reward ≥ this.")
    pooling: str = opt("mean+last", "Features of a reply from π0's last hidden states: `mean+last` (averaged "
                                    "over the reply, and at its last token), `reply-mean` or `last`.",
                       choices=("mean+last", "reply-mean", "last"))
    context: str = opt("neutral", "What the head's π0 reads before the reply: `neutral` (the neutral system "
                                  "message and x) or `policy` (the policy's own prompt z and x, as it answered).",
                       choices=("neutral", "policy"))
    head_l2: float = opt(1.0, "L2 penalty l2·‖w‖² on the head (a few hundred replies, up to 1152 features: "
                              "strong).", 0.0, 100.0)
    n_train: int = opt(0, "Use only the first N train inputs (0 = all).", 0, 100000)
    n_heldout: int = opt(0, "Use only the first N held-out inputs (0 = all).", 0, 100000)
    heldout_samples: int = opt(8, "Fresh replies per held-out input (the pool best-of-N picks from).", 2, 64)
    n: str = opt("1,2,4,8", "Best-of-N sizes reported, each ≤ heldout_samples.")
    temperature: float = opt(1.0, "Sampling temperature.", 0.05, 2.0)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)
    seed: int = opt(0, "Seed for sampling.", 0, 2**31 - 1)

    def validate(self) -> None:
        super().validate()
        ns = parse_ns(self.n)
        if max(ns) > self.heldout_samples:
            raise LabInputError(f"n: {max(ns)} is more than heldout_samples={self.heldout_samples}; "
                                "best-of-N picks from the replies sampled per held-out input")


def correctness(rewards: list[float], threshold: float) -> torch.Tensor:
    """Eq. 9: E(y, y*) = 1 where the golden metric (the reference reward) reaches `threshold`, else 0."""
    return torch.tensor([float(r >= threshold) for r in rewards])


def auc(scores: list[float], correct: list[float]) -> float | None:
    """P(a right reply scores above a wrong one), over all replies; ties count half. None with one class."""
    return pair_accuracy(scores, correct, [0] * len(scores))[0]


def bon_curves(selectors: dict[str, list[float]], reference: list[float], m: int, ns: list[int]) -> list[dict]:
    """Best-of-N reference reward for each N under each selection rule: {"n", "reward_<name>", ...}.

    Args:
        selectors: name -> one selection score per reply (e.g. the ORM; "oracle" = the reference itself).
        reference: the reference reward of each reply; m replies per input, input-major.
    """
    groups = range(0, len(reference), m)
    out = []
    for n in ns:
        row = {"n": n}
        for name, select in selectors.items():
            per_input = [bon_expected(select[g:g + m], reference[g:g + m], n) for g in groups]
            row[f"reward_{name}"] = sum(per_input) / len(per_input)
        out.append(row)
    return out


def within_input_pairs(inputs: list[str], correct: list[float]) -> tuple[list[int], list[int]]:
    """(right, wrong) index pairs of replies to the same input: golden labels turned into preferences."""
    by_input: dict[str, list[int]] = {}
    for i, x in enumerate(inputs):
        by_input.setdefault(x, []).append(i)
    pairs = [(i, j) for idx in by_input.values() for i in idx for j in idx if correct[i] and not correct[j]]
    return [i for i, _ in pairs], [j for _, j in pairs]


def mean_token_logprob(host, policy, inputs: list[str], token_ids: list[list[int]]) -> list[float]:
    """The policy's own confidence in each reply, log π(y|x) / |y|: the selection rule to beat."""
    totals = host.sequence_logprobs(policy, inputs, token_ids)
    return [t / max(len(ids), 1) for t, ids in zip(totals, token_ids)]


def run(method: str, config: OutcomeRMConfig, ctx: RunContext) -> Result:
    from engine import reward_models as rm
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    policy = resolve_policy(config.policy, ctx, "policy")
    reward = sc.reward()
    train_x = sc.train_inputs[:config.n_train or None]
    data = sample_and_score(host, policy, train_x, reward, config.samples_per_input, config.max_new_tokens,
                            config.temperature, config.seed + 1,
                            on_batch=lambda i, k: progress(0.3 * i / k, "sampling train replies"))
    labels = correctness(data.rewards, config.threshold)
    n_right = int(labels.sum())
    if n_right in (0, len(labels)):
        raise ValueError(f"all {len(labels)} train replies are {'right' if n_right else 'wrong'} at threshold "
                         f"{config.threshold:g}: an outcome reward model needs both; change the threshold, "
                         "the policy or samples_per_input")
    progress(0.3, "features of the train replies")
    system = policy.system if config.context == "policy" else None
    feats = rm.reply_features(host, data.inputs, data.outputs, pooling=config.pooling, system=system,
                              on_batch=lambda i, k: progress(0.3 + 0.1 * i / k, "pooled hidden states"))

    def on_step(step, loss):
        if step % 25 == 0 or step == config.head_steps:
            progress(0.4 + 0.1 * step / config.head_steps, f"training the head ({EQUATION[method]}), step {step}",
                     step=step, points={"loss": loss})
    if method == "pairwise":
        win, lose = within_input_pairs(data.inputs, labels.tolist())
        if not win:
            raise ValueError("no train input has both a right and a wrong reply; sample more per input")
        head = rm.train_head(feats[win], feats[lose], config.head_steps, config.head_lr, config.head_l2,
                             config.seed, on_step)
    else:
        head = rm.train_outcome_head(feats, labels, config.head_steps, config.head_lr, config.head_l2,
                                     config.seed, on_step)
    path = rm.save_head(head, ctx.out_dir / "outcome_head.safetensors", host.model_name, config.pooling)
    with torch.no_grad():
        train_scores = head(feats).tolist()

    held = sample_and_score(host, policy, sc.heldout_inputs[:config.n_heldout or None], reward,
                            config.heldout_samples, config.max_new_tokens, config.temperature, config.seed + 2,
                            on_batch=lambda i, k: progress(0.5 + 0.35 * i / k, "sampling held-out replies"))
    progress(0.85, "scoring held-out replies with the reward model")
    spec = {"kind": "outcome", "objective": method, "head": str(path), "pooling": config.pooling,
            "context_system": system, "threshold": config.threshold,
            "trained_on": f"replies of {policy.label} ({config.policy})"}
    scores = build_model_reward(spec, host)(held.inputs, held.outputs)  # what is stored is what is measured
    progress(0.92, "the policy's own confidence in each held-out reply (the baseline)")
    confidence = mean_token_logprob(host, policy, held.inputs, held.token_ids)
    right = correctness(held.rewards, config.threshold).tolist()
    curves = bon_curves({"orm": scores, "confidence": confidence, "oracle": held.rewards}, held.rewards,
                        config.heldout_samples, parse_ns(config.n))
    for c in curves:
        progress(0.98, f"best-of-{c['n']}", step=c["n"], points={k: v for k, v in c.items() if k != "n"})
    metrics = {
        "auc": auc(scores, right),
        "pair_accuracy": pair_accuracy(scores, held.rewards, held.inputs)[0],
        "auc_confidence": auc(confidence, right),
        "pair_accuracy_confidence": pair_accuracy(confidence, held.rewards, held.inputs)[0],
        "train_auc": auc(train_scores, labels.tolist()),
        # σ(logit) > 1/2 is a classifier only for Eq. 8; Eq. 4 fixes differences, not where 0 lies
        "accuracy": (sum(float((s > 0) == bool(r)) for s, r in zip(scores, right)) / len(right)
                     if method == "outcome" else None),
        "positive_rate_train": n_right / len(labels),
        "positive_rate": sum(right) / len(right),
        "bon": curves,
        "n_train_replies": len(labels),
        "threshold": config.threshold,
    }
    rows = held.rows()
    for row, s in zip(rows, scores):
        row[DERIVED] = s
    return Result(metrics=metrics, samples=rows,
                  artifact=Reward(str(path), spec))


# ---------- the methods of this task ----------
_METRICS = ("auc", "pair_accuracy", "auc_confidence", "pair_accuracy_confidence", "bon")
QUICK = {"n_train": 32, "samples_per_input": 4, "heldout_samples": 4, "n": "1,2,4", "n_heldout": 8}   # both methods
register(TASK, "outcome", title="Outcome reward model (ORM) from golden-labelled replies",
         equation="E(y,y*) ∈ {0,1} (Eq. 9);  min_ω −E_{E=1}[log σ(r_ω)] − E_{E=0}[log(1 − σ(r_ω))] (Eq. 8)",
         config=OutcomeRMConfig, run=run, metrics=_METRICS, artifact="reward", default=True,
         quick=QUICK)
register(TASK, "pairwise", title="Bradley-Terry on right-vs-wrong replies of the same input",
         equation="E(y,y*) ∈ {0,1} (Eq. 9);  min_ω −Σ log σ(r_ω(x,y+) − r_ω(x,y−)), E(y+)=1, E(y−)=0 (Eq. 4)",
         config=OutcomeRMConfig, run=run, metrics=_METRICS, artifact="reward",
         quick=QUICK)
