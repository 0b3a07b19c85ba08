"""One RL step of the lab (RLOO, engine/edges/reward_to_parameter.py) against TRL's GRPOTrainer on identical work:
8 train inputs × k = 4 samples, ≤ 40 new tokens, temperature 1, LoRA r8/α16 on q/k/v/o, β = 0.05 KL to the
base (both use the adapter-disabled model as π0, no second copy), the VADER reward, AdamW.

Prints seconds per step (mean of the steps after the first) for: the lab in fp32 and in bf16 (the host's
start-up choice marked "auto"), and TRL (fp32 on CPU), with the ratios. Needs `trl` (bench/requirements-bench.txt; `make bench`).

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
from engine.edges.reward_to_parameter import LOSS, RLConfig  # noqa: E402
from engine.training import update  # noqa: E402
from engine.scenarios import load_scenario  # noqa: E402
from engine.settings import load_settings  # noqa: E402

K, BATCH, TOKENS, BETA, LR = 4, 8, 40, 0.05, 2e-3


def lab_seconds_per_step(host, steps: int, precision: str) -> float:
    with host.run_precision(precision):
        return _lab_steps(host, steps, precision)


def _lab_steps(host, steps: int, precision: str) -> float:
    sc = load_scenario("sentiment")
    reward = sc.reward()
    config = RLConfig(k=K, batch_size=BATCH, beta=BETA, lr=LR, max_new_tokens=TOKENS, precision=precision)
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
        host.model.train()
        update(opt, params, LOSS["rloo"](config, host, policy, batch)[0])
        host.model.eval()
        times.append(time.perf_counter() - t0)
        print(f"  lab ({precision}) step {step + 1}: {times[-1]:.1f} s", flush=True)
    host.delete_adapter("bench")
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
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of the lab's precisions to time")
    args = ap.parse_args()
    print(f"RL step: {BATCH} inputs × k={K}, ≤{TOKENS} tokens, LoRA r8 q/k/v/o, β={BETA}, {torch.get_num_threads()} threads")
    from engine.model_host import ModelHost
    s = load_settings()
    host = ModelHost(s.model, s.model_cache_dir, threads=s.threads, device=s.device, precision=s.precision,
                     precision_cache=s.data_dir / "precision.json")
    auto = host.choice.precision
    print(f"host: {host.describe()['label']} ({host.choice.reason})")
    lab = {p: lab_seconds_per_step(host, args.steps, p) for p in args.precisions.split(",")}
    trl = trl_seconds_per_step(args.steps)
    print("\n| implementation | s/step | TRL / this |\n|---|---|---|")
    rows = [(f"lab RLOO, {p}{' (auto)' if p == auto else ''}", v) for p, v in lab.items()]
    for name, v in rows + [("TRL GRPOTrainer, fp32", trl)]:
        print(f"| {name} | {v:.1f} | ×{trl / v:.2f} |")


if __name__ == "__main__":
    main()
