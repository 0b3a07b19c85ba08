"""Sampling k replies per input with one prefill per prompt (the model host's default) against one prefill
per row (the baseline), in one run on the embedded model: the sampling of best-of-N pools (k = 16), of RL
steps (k = 4) and of held-out evaluation, on arithmetic's few-shot prompt (≈ 190 prompt tokens) and on
sentiment's instruction.

    .venv/bin/python bench/bench_prefix_sharing.py [--inputs 8] [--tokens 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(host, policy, xs, k, tokens, share):
    host.generate(policy, xs[:1], n_samples=2, max_new_tokens=4, seed=0, share_prefixes=share)   # warm up
    t0, before = time.perf_counter(), host.forward_tokens
    out = host.generate(policy, xs, n_samples=k, max_new_tokens=tokens, temperature=1.0, seed=1, batch_size=64,
                        share_prefixes=share)
    return time.perf_counter() - t0, host.forward_tokens - before, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", type=int, default=8)
    p.add_argument("--tokens", type=int, default=40)
    args = p.parse_args()
    from engine.api import Lab
    from engine.scenarios import load_scenario
    host = Lab().jobs.host
    print(f"{host.describe()['label']}, {host.describe()['threads']} threads; {args.inputs} inputs, "
          f"≤ {args.tokens} new tokens")
    print(f"{'prompt':<28} {'k':>3} {'prompt tok':>10} {'shared s':>9} {'per-row s':>9} {'speed-up':>8} "
          f"{'fwd tok shared':>14} {'per-row':>8} {'same replies':>12}")
    for name, z in (("arithmetic few-shot", load_scenario("arithmetic").few_shot_z),
                    ("sentiment instruction", load_scenario("sentiment").z)):
        sc = load_scenario(name.split()[0])
        xs = sc.heldout_inputs[:args.inputs]
        policy = z.policy(name)
        n_prompt = sum(len(host.prefix_ids(policy, x)) for x in xs) / len(xs)
        for k in (4, 16):
            t_s, f_s, a = timed(host, policy, xs, k, args.tokens, True)
            t_b, f_b, b = timed(host, policy, xs, k, args.tokens, False)
            print(f"{name:<28} {k:>3} {n_prompt:>10.0f} {t_s:>9.1f} {t_b:>9.1f} {t_b / t_s:>7.2f}x "
                  f"{f_s:>14,} {f_b:>8,} {str(a.token_ids == b.token_ids):>12}")


if __name__ == "__main__":
    main()
