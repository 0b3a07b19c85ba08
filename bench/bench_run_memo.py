"""A run again with its teacher side from memory, beside the same run computing it.

One process, one model host, a data directory of its own: the run at the given preset with the memo emptied
(the baseline: every run before this feature), then the same request again with the teacher side from memory
(engine/run_memo.py) — "Run again", or the same form with another lr or steps. `--edge distill`: context
distillation (prompt -> parameter, kl); `--edge soft`: the soft prompt (parameter -> prompt) of a quick
distillation's adapter, made first and not timed. Prints both wall times (the job runner's own duration), their
ratio, the memory the memo holds and the process's resident memory, and whether every metric and sample came out
the same.

Usage: python bench/bench_run_memo.py [--edge distill|soft] [--preset default|quick] [--scenario sentiment]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench_memory import MB, rss_mb  # noqa: E402
from engine.settings import REPO_ROOT, load_settings  # noqa: E402

EDGES = {"distill": (("prompt", "parameter"), "kl"), "soft": (("parameter", "prompt"), "soft")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge", default="distill", choices=tuple(EDGES))
    ap.add_argument("--preset", default="default", choices=("default", "quick"))
    ap.add_argument("--scenario", default="sentiment")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LAB_DATA_DIR"] = tmp
        os.environ["LAB_GALLERY"] = "0"
        (Path(tmp) / "model-cache").symlink_to(REPO_ROOT / "data" / "model-cache", target_is_directory=True)
        from engine.api import Lab
        lab = Lab(settings=load_settings())
        edge, method = EDGES[args.edge]
        overrides = lab.preset_values(f"{edge[0]}->{edge[1]}", method, args.preset)
        if args.edge == "soft":   # π*: a quick distillation's adapter
            source = lab.run_now(lab.prepare("prompt", "parameter", "kl", args.scenario,
                                             lab.preset_values("prompt->parameter", "kl", "quick")))
            overrides = {**overrides, "source_run": source}
        runs = []
        for label in ("computed (baseline)", "from memory"):
            if not runs:
                lab.jobs.host.memo.clear()
            run = lab.run(lab.run_now(lab.prepare(*edge, method, args.scenario, overrides)))
            assert run["status"] == "succeeded", run["error"]
            runs.append(run)
            print(json.dumps({"run": label, "seconds": round(run["duration_s"], 1),
                              "kl_before": round(run["metrics"]["kl_before"], 4),
                              "kl_after": round(run["metrics"]["kl_after"], 4)}), flush=True)
        base, memo = runs
        same = lambda run: {k: v for k, v in run["metrics"].items() if k not in ("teacher_side", "forward_tokens")}
        rows = lambda run: sorted((s["policy"], s["input"], s["output"]) for s in lab.samples(run["run_id"]))
        print(json.dumps({"edge": args.edge, "preset": args.preset, "computed_s": round(base["duration_s"], 1),
                          "from_memory_s": round(memo["duration_s"], 1),
                          "ratio": round(memo["duration_s"] / base["duration_s"], 3),
                          "same_metrics": same(base) == same(memo), "same_samples": rows(base) == rows(memo),
                          "forward_tokens": [base["metrics"]["forward_tokens"], memo["metrics"]["forward_tokens"]],
                          "memo_mb": round(lab.jobs.host.memo.used() / MB, 1), "rss_mb": round(rss_mb(), 1)}),
              flush=True)


if __name__ == "__main__":
    main()
