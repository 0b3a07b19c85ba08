"""The method contract: every method registers itself once, beside its code (as PEFT's register_peft_method).

    register("reward->parameter", "rloo", title=..., equation="... (Eq. 1)", config=RLConfig, run=run,
             metrics=("reward_before", "reward_after", "kl_to_base"), artifact="adapter")

`run(method, config, ctx) -> Result`; `config` is the method's own frozen config class (its fields, with help
text and ranges, are the form and the CLI's --set); `metrics` are the stable keys it reports; `artifact` the
kind it makes, which must sit at the edge's target vertex (checked here at registration, and again on every
result by `check_artifact`). This module imports no method: engine/registry.py imports the methods, whose
registrations fill REGISTRY, and builds the triangle from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.artifacts import ARTIFACTS, Artifact

ARTIFACT_VERTEX = {kind: cls.vertex for kind, cls in ARTIFACTS.items()}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    equation: str                  # the paper equation it implements, shown next to the result
    config_cls: type
    defaults: dict                 # per-method overrides of the config's defaults
    run: Callable | None           # run(method, config, ctx) -> Result
    metrics: tuple[str, ...]       # the numbers it reports (stable CLI/JSON keys)
    artifact: str | None = None    # the kind of artifact it makes (None: none, e.g. best-of-N)
    task: str = field(default="", compare=False)
    quick: dict = field(default_factory=dict, compare=False)   # the "quick" preset: overrides for a short run


SIZE_PRESETS = ("default", "quick")   # `preset`: every method's own defaults, or its short run (≤ 90 s on 2 cores)


REGISTRY: dict[str, dict[str, MethodSpec]] = {}   # task ("prompt->parameter", "best-of-n", ...) -> name -> spec


def target_vertex(task: str) -> str | None:
    """The vertex an edge's artifacts sit at ("prompt->parameter" -> "parameter"); None for other tasks."""
    return task.split("->", 1)[1] if "->" in task else None


def register(task: str, name: str, *, title: str, equation: str, config: type, run: Callable,
             metrics: tuple[str, ...], artifact: str | None = None, defaults: dict | None = None,
             default: bool = False, quick: dict | None = None) -> MethodSpec:
    """Add a method to a task of the triangle; refuses an artifact off the edge's target vertex. The task's
    default method (the one menus open on) is the one registered with default=True, else the first. `quick`
    is the method's quick preset: the settings of a run that finishes in about a minute on 2 CPU cores and
    still shows the method's effect (its defaults stay the full run)."""
    if artifact is not None and artifact not in ARTIFACT_VERTEX:
        raise ValueError(f"{task} {name}: unknown artifact kind {artifact!r}; kinds are {', '.join(ARTIFACT_VERTEX)}")
    target = target_vertex(task)
    if target and ARTIFACT_VERTEX.get(artifact) != target:
        raise ValueError(f"{task} {name}: an edge's method makes an artifact at its target vertex {target!r}, "
                         f"not {artifact!r}")
    if name in REGISTRY.get(task, {}):
        raise ValueError(f"{task}: method {name!r} is registered twice")
    spec = MethodSpec(name, title, equation, config, dict(defaults or {}), run, tuple(metrics), artifact, task,
                      dict(quick or {}))
    methods = REGISTRY.setdefault(task, {})
    if default:
        REGISTRY[task] = {name: spec, **methods}
    else:
        methods[name] = spec
    return spec


def check_artifact(spec: MethodSpec, artifact: Artifact | None) -> None:
    """A run's result must make the typed artifact its method declared (whose class fixes the vertex)."""
    want = ARTIFACTS.get(spec.artifact) if spec.artifact else type(None)
    if not isinstance(artifact, want):
        made = artifact.kind if isinstance(artifact, Artifact) else type(artifact).__name__
        raise RuntimeError(f"{spec.task} {spec.name} declared artifact {spec.artifact!r} but made {made!r}")
