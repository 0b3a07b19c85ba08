"""Eq. 17, reward-conditioned training: max_{π,z} E_{(x,y)~D} [π(y | x, z(r(x,y)))].

The pieces of the `conditioned` method of reward -> prompt. Samples y ~ π0(·|x) are scored, their rewards
binned into k levels s = 1..k (equal-count bins), and a LoRA adapter learns y from (z(s), x), where z(s)
is a readable control prompt stating the level (the system message), with a level-contrast term that makes
each reply likelier under its own level than under another. At test time z(s) asks for level s.
Eq. 18 reads the achieved level back: r̂(x, y, s) = −|s − level(r(x, y))|.
"""
from __future__ import annotations

import math
import random

import torch

from engine.errors import LabInputError

DEFAULT_FORMAT = "Reward level {level} of {levels} ({name})."


# ---------- levels and control prompts (pure) ----------
def quantile_levels(rewards: list[float], k: int) -> list[int]:
    """Bin rewards into k equal-count levels 1..k by rank; tied rewards share a level.

    Args:
        rewards: one reward per sample.
        k: number of levels (>= 2).
    Returns:
        level of each sample: ceil(k · (average rank − 0.5) / n), so with n = k·m distinct rewards each
        level holds m samples.
    """
    from engine.rewards import average_ranks
    n = len(rewards)
    return [min(k, max(1, math.ceil(k * (r - 0.5) / n))) for r in average_ranks(rewards)]


def level_thresholds(rewards: list[float], levels: list[int], k: int) -> list[float | None]:
    """Lowest reward of each level 2..k (None for an empty level): the edges that place a new reward."""
    return [min((r for r, s in zip(rewards, levels) if s == level), default=None) for level in range(2, k + 1)]


def level_of(reward: float, thresholds: list[float | None]) -> int:
    """The level a reward falls in: 1 + the number of (non-empty) level edges it reaches."""
    return 1 + sum(1 for t in thresholds if t is not None and reward >= t)


LADDER = ("very low", "low", "fairly low", "medium", "fairly high", "high", "very high")


def level_name(level: int, k: int) -> str:
    """A word for level s of k, spread over LADDER from 'very low' to 'very high'."""
    return LADDER[round((level - 1) * (len(LADDER) - 1) / (k - 1))]


def control_prompt(fmt: str, level: int, k: int) -> str:
    """z(s): the readable control prompt for level s of k ({level}, {levels}, {name} = level_name)."""
    return (fmt.replace("{levels}", str(k)).replace("{level}", str(level))
            .replace("{name}", level_name(level, k)))


def control_reward(target: int, achieved: int) -> float:
    """Eq. 18 in level units: r̂(x, y, s) = −|s − level(r(x, y))|."""
    return -abs(target - achieved)


def level_contrast_loss(logp_own: torch.Tensor, logp_other: torch.Tensor) -> torch.Tensor:
    """The level-contrast term: mean of −log σ(log π(y|x,z(s)) − log π(y|x,z(s'))).

    Eq. 17 alone spends almost all of its gradient on the content of y, which every level shares; the
    reply's own level must also explain it better than another level s' does. Content cancels in the
    difference, so this gradient is all about the level (the level's posterior given y, for two levels).
    Args:
        logp_own: (B,) log π(y|x,z(s)) summed over reply tokens, s the sample's level.
        logp_other: (B,) the same under z(s') for another level s'.
    Returns:
        scalar; log 2 when the control prompt makes no difference.
    """
    return -torch.nn.functional.logsigmoid(logp_own - logp_other).mean()


def other_level(level: int, k: int, rng: random.Random) -> int:
    """A level other than `level`, uniformly."""
    return rng.choice([s for s in range(1, k + 1) if s != level])


def check_format(fmt: str) -> None:
    if "{level}" not in fmt:
        raise LabInputError("control_format: must contain {level} (where the target level is written), "
                            f"e.g. {DEFAULT_FORMAT!r}")


def level_batches(levels: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches, each from a single level (the control prompt is one system message per
    forward), in random order.

    Args:
        levels: level of each training sample.
        batch_size: samples per batch (the last batch of a level may be smaller).
        rng: seeded; shuffles samples within a level and the order of batches.
    Returns:
        lists of sample indices.
    """
    batches = []
    for level in sorted(set(levels)):
        idx = [i for i, s in enumerate(levels) if s == level]
        rng.shuffle(idx)
        batches += [idx[b:b + batch_size] for b in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches
