"""Pseudo-inputs: more transfer-set inputs for context distillation, written by the base model itself.

Cai et al. (2024) §4 cite Choi et al. (2022) for pseudo-input generation when building the transfer set D of
Eq. 9. Here the base model is shown a few of the scenario's train inputs and asked for one more like them; the
first line of each reply that reads as a short request, and is none of the scenario's train or held-out inputs,
is kept.
"""
from __future__ import annotations

import random
import re

from engine.policies import BASE

SHOWN = 5                     # train inputs shown per request
MAX_WORDS, MIN_WORDS = 16, 2
ASK = ("Here are some questions and requests people send to an assistant:\n{examples}\n"
       "Write one new question or request like these, on a different topic. Reply with it only.")


def clean(reply: str) -> str | None:
    """The request in a reply (its first line, without numbering, bullets or quotes), or None if none."""
    line = reply.strip().split("\n")[0].strip()
    line = re.sub(r"^(\d+[.)]|[-*•])\s*", "", line).strip().strip("\"'“”").strip()
    words = line.split()
    if not (MIN_WORDS <= len(words) <= MAX_WORDS) or line[-1:] not in "?.!":
        return None
    return line


def pseudo_inputs(host, train_inputs: list[str], exclude: list[str], n: int, seed: int,
                  max_new_tokens: int = 32) -> list[str]:
    """Up to n distinct new inputs in the style of `train_inputs`, none of them in `exclude` (case-insensitive)."""
    rng = random.Random(seed)
    seen = {x.strip().lower() for x in [*train_inputs, *exclude]}
    out: list[str] = []
    for round_ in range(4):                      # a few rounds: some replies are not requests
        asks = [ASK.format(examples="\n".join(f"- {x}" for x in rng.sample(train_inputs, min(SHOWN, len(train_inputs)))))
                for _ in range(n - len(out))]
        if not asks:
            break
        replies = host.generate(BASE, asks, n_samples=1, max_new_tokens=max_new_tokens, temperature=1.0,
                                seed=seed + round_).texts
        for (reply,) in replies:
            x = clean(reply)
            if x and x.lower() not in seen:
                seen.add(x.lower())
                out.append(x)
    return out[:n]
