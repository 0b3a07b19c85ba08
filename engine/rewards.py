"""Reference rewards: plain callables `(inputs, outputs) -> list[float]`, built from a JSON spec.

Each kind registers a builder that validates its own fields, so adding a kind is adding a function.
"""
from __future__ import annotations

import re
from typing import Callable

from engine.errors import LabInputError

Reward = Callable[[list[str], list[str]], list[float]]
_BUILDERS: dict[str, Callable[[dict], Reward]] = {}
WORD_RE = re.compile(r"[A-Za-z0-9']+")


def reward_kind(name: str):
    def register(builder: Callable[[dict], Reward]) -> Callable[[dict], Reward]:
        _BUILDERS[name] = builder
        return builder
    return register


def reward_kinds() -> list[str]:
    return sorted(_BUILDERS)


def build_reward(spec: dict) -> Reward:
    """Build a reward from `{"kind": ..., **fields}`; unknown kinds or keys raise LabInputError."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise LabInputError('reward: expected an object with a "kind", e.g. {"kind": "sentiment"}')
    kind = spec["kind"]
    if kind not in _BUILDERS:
        raise LabInputError(f"reward.kind: unknown kind {kind!r}; choose one of {reward_kinds()}")
    return _BUILDERS[kind](spec)


def _check_keys(spec: dict, allowed: set[str]) -> None:
    extra = set(spec) - allowed - {"kind"}
    if extra:
        raise LabInputError(f"reward.{sorted(extra)[0]}: unknown field for kind {spec['kind']!r}"
                            f" (allowed: {sorted(allowed) or 'none'})")


@reward_kind("sentiment")
def sentiment_reward(spec: dict) -> Reward:
    """VADER compound score of the reply, in [-1, 1]."""
    _check_keys(spec, set())
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    analyzer = SentimentIntensityAnalyzer()

    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        return [analyzer.polarity_scores(y)["compound"] for y in outputs]
    return reward


@reward_kind("keywords")
def keywords_reward(spec: dict) -> Reward:
    """Count of whole-word, case-insensitive occurrences of any of `words` in the reply."""
    _check_keys(spec, {"words"})
    words = spec.get("words")
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise LabInputError("reward.words: give a non-empty list of words, e.g. [\"arr\", \"matey\"]")
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w.strip()) for w in words) + r")\b", re.IGNORECASE)

    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        return [float(len(pattern.findall(y))) for y in outputs]
    return reward


@reward_kind("length")
def length_reward(spec: dict) -> Reward:
    """-|words - target| / target: 0 at the target length, lower further away."""
    _check_keys(spec, {"target_words"})
    target = spec.get("target_words")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or target <= 0:
        raise LabInputError("reward.target_words: give a positive number of words, e.g. 12")

    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        return [-abs(len(WORD_RE.findall(y)) - target) / target for y in outputs]
    return reward


NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> float | None:
    """The last number written in `text` ("1,200" reads as 1200; a trailing "." is not a decimal point)."""
    found = NUMBER_RE.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:  # e.g. "1,,2"
        return None


@reward_kind("exact-number")
def exact_number_reward(spec: dict) -> Reward:
    """1.0 if the final number in the reply equals the golden answer of its input, else 0.0.

    The golden answers travel in the spec, {"answers": {input: number}}, so inputs stay plain text."""
    _check_keys(spec, {"answers"})
    answers = spec.get("answers")
    if (not isinstance(answers, dict) or not answers
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in answers.values())):
        raise LabInputError('reward.answers: give an object mapping each input to its golden number, '
                            'e.g. {"What is 2 + 3?": 5}')

    def reward(inputs: list[str], outputs: list[str]) -> list[float]:
        missing = [x for x in inputs if x not in answers]
        if missing:
            raise LabInputError(f"reward.answers: no golden answer for input {missing[0]!r}")
        return [float(final_number(y) == float(answers[x])) for x, y in zip(inputs, outputs)]
    return reward


def check_reward_inputs(spec: dict, inputs: list[str]) -> None:
    """Rewards that carry per-input data (golden answers) must cover every input of the scenario."""
    answers = spec.get("answers") if isinstance(spec, dict) else None
    if isinstance(answers, dict):
        missing = [x for x in inputs if x not in answers]
        if missing:
            raise LabInputError(f"reward.answers: no golden answer for input {missing[0]!r}")



# ---------- agreement between two rewards (pure; no model) ----------
def pair_accuracy(derived: list[float], reference: list[float], groups: list) -> tuple[float | None, int]:
    """How often `derived` orders two outputs of the same input like `reference` does.

    Args:
        derived, reference: one score per output.
        groups: one key per output (its input); only pairs within a group are compared.
    Returns:
        (accuracy, n_pairs). Pairs tied in the reference are skipped; a tie in `derived` counts as half
        right. accuracy is None when there is no pair to compare.
    """
    by_group: dict = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    right, n = 0.0, 0
    for idx in by_group.values():
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                ref = reference[i] - reference[j]
                if ref == 0:
                    continue
                d = derived[i] - derived[j]
                right += 0.5 if d == 0 else float((d > 0) == (ref > 0))
                n += 1
    return (right / n if n else None), n


def average_ranks(values: list[float]) -> list[float]:
    """Ranks 1..n of `values`; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation: Pearson correlation of the average ranks. None if either is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    n = len(ra)
    if n < 2:
        return None
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else None
