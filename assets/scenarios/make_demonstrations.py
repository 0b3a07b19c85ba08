"""Write expert demonstrations into a built-in scenario that has no golden answer to write them from.

The "expert" is a stronger policy filtered by the reference reward: for every train and held-out input, sample
`--samples` replies of π0 + z (the scenario's own prompt) on the embedded model, keep the one with the highest
reference reward (a reply cut off by the token limit counts up to its last full sentence), and only when it
reaches `--min-reward`. (arithmetic's
demonstrations are worked solutions instead: `make_arithmetic.py`.) Deterministic for a seed:

    python assets/scenarios/make_demonstrations.py sentiment --min-reward 0.9
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.demonstrations import FIELD  # noqa: E402


def best_replies(host, scenario, samples: int, min_reward: float, max_new_tokens: int, seed: int) -> list[dict]:
    """{"input", "reply"} for each input whose best self-ended reply reaches `min_reward`."""
    inputs = scenario.train_inputs + scenario.heldout_inputs
    out = host.generate(scenario.prompt_policy("expert"), inputs, n_samples=samples, max_new_tokens=max_new_tokens,
                        temperature=0.7, seed=seed)
    reward = scenario.reward()
    demos = []
    for x, texts, ids in zip(inputs, out.texts, out.token_ids):
        whole = [complete_reply(y, bool(t) and t[-1] in host.chat.end_ids) for y, t in zip(texts, ids)]
        whole = [y for y in whole if y]
        if not whole:
            continue
        scores = reward([x] * len(whole), whole)
        best = max(range(len(whole)), key=lambda i: scores[i])
        if scores[best] >= min_reward:
            demos.append({"input": x, "reply": whole[best]})
    return demos


def complete_reply(text: str, ended: bool) -> str:
    """A reply that ended by itself as it is; one cut off by the token limit up to its last full sentence
    (empty if it has none): an expert's reply should not stop mid-word."""
    text = text.strip()
    if ended:
        return text
    cut = max(text.rfind(c) for c in ".!?")
    return text[:cut + 1].strip() if cut > 0 else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--min-reward", type=float, required=True)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from engine.api import Lab
    from engine.scenarios import SCENARIO_DIR, load_scenario
    scenario = load_scenario(args.scenario)
    demos = best_replies(Lab().jobs.host, scenario, args.samples, args.min_reward, args.max_new_tokens, args.seed)
    path = SCENARIO_DIR / f"{args.scenario}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data[FIELD] = demos
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    held = set(scenario.heldout_inputs)
    print(f"wrote {len(demos)} demonstrations into {path.name} ({sum(d['input'] in held for d in demos)} of "
          f"held-out inputs) from {args.samples} replies of π0 + z per input, reward ≥ {args.min_reward}")


if __name__ == "__main__":
    main()
