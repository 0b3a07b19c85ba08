"""What a run leaves at a vertex of the triangle, typed: the kind fixes the vertex.

    Adapter(path, data)         parameter   a PEFT LoRA checkpoint directory
    ReadablePrompt(path, data)  prompt      text (data["prompt_text"]), possibly working through an adapter (path)
    SoftPrompt(path, data)      prompt      virtual-token embeddings (a safetensors file)
    Reward(path, data)          reward      a reward spec (data) and any file it needs (a head)

A method declares the kind it makes (engine/methods.py `register(artifact=...)`); the registry refuses a kind
off the edge's target vertex, and the job runner refuses a result whose artifact is not that class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Artifact:
    kind: ClassVar[str] = ""
    vertex: ClassVar[str] = ""
    path: str | None = None
    data: dict = field(default_factory=dict)

    def __init_subclass__(cls, kind: str, vertex: str, **kw):
        super().__init_subclass__(**kw)
        cls.kind, cls.vertex = kind, vertex

    def row(self) -> dict:
        """As the store keeps it (and as a run's `artifacts` list shows it)."""
        return {"kind": self.kind, "vertex": self.vertex, "path": self.path, "data": self.data}


class Adapter(Artifact, kind="adapter", vertex="parameter"):
    """A PEFT LoRA checkpoint directory (path); data: adapter name, method, what it was trained from."""


class ReadablePrompt(Artifact, kind="prompt", vertex="prompt"):
    """data["prompt_text"] (+ demonstrations); a reward-conditioned prompt works through the adapter at path."""


class SoftPrompt(Artifact, kind="soft_prompt", vertex="prompt"):
    """Virtual-token embeddings in a safetensors file (path)."""


class Reward(Artifact, kind="reward", vertex="reward"):
    """A reward spec (data) that engine/references.py rebuilds, and the file it needs (a head) at path."""


ARTIFACTS: dict[str, type[Artifact]] = {c.kind: c for c in (Adapter, ReadablePrompt, SoftPrompt, Reward)}
