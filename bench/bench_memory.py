"""Resident memory of the model host with K saved LoRA adapters loaded, and with the LRU limit.

Baselines printed beside each figure: the adapters' own tensor bytes (the floor) and the goal
base + 5 MB × K. Adapters are the lab's default (rank 8 on the attention projections), saved once, then
loaded frozen as a run that references them would load them. The last part sets max_adapters = 4, loads 16
and checks that only 4 stay (the rest are unloaded and come back from their files when used). Last, one bf16
forward: what the bf16 copies of the frozen weights add (engine/precision.py), made once per host, and one fp32
few-row forward: what the oneDNN-packed copies add where the host uses them (engine/packed_weights.py); both are
kept out of the figures before them.

Usage: python bench/bench_memory.py [--k 0,4,16] [--limit 4]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from engine.lora import lora_config  # noqa: E402
from engine.model_host import ModelHost  # noqa: E402
from engine.policies import BASE, with_adapter  # noqa: E402
from engine.settings import load_settings  # noqa: E402

MB = 2 ** 20


def rss_mb() -> float:
    """Resident set size of this process, after returning freed heap to the OS (glibc malloc_trim)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_adapters(host: ModelHost, n: int, root: Path) -> tuple[list[Path], int]:
    """n saved adapters with non-zero weights; their tensor bytes each."""
    paths, nbytes = [], 0
    for i in range(n):
        torch.manual_seed(i)
        host.add_lora(f"make{i}", lora_config(8, 16.0, "attention"))
        with torch.no_grad():
            for p in host.trainable_parameters(f"make{i}"):
                p.normal_(std=0.02)
        nbytes = sum(p.numel() * p.element_size() for p in host.trainable_parameters(f"make{i}"))
        paths.append(host.save_adapter(f"make{i}", root / f"a{i}"))
        host.delete_adapter(f"make{i}")
    return paths, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", default="0,4,16")
    ap.add_argument("--limit", type=int, default=4)
    args = ap.parse_args()
    ks = sorted(int(k) for k in args.k.split(","))
    settings = load_settings()
    host = ModelHost(settings.model, settings.model_cache_dir, threads=settings.threads, max_adapters=10 ** 6,
                     fp32_linear=settings.fp32_linear)
    if host.packed_weights:
        host.packed_weights.enabled = False   # measured last, on their own
    with tempfile.TemporaryDirectory() as tmp:
        paths, nbytes = make_adapters(host, max(ks + [args.limit * 4]), Path(tmp))
        x, y = ["How was your day?"], [host.reply_ids("It was a lovely day.")]
        host.sequence_logprobs(BASE, x, y)   # warm the forward once
        base = rss_mb()
        print(f"model {host.model_name}: base host {base:.0f} MB resident; one adapter = {nbytes / MB:.2f} MB "
              f"of tensors (rank 8, attention)")
        print(f"{'K':>3} | {'resident MB':>11} | {'per adapter (measured)':>22} | {'tensors (floor)':>15} | "
              f"{'goal base+5 MB×K':>16} | met")
        loaded = 0
        for k in ks:
            for i in range(loaded, k):
                host.load_adapter(f"ref{i}", paths[i])
                host.sequence_logprobs(with_adapter(f"ref{i}"), x, y)   # used once, as a run would
            loaded = k
            now = rss_mb()
            per = (now - base) / k if k else 0.0
            goal = base + 5 * k
            print(f"{k:>3} | {now:>11.0f} | {per:>19.2f} MB | {nbytes / MB:>12.2f} MB | {goal:>13.0f} MB | "
                  f"{'yes' if now <= goal else 'no'}")
        for i in range(loaded):
            host.delete_adapter(f"ref{i}")
        host.max_adapters = args.limit
        n = args.limit * 4
        for i in range(n):
            host.load_adapter(f"lru{i}", paths[i])
            host.sequence_logprobs(with_adapter(f"lru{i}"), x, y)
        now = rss_mb()
        kept = [a for a in host.adapters if a.startswith("lru")]
        print(f"max_adapters={args.limit}, {n} loaded one after another: {len(kept)} kept ({', '.join(kept)}), "
              f"{len(host.evicted)} unloaded; resident {now:.0f} MB (goal base + 5 MB × {args.limit} = "
              f"{base + 5 * args.limit:.0f} MB)")
        first = host.sequence_logprobs(with_adapter("lru0"), x, y)   # evicted: loaded again from its files
        print(f"lru0 used again: reloaded from its files (log p = {first[0]:.4f}); now kept: "
              f"{', '.join(a for a in host.adapters if a.startswith('lru'))}")
        before = rss_mb()
        with host.run_precision("bf16"), host.autocast(), torch.no_grad():
            host.sequence_logprobs(BASE, x, y)   # a bf16 forward: the frozen weights' bf16 copies are made once
        after = rss_mb()
        print(f"after the first bf16 forward: resident {after:.0f} MB (+{after - before:.0f} MB; the bf16 copies of "
              f"the frozen weights hold {host._bf16_weights.nbytes / MB:.0f} MB)")
        if host.packed_weights:
            host.packed_weights.enabled = True
            with host.run_precision("fp32"), torch.no_grad():
                host.sequence_logprobs(BASE, x * 3, y * 3)   # few rows in fp32: the packed copies are made once
            packed = rss_mb()
            print(f"after the first few-row fp32 forward: resident {packed:.0f} MB (+{packed - after:.0f} MB; the "
                  f"oneDNN-packed copies hold {host.packed_weights.nbytes / MB:.0f} MB)")


if __name__ == "__main__":
    main()
