"""LoRA adapters: the `parameter` vertex. Config building and the trainable-parameter view."""
from __future__ import annotations

from engine.errors import LabInputError

KNOWN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def parse_targets(text: str) -> list[str]:
    targets = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in targets if t not in KNOWN_TARGETS]
    if not targets or bad:
        raise LabInputError(f"lora_targets: {bad[0] if bad else 'empty'} is not a module; "
                            f"use a comma list of {', '.join(KNOWN_TARGETS)}")
    return targets


def lora_config(rank: int, alpha: float, targets: str, dropout: float = 0.0):
    from peft import LoraConfig
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=parse_targets(targets),
                      bias="none", task_type="CAUSAL_LM")
