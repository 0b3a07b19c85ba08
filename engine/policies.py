"""A policy is anything that gives next-token log-probs for (x, y<t) over the one base model:
π0, π0 with a prompt z (a system message), π0 with a named LoRA adapter, π0 with a named soft prompt
(virtual tokens in the system turn), or combinations."""
from __future__ import annotations

from dataclasses import dataclass

NEUTRAL_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class Policy:
    system: str | None = None   # prompt z; None means the explicit neutral system message
    adapter: str | None = None  # name of a LoRA adapter loaded in the model host
    label: str = ""
    soft: str | None = None     # name of a soft prompt registered in the model host (virtual tokens before z)

    @property
    def system_text(self) -> str:
        return self.system if self.system else NEUTRAL_SYSTEM

    def describe(self) -> str:
        parts = ["π0"]
        if self.system:
            parts.append(f"z={self.system[:40]!r}")
        if self.adapter:
            parts.append(f"LoRA {self.adapter}")
        if self.soft:
            parts.append(f"soft prompt {self.soft}")
        return self.label or " + ".join(parts)


BASE = Policy(label="base")


def prompted(z: str, label: str = "prompt") -> Policy:
    return Policy(system=z, label=label)


def with_adapter(name: str, label: str = "") -> Policy:
    return Policy(adapter=name, label=label or name)


def with_soft_prompt(name: str, label: str = "") -> Policy:
    return Policy(soft=name, label=label or name)
