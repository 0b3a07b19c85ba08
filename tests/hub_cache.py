"""A local Hugging Face cache holding the embedded SmolLM2 under its hub id, as a Space's `preload_from_hub`
leaves it (HF_HOME/hub/models--OWNER--NAME/{refs/main, snapshots/REV/...}), so the hub-id path loads offline.

The files are the lab's converted safetensors cache (the dequantized Q4_1 weights in float32), linked, not
copied: the real hub repo holds the original bf16 weights, which cannot be downloaded here.

  .venv/bin/python tests/hub_cache.py HF_HOME      prints the snapshot directory
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REVISION = "0" * 40   # a stand-in commit hash: the layout needs one, nothing checks it


def write_hub_cache(hf_home: Path, source: Path, repo_id: str) -> Path:
    """Link `source`'s files into HF_HOME's hub cache as `repo_id`'s main revision; returns the snapshot dir."""
    repo = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in Path(source).iterdir():
        if f.is_file() and not f.name.startswith("."):
            link = snapshot / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


def write_smollm2_hub_cache(hf_home: Path) -> Path:
    """The embedded SmolLM2 (converted once into data/model-cache, as `make setup` does) under its hub id."""
    from engine.model_loading import EMBEDDED, DEFAULT_EMBEDDED, resolve_model_dir
    from engine.settings import REPO_ROOT
    source = resolve_model_dir("embedded", REPO_ROOT / "data" / "model-cache")
    return write_hub_cache(hf_home, Path(source), EMBEDDED[DEFAULT_EMBEDDED].hub_id)


if __name__ == "__main__":
    print(write_smollm2_hub_cache(Path(sys.argv[1])))
