"""Every method's quick preset beside its defaults: the headline figure and the wall time of each, in one run.

A quick preset (`--preset quick`, the form's Preset radio) is meant to finish in about a minute on 2 CPU
cores and still show the method's effect. This runs each method through the lab (stored runs, as a user
would), quick first and then — with `--defaults` — at its defaults, and prints one line per method:
the headline figure (before → after where the method moves one) and the seconds each took.

    LAB_DATA_DIR=/tmp/quick .venv/bin/python bench/quick_presets.py [--defaults] [--only rloo,sft] [--json]

Methods that start from an adapter (parameter → prompt, parameter → reward) use the context distillation run
of the same preset as their source.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LAB_GALLERY", "0")   # measure on an empty database, not beside the gallery's runs

# (task, method, scenario, headline: (before key, after key) or one key, needs a source adapter)
METHODS = [
    ("prompt->parameter", "kl", "sentiment", ("kl_before", "kl_after"), False),
    ("prompt->parameter", "imitation", "sentiment", ("kl_before", "kl_after"), False),
    ("parameter->prompt", "soft", "sentiment", ("kl_before", "kl_after"), True),
    ("parameter->prompt", "discrete", "sentiment", ("kl_before", "kl_after"), True),
    ("parameter->reward", "log-ratio", "sentiment", ("reward_pi1", "reward_steered"), True),
    ("prompt->reward", "contrastive", "sentiment", "pair_accuracy", False),
    ("prompt->reward", "judge", "sentiment", "pair_accuracy", False),
    ("prompt->reward", "bradley-terry", "sentiment", "pair_accuracy", False),
    ("reward->parameter", "rloo", "sentiment", ("reward_before", "reward_after"), False),
    ("reward->parameter", "dpo", "sentiment", ("reward_before", "reward_after"), False),
    ("reward->parameter", "simpo", "sentiment", ("reward_before", "reward_after"), False),
    ("reward->prompt", "search", "sentiment", ("reward_seed", "reward_best"), False),
    ("reward->prompt", "conditioned", "sentiment", "spearman_level_vs_reward", False),
    ("best-of-n", "bon", "sentiment", "bon", False),
    ("reward-model", "outcome", "arithmetic", "auc", False),
    ("reward-model", "pairwise", "arithmetic", "auc", False),
    ("reward-model", "discriminator", "sentiment", "heldout_accuracy", False),
    ("demonstrations", "sft", "sentiment", ("reward_base", "reward_sft"), False),
    ("demonstrations", "adversarial", "sentiment", ("discriminator_reward_before", "discriminator_reward_after"), False),
]


def headline(metrics: dict, key) -> str:
    if key == "bon":   # best-of-N: the reference reward at N = 1 and at the largest N
        res = metrics["results"]
        return f"reward N=1 {res[0]['reward']:.3f} → N={res[-1]['n']} {res[-1]['reward']:.3f}"
    if isinstance(key, tuple):
        a, b = (metrics.get(k) for k in key)
        return f"{key[1].split('_')[0]} {a:.3f} → {b:.3f}" if None not in (a, b) else "—"
    value = metrics.get(key)
    return f"{key} {value:.3f}" if isinstance(value, (int, float)) else "—"


def run_one(lab, task, method, scenario, preset, source) -> dict:
    overrides = {"preset": preset} | ({"source_run": source} if source else {})
    t0 = time.perf_counter()
    run = lab.run(lab.run_now(lab.prepare_task(task, method, scenario, overrides)))
    return {"run_id": run["run_id"], "status": run["status"], "wall_s": time.perf_counter() - t0,
            "metrics": run["metrics"] or {}, "error": (run["error"] or "").splitlines()[:1]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--defaults", action="store_true", help="also run every method at its defaults")
    p.add_argument("--only", default="", help="comma list of method names")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    from engine.api import Lab
    lab = Lab()
    d = lab.jobs.host.describe()
    print(f"{d['label']}, {d['threads']} threads")
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    presets = ["quick"] + (["default"] if args.defaults else [])
    sources: dict[str, str] = {}
    out = []
    print(f"{'task':<18} {'method':<14} " + "  ".join(f"{p + ' figure':<34} {p + ' s':>9}" for p in presets))
    for task, method, scenario, key, needs_source in METHODS:
        if only and method not in only and not (needs_source and "kl" in only):
            continue
        row = {"task": task, "method": method, "scenario": scenario}
        for preset in presets:
            if needs_source and preset not in sources:
                sources[preset] = run_one(lab, "prompt->parameter", "kl", "sentiment", preset, None)["run_id"]
            r = run_one(lab, task, method, scenario, preset, sources.get(preset) if needs_source else None)
            if task == "prompt->parameter" and method == "kl":
                sources.setdefault(preset, r["run_id"])
            r["headline"] = headline(r["metrics"], key) if r["status"] == "succeeded" else f"{r['status']}: {r['error']}"
            row[preset] = r
        out.append(row)
        print(f"{task:<18} {method:<14} " + "  ".join(f"{row[p]['headline']:<34} {row[p]['wall_s']:>9.1f}"
                                                      for p in presets), flush=True)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items()} for r in out], indent=1, default=str))


if __name__ == "__main__":
    main()
