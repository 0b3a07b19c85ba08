"""A short real run of every edge, best-of-N and a reward model, on CUDA and on the CPU, side by side.

Prints, per run: wall time on each device, the ratio, and the headline metric on each (they differ by
sampling noise and precision: CUDA runs bf16, the CPU what its start-up check chose). Needs a CUDA build of
torch and a GPU (`bench/gpu_check.sh` runs it); `--devices cpu` runs the CPU half alone.

Usage: python bench/gpu_check.py [--devices cuda,cpu] [--model embedded]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from engine.api import Lab  # noqa: E402
from engine.settings import load_settings  # noqa: E402

SMALL = {"n_train": 16, "n_heldout": 8, "eval_samples": 2, "max_new_tokens": 24}
TRAIN = {**SMALL, "steps": 6, "batch_size": 8, "eval_every": 0}
# (label, task or (from, to), method, scenario, settings, headline metric); "{cd}" is the distillation run
RUNS = [
    ("prompt→parameter kl", ("prompt", "parameter"), "kl", "sentiment", {**TRAIN, "teacher_samples": 1}, "kl_after"),
    ("reward→parameter rloo", ("reward", "parameter"), "rloo", "sentiment", {**TRAIN, "k": 4, "batch_size": 4},
     "reward_after"),
    ("parameter→reward log-ratio", ("parameter", "reward"), "log-ratio", "sentiment",
     {"source_run": "{cd}", "n_heldout": 8, "eval_samples": 4, "max_new_tokens": 24}, "pair_accuracy"),
    ("parameter→prompt soft", ("parameter", "prompt"), "soft", "sentiment",
     {**SMALL, "source_run": "{cd}", "steps": 6, "batch_size": 8, "eval_every": 0}, "kl_after"),
    ("prompt→reward contrastive", ("prompt", "reward"), "contrastive", "sentiment", SMALL, "pair_accuracy"),
    ("reward→prompt search", ("reward", "prompt"), "search", "sentiment",
     {"budget": 60, "search_inputs": 4, "n_heldout": 8, "eval_samples": 1, "max_new_tokens": 24}, "reward_best"),
    ("best-of-N", "best-of-n", "bon", "sentiment", {"n": "1,4", "n_heldout": 8, "max_new_tokens": 24}, "results"),
    ("reward model (outcome)", "reward-model", "outcome", "arithmetic",
     {"n_train": 8, "samples_per_input": 4, "n_heldout": 4, "heldout_samples": 4, "n": "1,4", "head_steps": 50},
     "auc"),
]


def run_all(device: str, model: str) -> dict[str, tuple[float, object]]:
    os.environ["LAB_DEVICE"] = device
    s = load_settings()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "model-cache").symlink_to(s.model_cache_dir, target_is_directory=True)
        lab = Lab(settings=s.__class__(model=model, data_dir=Path(d), db_url=f"sqlite:///{d}/lab.sqlite",
                                       threads=s.threads, device=device, precision=s.precision))
        print(f"{device}: {lab.host_info()['label']}", flush=True)
        out, cd = {}, None
        for label, task, method, scenario, sets, metric in RUNS:
            sets = {k: (cd if v == "{cd}" else v) for k, v in sets.items()}
            req = lab.prepare(*task, method, scenario, sets) if isinstance(task, tuple) else \
                lab.prepare_task(task, method, scenario, sets)
            run = lab.run(lab.run_now(req))
            if run["status"] != "succeeded":
                raise SystemExit(f"{device} {label}: {run['status']}: {run['error']}")
            cd = cd or run["run_id"]
            value = run["metrics"][metric]
            out[label] = (run["duration_s"], value[-1]["reward"] if metric == "results" else value)
            print(f"  {label}: {out[label][0]:.1f} s, {metric} {out[label][1]}", flush=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--model", default="embedded")
    args = ap.parse_args()
    results = {d: run_all(d, args.model) for d in args.devices.split(",")}
    devices = list(results)
    print("\n| run | " + " | ".join(f"{d} s" for d in devices) + " | ratio | " +
          " | ".join(f"metric ({d})" for d in devices) + " |")
    print("|---" * (2 * len(devices) + 2) + "|")
    for label, *_ in RUNS:
        times = [results[d][label][0] for d in devices]
        ratio = f"×{times[-1] / times[0]:.1f}" if len(times) > 1 else "—"
        metrics = [f"{results[d][label][1]:.3f}" for d in devices]
        print(f"| {label} | " + " | ".join(f"{t:.1f}" for t in times) + f" | {ratio} | " + " | ".join(metrics) + " |")


if __name__ == "__main__":
    main()
