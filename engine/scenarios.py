"""Scenarios: one adaptation goal with an artifact at each vertex (inputs, prompt z and z-, reward r).

Built-ins live in assets/scenarios/NAME.json; a user file with the same schema loads the same way. The
prompt z is a system text plus optional demonstration turns (`"demonstrations": [{"user", "assistant"}]`),
rendered by the model's own chat format: no chat-control tokens in a scenario. A file written for an older
lab, with ChatML turns inside its prompt text, still loads: the turns are read out of the text.
`"expert_demonstrations": [{"input", "reply"}]` are data, not prompt: expert replies that SFT and the
adversarial discriminator learn from (engine/demonstrations.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.demonstrations import FIELD as EXPERT, Demonstration, parse_demonstrations as parse_expert
from engine.errors import LabInputError
from engine.limits import MAX_DEMONSTRATIONS, MAX_POOL_INPUTS, MAX_SCENARIO_BYTES, check_count, check_size, check_text
from engine.policies import Policy, Prompt
from engine.rewards import Reward, build_reward, check_reward_inputs
from engine.settings import ASSETS_DIR

SCENARIO_DIR = ASSETS_DIR / "scenarios"
MIN_TRAIN, MIN_HELDOUT = 8, 4
FEW_SHOT = 3   # worked examples of a few-shot prompt made from expert demonstrations
REQUIRED = ("name", "prompt", "reward", "train_inputs", "heldout_inputs")
OPTIONAL = ("description", "negative_prompt", "demonstrations", EXPERT)
CHATML = ("<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    reward_spec: dict
    train_inputs: list[str]
    heldout_inputs: list[str]
    description: str = ""
    negative_prompt: str = ""
    demonstrations: tuple[tuple[str, str], ...] = ()   # (user, assistant) turns after the system text z
    expert_demonstrations: tuple[Demonstration, ...] = ()   # D_demo: expert (x, y*) data, not part of z
    source: str = field(default="", compare=False)

    def reward(self) -> Reward:
        return build_reward(self.reward_spec)

    @property
    def z(self) -> Prompt:
        """The scenario's prompt z: its system text with its demonstration turns."""
        return Prompt(self.prompt, self.demonstrations)

    def prompt_policy(self, label: str = "prompt") -> Policy:
        """π0(·|x, z)."""
        return self.z.policy(label)

    @property
    def few_shot_z(self) -> Prompt:
        """Few-shot prompting (in-context learning, Sun et al. §3.1.1): z's instruction with worked examples —
        its own demonstration turns, or else its first FEW_SHOT expert demonstrations of train inputs."""
        if self.demonstrations:
            return self.z
        held = set(self.heldout_inputs)
        shots = [(d.input, d.reply) for d in self.expert_demonstrations if d.input not in held][:FEW_SHOT]
        return Prompt(self.prompt, tuple(shots))

    def digest(self) -> str:
        """The SHA-256 of its canonical JSON: the `scenario_hash` runs are stored under (storage/scenario_store.py)."""
        from storage.scenario_store import scenario_hash
        return scenario_hash(self.to_dict())[0]

    def to_dict(self) -> dict:
        d = {"name": self.name, "description": self.description, "prompt": self.prompt,
             "negative_prompt": self.negative_prompt, "reward": self.reward_spec,
             "train_inputs": self.train_inputs, "heldout_inputs": self.heldout_inputs}
        if self.demonstrations:
            d["demonstrations"] = [{"user": u, "assistant": a} for u, a in self.demonstrations]
        if self.expert_demonstrations:
            d[EXPERT] = [e.to_dict() for e in self.expert_demonstrations]
        return d


def builtin_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in name (`sentiment`) or a path to a JSON file with the scenario schema."""
    path = Path(name_or_path)
    if not path.suffix and (SCENARIO_DIR / f"{name_or_path}.json").exists():
        path = SCENARIO_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise LabInputError(f"scenario: {name_or_path!r} is neither a built-in "
                            f"({', '.join(builtin_scenarios())}) nor an existing file")
    check_size(path.stat().st_size, f"scenario file {path.name}", MAX_SCENARIO_BYTES)   # before reading it
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabInputError(f"scenario file {path.name}: not valid JSON ({e})") from None
    return parse_scenario(data, source=str(path))


def parse_scenario(data: object, source: str = "") -> Scenario:
    """Validate a scenario dict; every error names the offending field. Sizes first (counts, characters:
    engine/limits.py), so an oversize scenario is refused before any work is done on it."""
    if not isinstance(data, dict):
        raise LabInputError("scenario: expected a JSON object")
    for key in data:
        if key not in REQUIRED + OPTIONAL:
            raise LabInputError(f"scenario.{key}: unknown field (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    for key in REQUIRED:
        if key not in data:
            raise LabInputError(f"scenario.{key}: missing")
    for key in ("name", "prompt", "description", "negative_prompt"):
        if key in data and not isinstance(data[key], str):
            raise LabInputError(f"scenario.{key}: must be text")
        if key in data:
            check_text(data[key], f"scenario.{key}")
    if not data["name"].strip():
        raise LabInputError("scenario.name: must not be empty")
    if not data["prompt"].strip():
        raise LabInputError("scenario.prompt: must not be empty (it is the prompt z the edges start from)")
    build_reward(data["reward"])  # validates the spec, naming the field
    train = _input_pool(data, "train_inputs", MIN_TRAIN)
    heldout = _input_pool(data, "heldout_inputs", MIN_HELDOUT)
    check_size(sum(len(x.encode()) for x in train + heldout), "scenario (its inputs together)", MAX_SCENARIO_BYTES)
    check_reward_inputs(data["reward"], train + heldout)  # e.g. a golden answer for every input
    prompt, old_turns = split_chatml(data["prompt"].strip())
    turns = parse_demonstrations(data.get("demonstrations", []), "scenario.demonstrations")
    if old_turns and turns:
        raise LabInputError("scenario.prompt: holds ChatML turns and the file has demonstrations too; "
                            "keep only the demonstrations list")
    for key in ("prompt", "negative_prompt"):
        if any(m in (prompt if key == "prompt" else data.get(key, "")) for m in CHATML):
            raise LabInputError(f"scenario.{key}: chat-control tokens ({', '.join(CHATML)}) belong to one model's "
                                "chat format; write the instruction as text and examples as demonstrations")
    return Scenario(name=data["name"].strip(), prompt=prompt, reward_spec=data["reward"],
                    train_inputs=train, heldout_inputs=heldout,
                    description=data.get("description", ""), negative_prompt=data.get("negative_prompt", ""),
                    demonstrations=old_turns or turns,
                    expert_demonstrations=parse_expert(data[EXPERT]) if EXPERT in data else (), source=source)


def parse_demonstrations(raw: object, field: str) -> tuple[tuple[str, str], ...]:
    """[{"user": ..., "assistant": ...}, ...] -> ((user, assistant), ...); errors name the item and key."""
    if not isinstance(raw, list):
        raise LabInputError(f"{field}: must be a list of {{\"user\": ..., \"assistant\": ...}} objects")
    check_count(raw, field, MAX_DEMONSTRATIONS, "demonstrations")
    turns = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or set(turn) != {"user", "assistant"}:
            raise LabInputError(f"{field}[{i}]: must be an object with exactly the keys user and assistant")
        for key in ("user", "assistant"):
            if not isinstance(turn[key], str) or not turn[key].strip():
                raise LabInputError(f"{field}[{i}].{key}: must be non-empty text")
            check_text(turn[key], f"{field}[{i}].{key}")
        turns.append((turn["user"].strip(), turn["assistant"].strip()))
    return tuple(turns)


def split_chatml(prompt: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """An older scenario's prompt, "z<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ny...",
    as (z, ((x, y), ...)). A prompt without ChatML comes back as it is."""
    if CHATML[1] not in prompt:
        return prompt, ()
    head, *turns = prompt.split(CHATML[1])
    pairs, user = [], None
    for t in turns:
        t = t.strip()
        role, _, text = t.removeprefix(CHATML[0]).partition("\n")
        if role == "user":
            user = text.strip()
        elif role == "assistant" and user is not None:
            pairs.append((user, text.strip()))
            user = None
    return head.strip(), tuple(pairs)


def _input_pool(data: dict, key: str, minimum: int) -> list[str]:
    pool = data[key]
    if not isinstance(pool, list) or not all(isinstance(x, str) for x in pool):
        raise LabInputError(f"scenario.{key}: must be a list of strings")
    check_count(pool, f"scenario.{key}", MAX_POOL_INPUTS)
    for i, x in enumerate(pool):
        check_text(x, f"scenario.{key}[{i}]")
    pool = [x.strip() for x in pool if x.strip()]
    if len(pool) < minimum:
        raise LabInputError(f"scenario.{key}: needs at least {minimum} non-empty inputs, got {len(pool)}")
    return pool
