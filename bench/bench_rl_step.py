"""One RL step of the lab (engine/edges/reward_to_parameter.py) against TRL's trainers on identical work, at
the same precision: 8 train inputs × k samples, ≤ 40 new tokens, temperature 1, LoRA r8/α16 on q/k/v/o,
β = 0.05 (both use the adapter-disabled model as π0, no second copy), the VADER reward, AdamW.

  lab RLOO (k = 4)        vs TRL RLOOTrainer and GRPOTrainer (num_generations = 4)
  lab online DPO (k = 2)  vs TRL OnlineDPOTrainer (trl.experimental; two completions per prompt)

Each in fp32 and bf16 (`--precisions`; TRL: the model loaded in that dtype, `bf16=` to match). Prints seconds
per step (mean of the steps after the first) and, per row, the lab's throughput over TRL's at that precision.
Where the host decodes fp32 through oneDNN-packed weights (engine/packed_weights.py), the lab's fp32 steps run
once on each kernel of `--fp32-linear` (aten, the baseline, and onednn), TRL's once.
Needs `trl` (bench/requirements-bench.txt; `make bench`).

Usage: python bench/bench_rl_step.py [--steps 3] [--precisions fp32,bf16] [--trainers rloo,grpo,online-dpo]
       [--fp32-linear aten,onednn]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from engine.evaluation import sample_and_score  # noqa: E402
from engine.lora import lora_config  # noqa: E402
from engine.policies import NEUTRAL_SYSTEM, with_adapter  # noqa: E402
from engine.edges.reward_to_parameter import LOSS, RLConfig  # noqa: E402
from engine.training import update  # noqa: E402
from engine.scenarios import load_scenario  # noqa: E402
from engine.settings import load_settings  # noqa: E402

K, BATCH, TOKENS, BETA, LR = 4, 8, 40, 0.05, 2e-3
K_OF = {"rloo": K, "dpo": 2}


def lab_seconds_per_step(host, steps: int, precision: str, method: str = "rloo") -> float:
    with host.run_precision(precision):
        return _lab_steps(host, steps, precision, method)


def _lab_steps(host, steps: int, precision: str, method: str) -> float:
    sc = load_scenario("sentiment")
    reward = sc.reward()
    k = K_OF[method]
    config = RLConfig(k=k, batch_size=BATCH, beta=BETA, lr=LR, max_new_tokens=TOKENS, precision=precision)
    torch.manual_seed(0)
    host.add_lora("bench", lora_config(8, 16.0, "q_proj,k_proj,v_proj,o_proj"))
    policy = with_adapter("bench")
    params = host.trainable_parameters("bench")
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    times = []
    for step in range(steps):
        xs = sc.train_inputs[step * BATCH:(step + 1) * BATCH]
        t0 = time.perf_counter()
        host.model.eval()
        batch = sample_and_score(host, policy, xs, reward, k, TOKENS, 1.0, seed=step)
        host.model.train()
        loss = LOSS[method](config, host, policy, batch)[0]
        if loss is not None:
            update(opt, params, loss)
        host.model.eval()
        times.append(time.perf_counter() - t0)
        print(f"  lab {method} ({precision}) step {step + 1}: {times[-1]:.1f} s", flush=True)
    host.delete_adapter("bench")
    return sum(times[1:]) / max(len(times) - 1, 1)


def trl_seconds_per_step(steps: int, trainer_kind: str = "grpo", precision: str = "fp32") -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from engine.model_loading import resolve_model_dir
    s = load_settings()
    model_dir = resolve_model_dir(s.model, s.model_cache_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    sc = load_scenario("sentiment")
    prompts = [[{"role": "system", "content": NEUTRAL_SYSTEM}, {"role": "user", "content": x}]
               for x in sc.train_inputs[:BATCH * steps]]
    reward = sc.reward()

    def vader(prompts, completions, **kw):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward([""] * len(texts), texts)

    times, t0 = [], [0.0]

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            t0[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - t0[0])
            print(f"  TRL step {len(times)}: {times[-1]:.1f} s", flush=True)

    common = dict(learning_rate=LR, max_steps=steps, temperature=1.0, use_cpu=True, bf16=precision == "bf16",
                  logging_steps=1, report_to="none", save_strategy="no", seed=0, beta=BETA)
    peft = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as out:
        if trainer_kind in ("grpo", "rloo"):
            from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
            Config, Trainer = (GRPOConfig, GRPOTrainer) if trainer_kind == "grpo" else (RLOOConfig, RLOOTrainer)
            args = Config(output_dir=out, num_generations=K, per_device_train_batch_size=BATCH * K,
                          max_completion_length=TOKENS, shuffle_dataset=False, **common)
        else:   # two completions per prompt, ranked by the reward: the lab's dpo with k = 2
            os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
            from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer
            Config, Trainer = OnlineDPOConfig, OnlineDPOTrainer
            args = Config(output_dir=out, per_device_train_batch_size=BATCH, max_new_tokens=TOKENS, **common)
        trainer = Trainer(model=model, reward_funcs=vader, args=args, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": prompts}), peft_config=peft, callbacks=[Timer()])
        trainer.train()
    return sum(times[1:]) / max(len(times) - 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of precisions, each run by both")
    ap.add_argument("--trainers", default="rloo,grpo,online-dpo", help="TRL trainers to race")
    ap.add_argument("--fp32-linear", default="aten,onednn",
                    help="the lab's fp32 runs on each kernel listed (engine/packed_weights.py): aten is the baseline")
    args = ap.parse_args()
    print(f"RL step: {BATCH} inputs × k={K}, ≤{TOKENS} tokens, LoRA r8 q/k/v/o, β={BETA}, {torch.get_num_threads()} threads")
    from engine.model_host import ModelHost
    s = load_settings()
    host = ModelHost(s.model, s.model_cache_dir, threads=s.threads, device=s.device, precision=s.precision,
                     precision_cache=s.data_dir / "precision.json", fp32_linear=s.fp32_linear)
    auto = host.choice.precision
    print(f"host: {host.describe()['label']} ({host.choice.reason})")
    trainers = args.trainers.split(",")
    rows = []   # (precision, lab method, fp32 kernel, lab s/step, TRL trainer, TRL s/step or why it did not run)
    for precision in args.precisions.split(","):
        kernels = args.fp32_linear.split(",") if precision == "fp32" and host.packed_weights else ["—"]
        for method, against in (("rloo", [t for t in trainers if t in ("rloo", "grpo")]),
                                ("dpo", [t for t in trainers if t == "online-dpo"])):
            if not against:
                continue
            labs = {}
            for kernel in kernels:
                if host.packed_weights:
                    host.packed_weights.enabled = kernel == "onednn"
                labs[kernel] = lab_seconds_per_step(host, args.steps, precision, method)
            for kind in against:
                try:
                    trl = trl_seconds_per_step(args.steps, kind, precision)
                except Exception as e:   # a trainer that does not run here is reported, not hidden
                    trl = f"did not run: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                rows += [(precision, method, kernel, lab, kind, trl) for kernel, lab in labs.items()]
    print(f"\nlab precision chosen at start-up (auto): {auto}; few-row fp32 linear: {host.fp32_linear.kernel}\n")
    print("| precision | lab | lab fp32 linear | lab s/step | TRL | TRL s/step | lab throughput / TRL's |\n"
          "|---|---|---|---|---|---|---|")
    for precision, method, kernel, lab, kind, trl in rows:
        ratio = f"×{trl / lab:.2f}" if isinstance(trl, float) else "—"
        shown = f"{trl:.1f}" if isinstance(trl, float) else trl
        print(f"| {precision} | {method} (k={K_OF[method]}) | {kernel} | {lab:.1f} | {kind} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
