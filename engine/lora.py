"""LoRA adapters: the `parameter` vertex. Config building and which modules take LoRA.

`lora_targets` is a comma list of module names, or `attention` (the default): the attention projections
of whatever model the host runs, discovered from its modules (q/k/v/o_proj for Llama, Qwen, Gemma;
c_attn/c_proj for GPT-2; ...), or `mlp` for its feed-forward projections. Names are checked against the
names projection layers have across architectures when a run is requested, and against the model itself
when the adapter is attached.
"""
from __future__ import annotations

from engine.errors import LabInputError

GROUPS = ("attention", "mlp")
KNOWN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",   # Llama family
                 "qkv_proj", "gate_up_proj", "c_attn", "c_proj", "c_fc", "query_key_value", "dense",
                 "dense_h_to_4h", "dense_4h_to_h", "Wqkv", "out_proj", "fc1", "fc2", "query", "key", "value")
ATTENTION_PARENTS = ("attn", "attention")     # a module under one of these is an attention projection


def parse_targets(text: str) -> list[str]:
    return parse_comma_list(text, "lora_targets", GROUPS + KNOWN_TARGETS, "a module (or attention, mlp)")


def parse_comma_list(text: str, field: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """'a, b' -> ['a', 'b'] (in order, once each); an empty list or an unknown item names the field."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise LabInputError(f"{field}: {bad[0] if bad else 'empty'} is not {what}; "
                            f"use a comma list of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def projection_groups(model) -> dict[str, list[str]]:
    """{"attention": [...], "mlp": [...]}: leaf names of the model's linear projections, by where they sit."""
    import torch
    from transformers.pytorch_utils import Conv1D
    groups: dict[str, list[str]] = {"attention": [], "mlp": []}
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, Conv1D)) or "lora_" in name or "." not in name:
            continue
        name = name.removesuffix(".base_layer")        # a projection peft has already wrapped
        parent, leaf = name.rsplit(".", 1)
        if "embed" in leaf or "lm_head" in leaf:
            continue
        group = "attention" if any(p in parent.rsplit(".", 1)[-1] for p in ATTENTION_PARENTS) else "mlp"
        if leaf not in groups[group]:
            groups[group].append(leaf)
    return groups


def resolve_targets(model, text: str) -> list[str]:
    """The module names `text` means in this model; an unknown name is an error listing the model's own."""
    groups = projection_groups(model)
    names = []
    for item in parse_targets(text):
        names += groups[item] if item in GROUPS else [item]
    available = groups["attention"] + groups["mlp"]
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise LabInputError(f"lora_targets: this model has no {missing[0] if missing else 'such'} module; "
                            f"its projections are {', '.join(available)} (or use attention, mlp)")
    return list(dict.fromkeys(names))


def lora_config(rank: int, alpha: float, targets: str | list[str] = "attention", dropout: float = 0.0):
    """A peft LoraConfig; `targets` as text is resolved by the model host when it attaches the adapter."""
    from peft import LoraConfig
    modules = parse_targets(targets) if isinstance(targets, str) else list(targets)
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules,
                      bias="none", task_type="CAUSAL_LM")
