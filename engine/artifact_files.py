"""A run's artifact as one file to take out of the lab (the History's download button, `python -m engine
artifact RUN_ID`): no torch, only the files the run wrote.

    adapter       RUN_ID-adapter.zip: the PEFT folder (adapter_config.json, adapter_model.safetensors), loadable
                  with `PeftModel.from_pretrained(base, folder)`, and triangle_lab.json (what made it)
    prompt        RUN_ID-prompt.txt: the prompt text, then its demonstration turns (a zip with the adapter a
                  reward-conditioned prompt works through)
    soft_prompt   RUN_ID-soft_prompt.zip: its safetensors file and triangle_lab.json
    reward        RUN_ID-reward.json: the reward spec (a zip with the head's file, when it has one)
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from engine.errors import LabInputError

ABOUT = "triangle_lab.json"


def provenance(run: dict, artifact: dict) -> dict:
    """What the file came from: the run, its edge and method, scenario and model, the artifact's data."""
    keys = ("run_id", "edge", "method", "scenario", "model", "created_at", "finished_at")
    return {**{k: run.get(k) for k in keys}, "kind": artifact["kind"], "vertex": artifact["vertex"],
            "data": artifact.get("data") or {}, "metrics": run.get("metrics") or {}}


def prompt_text(data: dict) -> str:
    """A readable prompt as plain text: the system text, then each demonstration turn."""
    turns = "".join(f"\n\nUser: {t['user']}\nAssistant: {t['assistant']}" for t in data.get("demonstrations") or [])
    return (data.get("prompt_text") or "") + turns + "\n"


def artifact_file(run: dict, out_dir: Path) -> Path:
    """Write `run`'s artifact into `out_dir` as one file (see the module's table); its path."""
    artifacts = run.get("artifacts") or []
    if not artifacts:
        raise LabInputError(f"run {run['run_id']} made no artifact to download (e.g. best-of-N), or it did not finish")
    a = artifacts[0]
    files = _files(a.get("path"))
    if a["kind"] in ("adapter", "soft_prompt") and not files:
        raise LabInputError(f"run {run['run_id']}: the files of its {a['kind']} are gone ({a.get('path')})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{run['run_id']}-{a['kind']}"
    if a["kind"] in ("prompt", "reward") and not files:
        if a["kind"] == "prompt":
            path = out_dir / f"{stem}.txt"
            path.write_text(prompt_text(a.get("data") or {}), encoding="utf-8")
        else:
            path = out_dir / f"{stem}.json"
            path.write_text(json.dumps(provenance(run, a), indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        return path
    path = out_dir / f"{stem}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, file in files:
            z.write(file, f"{stem}/{name}")
        z.writestr(f"{stem}/{ABOUT}", json.dumps(provenance(run, a), indent=1, ensure_ascii=False, default=str))
        if a["kind"] == "prompt":
            z.writestr(f"{stem}/prompt.txt", prompt_text(a.get("data") or {}))
    return path


def _files(path: str | None) -> list[tuple[str, Path]]:
    """(name inside the zip, file) for an artifact's path: a folder's files (recursively) or one file."""
    if not path:
        return []
    p = Path(path)
    if p.is_dir():
        return [(str(f.relative_to(p)), f) for f in sorted(p.rglob("*")) if f.is_file()]
    return [(p.name, p)] if p.is_file() else []
