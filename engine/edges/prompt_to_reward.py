"""prompt -> reward: a reward model read off π0 with prompts (2406.16377 §6).

Three methods, each producing a reward `(inputs, outputs) -> list[float]` (engine/reward_models.py):
  judge          Eq. 14 — a grading prompt z; the score is Σ_s s·π0(s | x, y, z) over the digits 1..9
  contrastive    Eq. 15 — log π0(y|x,z+) − log π0(y|x,z−) for the prompt pair (z+, z−)
  bradley-terry  contrastive prompting (RLCD): pairs y+ ~ π0(·|x,z+), y− ~ π0(·|x,z−) on train inputs
                 (or a user's preference file) → a linear Bradley-Terry head on π0's pooled hidden states
Evaluation, the same for all three: on held-out inputs, samples from a pool of policies (π0, π0+z+,
π0+z−) are scored by the derived reward and by the scenario's reference reward; reported are the pair
accuracy (pairs of outputs of the same input) and the Spearman correlation over all outputs.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from engine.artifacts import Reward
from engine.errors import LabInputError
from engine.evaluation import Scored, held_out, sample_and_score
from engine.policies import BASE, Prompt
from engine.reward_models import build_model_reward
from engine.rewards import pair_accuracy, spearman
from engine.config_pieces import Compute, HeldOut, LinearHead, like, opt
from engine.run_types import Result, RunContext
from engine.methods import register

EDGE = "prompt->reward"
DERIVED = "derived"   # the key of the derived reward in each sample row
MAX_FILE_REPLY_TOKENS = 256  # replies from a preference file are cut here (features of the first tokens)

JUDGE_SYSTEM = "You are a strict and fair judge of replies."
JUDGE_TEMPLATE = ("Criterion: {criterion}\n\nUser message: {input}\n\nReply: {output}\n\n"
                  "How well does the reply meet the criterion? Answer with one digit from 1 (not at all) "
                  "to 9 (perfectly).")


@dataclass(frozen=True)
class PromptPairConfig(HeldOut, Compute):
    """What every method of this edge reads: the prompt pair and the held-out pool it is checked on."""
    z_plus: str = opt("", "Positive prompt z+ (empty = the scenario's prompt).")
    z_minus: str = opt("", "Negative prompt z− (empty = the scenario's negative_prompt).")
    n_heldout: int = like(HeldOut, "n_heldout", 0)
    eval_samples: int = opt(2, "Samples per held-out input from each policy of the pool (π0, π0+z+, π0+z−).",
                            1, 16)
    eval_temperature: float = opt(0.7, "Sampling temperature of the held-out pool.", 0.05, 2.0)

    def validate(self) -> None:
        super().validate()
        if self.z_plus.strip() and self.z_plus.strip() == self.z_minus.strip():
            raise LabInputError("z_minus: identical to z_plus; the two prompts must differ")


@dataclass(frozen=True)
class JudgeConfig(PromptPairConfig):
    judge_template: str = opt(JUDGE_TEMPLATE, "The grading prompt; {criterion}, {input} and {output} are filled "
                                              "in. The judge replies 'Score: ' + a digit.")
    judge_criterion: str = opt("", "What a good reply is (empty = 'follows the instruction z+').")

    def validate(self) -> None:
        super().validate()
        for key in ("{input}", "{output}"):
            if key not in self.judge_template:
                raise LabInputError(f"judge_template: must contain {key} (where the judge sees the "
                                    f"{key.strip('{}')})")


@dataclass(frozen=True)
class ContrastiveConfig(PromptPairConfig):
    aggregate: str = opt("sum", "'sum' = log π0(y|x,z+)/π0(y|x,z−) (Eq. 15); 'mean' = the same per reply token.",
                         choices=("sum", "mean"))


@dataclass(frozen=True)
class BradleyTerryConfig(PromptPairConfig, LinearHead):
    preference_file: str = opt("", "JSONL file of {prompt, chosen, rejected} (empty = generate RLCD pairs from "
                                   "z+ and z−).")
    pairs_per_input: int = opt(4, "RLCD pairs (y+ from z+, y− from z−) per train input.", 1, 16)
    pair_temperature: float = opt(1.0, "Sampling temperature of the RLCD pairs.", 0.05, 2.0)
    n_train: int = opt(0, "Use only the first N train inputs / file pairs (0 = all).", 0, 100000)
    val_fraction: float = opt(0.2, "Share of pairs held back to check the head.", 0.0, 0.5)

    def validate(self) -> None:
        super().validate()
        if self.preference_file.strip():
            from engine.reward_models import load_preference_file
            load_preference_file(self.preference_file)


def prompt_pair(config: PromptPairConfig, scenario) -> tuple[Prompt, Prompt]:
    """(z+, z−): typed ones first, else the scenario's (z+ with its demonstrations); non-empty and different."""
    z_plus = Prompt(config.z_plus.strip()) if config.z_plus.strip() else scenario.z
    z_minus = Prompt(config.z_minus.strip() or scenario.negative_prompt.strip())
    if not z_plus.text:
        raise LabInputError("z_plus: empty; type a positive prompt or use a scenario with a prompt")
    if not z_minus.text:
        raise LabInputError("z_minus: empty, and the scenario has no negative_prompt; type a negative "
                            "prompt z− (e.g. the opposite of the scenario's prompt)")
    if z_plus == z_minus:
        raise LabInputError("z_minus: identical to z_plus; the two prompts must differ")
    return z_plus, z_minus


def run(method: str, config: PromptPairConfig, ctx: RunContext) -> Result:
    z_plus, z_minus = prompt_pair(config, ctx.scenario)
    spec, path, extra = DERIVE[method](config, ctx, z_plus, z_minus)
    reward = build_model_reward(spec, ctx.host)  # rebuilt from the spec: what is stored is what is measured
    pool = _sample_pool(config, ctx, z_plus, z_minus, lo=0.5 if method == "bradley-terry" else 0.0)
    xs = [x for s in pool for x in s.inputs]
    ys = [y for s in pool for y in s.outputs]
    ref = [r for s in pool for r in s.rewards]
    t0 = time.perf_counter()
    derived = _score(reward, xs, ys, ctx, lo=0.8 if method == "bradley-terry" else 0.6)
    metrics = agreement(derived, ref, xs) | {"score_s_per_output": (time.perf_counter() - t0) / len(ys)}
    rows, k = [], 0
    for s in pool:
        metrics[f"reward_{s.policy}"] = s.mean_reward
        metrics[f"derived_{s.policy}"] = sum(derived[k:k + len(s.outputs)]) / len(s.outputs)
        rows += [row | {DERIVED: d} for row, d in zip(s.rows(), derived[k:k + len(s.outputs)])]
        k += len(s.outputs)
    artifact = Reward(path, spec)
    return Result(metrics=metrics | extra, artifact=artifact, samples=rows)


def agreement(derived: list[float], reference: list[float], inputs: list[str]) -> dict:
    """The edge's headline numbers: pair accuracy within inputs, Spearman over all outputs."""
    acc, n_pairs = pair_accuracy(derived, reference, inputs)
    return {"pair_accuracy": acc, "spearman": spearman(derived, reference), "n_pairs": n_pairs,
            "n_outputs": len(derived)}


# ---------- deriving the reward, one small function per method ----------
def _judge(config, ctx, z_plus, z_minus):
    criterion = config.judge_criterion.strip() or f'the reply follows this instruction: "{z_plus.text}"'
    template = config.judge_template.replace("{criterion}", criterion)
    return {"kind": "judge", "system": JUDGE_SYSTEM, "template": template}, None, {}


def _contrastive(config, ctx, z_plus, z_minus):
    return {"kind": "contrastive", **prompt_fields(z_plus, "z_plus"), **prompt_fields(z_minus, "z_minus"),
            "aggregate": config.aggregate}, None, {}


def prompt_fields(z: Prompt, name: str) -> dict:
    """A prompt in a reward spec: its text under `name`, its demonstration turns (if any) under name_turns."""
    return {name: z.text} | ({f"{name}_turns": [list(t) for t in z.turns]} if z.turns else {})


def _bradley_terry(config, ctx, z_plus, z_minus):
    from engine import reward_models as rm
    host, progress = ctx.host, ctx.on_progress
    xs, chosen, rejected, extra = _preference_pairs(config, ctx, z_plus, z_minus)
    progress(0.3, "features of the preference pairs")
    feats = rm.pooled_features(host, xs + xs, chosen + rejected,
                               on_batch=lambda i, k: progress(0.3 + 0.15 * i / k, "pooled hidden states"))
    f_plus, f_minus = feats[:len(xs)], feats[len(xs):]
    order = list(range(len(xs)))
    random.Random(config.seed).shuffle(order)
    n_val = int(len(order) * config.val_fraction)
    val, train = order[:n_val], order[n_val:]
    if not train:
        raise LabInputError("val_fraction: leaves no pairs to train on; lower it or add pairs")

    def on_step(step, loss):
        if step % 25 == 0 or step == config.head_steps:
            progress(0.45 + 0.05 * step / config.head_steps, f"training the head, step {step}",
                     step=step, points={"loss": loss})
    head = rm.train_head(f_plus[train], f_minus[train], config.head_steps, config.head_lr,
                         config.head_l2, config.seed, on_step)
    path = rm.save_head(head, ctx.out_dir / "reward_head.safetensors", host.model_name)
    extra |= {"n_train_pairs": len(train),
              "head_train_accuracy": rm.preference_accuracy(head, f_plus[train], f_minus[train]),
              "head_val_accuracy": rm.preference_accuracy(head, f_plus[val], f_minus[val])}
    spec = {"kind": "bradley-terry", "head": str(path), "pooling": "reply-mean",
            "source": config.preference_file.strip() or {"z_plus": z_plus.text, "z_minus": z_minus.text}}
    return spec, str(path), extra


def _preference_pairs(config, ctx, z_plus, z_minus):
    """(inputs, chosen reply ids, rejected reply ids, metrics) from the preference file or RLCD sampling."""
    host, sc, progress = ctx.host, ctx.scenario, ctx.on_progress
    if config.preference_file.strip():
        from engine.reward_models import load_preference_file
        pairs = load_preference_file(config.preference_file)[:config.n_train or None]
        cut = lambda y: host.reply_ids(y)[:MAX_FILE_REPLY_TOKENS]
        return ([p["prompt"] for p in pairs], [cut(p["chosen"]) for p in pairs],
                [cut(p["rejected"]) for p in pairs], {})
    train_x = sc.train_inputs[:config.n_train or None]
    reward = sc.reward()
    sample = lambda z, label, seed, lo: sample_and_score(
        host, z.policy(label), train_x, reward, config.pairs_per_input, config.max_new_tokens,
        config.pair_temperature, seed, on_batch=lambda i, k: progress(lo + 0.15 * i / k, f"RLCD pairs: {label}"))
    plus = sample(z_plus, "positive", config.seed + 11, 0.0)
    minus = sample(z_minus, "negative", config.seed + 12, 0.15)
    # how often the RLCD label (y+ preferred) agrees with the reference reward: the label noise
    agree = [float(a > b) + 0.5 * float(a == b) for a, b in zip(plus.rewards, minus.rewards)]
    served = lambda s: [host.reply_ids(y) for y in s.outputs]   # as the reward reads replies (reply_features)
    return plus.inputs, served(plus), served(minus), {"pair_label_accuracy": sum(agree) / len(agree)}


DERIVE = {"judge": _judge, "contrastive": _contrastive, "bradley-terry": _bradley_terry}


# ---------- evaluation, the same for every method ----------

def _sample_pool(config, ctx, z_plus, z_minus, lo: float) -> list[Scored]:
    """Held-out samples from π0, π0+z+ and π0+z−, each scored with the reference reward."""
    reward, hi = ctx.scenario.reward(), lo + 0.6 * (1 - lo)
    policies = [BASE, z_plus.policy("positive"), z_minus.policy("negative")]
    step = (hi - lo) / len(policies)
    return [held_out(ctx, config, policy, reward, seed_offset=1 + i, span=(lo + step * i, lo + step * (i + 1)))
            for i, policy in enumerate(policies)]


def _score(reward, xs: list[str], ys: list[str], ctx, lo: float, chunk: int = 32) -> list[float]:
    out: list[float] = []
    for b in range(0, len(xs), chunk):
        ctx.on_progress(lo + (1 - lo) * b / len(xs), "scoring the held-out pool with the derived reward")
        out += reward(xs[b:b + chunk], ys[b:b + chunk])
    return out


# ---------- the methods of this edge ----------
_METRICS = ("pair_accuracy", "spearman", "n_pairs")
QUICK = {"n_heldout": 8}   # every method of this edge (eval_samples is 2 already)
register(EDGE, "contrastive", title="Contrastive scoring with a prompt pair",
         equation="R(x,y) = log π0(y|x,z+) − log π0(y|x,z−)   (Eq. 15)",
         config=ContrastiveConfig, run=run, metrics=_METRICS, artifact="reward",
         quick=QUICK)
register(EDGE, "judge", title="Direct prompting: the model as a judge",
         equation="r(x,y) = Σ_s s · π0(s|x,y,z), s ∈ 1..9   (Eq. 14)",
         config=JudgeConfig, run=run, metrics=_METRICS, artifact="reward",
         quick=QUICK)
register(EDGE, "bradley-terry", title="Contrastive prompting pairs → Bradley-Terry reward model",
         equation="y+ ~ π0(·|x,z+), y− ~ π0(·|x,z−);  min −log σ(r(x,y+) − r(x,y−))",
         config=BradleyTerryConfig, run=run, metrics=_METRICS, artifact="reward",
         quick=QUICK | {"n_train": 32, "pairs_per_input": 2})
