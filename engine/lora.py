"""LoRA adapters: the `parameter` vertex. Config building and the trainable-parameter view."""
from __future__ import annotations

from engine.errors import LabInputError

KNOWN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def parse_targets(text: str) -> list[str]:
    return parse_comma_list(text, "lora_targets", KNOWN_TARGETS, "a module")


def parse_comma_list(text: str, field: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """'a, b' -> ['a', 'b'] (in order, once each); an empty list or an unknown item names the field."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise LabInputError(f"{field}: {bad[0] if bad else 'empty'} is not {what}; "
                            f"use a comma list of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def lora_config(rank: int, alpha: float, targets: str, dropout: float = 0.0):
    from peft import LoraConfig
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=parse_targets(targets),
                      bias="none", task_type="CAUSAL_LM")
