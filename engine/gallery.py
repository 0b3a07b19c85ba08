"""The gallery: finished example runs that ship with the lab, so a class sees results before its first run ends.

`make gallery` (`python -m engine gallery`) runs EXAMPLES — one of every edge, best-of-N, a reward model learned
from data, a round trip — at their defaults on the embedded model, in a data directory of their own, then a
Compare of their policies, and writes a portable bundle to assets/gallery/:

    gallery.json   {"format", "provenance": {commit, model, machine, precision, torch, created, wall_s},
                    "examples": [{"name", "title", "run_id"}], "runs": [run bundles: config, metrics, curves,
                    samples, artifacts], "compare": the Compare result}
    files/RUN_ID/  each run's artifact files (adapters and soft prompts in safetensors — stored in fp16, half the
                   bytes, and read back into fp32 — reward heads)

Paths inside the bundle are written relative to the artifact folder ("{artifacts}/RUN_ID/..."). The lab —
page, CLI or worker, whichever starts first on an empty database (LAB_GALLERY=1, the default) — imports it:
the runs keep their ids, belong to the visitor "example" (History marks them; only an admin or the CLI may
delete them) and are usable as sources like any run (steer with the example adapter, compare it, chain it).
A bundle made on another model is not imported (its adapters do not fit).
"""
from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from engine.settings import ASSETS_DIR, REPO_ROOT
from engine.visitors import EXAMPLE as EXAMPLE_VISITOR

log = logging.getLogger(__name__)

GALLERY_DIR = ASSETS_DIR / "gallery"
BUNDLE = "gallery.json"
FORMAT = "triangle-lab gallery 1"
ARTIFACTS = "{artifacts}"

# (name, what it shows, task, method, scenario, overrides); "@name" stands for an earlier example's run id
EXAMPLES = (
    ("distill", "prompt → parameter: the joyful prompt distilled into a LoRA adapter (Eq. 9)",
     "prompt->parameter", "kl", "sentiment", {}),
    ("soft-prompt", "parameter → prompt: a soft prompt that imitates that adapter (Eq. 12)",
     "parameter->prompt", "soft", "sentiment", {"source_run": "@distill"}),
    ("steer", "parameter → reward: log π*/π0 of that adapter as a reward, and steering with it (Eqs. 4, 7)",
     "parameter->reward", "log-ratio", "sentiment", {"source_run": "@distill"}),
    ("contrastive", "prompt → reward: contrastive scoring with a prompt pair (Eq. 15)",
     "prompt->reward", "contrastive", "sentiment", {}),
    ("rl", "reward → parameter: RLOO on the sentiment reward (Eq. 1)", "reward->parameter", "rloo", "sentiment", {}),
    ("search", "reward → prompt: a prompt searched for the sentiment reward (Eq. 16)",
     "reward->prompt", "search", "sentiment", {}),
    ("best-of-n", "best-of-N with the sentiment reward, N = 1 … 16", "best-of-n", "bon", "sentiment", {}),
    ("reward-model", "a reward model learned from golden-labelled replies (Sun et al. Eq. 8), on arithmetic",
     "reward-model", "outcome", "arithmetic", {}),
)
ROUND_TRIP = ("round-trip", "a round trip prompt → reward → prompt: what survives of z's behaviour",
              "prompt,reward,prompt", "sentiment")
COMPARE = ("sentiment", ("base", "prompt", "@distill", "@soft-prompt", "@rl", "@search"))


# ---------- making the bundle ----------
def gallery_settings(base, work_dir: Path | None = None):
    """Settings for making the gallery: a data directory of its own (beside `base`'s model cache), empty."""
    import dataclasses
    import tempfile
    work = Path(work_dir or tempfile.mkdtemp(prefix="gallery-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "model-cache"
    if not cache.exists():
        cache.symlink_to(base.model_cache_dir.resolve(), target_is_directory=True)
    return dataclasses.replace(base, data_dir=work, db_url=f"sqlite:///{work / 'lab.sqlite'}", gallery=False,
                               multi_user=False, public=False)


def make_gallery(lab, out_dir: Path = GALLERY_DIR, on_line=print) -> dict:
    """Run every example at its defaults in `lab` (made on `gallery_settings`) and write the bundle to `out_dir`."""
    from engine.chain import prepare_chain, run_chain
    from engine.scenarios import load_scenario
    t0 = time.perf_counter()
    ids: dict[str, str] = {}
    examples = []
    for name, title, task, method, scenario, overrides in EXAMPLES:
        given = {k: ids[v[1:]] if isinstance(v, str) and v.startswith("@") else v for k, v in overrides.items()}
        run = lab.run(lab.run_now(lab.prepare_task(task, method, scenario, given)))
        _check_succeeded(run)
        ids[name] = run["run_id"]
        examples.append({"name": name, "title": title, "run_id": run["run_id"]})
        on_line(f"{name}: {task} {method} on {scenario}, {run['duration_s']:.0f} s")
    name, title, path, scenario = ROUND_TRIP
    chain = lab.run(run_chain(lab, prepare_chain(path, load_scenario(scenario), lookup=lab.store.get_run)))
    _check_succeeded(chain)
    examples.append({"name": name, "title": title, "run_id": chain["run_id"]})
    on_line(f"{name}: {path} on {scenario}, {chain['duration_s']:.0f} s")
    scenario, policies = COMPARE
    compare = lab.compare(scenario, [ids[p[1:]] if p.startswith("@") else p for p in policies])
    on_line(f"compare: {len(compare['policies'])} policies of {scenario}, {compare['duration_s']:.0f} s")
    run_ids = [e["run_id"] for e in examples]
    run_ids += [c["run_id"] for c in lab.store.children(chain["run_id"])]
    provenance = _provenance(lab, time.perf_counter() - t0)
    write_bundle(lab, run_ids, examples, compare, provenance, Path(out_dir))
    return {"out": str(out_dir), "examples": examples, "provenance": provenance,
            "bytes": bundle_bytes(Path(out_dir))}


def _check_succeeded(run: dict) -> None:
    if run["status"] != "succeeded":
        raise RuntimeError(f"gallery example {run['edge']} {run['method']} {run['status']}: {run['error']}")


def write_bundle(lab, run_ids: list[str], examples: list[dict], compare: dict | None, provenance: dict,
                 out_dir: Path) -> None:
    """gallery.json and files/: the runs with every path made relative to the artifact folder."""
    artifacts_dir = str(lab.settings.artifacts_dir.resolve())
    files = out_dir / "files"
    shutil.rmtree(files, ignore_errors=True)
    for rid in run_ids:
        folder = lab.settings.artifacts_dir / rid
        if folder.is_dir():
            shutil.copytree(folder, files / rid)
    for weights in files.rglob("*.safetensors"):
        cast_weights(weights, "float16")   # half the bytes; a LoRA's values need no more digits than fp16 holds
    runs = [relocate(b, artifacts_dir, ARTIFACTS) for b in lab.run_bundles(run_ids)]
    if compare is not None:
        compare = {k: v for k, v in compare.items() if k != "samples"} | {"samples": first_inputs(compare["samples"])}
    data = {"format": FORMAT, "provenance": provenance, "examples": examples, "runs": runs,
            "compare": relocate(compare, artifacts_dir, ARTIFACTS)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BUNDLE).write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n",
                                  encoding="utf-8")


def cast_weights(path: Path, dtype: str) -> None:
    """Rewrite a safetensors file with its floating tensors in `dtype` (its metadata kept)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    want = getattr(torch, dtype)
    save_file({k: t.to(want) if t.is_floating_point() else t for k, t in tensors.items()}, str(path), metadata)


def relocate(obj, old: str, new: str):
    """`obj` (JSON data) with every string that starts with `old` starting with `new` instead."""
    if isinstance(obj, str):
        return new + obj[len(old):] if obj.startswith(old) else obj
    if isinstance(obj, list):
        return [relocate(v, old, new) for v in obj]
    if isinstance(obj, dict):
        return {k: relocate(v, old, new) for k, v in obj.items()}
    return obj


def bundle_bytes(out_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file())


def first_inputs(samples: list[dict], n_inputs: int = 5) -> list[dict]:
    """A compare's generations kept small for the bundle: every policy's samples on the first inputs (a cut at
    the first rows would keep the first policies' replies only)."""
    kept = list(dict.fromkeys(s["input"] for s in samples))[:n_inputs]
    return [s for s in samples if s["input"] in kept]


def _provenance(lab, wall_s: float) -> dict:
    import torch

    from engine.precision import cpu_model
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    info = lab.host_info()
    return {"commit": commit, "model": lab.model, "machine": cpu_model(), "cores": info.get("threads"),
            "device": info["label"], "precision": info["precision"], "torch": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": round(wall_s, 1)}


# ---------- reading it ----------
def load_bundle(gallery_dir: Path = GALLERY_DIR) -> dict | None:
    """The bundle in `gallery_dir` (read once per version of the file: the page asks on every load), or None."""
    path = Path(gallery_dir) / BUNDLE
    if not path.is_file():
        return None
    return _read_bundle(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_bundle(path: str, _mtime_ns: int) -> dict | None:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        log.warning("gallery: %s is not a %r bundle; not imported", path, FORMAT)
        return None
    return data


def import_gallery(lab, gallery_dir: Path = GALLERY_DIR) -> int:
    """Import the bundle's runs into an empty database (their files under the artifact folder); how many."""
    from sqlalchemy.exc import IntegrityError
    data = load_bundle(gallery_dir)
    if data is None or lab.store.list_runs(limit=1):
        return 0
    if data["provenance"].get("model") != lab.model:
        log.info("gallery: made on %s, this lab runs %s; not imported", data["provenance"].get("model"), lab.model)
        return 0
    target = str(lab.settings.artifacts_dir.resolve())
    for rid in {r["run_id"] for r in data["runs"]}:
        source = Path(gallery_dir) / "files" / rid
        if source.is_dir():
            shutil.copytree(source, Path(target) / rid, dirs_exist_ok=True)
            for weights in (Path(target) / rid).rglob("*.safetensors"):
                cast_weights(weights, "float32")   # back to the lab's own format
    try:
        for bundle in sorted(data["runs"], key=lambda b: b.get("parent_id") is not None):   # parents first
            lab.store.import_run(relocate(bundle, ARTIFACTS, target), EXAMPLE_VISITOR)
    except IntegrityError:   # another process, starting at the same moment, imported it first
        return 0
    log.info("gallery: imported %d example runs", len(data["runs"]))
    return len(data["runs"])


def examples(lab) -> list[dict]:
    """The gallery's examples that are in this lab's database: [{"name", "title", "run_id", "run"}]."""
    data = load_bundle()
    if data is None:
        return []
    out = []
    for e in data["examples"]:
        run = lab.store.get_run(e["run_id"])
        if run is not None and run.get("visitor") == EXAMPLE_VISITOR:
            out.append(e | {"run": run})
    return out


def example_compare(lab) -> dict | None:
    """The gallery's Compare, when its runs are in this lab (its choices name them), with local paths."""
    data = load_bundle()
    if data is None or not data.get("compare") or not examples(lab):
        return None
    return relocate(data["compare"], ARTIFACTS, str(lab.settings.artifacts_dir.resolve()))
