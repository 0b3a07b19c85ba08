"""A policy is anything that gives next-token log-probs for (x, y<t) over the one base model:
π0, π0 with a prompt z (a system message), π0 with a named LoRA adapter, π0 with a named soft prompt
(virtual tokens in the system turn), or combinations."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LabInputError

NEUTRAL_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class Policy:
    system: str | None = None   # prompt z; None means the explicit neutral system message
    adapter: str | None = None  # name of a LoRA adapter loaded in the model host
    label: str = ""
    soft: str | None = None     # name of a soft prompt registered in the model host (virtual tokens before z)
    turns: tuple[tuple[str, str], ...] = ()   # demonstration turns (user, assistant) after the system text

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


@dataclass(frozen=True)
class Prompt:
    """A prompt z, the artifact at the prompt vertex: an instruction (the system text) and the demonstration
    turns (user, assistant) that follow it. The model host renders both in the model's own chat format."""
    text: str
    turns: tuple[tuple[str, str], ...] = ()

    def policy(self, label: str = "prompt") -> Policy:
        return Policy(system=self.text, turns=self.turns, label=label)

    def quotes(self, x: str) -> bool:
        """Whether input x appears in z (scoring z on x would score a copied demonstration)."""
        return x in self.text or any(x == u for u, _ in self.turns)

    def data(self) -> dict:
        """As stored in a prompt artifact."""
        return {"prompt_text": self.text, "demonstrations": [{"user": u, "assistant": a} for u, a in self.turns]}

    @staticmethod
    def from_data(data: dict) -> "Prompt":
        return Prompt(data["prompt_text"], tuple((t["user"], t["assistant"]) for t in data.get("demonstrations") or ()))


def prompted(z: str, label: str = "prompt", turns: tuple[tuple[str, str], ...] = ()) -> Policy:
    return Policy(system=z, label=label, turns=tuple(turns))


def with_adapter(name: str, label: str = "") -> Policy:
    return Policy(adapter=name, label=label or name)


def with_soft_prompt(name: str, label: str = "") -> Policy:
    return Policy(soft=name, label=label or name)


# ---------- policies as JSON (stored in reward specs and artifacts) ----------
def policy_spec(policy: Policy, host) -> dict:
    """A policy as JSON: its prompt and the saved path of its adapter (loaded adapters only)."""
    path = (host.adapters.get(policy.adapter, {}).get("path") or host.evicted.get(policy.adapter)
            if policy.adapter else None)
    if policy.adapter and not path:
        raise LabInputError(f"adapter {policy.adapter!r} has not been saved; it cannot be referenced")
    spec = {"system": policy.system, "adapter_path": path, "label": policy.label}
    if policy.turns:
        spec["turns"] = [list(t) for t in policy.turns]
    if policy.soft:
        spec["soft_path"] = host.soft_prompts[policy.soft]["path"]
        if not spec["soft_path"]:
            raise LabInputError(f"soft prompt {policy.soft!r} has not been saved; it cannot be referenced")
    return spec


def policy_from_spec(spec: dict, host) -> Policy:
    """Rebuild a policy from `policy_spec` JSON, loading its adapter (once) under a name made from its path."""
    path = spec.get("adapter_path")
    name = None
    if path:
        loaded = {n: a.get("path") for n, a in host.adapters.items()} | host.evicted   # evicted: reloaded on use
        name = next((n for n, p in loaded.items() if p == str(path)), None)
        if name is None:
            if not (Path(path) / "adapter_model.safetensors").is_file():
                raise LabInputError(f"adapter files are missing at {path}; was the run deleted?")
            name = "ref-" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
            host.load_adapter(name, path)
    soft = _load_soft_prompt(spec["soft_path"], host) if spec.get("soft_path") else None
    return Policy(system=spec.get("system"), adapter=name, label=spec.get("label") or "policy", soft=soft,
                  turns=tuple(tuple(t) for t in spec.get("turns") or ()))


def _load_soft_prompt(path: str, host) -> str:
    """The host's name for the soft prompt saved at `path`, loading it once."""
    name = next((n for n, sp in host.soft_prompts.items() if sp.get("path") == str(path)), None)
    if name is None:
        if not Path(path).is_file():
            raise LabInputError(f"soft prompt file is missing at {path}; was the run deleted?")
        name = "soft-" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
        host.load_soft_prompt(name, path)
    return name
