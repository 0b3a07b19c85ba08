"""Eq. 16, prompt search: max_z E_{x~D, y~π0(·|x,z)} [r(x,y)] over readable prompts z.

The pieces of the `search` method of reward -> prompt: the Monte-Carlo estimate of the objective, the
selection of parents and of the final prompt (pure), the edit operators (pure, seeded), and the rewrites
the model proposes itself. The loop that spends the budget lives in engine/edges/reward_to_prompt.py.

A prompt is a `Prompt`: an instruction and demonstration turns. Edits and rewrites change the instruction
and keep the turns; one operator adds a worked example as a new turn. The model's chat format renders them.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from engine.policies import Policy, Prompt

SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
MAX_PROMPT_CHARS = 400
REWRITER = Policy(system="You write short instructions (system prompts) for a chatbot.", label="rewriter")
REWRITE_TASKS = (
    'Goal of the chatbot: {goal}\nCurrent instruction: "{head}"\n'
    "Rewrite the instruction so the chatbot reaches the goal better. Reply with the new instruction only.",
    'Paraphrase this instruction for a chatbot: "{head}"\nReply with the paraphrase only.',
)


@dataclass
class Candidate:
    """One scored prompt of the search."""
    text: str
    origin: str          # "seed", "candidate list", "yours", "model rewrite", "edit: drop sentence", ...
    iteration: int
    per_input: dict[str, float]   # mean reward over samples, per input scored (search inputs, then finalists')
    best_reply: tuple[str, str] | None = None   # (x, y) of its highest-reward sample, for demonstrations
    val_score: float | None = None   # Eq. 16's estimate on the finalists' other train inputs
    turns: tuple[tuple[str, str], ...] = ()      # its demonstration turns
    score: float = field(init=False)  # Eq. 16's estimate on the search inputs

    def __post_init__(self):
        self.score = sum(self.per_input.values()) / len(self.per_input)

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.text, self.turns)


# ---------- Eq. 16: the objective and the selections (pure) ----------
def per_input_means(rewards: list[float], inputs: list[str]) -> dict[str, float]:
    """Mean reward over the samples of each input: {x: mean_j r(x, y_j)}."""
    by_input: dict[str, list[float]] = {}
    for x, r in zip(inputs, rewards):
        by_input.setdefault(x, []).append(r)
    return {x: sum(v) / len(v) for x, v in by_input.items()}


def expected_reward(rewards: list[float], inputs: list[str]) -> float:
    """Monte-Carlo estimate of E_{x~D, y~π0(·|x,z)}[r(x,y)]: the mean over inputs of the mean over samples.

    Args:
        rewards: r(x_i, y_ij), one per sample.
        inputs: x_i of each sample (the same input appears once per sample).
    Returns:
        the estimate; every input weighs the same whatever its number of samples.
    """
    means = per_input_means(rewards, inputs)
    return sum(means.values()) / len(means)


def paired_advantage(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """Mean and standard error of a(x) − b(x) over the inputs both prompts were scored on.

    Both prompts are sampled with the same seed on the same inputs, so the per-input difference cancels
    most of the sampling noise the two estimates share.
    Returns:
        (mean difference, its standard error; 0.0 with fewer than 2 inputs).
    """
    d = [a[x] - b[x] for x in a if x in b]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in d) / (n - 1)
    return mean, (var / n) ** 0.5


def top_candidates(pool: list[Candidate], k: int) -> list[Candidate]:
    """The k best by search score; ties go to the earlier candidate (seeds before their rewrites)."""
    order = sorted(range(len(pool)), key=lambda i: (-pool[i].score, i))
    return [pool[i] for i in order[:k]]


def pick_best(seed: Candidate, others: list[Candidate], margin: float) -> Candidate:
    """The final prompt: the best other finalist (mean over every input it was scored on) if it beats the
    seed by more than `margin` standard errors of their paired difference, else the seed.

    A search over many noisy estimates favours lucky ones (the winner's curse); requiring a margin on the
    finalists' fresh inputs keeps the seed unless the gain is real."""
    if not others:
        return seed
    mean = lambda c: sum(c.per_input.values()) / len(c.per_input)
    challenger = max(others, key=mean)   # max keeps the first of equals
    gain, se = paired_advantage(challenger.per_input, seed.per_input)
    return challenger if gain > margin * se and gain > 0 else seed


def calls_per_candidate(n_inputs: int, n_samples: int) -> int:
    """Model calls (sampled replies) to score one prompt."""
    return n_inputs * n_samples


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_RE.split(text.strip()) if s]


def clean_prompt(text: str) -> str | None:
    """A proposed instruction made usable: first paragraph, no wrapping quotes or labels, at most
    MAX_PROMPT_CHARS (cut at a sentence end). None if nothing usable is left."""
    text = text.strip().split("\n\n")[0].replace("\n", " ").strip()
    text = re.sub(r"^(new instruction|instruction|paraphrase|rewritten instruction)\s*:\s*", "", text, flags=re.I)
    text = text.strip().strip('"“”\'').strip()
    if len(text) > MAX_PROMPT_CHARS:
        kept = ""
        for s in sentences(text):
            if len(kept) + len(s) + 1 > MAX_PROMPT_CHARS:
                break
            kept = f"{kept} {s}".strip()
        text = kept or text[:MAX_PROMPT_CHARS]
    return text if len(text) >= 8 else None


# ---------- edit operators: (head, donor head, rng) -> new head or None (pure) ----------
def drop_sentence(head: str, donor: str, rng: random.Random) -> str | None:
    ss = sentences(head)
    if len(ss) < 2:
        return None
    del ss[rng.randrange(len(ss))]
    return " ".join(ss)


def swap_sentences(head: str, donor: str, rng: random.Random) -> str | None:
    ss = sentences(head)
    if len(ss) < 2:
        return None
    i, j = rng.sample(range(len(ss)), 2)
    ss[i], ss[j] = ss[j], ss[i]
    return " ".join(ss)


def repeat_sentence(head: str, donor: str, rng: random.Random) -> str | None:
    """Say one sentence twice: a small model follows what is stressed."""
    ss = sentences(head)
    return " ".join(ss + [rng.choice(ss)]) if ss else None


def splice(head: str, donor: str, rng: random.Random) -> str | None:
    """Crossover: append one sentence of another prompt in the pool."""
    new = [s for s in sentences(donor) if s not in sentences(head)]
    return f"{head.strip()} {rng.choice(new)}" if new else None


def add_demonstration(z: Prompt, x: str, y: str) -> Prompt:
    """z followed by one more worked example, the turn pair (x, y): the way a small model is steered best
    (the concise and arithmetic scenarios carry demonstrations like this)."""
    return Prompt(z.text.strip(), z.turns + ((x, trim_reply(y)),))


def trim_reply(y: str) -> str:
    """A sampled reply cut at max_new_tokens, trimmed back to its last full sentence (if it has one)."""
    y = y.strip()
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", y)]
    return y[:ends[-1]] if ends and ends[-1] < len(y) else y


EDITS = {"drop sentence": drop_sentence, "swap sentences": swap_sentences,
         "repeat sentence": repeat_sentence, "splice": splice}


def propose_edits(parents: list[Prompt], donors: list[Prompt], n: int, rng: random.Random
                  ) -> list[tuple[Prompt, str]]:
    """Up to n (prompt, origin) proposals, each a random edit of a random parent's instruction (turns kept)."""
    out: list[tuple[Prompt, str]] = []
    for _ in range(4 * n):   # some edits do not apply (one-sentence heads); try a few times
        if len(out) == n:
            break
        parent = rng.choice(parents)
        name = rng.choice(sorted(EDITS))
        new = EDITS[name](parent.text, rng.choice(donors).text, rng)
        z = Prompt(new, parent.turns) if new else None
        if z and z not in parents and all(z != p for p, _ in out):
            out.append((z, f"edit: {name}"))
    return out


# ---------- rewrites written by the model itself ----------
def propose_rewrites(host, parents: list[Prompt], goal: str, n: int, temperature: float, max_new_tokens: int,
                     seed: int) -> list[tuple[Prompt, str]]:
    """n rewrites of the parents' instructions by π0 (one model call each); turns kept."""
    if n <= 0:
        return []
    chosen = [parents[i % len(parents)] for i in range(n)]
    tasks = [REWRITE_TASKS[i % len(REWRITE_TASKS)].format(goal=goal, head=z.text.strip()) for i, z in enumerate(chosen)]
    s = host.generate(REWRITER, tasks, n_samples=1, max_new_tokens=max_new_tokens, temperature=temperature,
                      seed=seed)
    out = []
    for (text,), parent in zip(s.texts, chosen):
        head = clean_prompt(text)
        if head:
            out.append((Prompt(head, parent.turns), "model rewrite"))
    return out
