"""One RL step of the lab (RLOO, engine/reward_to_parameter.py) against TRL's GRPOTrainer on identical work:
8 train inputs × k = 4 samples, ≤ 40 new tokens, temperature 1, LoRA r8/α16 on q/k/v/o, β = 0.05 KL to the
base (both use the adapter-disabled model as π0, no second copy), the VADER reward, AdamW.

Prints seconds per step (mean of the steps after the first) for: the lab in its default bf16, the lab in
fp32, and TRL (fp32 on CPU), with the ratios. Needs `trl` (bench/requirements-bench.txt; `make bench`).

Usage: python bench/bench_rl_step.py [--steps 3]
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
from engine.reward_to_parameter import STEP, RLConfig  # noqa: E402
from engine.scenarios import load_scenario  # noqa: E402
from engine.settings import load_settings  # noqa: E402

K, BATCH, TOKENS, BETA, LR = 4, 8, 40, 0.05, 2e-3


def lab_seconds_per_step(steps: int, bf16: bool) -> float:
    from engine.model_host import ModelHost
    s = load_settings()
    host = ModelHost(s.model, s.model_cache_dir, threads=s.threads)
    sc = load_scenario("sentiment")
    reward = sc.reward()
    config = RLConfig(k=K, batch_size=BATCH, beta=BETA, lr=LR, max_new_tokens=TOKENS, bf16=bf16)
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
        batch = sample_and_score(host, policy, xs, reward, K, TOKENS, 1.0, seed=step)
        STEP["rloo"](config, host, policy, batch, opt, params)
        times.append(time.perf_counter() - t0)
        print(f"  lab ({'bf16' if bf16 else 'fp32'}) step {step + 1}: {times[-1]:.1f} s", flush=True)
    return sum(times[1:]) / max(len(times) - 1, 1)


def trl_seconds_per_step(steps: int) -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from engine.model_loading import resolve_model_dir
    s = load_settings()
    model_dir = resolve_model_dir(s.model, s.model_cache_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
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

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, num_generations=K, per_device_train_batch_size=BATCH * K,
                          max_completion_length=TOKENS, beta=BETA, learning_rate=LR, max_steps=steps,
                          temperature=1.0, use_cpu=True, bf16=False, logging_steps=1, report_to="none",
                          save_strategy="no", shuffle_dataset=False, seed=0)
        trainer = GRPOTrainer(model=model, reward_funcs=vader, args=args, processing_class=tok,
                              train_dataset=Dataset.from_dict({"prompt": prompts}),
                              peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                         "o_proj"],
                                                     task_type="CAUSAL_LM"),
                              callbacks=[Timer()])
        trainer.train()
    return sum(times[1:]) / max(len(times) - 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    print(f"RL step: {BATCH} inputs × k={K}, ≤{TOKENS} tokens, LoRA r8 q/k/v/o, β={BETA}, {torch.get_num_threads()} threads")
    lab_bf16 = lab_seconds_per_step(args.steps, bf16=True)
    lab_fp32 = lab_seconds_per_step(args.steps, bf16=False)
    trl = trl_seconds_per_step(args.steps)
    print(f"\n| implementation | s/step | TRL / this |\n|---|---|---|")
    for name, v in (("lab RLOO, bf16 (default)", lab_bf16), ("lab RLOO, fp32", lab_fp32), ("TRL GRPOTrainer, fp32", trl)):
        print(f"| {name} | {v:.1f} | ×{trl / v:.2f} |")


if __name__ == "__main__":
    main()
