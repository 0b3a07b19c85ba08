"""Two ways into the parameter vertex from outside the model, side by side on one scenario (Sun et al. §3.1.1
vs Cai et al.'s prompt → parameter): supervised fine-tuning on the scenario's expert demonstrations, and
context distillation of its prompt z (the student learns π0(·|x, z) on the teacher's own samples).

Both runs at their defaults, the same held-out inputs, seeds and LoRA; each through the lab (a stored run with
its curves). Printed per scenario: held-out reference reward of π0, of the teacher π0 + z, of the CD student and
of SFT, the exact KL(π ‖ π0) per token of each on its own held-out samples, wall time and forward tokens; then
SFT's figures as ratios of CD's.

    LAB_DATA_DIR=/tmp/sft_vs_cd .venv/bin/python bench/sft_vs_distillation.py [--scenarios arithmetic,sentiment]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LAB_GALLERY", "0")   # measure on an empty database, not beside the gallery's runs


def measure(lab, scenario: str, overrides: dict) -> dict:
    from engine.edges.reward_to_parameter import kl_to_base
    from engine.evaluation import Scored
    from engine.references import resolve_policy
    from engine.run_types import RunContext
    from engine.scenarios import load_scenario
    cd = lab.run(lab.run_now(lab.prepare("prompt", "parameter", "kl", scenario, overrides)))
    sft = lab.run(lab.run_now(lab.prepare_task("demonstrations", "sft", scenario, overrides)))
    for run in (cd, sft):
        if run["status"] != "succeeded":
            raise SystemExit(f"{run['edge']} {run['method']} {run['status']}: {run['error']}")
    host = lab.jobs.host
    ctx = RunContext(host=host, scenario=load_scenario(scenario), run_id="bench", out_dir=None,
                     on_progress=lambda *a, **k: None, lookup=lab.store.get_run)

    def kl_of(run: dict, label: str, policy) -> float:
        rows = [r for r in lab.samples(run["run_id"]) if r["policy"] == label]
        s = Scored(label, [r["input"] for r in rows], [r["output"] for r in rows],
                   [host.reply_ids(r["output"]) for r in rows], [r["reward"] for r in rows],
                   [r["sample_index"] for r in rows])
        return kl_to_base(host, policy, s)[0]

    sc = load_scenario(scenario)
    m_cd, m_sft = cd["metrics"], sft["metrics"]
    return {
        "scenario": scenario,
        "base": {"reward": m_cd["reward_base"], "kl": 0.0},
        "teacher (π0 + z)": {"reward": m_cd["reward_teacher"], "kl": kl_of(cd, "teacher", sc.prompt_policy("teacher"))},
        "context distillation": {"reward": m_cd["reward_student"], "kl": kl_of(cd, "student",
                                                                               resolve_policy(cd["run_id"], ctx)),
                                 "wall_s": cd["duration_s"], "forward_tokens": m_cd.get("forward_tokens"),
                                 "run_id": cd["run_id"], "kl_to_teacher_after": m_cd["kl_after"]},
        "sft": {"reward": m_sft["reward_sft"], "kl": m_sft["kl_to_base"], "wall_s": sft["duration_s"],
                "forward_tokens": m_sft.get("forward_tokens"), "run_id": sft["run_id"],
                "demonstrations": m_sft["n_demonstrations"], "nll_before": m_sft["nll_before"],
                "nll_after": m_sft["nll_after"]},
        "sft_base_reward_same": abs(m_sft["reward_base"] - m_cd["reward_base"]) < 1e-9,   # coupled samples
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenarios", default="arithmetic,sentiment")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="the same override on both runs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    from engine.api import Lab
    from engine.cli import _parse_sets
    lab = Lab()
    d = lab.jobs.host.describe()
    print(f"{d['label']}, {d['threads']} threads")
    results = [measure(lab, s.strip(), _parse_sets(args.set)) for s in args.scenarios.split(",") if s.strip()]
    for res in results:
        print(f"\n{res['scenario']}  (held-out reference reward; KL(π ‖ π0) per token on π's own samples)")
        print(f"{'policy':<22} {'reward':>8} {'KL to π0':>9} {'wall s':>8} {'fwd tokens':>11}")
        for name in ("base", "teacher (π0 + z)", "context distillation", "sft"):
            r = res[name]
            wall = f"{r['wall_s']:.0f}" if "wall_s" in r else ""
            tok = f"{r['forward_tokens']:,}" if r.get("forward_tokens") else ""
            print(f"{name:<22} {r['reward']:>8.3f} {r['kl']:>9.4f} {wall:>8} {tok:>11}")
        cd, sft, base = res["context distillation"], res["sft"], res["base"]["reward"]
        gain = lambda r: r["reward"] - base
        ratio = gain(sft) / gain(cd) if abs(gain(cd)) > 1e-9 else float("nan")
        print(f"SFT / CD: reward gain over π0 ×{ratio:.2f}, KL to π0 ×{sft['kl'] / cd['kl']:.2f}, "
              f"wall time ×{sft['wall_s'] / cd['wall_s']:.2f}  (π0's held-out samples identical in both runs: "
              f"{res['sft_base_reward_same']})")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
