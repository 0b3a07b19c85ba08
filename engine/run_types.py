"""What every edge's `run(config, ctx)` receives and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

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
    artifact: dict | None          # {"kind", "vertex", "path", "data"}; None for runs that make none (best-of-N)
    samples: list[dict] = field(default_factory=list)  # {"policy","input","output","reward","sample_index"}


def precision_opt():
    """The `precision` field every method with forwards shares (the host owns the autocast context)."""
    return opt("auto", "Compute precision of this run's forwards: auto (the host's start-up choice: bf16 only "
                       "where measured faster than fp32, e.g. CUDA or a CPU with native bf16), fp32 or bf16. "
                       "Reported metrics stay float32.", choices=("auto", "fp32", "bf16"))


def opt(default, help: str, lo: float | None = None, hi: float | None = None, choices: tuple | None = None):
    """A config field with help text and the range the UI and CLI check."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "choices": choices})

