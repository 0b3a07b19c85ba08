"""Benchmarks of the skeleton, each printed beside a baseline as a ratio (run: `make bench`).

  model load      cold (GGUF -> float32, what a first start pays)  vs  cached safetensors reload
  generation      tok/s of the lab's KV-cached sampler (host precision) vs transformers' generate(), batch 1 and 8
  LoRA step       one context-distillation step (host precision, reply-only logits) vs a plain float32 step
  distillation    wall time of the default prompt->parameter run vs the 6-minute budget

Use --quick to skip the full distillation run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine.lora import lora_config  # noqa: E402
from engine.model_host import ModelHost, left_pad  # noqa: E402
from engine.model_loading import convert_gguf, embedded_gguf_path, load_model_and_tokenizer  # noqa: E402
from engine.policies import BASE, prompted, with_adapter  # noqa: E402
from engine.scenarios import load_scenario  # noqa: E402
from engine.settings import REPO_ROOT  # noqa: E402

CACHE = REPO_ROOT / "data" / "model-cache"
ROWS: list[dict] = []


def report(name: str, ours: float, baseline: float, unit: str, ours_label: str, base_label: str,
           higher_is_better: bool) -> None:
    ratio = ours / baseline if higher_is_better else baseline / ours
    ROWS.append({"benchmark": name, "ours": round(ours, 3), "baseline": round(baseline, 3), "unit": unit,
                 "speedup": round(ratio, 2), "ours_is": ours_label, "baseline_is": base_label})
    print(f"{name:<28} {ours:>9.2f} {unit:<6} vs {baseline:>9.2f} {unit:<6}  ×{ratio:.2f}   "
          f"({ours_label} vs {base_label})", flush=True)


def bench_load() -> None:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        convert_gguf(embedded_gguf_path(), Path(d) / "m")
        cold = time.perf_counter() - t0
    _, _, cached = load_model_and_tokenizer("embedded", CACHE)
    report("model load", cached, cold, "s", "cached safetensors", "GGUF dequantize+convert", False)


def bench_generation(host: ModelHost, inputs: list[str], new_tokens: int = 48) -> None:
    for bs in (1, 8):
        xs = inputs[:bs]
        t0 = time.perf_counter()
        s = host.generate(BASE, xs, max_new_tokens=new_tokens, temperature=1.0, seed=0, batch_size=bs)
        ours = s.n_new_tokens / (time.perf_counter() - t0)
        ids, attn = left_pad([host.prefix_ids(BASE, x) for x in xs], host.pad_id)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = host.model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=new_tokens, do_sample=True,
                                      top_k=None, pad_token_id=host.pad_id, eos_token_id=host.eos_id)
        dt = time.perf_counter() - t0
        n = sum(len(r[:r.index(host.eos_id) + 1]) if host.eos_id in r else len(r) for r in out[:, ids.shape[1]:].tolist())
        report(f"generation batch {bs}", ours, n / dt, "tok/s", f"KV loop, {host.precision}", "HF generate(), fp32", True)


def _step(host, xs, ys, teacher_tables, fast: bool, trim: bool) -> float:
    """One step; `fast` in the host's precision (the lab's way), else plain float32."""
    from engine.evaluation import pad_tables
    from engine.losses import context_distillation_kl_loss
    params = host.trainable_parameters("bench")
    opt = torch.optim.AdamW(params, lr=1e-4)
    t0 = time.perf_counter()
    with host.autocast() if fast else contextlib.nullcontext():
        if trim:
            logits, _, mask = host.batch_logits(with_adapter("bench"), xs, ys, grad=True)
        else:  # the plain way: full logits over prompt and reply, then pick the reply positions
            logits, mask = _full_logits(host, xs, ys)
    loss = context_distillation_kl_loss(pad_tables(teacher_tables, logits.shape[1]), logits, mask)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def _full_logits(host, xs, ys):
    pol = with_adapter("bench")
    prefixes = [host.prefix_ids(pol, x) for x in xs]
    seqs = [p + y for p, y in zip(prefixes, ys)]
    L, T = max(map(len, seqs)), max(map(len, ys))
    ids = torch.full((len(seqs), L), host.pad_id)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], attn[i, :len(s)] = torch.tensor(s), 1
    with host.use(pol) as model:
        full = model(input_ids=ids, attention_mask=attn).logits.float()
    out = torch.zeros((len(seqs), T, full.shape[-1]))
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, (p, y) in enumerate(zip(prefixes, ys)):
        out[i, :len(y)] = full[i, len(p) - 1:len(p) - 1 + len(y)]
        mask[i, :len(y)] = True
    return out, mask


def bench_lora_step(host: ModelHost, inputs: list[str], z: str) -> None:
    from engine.evaluation import reply_logprobs
    s = host.generate(prompted(z), inputs[:8], max_new_tokens=48, seed=0)
    xs, _, ys = s.flat()
    tables = reply_logprobs(host, prompted(z), xs, ys)
    host.add_lora("bench", lora_config(8, 16, "q_proj,k_proj,v_proj,o_proj"))
    host.model.train()
    ours = min(_step(host, xs, ys, tables, True, True) for _ in range(3))
    base = min(_step(host, xs, ys, tables, False, False) for _ in range(3))
    host.model.eval()
    host.delete_adapter("bench")
    report("LoRA step (8 replies)", ours, base, "s", f"{host.precision}, reply-only logits", "fp32, full logits", False)


def bench_distillation() -> None:
    from engine.api import Lab
    from engine.settings import Settings
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "model-cache").symlink_to(CACHE, target_is_directory=True)
        lab = Lab(Settings("embedded", Path(d), f"sqlite:///{d}/lab.sqlite", os.cpu_count() or 1))
        t0 = time.perf_counter()
        run = lab.run(lab.run_now(lab.prepare("prompt", "parameter", "kl", "sentiment")))
        wall = time.perf_counter() - t0
    print("distillation metrics:", json.dumps(run["metrics"]), flush=True)
    report("context distillation (kl)", wall, 360.0, "s", "default config, end to end", "6-minute budget", False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the full distillation run")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    bench_load()
    host = ModelHost("embedded", CACHE)
    sc = load_scenario("sentiment")
    bench_generation(host, sc.heldout_inputs)
    bench_lora_step(host, sc.train_inputs, sc.prompt)
    del host
    if not args.quick:
        bench_distillation()
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=1))


if __name__ == "__main__":
    main()
