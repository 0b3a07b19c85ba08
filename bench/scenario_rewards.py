"""Does each scenario's prompt move its reward? Held-out reward of the base, z and z− policies.

Same held-out inputs, samples and seeds for every policy (coupled sampling), printed per scenario
with the prompted-minus-base gain beside the base figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.evaluation import sample_and_score  # noqa: E402
from engine.model_host import ModelHost  # noqa: E402
from engine.policies import BASE, prompted  # noqa: E402
from engine.scenarios import builtin_scenarios, load_scenario  # noqa: E402
from engine.settings import REPO_ROOT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default=",".join(builtin_scenarios()))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    args = ap.parse_args()
    host = ModelHost("embedded", REPO_ROOT / "data" / "model-cache")
    for name in args.scenarios.split(","):
        sc = load_scenario(name)
        reward = sc.reward()
        row = {"scenario": name, "n": len(sc.heldout_inputs) * args.samples}
        for label, policy in (("base", BASE), ("prompt", prompted(sc.prompt)), ("negative", prompted(sc.negative_prompt))):
            s = sample_and_score(host, policy, sc.heldout_inputs, reward, args.samples, args.max_new_tokens, 0.7, 1)
            row[label] = round(s.mean_reward, 3)
            row[f"{label}_sem"] = round(statistics.stdev(s.rewards) / len(s.rewards) ** 0.5, 3)
        row["gain"] = round(row["prompt"] - row["base"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
