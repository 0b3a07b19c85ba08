"""The pieces method configs are built from, so that a setting means the same everywhere and a form shows
only the fields its method reads.

    @dataclass(frozen=True)
    class RLConfig(Training, LoRA, HeldOut, Compute):
        steps: int = like(Training, "steps", 20)    # the piece's field and help, this method's default
        k: int = opt(4, "Samples per input ...", 2, 16)

A field is `opt(default, help, lo, hi, choices)`: its help and range are the form's and the CLI's `--set`
checks. Forms list a config's own fields first, then its pieces' in the order the class names them
(`ordered_fields`). A piece's `validate()` checks its own fields; a config that adds checks calls
`super().validate()`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from engine.lora import parse_targets


def opt(default, help: str, lo: float | None = None, hi: float | None = None, choices: tuple | None = None):
    """A config field with help text and the range the UI and CLI check."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "choices": choices})


def like(piece: type, name: str, default):
    """A piece's field with this method's own default (its help text and range stay the piece's)."""
    return field(default=default, metadata=piece.__dataclass_fields__[name].metadata)


def ordered_fields(config_cls: type) -> list[dataclasses.Field]:
    """The config's own fields first, then each piece's, in the order the class lists its pieces."""
    owner = {}
    for cls in reversed(config_cls.__mro__):   # the deepest piece that declares a field owns it
        for f in getattr(cls, "__dataclass_fields__", {}).values():
            owner.setdefault(f.name, cls)
    rank = {cls: i for i, cls in enumerate(config_cls.__mro__)}
    declared = [f.name for f in dataclasses.fields(config_cls)]
    fields_ = {f.name: f for f in dataclasses.fields(config_cls)}
    return [fields_[n] for n in sorted(declared, key=lambda n: (rank[owner[n]] if owner[n] is not config_cls
                                                               else -1, declared.index(n)))]


@dataclass(frozen=True)
class Piece:
    def validate(self) -> None:
        """Cross-field or structured checks; each piece checks its own fields and calls super()."""


@dataclass(frozen=True)
class Training(Piece):
    """The one training loop's settings (engine/training.py)."""
    steps: int = opt(40, "Optimizer steps.", 1, 2000)
    batch_size: int = opt(8, "Training examples per optimizer step.", 1, 64)
    lr: float = opt(1e-3, "AdamW learning rate (linear warm-up over 3 steps, cosine decay to 10%).", 1e-6, 1e-1)
    eval_every: int = opt(10, "Steps between live held-out points on the curves (0 = only at the end).", 0, 2000)
    n_train: int = opt(0, "Use only the first N train inputs (0 = all).", 0, 10000)


@dataclass(frozen=True)
class LoRA(Piece):
    """The adapter a method trains (engine/lora.py)."""
    lora_rank: int = opt(8, "LoRA rank r.", 1, 128)
    lora_alpha: float = opt(16.0, "LoRA scaling α (the update is scaled by α/r).", 0.1, 512)
    lora_targets: str = opt("attention", "Modules that get LoRA: attention (the model's attention projections, "
                                         "found in the model), mlp, or a comma list of module names such as "
                                         "q_proj,v_proj.")

    def validate(self) -> None:
        super().validate()
        parse_targets(self.lora_targets)


@dataclass(frozen=True)
class HeldOut(Piece):
    """The held-out measurement every method reports (engine/evaluation.py `held_out`)."""
    n_heldout: int = opt(24, "Use only the first N held-out inputs (0 = all).", 0, 10000)
    eval_samples: int = opt(4, "Samples per held-out input for each policy's reward and KL.", 1, 64)
    eval_temperature: float = opt(0.7, "Sampling temperature of held-out generations.", 0.05, 2.0)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)


@dataclass(frozen=True)
class Compute(Piece):
    """How a run computes: the precision of its forwards (the host owns autocast) and its seed."""
    precision: str = opt("auto", "Compute precision of this run's forwards: auto (the host's start-up choice: "
                                 "bf16 only where measured faster than fp32, e.g. CUDA or a CPU with native "
                                 "bf16), fp32 or bf16. Reported metrics stay float32.",
                         choices=("auto", "fp32", "bf16"))
    seed: int = opt(0, "Seed for sampling, batching and initialization.", 0, 2**31 - 1)


@dataclass(frozen=True)
class LinearHead(Piece):
    """A linear reward head fitted full-batch on π0's pooled hidden states (engine/reward_models.py)."""
    head_steps: int = opt(300, "Full-batch Adam steps on the linear head.", 1, 10000)
    head_lr: float = opt(1e-2, "Learning rate of the head.", 1e-5, 1.0)
    head_l2: float = opt(1.0, "L2 penalty l2·‖w‖² on the head (strong: the examples are few, the features "
                              "many).", 0.0, 100.0)
