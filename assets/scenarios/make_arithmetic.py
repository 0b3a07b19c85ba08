"""Write assets/scenarios/arithmetic.json: one- and two-digit word problems with golden answers.

Deterministic (a fixed seed): `python assets/scenarios/make_arithmetic.py` rewrites the same file.
The golden answers travel in the reward spec, {"kind": "exact-number", "answers": {input: number}}; the
expert demonstrations (Sun et al. §3.1.1: what SFT imitates) are the worked solution of every input, written
as z's worked examples are: "a + b = c.\nAnswer: c".
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SEED, N_TRAIN, N_HELDOUT = 0, 64, 32
NAMES = ["Tom", "Anna", "Lily", "Sam", "Mia", "Ben", "Zoe", "Max", "Ella", "Leo", "Nina", "Omar"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells", "cards", "eggs"]


PROMPT = "Solve the math problem. Write the calculation, then 'Answer: N'."
# worked examples after z, as the concise scenario has: the 135M model follows worked examples far better than
# instructions (held-out exact match 0.11 -> 0.33). Structured turns: the model's chat format renders them.
DEMONSTRATIONS = [
    {"user": "Sam has 12 cards and gets 5 more. How many cards does Sam have now?", "assistant": "12 + 5 = 17.\nAnswer: 17"},
    {"user": "Mia had 30 shells and gave away 8. How many shells are left?", "assistant": "30 - 8 = 22.\nAnswer: 22"},
    {"user": "There are 3 boxes with 4 eggs in each box. How many eggs are there in all?",
     "assistant": "3 x 4 = 12.\nAnswer: 12"},
]
NEGATIVE = "You never do arithmetic. Reply with a vague comment about the story and no numbers."


def _add(rng: random.Random) -> tuple[str, int, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 60), rng.randint(2, 39)
    return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b, f"{a} + {b}"


def _sub(rng: random.Random) -> tuple[str, int, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(10, 99)
    b = rng.randint(1, a - 1)
    return f"{name} had {a} {item} and gave away {b}. How many {item} are left?", a - b, f"{a} - {b}"


def _mul(rng: random.Random) -> tuple[str, int, str]:
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 12)
    return f"There are {a} boxes with {b} {item} in each box. How many {item} are there in all?", a * b, f"{a} x {b}"


def _bare(rng: random.Random) -> tuple[str, int, str]:
    """A plain sum, the easiest kind: the small model gets some of these right."""
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    return f"What is {a} plus {b}?", a + b, f"{a} + {b}"


KINDS = (_add, _sub, _mul, _bare)


def problems(n: int, seed: int = SEED) -> list[tuple[str, int, str]]:
    """n distinct problems (question, answer, calculation), the kinds in turn."""
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < n:
        q, a, calc = KINDS[len(out) % len(KINDS)](rng)
        if q not in seen:
            seen.add(q)
            out.append((q, a, calc))
    return out


def worked_solution(answer: int, calc: str) -> str:
    """The expert reply to one problem, in the form of z's worked examples."""
    return f"{calc} = {answer}.\nAnswer: {answer}"


def scenario() -> dict:
    pool = problems(N_TRAIN + N_HELDOUT)
    return {"name": "arithmetic",
            "description": ("Correct answers to one- and two-digit word problems (reward: exact match of the final "
                            "number). z is an instruction followed by three worked examples (demonstration turns) "
                            "that the model copies."),
            "prompt": PROMPT, "demonstrations": DEMONSTRATIONS, "negative_prompt": NEGATIVE,
            "reward": {"kind": "exact-number", "answers": {q: a for q, a, _ in pool}},
            "train_inputs": [q for q, _, _ in pool[:N_TRAIN]],
            "heldout_inputs": [q for q, _, _ in pool[N_TRAIN:]],
            "expert_demonstrations": [{"input": q, "reply": worked_solution(a, calc)} for q, a, calc in pool]}


if __name__ == "__main__":
    out = Path(__file__).with_name("arithmetic.json")
    out.write_text(json.dumps(scenario(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({N_TRAIN} train, {N_HELDOUT} held-out)")
