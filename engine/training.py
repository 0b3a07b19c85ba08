"""The one training loop of every method that trains something (a LoRA adapter, a soft prompt).

A method supplies its loss for step i, `step(i) -> (loss, points)`; the loop owns the learning-rate schedule
(linear warm-up, cosine decay to 10 %), the update (zero_grad, backward into the trained tensors only, clip
the gradient norm at 1, step), live held-out evaluation every few steps, the seconds per step, and progress
(through which the job runner cancels a run).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

StepFn = Callable[[int], tuple[torch.Tensor | None, dict]]


def lr_at(step: int, steps: int, lr: float, warmup: int = 3) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% of lr."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def update(opt: torch.optim.Optimizer, params: list[torch.Tensor], loss: torch.Tensor, clip: float = 1.0) -> None:
    """One optimizer step on `loss`: gradients reach only `params` (the base weights never get one)."""
    opt.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def train(params: list[torch.Tensor], steps: int, lr: float, step: StepFn, progress, span: tuple[float, float],
          model: torch.nn.Module, eval_every: int = 0, live_eval: Callable[[], dict] | None = None,
          optimizer: type = torch.optim.AdamW, note: Callable[[], str] | None = None, first_step: int = 0) -> None:
    """Run `steps` updates of `params`; progress goes from span[0] to span[1] with every step's points.

    `live_eval` (in eval mode) adds held-out points every `eval_every` steps, except after the last one (the
    method's final evaluation measures that); `note()` is added to each step's stage text (a method's live
    warning); `first_step` offsets the step numbers on the curves (a later round of alternating training).
    The model is left in eval mode."""
    opt = optimizer(params, lr=lr, weight_decay=0.0)
    lo, hi = span
    t0 = time.perf_counter()
    try:
        for i in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(i, steps, lr)
            loss, points = step(i)
            if loss is not None:            # None: nothing to learn from this batch (e.g. DPO, all ties)
                update(opt, params, loss)
                points = {"loss": loss.item()} | points
            points |= {"step_s": (time.perf_counter() - t0) / (i + 1)}
            if live_eval and eval_every and (i + 1) % eval_every == 0 and i + 1 < steps:
                was_training = model.training
                model.eval()
                points |= live_eval()
                model.train(was_training)
            stage = f"training step {i + 1}/{steps}" + (note() if note else "")
            progress(lo + (hi - lo) * (i + 1) / steps, stage, step=first_step + i + 1, points=points)
    finally:
        model.eval()
