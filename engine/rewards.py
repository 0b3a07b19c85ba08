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
