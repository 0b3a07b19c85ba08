"""References from one run to what other runs made: an adapter, a prompt, a reward.

Configs name them as text: a policy is `base`, `prompt` (the scenario's z), `instruction` (z's text without
its worked examples), `few-shot` (z's text with worked examples: its own, or its expert demonstrations'),
`scenario:NAME` (another scenario's z) or a run id (its adapter or prompt artifact); a reward is empty (the scenario's reference
reward) or a run id (its reward artifact). Each config lists its reference fields in `REFERENCES`
({field: "policy" | "adapter" | "reward" | "soft_prompt"}) so they are checked before a run is created, and resolved
inside the run through `ctx.lookup`.

Policies stored inside artifacts (e.g. the two policies of a log-ratio reward) are plain dicts
{"system", "adapter_path", "label"} (+ "soft_path" for a soft prompt) so a reward can be rebuilt in another process.
"""
from __future__ import annotations

from typing import Callable

from engine.errors import LabInputError
from engine.policies import BASE, Policy, Prompt, policy_from_spec, policy_spec  # noqa: F401 (policy_spec: re-exported)

Lookup = Callable[[str], "dict | None"]   # run id -> stored run (with "artifacts") or None
KIND_FOR = {"adapter": ("adapter",), "reward": ("reward",), "policy": ("adapter", "prompt", "soft_prompt"),
            "soft_prompt": ("soft_prompt",), "initial_adapter": ("adapter",), "prompt": ("prompt",)}
OPTIONAL = ("reward", "soft_prompt", "initial_adapter", "prompt")   # reference kinds a config may leave empty
BUILTIN_POLICIES = ("base", "prompt", "instruction", "few-shot")


def references(config) -> dict[str, str]:
    return dict(getattr(config, "REFERENCES", {}))


def check_references(config, scenario, lookup: Lookup) -> None:
    """Raise LabInputError for any reference field of `config` that does not resolve (reads only)."""
    for field, what in references(config).items():
        ref = str(getattr(config, field)).strip()
        if not ref and what not in OPTIONAL:
            raise LabInputError(f"{field}: empty; give {_expected(what)}")
        if not ref or (what in ("policy", "prompt") and ref in BUILTIN_POLICIES):
            continue
        if what in ("policy", "prompt") and ref.startswith("scenario:"):
            _scenario_prompt(ref, field)
            continue
        stored_artifact(lookup, ref, field, KIND_FOR[what])


def stored_artifact(lookup: Lookup, run_id: str, field: str, kinds: tuple[str, ...], model: str | None = None) -> dict:
    """The artifact of run `run_id` if it is one of `kinds` (and, given `model`, made on that model: an adapter,
    soft prompt or reward head of another model does not fit it); clear errors otherwise."""
    run = lookup(run_id)
    if run is None:
        raise LabInputError(f"{field}: no run with id {run_id!r}; list runs with `python -m engine runs`")
    if run["status"] != "succeeded":
        raise LabInputError(f"{field}: run {run_id} is {run['status']}, not succeeded")
    if not same_model(run, model):
        raise LabInputError(f"{field}: run {run_id} was made on model {run['model']!r}; this lab runs {model!r}, "
                            f"which its artifact does not fit — start the lab with LAB_MODEL={run['model']} to use it")
    for a in run.get("artifacts") or []:
        if a["kind"] in kinds:
            return a
    made = ", ".join(a["kind"] for a in run.get("artifacts") or []) or "nothing"
    raise LabInputError(f"{field}: run {run_id} ({run['edge']}) made {made}, not {' or '.join(kinds)}; "
                        f"pick a run that made {_article(kinds[0])} {kinds[0]}")


def same_model(run: dict, model: str | None) -> bool:
    """Whether a stored run belongs with `model`'s runs (a run from before runs recorded their model counts
    as the lab's, as does any run when no model is given)."""
    return not model or not run.get("model") or run["model"] == model


# ---------- policies ----------
def resolve_policy(ref: str, ctx, field: str = "policy") -> Policy:
    """The policy a reference names, with its adapter loaded in the host."""
    ref = ref.strip()
    if ref == "base":
        return BASE
    if ref == "prompt":
        return ctx.scenario.prompt_policy(f"{ctx.scenario.name} prompt")
    if ref == "instruction":   # z's text alone, without worked examples: zero-shot prompting
        return Prompt(ctx.scenario.prompt).policy(f"{ctx.scenario.name} instruction")
    if ref == "few-shot":
        return ctx.scenario.few_shot_z.policy(f"{ctx.scenario.name} few-shot")
    if ref.startswith("scenario:"):
        name = ref.split(":", 1)[1]
        return _scenario_prompt(ref, field).policy(f"{name} prompt")
    artifact = stored_artifact(ctx.lookup, ref, field, KIND_FOR["policy"], ctx.host.model_name)
    return policy_from_spec(artifact_policy_spec(artifact, ref), ctx.host)


def artifact_policy_spec(artifact: dict, run_id: str) -> dict:
    data = artifact.get("data") or {}
    if artifact["kind"] == "prompt":   # a readable prompt; a reward-conditioned one works through its adapter
        return {"system": data["prompt_text"], "turns": [[t["user"], t["assistant"]] for t in
                                                        data.get("demonstrations") or ()],
                "adapter_path": artifact.get("path"), "label": f"prompt of {run_id}"}
    if artifact["kind"] == "soft_prompt":
        return {"system": data.get("system"), "adapter_path": None, "soft_path": artifact["path"],
                "label": f"soft prompt of {run_id}"}
    return {"system": data.get("system"), "turns": data.get("turns") or [], "adapter_path": artifact["path"],
            "label": f"adapter of {run_id}"}


# ---------- rewards ----------
def resolve_reward(ref: str, ctx, field: str = "reward"):
    """The reward a reference names: empty = the scenario's reference reward, else a reward artifact."""
    ref = ref.strip()
    if not ref:
        return ctx.scenario.reward()
    artifact = stored_artifact(ctx.lookup, ref, field, KIND_FOR["reward"], ctx.host.model_name)
    return build_any_reward(artifact.get("data") or {}, ctx.host)


def build_any_reward(spec: dict, host):
    """A reference reward (sentiment, keywords, ...) or a reward read off the model (judge, log-ratio, ...)."""
    from engine.rewards import build_reward, reward_kinds
    if spec.get("kind") in reward_kinds():
        return build_reward(spec)
    from engine.reward_models import (
        build_model_reward,  # torch only where a model reward is wanted
    )
    return build_model_reward(spec, host)


def _scenario_prompt(ref: str, field: str):
    from engine.scenarios import builtin_scenarios, load_scenario
    name = ref.split(":", 1)[1].strip()
    if name not in builtin_scenarios():
        raise LabInputError(f"{field}: no built-in scenario {name!r}; choose from {', '.join(builtin_scenarios())}")
    return load_scenario(name).z


def _expected(what: str) -> str:
    return {"policy": "base, prompt, instruction, few-shot, scenario:NAME or a run id",
            "adapter": "the id of a run that made an adapter",
            "reward": "the id of a run that made a reward",
            "soft_prompt": "the id of a run that made a soft prompt",
            "initial_adapter": "the id of a run that made an adapter (or nothing)"}[what]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
