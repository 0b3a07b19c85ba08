"""The triangle: three vertices, six edges, and the methods registered for each edge (engine/methods.py).

The UI and the CLI build their menus from here; an edge without methods shows as not yet available.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from engine.config_pieces import ordered_fields
from engine.errors import LabInputError
from engine.methods import REGISTRY, SIZE_PRESETS, MethodSpec  # noqa: F401 (MethodSpec: re-exported)

VERTICES = ("prompt", "parameter", "reward")


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


def _import_methods() -> list[str]:
    """Import every module of engine/edges/ named by a direction of the triangle (prompt_to_parameter.py,
    reward_to_parameter_simpo.py, ...) and every module of engine/tasks/ (the runs beside the edges):
    their registrations fill REGISTRY. A new method is a new file there; nothing here changes."""
    here = Path(__file__).parent
    names = ([f"edges.{p.stem}" for p in sorted((here / "edges").glob("*.py")) if DIRECTION.match(p.stem)]
             + [f"tasks.{p.stem}" for p in sorted((here / "tasks").glob("*.py")) if not p.stem.startswith("_")])
    for name in names:
        importlib.import_module(f"engine.{name}")
    return names


DIRECTION = re.compile(r"^(prompt|parameter|reward)_to_(prompt|parameter|reward)(_\w+)?$")
METHOD_MODULES = _import_methods()

EDGE_TITLES = [   # (from, to, title, section of 2406.16377)
    ("prompt", "parameter", "Context distillation", "§4, Eqs. 8–10"),
    ("parameter", "prompt", "Soft and readable prompts that mimic an adapter", "§5, Eqs. 11–13"),
    ("reward", "parameter", "KL-regularized RL and DPO", "§2, Eqs. 1–3"),
    ("parameter", "reward", "log π*/π0 as a reward; decoding-time steering", "§3, Eqs. 4–7"),
    ("prompt", "reward", "LLM judge and contrastive scoring", "§6, Eqs. 14–15"),
    ("reward", "prompt", "Prompt search and reward-conditioned control", "§7, Eqs. 16–18"),
]
EDGES = {f"{a}->{b}": EdgeSpec(a, b, title, section, REGISTRY.get(f"{a}->{b}", {}))
         for a, b, title, section in EDGE_TITLES}
# runs that are not conversions: best-of-N decoding with a reward (Sun et al. §3), a reward model learned
# from golden-labelled data (§4.3) or from demonstrations (§4.2), and a policy learned from demonstrations
# (SFT, §3.1.1; adversarial imitation, §4.2)
TASKS = {"best-of-n": EdgeSpec("reward", "generation", "Best-of-N", "Sun et al. §3", REGISTRY["best-of-n"],
                               key="best-of-n"),
         "reward-model": EdgeSpec("data", "reward", "Reward model from data", "Sun et al. §4.2–4.3",
                                  REGISTRY["reward-model"], key="reward-model"),
         "demonstrations": EdgeSpec("data", "parameter", "Policy from expert demonstrations",
                                    "Sun et al. §3.1.1, §4.2", REGISTRY["demonstrations"], key="demonstrations")}


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
    for f in ordered_fields(spec.config_cls):
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
    for key, raw in upgrade_settings(with_preset(spec, overrides), fields_).items():
        if key not in fields_:
            raise LabInputError(f"{key}: unknown setting for {spec.name}; settings are {', '.join(fields_)}")
        values[key] = _coerce(fields_[key], raw)
    config = spec.config_cls(**values)
    if hasattr(config, "validate"):  # cross-field or structured checks the config knows best
        config.validate()
    return config


def with_preset(spec: MethodSpec, overrides: dict[str, object]) -> dict[str, object]:
    """`overrides` with a size preset (`"preset": "quick"`) replaced by the preset's settings, under the
    overrides given beside it. (A method's own `preset` setting — log-ratio's steering presets — never takes
    the names default or quick, so both meanings share the key.)"""
    name = overrides.get("preset")
    if not spec.quick or name not in SIZE_PRESETS:
        return overrides
    rest = {k: v for k, v in overrides.items() if k != "preset"}
    return (spec.quick if name == "quick" else {}) | rest


def preset_settings(spec: MethodSpec, name: str) -> dict:
    """Every setting of `spec` under size preset `name` (what the form fills in)."""
    if name not in SIZE_PRESETS:
        raise LabInputError(f"preset: {name!r} is not a preset; choose {' or '.join(SIZE_PRESETS)}")
    return dataclasses.asdict(build_config(spec, {"preset": name}))


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
