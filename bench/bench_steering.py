"""Decoding-time steering (Eq. 7) at the cost of its rows.

Eq. 7 with three distinct policies computes three rows per input, so its floor is plain decoding of the same
number of rows. For each batch size G (inputs decoded together) one run measures, on the same inputs:

  plain 1×    π1 alone, G rows                      (what steering is compared with by a user)
  plain 3×    π1 alone, P·G rows (P = 3 policies)   (the floor: the same rows, one forward each step)
  steered     π2 = Eq. 7 over π1, π*, π0, G inputs = P·G rows, one batched forward per step (the lab)
  naive       π2 with the three policies run one after another at every step (the baseline loop)

π* is a LoRA adapter, π1 a different prompt (concise), π0 the base: three distinct policies, the proxy-tuning
shape. Every configuration decodes exactly `--tokens` steps (end-of-reply ignored, like vLLM's
`ignore_eos` benchmark), so the time per step compares equal work; plain 1×, plain P× and steered run in turn,
`--repeats` rounds, the best of each kept (the naive loop once). Goals
(issue 16): steered ≤ 1.15 × plain 3× at every G, and at G = 1 steered ≤ 1.3 × plain 1×.

Usage: python bench/bench_steering.py [--adapter PATH] [--batches 1,4,32] [--tokens 40] [--repeats 3]
       [--precisions fp32] [--no-naive] [--fp32-linear aten,onednn]
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


def ms_per_step(fn, repeats: int, tokens: int) -> tuple[float, object]:
    """Best wall time over `repeats` calls, per decoding step (prefill included), and the last output. With
    end-of-reply ignored every call runs all `tokens` steps (the rows are still cut at an end token after)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / tokens, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter")
    ap.add_argument("--batches", default="1,4,32")
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="", help="comma list (default: the host's auto choice)")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--fp32-linear", default="aten,onednn",
                    help="fp32 rows run on each kernel listed (engine/packed_weights.py): aten is the baseline")
    args = ap.parse_args()
    s = load_settings()
    host = ModelHost(s.model, s.model_cache_dir, threads=s.threads, device=s.device, precision=s.precision,
                     precision_cache=s.data_dir / "precision.json", fp32_linear=s.fp32_linear)
    host.ends_reply = lambda nxt, out_tokens: torch.zeros_like(nxt, dtype=torch.bool)   # ignore_eos
    sc = load_scenario("sentiment")
    pool = sc.heldout_inputs + sc.train_inputs
    steer = Steer(pi1=prompted(load_scenario("concise").prompt, "concise"), star=star_adapter(host, args.adapter),
                  zero=BASE, w=1.0)
    P = len(steer.distinct())
    print(f"≤{args.tokens} steps per row (end-of-reply ignored), best of {args.repeats} rounds, P = {P} policies, "
          f"{torch.get_num_threads()} threads, host: {host.describe()['label']} ({host.choice.reason})")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()] or [host.choice.precision]
    kernels = [k.strip() for k in args.fp32_linear.split(",") if k.strip()]
    rows = []
    for precision in precisions:
        for kernel in (kernels if precision == "fp32" and host.packed_weights else ["—"]):
            if host.packed_weights:
                host.packed_weights.enabled = kernel == "onednn"
            for G in [int(b) for b in args.batches.split(",")]:
                rows.append((precision, kernel, G, *one_batch(host, steer, pool, precision, G, P, args)))
                print(f"  {precision} ({kernel}) G={G}: plain {rows[-1][3]:.1f} / plain {P}× {rows[-1][4]:.1f} / "
                      f"steered {rows[-1][5]:.1f} / naive {rows[-1][6]:.1f} ms per step", flush=True)
    print(f"\n| precision | fp32 linear | G inputs | plain π1, G rows | plain π1, {P}G rows (floor) | steered (lab) | "
          f"naive loop | steered / floor (goal ≤ 1.15) | steered / plain (goal ≤ 1.3 at G=1) | naive / steered | "
          f"steered tok/s | plain tok/s | same tokens as naive |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for precision, kernel, G, plain1, plain3, steered, naive, same in rows:
        ran = naive == naive   # not nan: the naive loop ran
        print(f"| {precision} | {kernel} | {G} | {plain1:.1f} ms | {plain3:.1f} ms | {steered:.1f} ms | "
              f"{f'{naive:.1f} ms' if ran else '—'} | ×{steered / plain3:.2f} | ×{steered / plain1:.2f} | "
              f"{f'×{naive / steered:.2f}' if ran else '—'} | {1000 * G / steered:.1f} | {1000 * G / plain1:.1f} | "
              f"{f'{same:.0%}' if ran else '—'} |")


def one_batch(host, steer, pool, precision: str, G: int, P: int, args):
    """(plain 1×, plain P×, steered, naive ms per step, share of rows the same as naive's) for G inputs. The three
    fast configurations run in turn, `repeats` rounds (the best of each kept), so that a VM's drift falls on them
    alike; the naive loop once, after."""
    xs, xs_rows = pool[:G], pool[:P * G]
    kw = dict(n_samples=1, max_new_tokens=args.tokens, temperature=0.7, seed=0)
    configs = {"plain1": lambda: host.generate(steer.pi1, xs, batch_size=G, **kw),
               "plain3": lambda: host.generate(steer.pi1, xs_rows, batch_size=P * G, **kw),
               "steered": lambda: steered_generate(host, steer, xs, batch_size=G, **kw)}
    with host.run_precision(precision):
        runs = {name: [] for name in configs}
        for _ in range(args.repeats):
            for name, fn in configs.items():
                runs[name].append(ms_per_step(fn, 1, args.tokens))
        (plain1, _), (plain3, _), (steered, fast) = (min(runs[n], key=lambda r: r[0]) for n in configs)
        naive, same = float("nan"), float("nan")
        if not args.no_naive:
            naive, slow = ms_per_step(lambda: steered_generate_sequential(host, steer, xs, batch_size=G, **kw), 1,
                                      args.tokens)
            same = sum(a == b for a, b in zip(fast.token_ids, slow.token_ids)) / G
    return plain1, plain3, steered, naive, same


if __name__ == "__main__":
    main()
