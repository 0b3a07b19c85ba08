"""reward -> prompt: a prompt that steers π0 toward high reward (2406.16377 §7).

Two methods; the reward is the scenario's reference reward or any reward artifact (`reward` = a run id):
  search       Eq. 16 — max_z E_{x~D, y~π0(·|x,z)}[r(x,y)] over readable prompts. Seeds (the scenario's z,
               a candidate list in assets/prompts/, the user's) are scored by their mean reward on train
               inputs; each iteration the best few get rewritten by the model itself, edited (sentence
               operators) and given their best reply as a worked example, and the new prompts are scored,
               until the budget of model calls is spent (engine/edges/reward_to_prompt_search.py).
  conditioned  Eq. 17 — scored samples are binned into k reward levels; a LoRA adapter learns y from
               (z(s), x) with z(s) a readable control prompt; at test time z(s) asks for level s
               (engine/edges/reward_to_prompt_conditioned.py).
Reports, held-out: search — reward of no prompt, the seed prompt and the best prompt; conditioned — the
achieved reward at each level and its Spearman correlation with the level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from engine.errors import LabInputError
from engine.evaluation import Scored
from engine.policies import Prompt
from engine.prompt_search import calls_per_candidate
from engine.reward_conditioning import DEFAULT_FORMAT, check_format
from engine.config_pieces import Compute, HeldOut, LoRA, Training, like, opt
from engine.settings import ASSETS_DIR

EDGE = "reward->prompt"
PROMPTS_DIR = ASSETS_DIR / "prompts"
SEPARATOR = "|"   # between typed seed prompts: --set seed_prompts="Be kind. | Be warm."
DATA_POLICIES = ("base", "prompt", "negative")


@dataclass(frozen=True)
class SearchConfig(HeldOut, Compute):
    REFERENCES: ClassVar[dict] = {"reward": "reward"}

    reward: str = opt("", "Reward to maximize: empty = the scenario's reference reward, or the id of a run "
                          "that made a reward (prompt->reward, ...).")
    seed_prompts: str = opt("", "Your own seed prompts, separated by '|' (searched beside the scenario's "
                                "prompt and the candidate list).")
    candidates_file: str = opt("", "Text file of seed prompts, one per line ('#' starts a comment). Empty = "
                                   "assets/prompts/<scenario>.txt, else assets/prompts/generic.txt.")
    budget: int = opt(600, "Model calls the search may spend: every reply sampled to score a prompt "
                           "(search_inputs × search_samples each) and every rewrite the model writes.", 1, 100000)
    search_inputs: int = opt(12, "Train inputs every candidate is scored on (the same ones for all).", 1, 1000)
    search_samples: int = opt(2, "Samples per input when scoring a candidate.", 1, 16)
    beam: int = opt(4, "Best candidates kept as parents of each iteration's proposals.", 1, 32)
    rewrites: int = opt(2, "Rewrites of the parents the model writes per iteration.", 0, 32)
    edits: int = opt(2, "Edit-operator proposals (drop, swap, repeat, splice sentences) per iteration.", 0, 32)
    demonstrations: int = opt(1, "Proposals per iteration that append a parent's best-scoring reply to it as a "
                                 "worked example (a demonstration turn after z; at most 3 per prompt).", 0, 8)
    rewrite_temperature: float = opt(0.9, "Sampling temperature of the model's rewrites.", 0.05, 2.0)
    finalists: int = opt(3, "Best candidates re-scored, with the seed, on the other train inputs (1 sample "
                            "each) before the pick; guards against a lucky score. 0 = search score only.", 0, 16)
    margin: float = opt(1.0, "The best finalist replaces the seed only if it beats it by more than this many "
                             "standard errors of their paired per-input difference.", 0.0, 5.0)
    n_heldout: int = like(HeldOut, "n_heldout", 0)
    eval_samples: int = like(HeldOut, "eval_samples", 2)
    eval_temperature: float = opt(0.7, "Sampling temperature of scored generations (search and held-out).",
                                  0.05, 2.0)
    max_new_tokens: int = like(HeldOut, "max_new_tokens", 32)

    def validate(self) -> None:
        super().validate()
        cost = calls_per_candidate(self.search_inputs, self.search_samples)
        if self.budget < cost:
            raise LabInputError(f"budget: {self.budget} model calls cannot score one prompt (search_inputs × "
                                f"search_samples = {cost}); raise budget to at least {cost}")
        if self.candidates_file.strip():
            read_candidates(self.candidates_file.strip())


@dataclass(frozen=True)
class ConditionedConfig(Training, LoRA, HeldOut, Compute):
    REFERENCES: ClassVar[dict] = {"reward": "reward"}

    reward: str = opt("", "Reward to condition on: empty = the scenario's reference reward, or the id of a "
                          "run that made a reward.")
    levels: int = opt(4, "Reward levels k the training samples are binned into (equal counts).", 2, 10)
    control_format: str = opt(DEFAULT_FORMAT, "The control prompt z(s), given as the system message; {level}, "
                                              "{levels} and {name} (very low … very high) are filled in.")
    data_policies: str = opt("base,prompt,negative", "Who samples the training set D: base = π0, prompt = π0 + "
                                                     "the scenario's z, negative = π0 + z−. A wide spread of "
                                                     "rewards gives levels a few steps can learn.")
    data_samples: int = opt(1, "Samples per train input from each data policy, scored and binned.", 1, 32)
    data_temperature: float = opt(1.0, "Sampling temperature of the training samples.", 0.05, 2.0)
    contrast: float = opt(1.0, "Weight of the level-contrast term −log σ(log π(y|x,z(s)) − log π(y|x,z(s'))) "
                               "for a random other level s' (0 = Eq. 17's likelihood alone).", 0.0, 10.0)
    batch_size: int = opt(8, "Samples per step (each batch holds one level).", 1, 64)
    lr: float = like(Training, "lr", 3e-3)
    eval_every: int = like(Training, "eval_every", 0)
    eval_samples: int = opt(2, "Samples per held-out input at each level.", 1, 64)
    max_new_tokens: int = like(HeldOut, "max_new_tokens", 32)

    def validate(self) -> None:
        super().validate()
        check_format(self.control_format)
        data_policies(self.data_policies)


def data_policies(text: str) -> list[str]:
    from engine.lora import parse_comma_list
    return parse_comma_list(text, "data_policies", tuple(DATA_POLICIES), "a data policy")


# ---------- seeds ----------
def read_candidates(path: str, field: str = "candidates_file") -> list[str]:
    """Prompts from a text file, one per line; blank lines and '#' comments skipped."""
    from pathlib import Path
    p = Path(path)
    if not p.is_file():
        raise LabInputError(f"{field}: no such file {path!r}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise LabInputError(f"{field}: {p.name} is not UTF-8 text") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise LabInputError(f"{field}: {p.name} holds no prompts; write one prompt per line")
    return prompts


def default_candidates_file(scenario_name: str) -> str:
    own = PROMPTS_DIR / f"{scenario_name}.txt"
    return str(own if own.is_file() else PROMPTS_DIR / "generic.txt")


def seed_pool(config: SearchConfig, scenario) -> list[tuple[Prompt, str]]:
    """(prompt, origin) to start from, without repeats: the scenario's z first (with its demonstrations), then
    yours, then the list."""
    typed = [s.strip() for s in config.seed_prompts.split(SEPARATOR) if s.strip()]
    listed = read_candidates(config.candidates_file.strip() or default_candidates_file(scenario.name))
    out: list[tuple[Prompt, str]] = []
    for z, origin in ([(scenario.z, "seed")] + [(Prompt(t), "yours") for t in typed]
                      + [(Prompt(t), "candidate list") for t in listed]):
        if all(z != p for p, _ in out):
            out.append((z, origin))
    return out


def relabel(s: Scored, label: str) -> Scored:
    return Scored(label, s.inputs, s.outputs, s.token_ids, s.rewards, s.sample_index)
