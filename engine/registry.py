"""The triangle: three vertices, six edges, and the methods built so far for each edge.

The UI and the CLI build their menus from here; an edge without methods shows as not yet available.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Callable

from engine.errors import LabInputError

VERTICES = ("prompt", "parameter", "reward")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    equation: str                  # the paper equation it implements, shown next to the result
    config_cls: type
    defaults: dict                 # per-method overrides of the config's defaults
    run: Callable                  # run(method, config, ctx) -> Result
    metrics: tuple[str, ...]       # the numbers it reports (stable CLI/JSON keys)


@dataclass(frozen=True)
class EdgeSpec:
    source: str
    target: str
    title: str
    section: str
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    key: str = ""                  # a task that is not an edge of the triangle (e.g. "best-of-n")

    @property
    def name(self) -> str:
        return self.key or f"{self.source}->{self.target}"

    @property
    def available(self) -> bool:
        return bool(self.methods)


def _distill_methods() -> dict[str, MethodSpec]:
    from engine import prompt_to_parameter as p2p
    metrics = ("kl_before", "kl_after", "reward_base", "reward_teacher", "reward_student")
    return {
        "kl": MethodSpec("kl", "Context distillation, full-distribution KL",
                         "min_π E_{x,y~D} KL[π0(y|x,z) ‖ π(y|x)]   (Eq. 9)",
                         p2p.DistillConfig, p2p.METHODS["kl"], p2p.run, metrics),
        "imitation": MethodSpec("imitation", "Context distillation, imitation of teacher samples",
                                "max_π E_{x~D, y~π0(y|x,z)} log π(y|x)   (Eq. 10)",
                                p2p.DistillConfig, p2p.METHODS["imitation"], p2p.run, metrics),
    }


def _prompt_reward_methods() -> dict[str, MethodSpec]:
    from engine import prompt_to_reward as p2r
    metrics = ("pair_accuracy", "spearman", "n_pairs")
    cfg, run = p2r.PromptRewardConfig, p2r.run
    return {
        "contrastive": MethodSpec("contrastive", "Contrastive scoring with a prompt pair",
                                  "R(x,y) = log π0(y|x,z+) − log π0(y|x,z−)   (Eq. 15)",
                                  cfg, p2r.METHODS["contrastive"], run, metrics),
        "judge": MethodSpec("judge", "Direct prompting: the model as a judge",
                            "r(x,y) = Σ_s s · π0(s|x,y,z), s ∈ 1..9   (Eq. 14)",
                            cfg, p2r.METHODS["judge"], run, metrics),
        "bradley-terry": MethodSpec("bradley-terry", "Contrastive prompting pairs → Bradley-Terry reward model",
                                    "y+ ~ π0(·|x,z+), y− ~ π0(·|x,z−);  min −log σ(r(x,y+) − r(x,y−))",
                                    cfg, p2r.METHODS["bradley-terry"], run, metrics),
    }


def _parameter_prompt_methods() -> dict[str, MethodSpec]:
    from engine import parameter_to_prompt as p2z
    return {
        "soft": MethodSpec("soft", "Soft prompt tuning: virtual tokens that imitate the adapter",
                           "min_z E_{x, y~π*} KL[π*(y|x) ‖ π0(y|x,z)]   (Eq. 12; Eq. 13 as an option)",
                           p2z.SoftConfig, p2z.METHODS["soft"], p2z.run,
                           ("kl_before", "kl_after", "kl_projected", "reward_star", "reward_base", "reward_prompt")),
        "discrete": MethodSpec("discrete", "Readable prompt: search over candidates scored by KL to π*",
                               "min_z E_{x, y~π*} KL[π*(y|x) ‖ π0(y|x,z)] over readable z   (Eq. 12)",
                               p2z.DiscreteConfig, p2z.METHODS["discrete"], p2z.run,
                               ("kl_before", "kl_after", "kl_train_best", "reward_star", "reward_base",
                                "reward_prompt")),
    }


def _rl_methods() -> dict[str, MethodSpec]:
    from engine import reward_to_parameter as r2p
    metrics = ("reward_before", "reward_after", "kl_to_base")
    cfg, run = r2p.RLConfig, r2p.run
    return {
        "rloo": MethodSpec("rloo", "KL-regularized policy gradient (RLOO)",
                           "max_π E_{x, y~π}[r(x,y)] − β KL[π(y|x) ‖ π0(y|x)]   (Eq. 1)",
                           cfg, r2p.METHODS["rloo"], run, metrics),
        "dpo": MethodSpec("dpo", "Online DPO on best-vs-worst samples",
                          "min −log σ(β[log π/π0 (y_best) − log π/π0 (y_worst)])   (Eq. 1's implicit form)",
                          cfg, r2p.METHODS["dpo"], run, metrics),
    }


def _log_ratio_methods() -> dict[str, MethodSpec]:
    from engine import parameter_to_reward as p2r
    metrics = ("pair_accuracy", "gap_closed", "reward_pi0", "reward_star", "reward_pi1", "reward_steered",
               "kl_steered_to_pi1", "tokens_per_s_plain", "tokens_per_s_steered")
    return {"log-ratio": MethodSpec("log-ratio", "log π*/π0 as a reward; decoding-time steering of π1",
                                    "r*(x,y) = log π*(y|x) − log π0(y|x) (Eq. 4);  "
                                    "log π2 ∝ log π1 + w·(log π* − log π0), w = 1/β (Eq. 7)",
                                    p2r.LogRatioConfig, p2r.METHODS["log-ratio"], p2r.run, metrics)}


def _reward_prompt_methods() -> dict[str, MethodSpec]:
    from engine import reward_to_prompt as r2z
    return {
        "search": MethodSpec("search", "Prompt search maximizing expected reward",
                             "max_z E_{x~D, y~π0(·|x,z)}[r(x,y)]   (Eq. 16)",
                             r2z.SearchConfig, r2z.METHODS["search"], r2z.run,
                             ("reward_none", "reward_seed", "reward_best")),
        "conditioned": MethodSpec("conditioned", "Reward-conditioned training with control prompts z(s)",
                                  "max_{π,z} E_{(x,y)~D}[π(y|x, z(r(x,y)))]   (Eq. 17)",
                                  r2z.ConditionedConfig, r2z.METHODS["conditioned"], r2z.run,
                                  ("levels", "reward_by_level", "spearman_level_vs_reward")),
    }


def _edges() -> dict[str, EdgeSpec]:
    specs = [
        EdgeSpec("prompt", "parameter", "Context distillation", "§4, Eqs. 8–10", _distill_methods()),
        EdgeSpec("parameter", "prompt", "Soft and readable prompts that mimic an adapter", "§5, Eqs. 11–13",
                 _parameter_prompt_methods()),
        EdgeSpec("reward", "parameter", "KL-regularized RL and DPO", "§2, Eqs. 1–3", _rl_methods()),
        EdgeSpec("parameter", "reward", "log π*/π0 as a reward; decoding-time steering", "§3, Eqs. 4–7",
                 _log_ratio_methods()),
        EdgeSpec("prompt", "reward", "LLM judge and contrastive scoring", "§6, Eqs. 14–15",
                 _prompt_reward_methods()),
        EdgeSpec("reward", "prompt", "Prompt search and reward-conditioned control", "§7, Eqs. 16–18",
                 _reward_prompt_methods()),
    ]
    return {e.name: e for e in specs}


EDGES = _edges()


def _tasks() -> dict[str, EdgeSpec]:
    """Runs that are not conversions: best-of-N decoding with a reward (Sun et al. §3) and a reward model
    learned from golden-labelled data (§4.3)."""
    from engine import best_of_n as bon
    method = MethodSpec("bon", "Best-of-N with a reward",
                        "y = argmax_{y_1..y_N ~ π} r(x, y_i);  KL(π_BoN ‖ π) ≤ log N − (N−1)/N",
                        bon.BestOfNConfig, {}, bon.run, ("results",))
    from engine import reward_from_data as rfd
    metrics = ("auc", "pair_accuracy", "auc_confidence", "pair_accuracy_confidence", "bon")
    outcome = MethodSpec("outcome", "Outcome reward model (ORM) from golden-labelled replies",
                         "E(y,y*) ∈ {0,1} (Eq. 9);  min_ω −E_{E=1}[log σ(r_ω)] − E_{E=0}[log(1 − σ(r_ω))] (Eq. 8)",
                         rfd.OutcomeRMConfig, {}, rfd.run, metrics)
    pairwise = MethodSpec("pairwise", "Bradley-Terry on right-vs-wrong replies of the same input",
                          "E(y,y*) ∈ {0,1} (Eq. 9);  min_ω −Σ log σ(r_ω(x,y+) − r_ω(x,y−)), E(y+)=1, E(y−)=0 (Eq. 4)",
                          rfd.OutcomeRMConfig, {}, rfd.run, metrics)
    return {bon.TASK: EdgeSpec("reward", "generation", "Best-of-N", "Sun et al. §3", {"bon": method},
                               key=bon.TASK),
            rfd.TASK: EdgeSpec("data", "reward", "Reward model from data", "Sun et al. §4.3",
                               {"outcome": outcome, "pairwise": pairwise}, key=rfd.TASK)}


TASKS = _tasks()


def get_task(name: str) -> EdgeSpec:
    """An edge by its name ("prompt->parameter") or another task ("best-of-n")."""
    if name in TASKS:
        return TASKS[name]
    if "->" not in name:
        raise LabInputError(f"{name!r} is neither an edge nor a task ({', '.join(TASKS)})")
    return get_edge(*name.split("->", 1))


def get_edge(source: str, target: str) -> EdgeSpec:
    for v in (source, target):
        if v not in VERTICES:
            raise LabInputError(f"vertex {v!r} is unknown; choose from {', '.join(VERTICES)}")
    if source == target:
        raise LabInputError("--from and --to must be different vertices")
    edge = EDGES[f"{source}->{target}"]
    if not edge.available:
        raise LabInputError(f"edge {edge.name} is not built yet; available: "
                            f"{', '.join(e.name for e in EDGES.values() if e.available)}")
    return edge


def get_method(edge: EdgeSpec, method: str | None) -> MethodSpec:
    if method is None:
        return next(iter(edge.methods.values()))
    if method not in edge.methods:
        raise LabInputError(f"method {method!r} is unknown for {edge.name}; choose from {', '.join(edge.methods)}")
    return edge.methods[method]


def config_fields(spec: MethodSpec) -> list[dict]:
    """Every field of a method's config with its default, type, range and help (for menus and forms)."""
    hints = typing.get_type_hints(spec.config_cls)
    base = spec.config_cls()
    out = []
    for f in dataclasses.fields(spec.config_cls):
        out.append({"name": f.name, "type": hints[f.name].__name__,
                    "default": spec.defaults.get(f.name, getattr(base, f.name)),
                    "help": f.metadata.get("help", ""), "lo": f.metadata.get("lo"), "hi": f.metadata.get("hi"),
                    "choices": f.metadata.get("choices")})
    return out


def upgrade_settings(values: dict, field_names) -> dict:
    """Settings written by an older lab, in today's names. `bf16` (true/false) became `precision`: false is
    fp32; true, the old default, means "the fast one", which `auto` now picks by measurement."""
    values = dict(values)
    if "bf16" in values and "bf16" not in field_names and "precision" in field_names:
        old = values.pop("bf16")
        off = old is False or str(old).strip().lower() in ("false", "0")
        values.setdefault("precision", "fp32" if off else "auto")
    return values


def restore_config(spec: MethodSpec, stored: dict):
    """A stored run's config (its `method_config`), readable whichever lab version wrote it."""
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    return spec.config_cls(**{k: v for k, v in upgrade_settings(stored, names).items() if k in names})


def build_config(spec: MethodSpec, overrides: dict[str, object]):
    """The method's config with defaults, then `overrides` (strings from the CLI or typed values),
    each checked for type and range; errors name the field and say what is allowed."""
    fields_ = {f["name"]: f for f in config_fields(spec)}
    values = {name: f["default"] for name, f in fields_.items()}
    for key, raw in upgrade_settings(overrides, fields_).items():
        if key not in fields_:
            raise LabInputError(f"{key}: unknown setting for {spec.name}; settings are {', '.join(fields_)}")
        values[key] = _coerce(fields_[key], raw)
    config = spec.config_cls(**values)
    if hasattr(config, "validate"):  # cross-field or structured checks the config knows best
        config.validate()
    return config


def _coerce(f: dict, raw: object):
    name, kind, lo, hi = f["name"], f["type"], f["lo"], f["hi"]
    try:
        if kind == "bool":
            value = raw if isinstance(raw, bool) else {"true": True, "1": True, "false": False, "0": False}[str(raw).strip().lower()]
        elif kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw) if not isinstance(raw, str) else int(raw.strip())
        elif kind == "float":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        else:
            value = str(raw)
    except (ValueError, KeyError, TypeError):
        want = {"bool": "true or false", "int": "a whole number", "float": "a number"}.get(kind, "text")
        raise LabInputError(f"{name}: {raw!r} is not {want}") from None
    if kind in ("int", "float") and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise LabInputError(f"{name}: {value} is out of range; allowed {lo} … {hi}")
    if kind == "str" and not value.strip() and str(f["default"]).strip():  # empty is fine where it is the default
        raise LabInputError(f"{name}: must not be empty")
    if f.get("choices") and value not in f["choices"]:
        raise LabInputError(f"{name}: {value!r} is not one of {', '.join(map(str, f['choices']))}")
    return value
