"""Decoding-time steering (Eq. 7) against plain decoding and against the naive loop.

Same inputs, same seed, same batch: π1 alone (plain), π2 with one batched forward per step over π1, π*, π0
(the lab), and π2 with the three policies run one after another at each step (naive). π* is a LoRA adapter,
π1 a different prompt, π0 the base: three distinct policies, the proxy-tuning shape. Prints tokens/s, the
ratios, and whether the batched and naive loops chose the same tokens (in fp32, where both are exact).

Usage: python bench/bench_steering.py [--adapter PATH] [--inputs 32] [--tokens 40] [--precisions fp32,bf16]
(without --adapter a LoRA with random weights stands in for π*: speed does not depend on what it learned)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from engine.lora import lora_config  # noqa: E402
from engine.model_host import ModelHost  # noqa: E402
from engine.policies import BASE, prompted, with_adapter  # noqa: E402
from engine.scenarios import load_scenario  # noqa: E402
from engine.settings import load_settings  # noqa: E402
from engine.steering import Steer, steered_generate, steered_generate_sequential  # noqa: E402


def star_adapter(host: ModelHost, path: str | None):
    if path:
        host.load_adapter("star", path)
    else:
        torch.manual_seed(0)
        host.add_lora("star", lora_config(8, 16.0, "q_proj,k_proj,v_proj,o_proj"))
        with torch.no_grad():
            for p in host.trainable_parameters("star"):
                p.normal_(0, 0.02)
        host.model.eval()
    return with_adapter("star")


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    dt = time.perf_counter() - t0
    return out, out.n_new_tokens / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter")
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list; the host's auto choice is marked")
    args = ap.parse_args()
    s = load_settings()
    host = ModelHost(s.model, s.model_cache_dir, threads=s.threads, device=s.device, precision=s.precision,
                     precision_cache=s.data_dir / "precision.json")
    xs = load_scenario("sentiment").heldout_inputs[:args.inputs]
    steer = Steer(pi1=prompted(load_scenario("concise").prompt, "concise"), star=star_adapter(host, args.adapter),
                  zero=BASE, w=1.0)
    print(f"{len(xs)} inputs × 1 sample, ≤{args.tokens} tokens, batch 32, {torch.get_num_threads()} threads, "
          f"host: {host.describe()['label']} ({host.choice.reason})")
    rows = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        kw = dict(n_samples=1, max_new_tokens=args.tokens, temperature=0.7, seed=0, batch_size=32)
        with host.run_precision(precision):
            _, plain = timed(host.generate, steer.pi1, xs, **kw)
            fast, batched = timed(steered_generate, host, steer, xs, **kw)
            slow, naive = timed(steered_generate_sequential, host, steer, xs, **kw)
        same = sum(a == b for a, b in zip(fast.token_ids, slow.token_ids)) / len(xs)
        auto = " (auto)" if precision == host.choice.precision else ""
        rows.append((precision + auto, plain, batched, naive, same))
    print("\n| precision | plain π1 tok/s | steered, batched tok/s | steered, naive tok/s | batched/plain | "
          "batched/naive | same tokens as naive |\n|---|---|---|---|---|---|---|")
    for name, plain, batched, naive, same in rows:
        print(f"| {name} | {plain:.1f} | {batched:.1f} | {naive:.1f} | ×{batched / plain:.2f} | "
              f"×{batched / naive:.2f} | {same:.0%} |")


if __name__ == "__main__":
    main()
