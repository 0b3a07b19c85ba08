"""Reward models from data: the outcome-supervised reward model (Sun et al. 2024, §4.3, Eqs. 7–9).

For a task with a golden metric (the `arithmetic` scenario: exact match of the final number) no preference
labels are needed: sample replies of a policy on the train inputs, label each right or wrong with the golden
metric, E(y, y*) ∈ {0, 1} (Eq. 9), and fit R_ω(x, y) = σ(logit) by Eq. 8. The reward is the logit (Eq. 7),
a linear head on π0's pooled hidden states (π0 frozen), stored as a reward artifact that best-of-N,
reward→parameter and the page's scoring can use like any other.

Held out, on fresh replies of the same policy: how well the ORM separates right from wrong (AUC over all
replies, pair accuracy within an input — what best-of-N needs), and best-of-N with the ORM as the selection
reward beside the oracle (selection by the golden metric itself) and N = 1 (no selection), every N computed
exactly over subsets of the samples (`bon_expected`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from engine.best_of_n import bon_expected, parse_ns
from engine.errors import LabInputError
from engine.evaluation import sample_and_score
from engine.prompt_to_reward import DERIVED
from engine.references import resolve_policy
from engine.rewards import build_model_reward, pair_accuracy
from engine.run_types import Result, RunContext, opt

TASK = "reward-model"


@dataclass(frozen=True)
class OutcomeRMConfig:
    REFERENCES: ClassVar[dict] = {"policy": "policy"}

    policy: str = opt("prompt", "Policy whose replies are labelled and later reranked: `base`, `prompt`, "
                                "`scenario:NAME` or a run id.")
    samples_per_input: int = opt(8, "Replies sampled per train input, each labelled right/wrong.", 1, 64)
    threshold: float = opt(0.5, "A reply is right (E = 1, Eq. 9) when its reference reward ≥ this.")
    pooling: str = opt("last", "Features of a reply: `last` (hidden state at its last token), `reply-mean` or "
                               "`mean+last`.", choices=("last", "reply-mean", "mean+last"))
    head_steps: int = opt(300, "Full-batch Adam steps on the linear head.", 1, 10000)
    head_lr: float = opt(1e-2, "Learning rate of the head.", 1e-5, 1.0)
    head_l2: float = opt(0.1, "L2 penalty l2·‖w‖² on the head.", 0.0, 100.0)
    n_train: int = opt(0, "Use only the first N train inputs (0 = all).", 0, 100000)
    n_heldout: int = opt(0, "Use only the first N held-out inputs (0 = all).", 0, 100000)
    heldout_samples: int = opt(8, "Fresh replies per held-out input (the pool best-of-N picks from).", 2, 64)
    n: str = opt("1,2,4,8", "Best-of-N sizes reported, each ≤ heldout_samples.")
    temperature: float = opt(1.0, "Sampling temperature.", 0.05, 2.0)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)
    seed: int = opt(0, "Seed for sampling.", 0, 2**31 - 1)

    def validate(self) -> None:
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


def bon_curves(select: list[float], reference: list[float], m: int, ns: list[int]) -> list[dict]:
    """Best-of-N reference reward for each N, selecting by `select` (the ORM) and by `reference` (the oracle).

    Args:
        select, reference: one value per reply, m replies per input, input-major.
    """
    groups = range(0, len(reference), m)
    out = []
    for n in ns:
        orm = [bon_expected(select[g:g + m], reference[g:g + m], n) for g in groups]
        oracle = [bon_expected(reference[g:g + m], reference[g:g + m], n) for g in groups]
        out.append({"n": n, "reward_orm": sum(orm) / len(orm), "reward_oracle": sum(oracle) / len(oracle)})
    return out


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
    feats = rm.pooled_features(host, data.inputs, data.token_ids, pooling=config.pooling,
                               on_batch=lambda i, k: progress(0.3 + 0.1 * i / k, "pooled hidden states"))

    def on_step(step, loss):
        if step % 25 == 0 or step == config.head_steps:
            progress(0.4 + 0.1 * step / config.head_steps, f"training the head (Eq. 8), step {step}",
                     step=step, points={"loss": loss})
    head = rm.train_outcome_head(feats, labels, config.head_steps, config.head_lr, config.head_l2, config.seed,
                                 on_step)
    path = rm.save_head(head, ctx.out_dir / "outcome_head.safetensors", host.model_name, config.pooling)
    with torch.no_grad():
        train_scores = head(feats).tolist()

    held = sample_and_score(host, policy, sc.heldout_inputs[:config.n_heldout or None], reward,
                            config.heldout_samples, config.max_new_tokens, config.temperature, config.seed + 2,
                            on_batch=lambda i, k: progress(0.5 + 0.35 * i / k, "sampling held-out replies"))
    progress(0.85, "scoring held-out replies with the reward model")
    spec = {"kind": "outcome", "head": str(path), "pooling": config.pooling, "threshold": config.threshold,
            "trained_on": f"replies of {policy.label} ({config.policy})"}
    scores = build_model_reward(spec, host)(held.inputs, held.outputs)  # what is stored is what is measured
    right = correctness(held.rewards, config.threshold).tolist()
    curves = bon_curves(scores, held.rewards, config.heldout_samples, parse_ns(config.n))
    for c in curves:
        progress(0.9, f"best-of-{c['n']}", step=c["n"], points={"reward_orm": c["reward_orm"],
                                                                 "reward_oracle": c["reward_oracle"]})
    metrics = {
        "auc": auc(scores, right),
        "pair_accuracy": pair_accuracy(scores, held.rewards, held.inputs)[0],
        "train_auc": auc(train_scores, labels.tolist()),
        "accuracy": sum(float((s > 0) == bool(r)) for s, r in zip(scores, right)) / len(right),
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
                  artifact={"kind": "reward", "vertex": "reward", "path": str(path), "data": spec})
