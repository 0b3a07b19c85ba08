"""What every edge's `run(config, ctx)` receives and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from engine.artifacts import Artifact
from engine.scenarios import Scenario


class ProgressFn(Protocol):
    def __call__(self, fraction: float, stage: str, step: int | None = None,
                 points: dict[str, float] | None = None) -> None: ...


@dataclass
class RunContext:
    host: Any                      # engine.model_host.ModelHost
    scenario: Scenario
    run_id: str
    out_dir: Path                  # where this run may write files (adapters, ...)
    on_progress: ProgressFn
    lookup: Callable[[str], dict | None] = lambda run_id: None  # run id -> stored run (engine/references.py)


@dataclass
class Result:
    metrics: dict[str, float]
    artifact: Artifact | None      # engine/artifacts.py; None for runs that make none (best-of-N)
    samples: list[dict] = field(default_factory=list)  # {"policy","input","output","reward","sample_index"}
