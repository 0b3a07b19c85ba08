"""What no input may exceed, and what a public lab caps, in one place.

A scenario, a preference file or a setting is refused with a message that names the field and the limit
before anything runs, so no input can grow a run past the machine's memory (a run's memory is then bounded
by its settings: batch × (prompt + input + reply tokens), each bounded here or by the setting's range).

Cheap checks first, without a tokenizer (sizes in bytes, counts, characters), then tokens where the model's
tokenizer is at hand (`check_scenario_tokens`: when a run is prepared in a process that loaded the model, and
always when a worker starts it).
"""
from __future__ import annotations

import dataclasses

from engine.errors import LabInputError

MAX_SCENARIO_BYTES = 1_000_000      # a scenario file (the built-ins are ≤ 14 KB)
MAX_POOL_INPUTS = 2000              # train_inputs, heldout_inputs, each
MAX_DEMONSTRATIONS = 32             # worked-example turns inside a prompt z
MAX_EXPERT_DEMONSTRATIONS = 5000    # expert demonstrations, data for SFT and the discriminator
MAX_DEMONSTRATION_BYTES = 5_000_000  # a JSONL file of them
MAX_DEMONSTRATION_CHARS = 4000      # an input or reply of one (tokens are checked too, as every scenario text)
MAX_TEXT_CHARS = 32_000             # any one text: the cheap guard before tokens are counted
MAX_PREFERENCE_BYTES = 5_000_000    # a preference file (JSONL of {prompt, chosen, rejected})
MAX_PREFERENCE_PAIRS = 5000
MAX_SETTING_CHARS = 4000            # a text setting (a prompt z+, seed prompts, a template)

# LAB_PUBLIC=1: the most a visitor may ask of each costly setting (every method's default fits, tested).
# n_train / n_heldout count the inputs a run uses (0, "all", counts the scenario's pool).
PUBLIC_CAPS = {"steps": 160, "batch_size": 32, "k": 4, "eval_samples": 4, "max_new_tokens": 48,
               "rewrite_tokens": 48, "teacher_samples": 2, "samples_per_input": 8, "heldout_samples": 8,
               "pairs_per_input": 4, "budget": 800, "rounds": 3, "search_inputs": 16, "search_samples": 2,
               "lora_rank": 16, "n_tokens": 16, "head_steps": 600, "n_train": 64, "n_heldout": 32, "n": 16}
PUBLIC_TRAIN_ROWS = 1920   # steps × batch_size: the examples a run trains on (60 × 32, the worst case of the
#                            old step cap, so many small steps, as context distillation takes, fit in the same bound)
SERVER_PATHS = ("preference_file", "candidates_file")   # settings that read a file on the lab's machine


def check_text(text: str, field: str, limit: int = MAX_TEXT_CHARS) -> None:
    if len(text) > limit:
        raise LabInputError(f"{field}: {len(text):,} characters long; the limit is {limit:,} characters")


def check_count(items: list, field: str, limit: int, what: str = "inputs") -> None:
    if len(items) > limit:
        raise LabInputError(f"{field}: {len(items):,} {what}; the limit is {limit:,}")


def check_size(n_bytes: int, field: str, limit: int) -> None:
    if n_bytes > limit:
        raise LabInputError(f"{field}: {n_bytes:,} bytes; the limit is {limit:,} bytes")


# ---------- tokens ----------
def token_limit(setting: int, context: int | None) -> int:
    """The longest text a scenario field may be: LAB_MAX_INPUT_TOKENS, and never more than a quarter of the
    model's context (z with its demonstrations may take two of these, the input one, the reply the rest)."""
    return min(setting, context // 4) if context else setting


def scenario_texts(scenario) -> list[tuple[str, str]]:
    """(field, text) for every text of a scenario a policy reads."""
    out = [("scenario.prompt", scenario.prompt), ("scenario.negative_prompt", scenario.negative_prompt)]
    for i, (user, assistant) in enumerate(scenario.demonstrations):
        out += [(f"scenario.demonstrations[{i}].user", user), (f"scenario.demonstrations[{i}].assistant", assistant)]
    for key in ("train_inputs", "heldout_inputs"):
        out += [(f"scenario.{key}[{i}]", x) for i, x in enumerate(getattr(scenario, key))]
    for i, d in enumerate(getattr(scenario, "expert_demonstrations", ())):
        out += [(f"scenario.expert_demonstrations[{i}].input", d.input),
                (f"scenario.expert_demonstrations[{i}].reply", d.reply)]
    return out


def check_scenario_tokens(scenario, count_tokens, limit: int) -> None:
    """Every text within `limit` tokens, and z (the prompt with its demonstrations) within twice that.
    `count_tokens(list of texts) -> list of ints` is the model's tokenizer."""
    fields = scenario_texts(scenario)
    counts = count_tokens([text for _, text in fields])
    for (field, _), n in zip(fields, counts):
        if n > limit:
            raise LabInputError(f"{field}: {n:,} tokens long; the limit is {limit:,} tokens (LAB_MAX_INPUT_TOKENS, "
                                "at most a quarter of the model's context)")
    z = sum(n for (field, _), n in zip(fields, counts) if field == "scenario.prompt" or ".demonstrations[" in field)
    if z > 2 * limit:
        raise LabInputError(f"scenario.demonstrations: the prompt z with its demonstrations is {z:,} tokens; the "
                            f"limit is {2 * limit:,} tokens (twice LAB_MAX_INPUT_TOKENS)")


# ---------- what a visitor may ask ----------
def check_visitor_overrides(overrides: dict, uploads=None) -> None:
    """Settings a visitor of a shared lab may not give: paths on the lab's machine (except the lab's own copy of
    a file the visitor uploaded, under `uploads`), texts past the limit."""
    from pathlib import Path
    for key, value in (overrides or {}).items():
        own_copy = uploads is not None and str(value).strip() and Path(str(value)).resolve().parent == Path(uploads)
        if key in SERVER_PATHS and str(value).strip() and not own_copy:
            raise LabInputError(f"{key}: reads a file on the lab's machine, which only its operator (the CLI) or an "
                                "admin may name")
        if isinstance(value, str):
            check_text(value, key, MAX_SETTING_CHARS)


def public_value(name: str, value, scenario=None):
    """The amount a setting asks for, as PUBLIC_CAPS counts it (None: not a number this table caps)."""
    if name == "n":   # best-of-N's comma list: its largest N is what it samples
        nums = [int(p) for p in str(value).replace(" ", "").split(",") if p.isdigit()]
        return max(nums, default=None)
    if name in ("n_train", "n_heldout") and scenario is not None and not value:
        return len(scenario.train_inputs if name == "n_train" else scenario.heldout_inputs)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_public_caps(config, scenario=None) -> None:
    """LAB_PUBLIC=1: refuse a config that asks more than PUBLIC_CAPS, naming the setting and its cap."""
    for f in dataclasses.fields(config):
        cap = PUBLIC_CAPS.get(f.name)
        amount = public_value(f.name, getattr(config, f.name), scenario) if cap is not None else None
        if amount is not None and amount > cap:
            raise LabInputError(f"{f.name}: {amount:g} is over this public lab's cap of {cap:g} (LAB_PUBLIC=1 keeps "
                                "runs short for everyone; run the lab yourself for more)")
    rows = getattr(config, "steps", 0) * getattr(config, "batch_size", 0)
    if rows > PUBLIC_TRAIN_ROWS:
        raise LabInputError(f"steps × batch_size: {rows:,} training examples is over this public lab's cap of "
                            f"{PUBLIC_TRAIN_ROWS:,} (fewer steps or a smaller batch; run the lab yourself for more)")
