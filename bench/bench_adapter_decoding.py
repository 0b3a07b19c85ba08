"""Sampling from a LoRA adapter under bf16: the lab's path against peft's forward, in one run.

peft's LoRA forward under bf16 autocast runs each adapter's two rank-r matmuls in bf16; on a CPU a bf16 matmul of a
few rows costs ~3× a float32 one (~18 µs against ~6 µs for 3 × 576 by 576 × 8), and a step of SmolLM2-135M with
LoRA on q/k/v/o makes 240 of them. The lab decodes up to 12 rows from an adapter through
`engine/adapter_rows.adapter_decoding`: the base in bf16, the rank-r delta in float32 outside autocast (more rows
take peft's forward: there float32 stops paying, so G = 16 and 32 compare peft with itself, a check of the noise).
For each batch size G the same inputs, seed and adapter are decoded both ways, one after the other `--repeats`
times in ABBA order (exactly `--tokens` steps, end-of-reply ignored), the best of each kept; the table gives ms per
step, the ratio, and the share of rows whose tokens are the same both ways (bf16 rounding differs).

Usage: python bench/bench_adapter_decoding.py [--batches 1,4,8,16,32] [--tokens 40] [--repeats 6]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from bench_steering import ms_per_step, star_adapter  # noqa: E402
from engine import model_host  # noqa: E402
from engine.model_host import ModelHost  # noqa: E402
from engine.scenarios import load_scenario  # noqa: E402
from engine.settings import load_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    s = load_settings()
    host = ModelHost(s.model, s.model_cache_dir, threads=s.threads, device=s.device, precision=s.precision,
                     precision_cache=s.data_dir / "precision.json", fp32_linear=s.fp32_linear)
    host.ends_reply = lambda nxt, out_tokens: torch.zeros_like(nxt, dtype=torch.bool)   # ignore_eos
    policy = star_adapter(host, None)
    pool = load_scenario("sentiment").heldout_inputs
    lab_path = model_host.adapter_decoding
    peft_path = lambda host, adapter, rows: contextlib.nullcontext()  # noqa: E731 — peft's own forward
    print(f"≤{args.tokens} steps per row (end-of-reply ignored), best of {args.repeats} interleaved, "
          f"{torch.get_num_threads()} threads, host: {host.describe()['label']}; bf16, LoRA r8 on q/k/v/o\n")
    print("| G rows | peft's forward (baseline) | lab | peft / lab | same tokens |\n|---|---|---|---|---|")
    with host.run_precision("bf16"):
        for G in [int(b) for b in args.batches.split(",")]:
            kw = dict(n_samples=1, max_new_tokens=args.tokens, temperature=0.7, seed=0, batch_size=G)
            timed = {"peft": [], "lab": []}
            paths = (("peft", peft_path), ("lab", lab_path))
            for r in range(args.repeats):       # interleaved, ABBA: a VM's drift and the order fall on both alike
                for name, path in (paths if r % 2 == 0 else paths[::-1]):
                    model_host.adapter_decoding = path
                    try:
                        timed[name].append(ms_per_step(lambda: host.generate(policy, pool[:G], **kw), 1,
                                                       args.tokens))
                    finally:
                        model_host.adapter_decoding = lab_path
            timed = {name: (min(ms for ms, _ in runs), runs[-1][1]) for name, runs in timed.items()}
            (peft_ms, peft_out), (lab_ms, lab_out) = timed["peft"], timed["lab"]
            same = sum(a == b for a, b in zip(peft_out.token_ids, lab_out.token_ids)) / G
            print(f"| {G} | {peft_ms:.1f} ms | {lab_ms:.1f} ms | ×{peft_ms / lab_ms:.2f} | {same:.0%} |", flush=True)


if __name__ == "__main__":
    main()
