"""Best-of-N: inference-time optimization with a reward (Sun et al. 2024, §3).

Draw N replies from a policy, keep the one a selection reward scores highest. Reported for each N, on
held-out inputs: the scenario's reference reward of the kept reply, and the KL bound
KL(π_BoN ‖ π) ≤ log N − (N−1)/N.

Instead of one draw of N per input (noisy), M = max N replies are sampled once per input and the
expected reference reward of best-of-N is computed exactly over all N-subsets of the M (`bon_expected`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from engine.errors import LabInputError
from engine.evaluation import Scored, sample_and_score
from engine.references import resolve_policy, resolve_reward
from engine.rl_objectives import best_of_n_kl_bound
from engine.config_pieces import opt
from engine.run_types import Result, RunContext
from engine.methods import register

TASK = "best-of-n"


@dataclass(frozen=True)
class BestOfNConfig:
    REFERENCES: ClassVar[dict] = {"reward": "reward", "policy": "policy"}

    n: str = opt("1,2,4,8,16", "Comma list of N; max N replies are sampled per input.")
    reward: str = opt("", "Selection reward: empty = the scenario's reference reward, or a run id whose artifact "
                          "is a reward. The reported reward is always the reference reward.")
    policy: str = opt("base", "Policy sampled from: `base`, `prompt`, `scenario:NAME` or a run id.")
    n_heldout: int = opt(0, "Use only the first N held-out inputs (0 = all).", 0, 10000)
    temperature: float = opt(1.0, "Sampling temperature.", 0.05, 2.0)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)
    seed: int = opt(0, "Sampling seed.", 0, 2**31 - 1)
    kl_samples: int = opt(0, "Also measure the policy's exact KL(π ‖ π0) per token, teacher-forced on the first K "
                             "replies of each input (0 = not measured).", 0, 256)

    def validate(self) -> None:
        parse_ns(self.n)


def parse_ns(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; each N a whole number ≥ 1, at most 256."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            raise LabInputError(f"n: {part!r} is not a whole number; give e.g. 1,2,4,8,16")
        value = int(part)
        if value <= 0 or value > 256:
            raise LabInputError(f"n: {value} is out of range; each N must be 1 … 256")
        out.append(value)
    if not out:
        raise LabInputError("n: empty; give e.g. 1,2,4,8,16")
    return sorted(set(out))


def bon_expected(select: list[float], reference: list[float], n: int) -> float:
    """Expected reference reward of the reply best-of-n keeps, over all n-subsets of the M samples.

    Sort the samples by the selection reward; the i-th smallest (1-based) is the best of a uniformly drawn
    n-subset with probability C(i−1, n−1) / C(M, n). Ties in the selection reward are broken by position.

    Args:
        select: (M,) selection reward of each sample of one input.
        reference: (M,) reference reward of the same samples.
        n: subset size, 1 ≤ n ≤ M.
    """
    M = len(select)
    if not 1 <= n <= M:
        raise ValueError(f"n={n} must be within 1..{M}")
    order = sorted(range(M), key=lambda i: (select[i], -i))
    total = math.comb(M, n)
    return sum(math.comb(rank, n - 1) / total * reference[i] for rank, i in enumerate(order))


def run(method: str, config: BestOfNConfig, ctx: RunContext) -> Result:
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    ns = parse_ns(config.n)
    M = max(ns)
    policy = resolve_policy(config.policy, ctx, "policy")
    ref_reward = sc.reward()
    select_reward = resolve_reward(config.reward, ctx) if config.reward.strip() else ref_reward
    xs = sc.heldout_inputs[:config.n_heldout or None]
    s = sample_and_score(host, policy, xs, ref_reward, M, config.max_new_tokens, config.temperature, config.seed,
                         on_batch=lambda i, k: progress(0.8 * i / k, f"sampling {M} replies per input"))
    progress(0.8, "scoring with the selection reward")
    select = s.rewards if select_reward is ref_reward else select_reward(s.inputs, s.outputs)
    results = []
    for n in ns:
        per_input = [bon_expected(select[i * M:(i + 1) * M], s.rewards[i * M:(i + 1) * M], n)
                     for i in range(len(xs))]
        results.append({"n": n, "reward": sum(per_input) / len(per_input), "kl_bound": best_of_n_kl_bound(n)})
        progress(0.8 + 0.2 * len(results) / len(ns), f"best-of-{n}", step=n,
                 points={"reward": results[-1]["reward"], "kl_bound": results[-1]["kl_bound"]})
    rows = s.rows()
    for row, sel in zip(rows, select):
        row["selection_reward"] = sel
    metrics = {"results": results, "n_samples": M, "n_inputs": len(xs)}
    if config.kl_samples:
        progress(0.99, "exact KL of the policy to π0")
        metrics["policy_kl_to_base"] = policy_kl(host, policy, s, config.kl_samples)
    return Result(metrics=metrics, artifact=None, samples=rows)


def policy_kl(host, policy, s: Scored, k: int) -> float:
    """Exact KL(π ‖ π0) per reply token on the first k replies sampled per input."""
    from engine.edges.reward_to_parameter import kl_to_base
    keep = [i for i, j in enumerate(s.sample_index) if j < k]
    sub = Scored(s.policy, [s.inputs[i] for i in keep], [s.outputs[i] for i in keep],
                 [s.token_ids[i] for i in keep], [s.rewards[i] for i in keep], [s.sample_index[i] for i in keep])
    return kl_to_base(host, policy, sub)[0]


register(TASK, "bon", title="Best-of-N with a reward",
         equation="y = argmax_{y_1..y_N ~ π} r(x, y_i);  KL(π_BoN ‖ π) ≤ log N − (N−1)/N",
         config=BestOfNConfig, run=run, metrics=("results",),
         quick={"n": "1,2,4,8", "n_heldout": 8})
