"""Batches whose rows use different LoRA adapters (or none), one forward for all of them, and the fast path
for decoding with one adapter under bf16.

`masked_adapters` patches every LoRA layer's forward for the duration: the base output once over all rows,
plus each adapter's delta kept to its rows by a 0/1 row mask. Steering (Eq. 7) runs π1, π* and π0 as rows
of one batch this way; plain sampling of a few rows from an adapter under bf16 takes the same path with the
adapter on every row (`adapter_decoding`), for its float32 rank-r matmuls.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def masked_adapters(host, masks: dict[str, torch.Tensor]):
    """A batch whose rows use different adapters (or none): every LoRA layer computes its base output once
    over all rows and adds each adapter's delta B·(mask ⊙ A·x)·scaling, the mask (N,) 1 on its policy's
    rows and 0 elsewhere. For the batch every LoRA layer's forward is this one line of tensor ops
    (`_row_lora_forward`), where peft's forward casts the input to float32 and autocast casts it back, and A
    and B, at every call, and its mixed batch (`adapter_names`) splits every layer's input per adapter in
    Python. In float32 the same numbers as peft's (the same ops; a 0/1 mask on the rank-r activations; tested
    equal to the naive loop); under bf16 the base runs in bf16 and a few rows' rank-r delta in float32
    outside autocast (`_low_precision_row_lora_forward`). With no mask, adapters are off: every row is the base
    (or its prompt)."""
    if host.peft is None:
        yield
        return
    if not masks:
        with host._trainable_kept(), host.peft.disable_adapter():
            yield
        return
    from peft.tuners.lora import LoraLayer
    row_forward = _low_precision_row_lora_forward if host.precision == "bf16" else _row_lora_forward
    patched = []
    try:
        for layer in host.model.modules():      # every LoRA layer: one without these adapters is the base
            if isinstance(layer, LoraLayer):
                parts = [_lora_part(layer, name, mask) for name, mask in masks.items() if name in layer.lora_A]
                layer.forward = row_forward(layer.base_layer, parts)
                patched.append(layer)
        yield
    finally:
        for layer in patched:
            del layer.forward       # back to the class's (peft's) forward


def _lora_part(layer, name: str, mask: torch.Tensor):
    """(A, B, scaling, mask) of one adapter in one layer, float32; the mask shaped (N, 1, 1) to scale each
    row's rank-r activations."""
    if name in getattr(layer, "lora_variant", {}):
        raise NotImplementedError(f"steering mixes plain LoRA adapters only; {name!r} is a LoRA variant")
    A, B = layer.lora_A[name].weight.detach(), layer.lora_B[name].weight.detach()
    return A, B, layer.scaling[name], mask.to(A.dtype).view(-1, 1, 1)


def _row_lora_forward(base, parts):
    """peft's vanilla LoRA forward (sampling: eval mode, no dropout) with each adapter's delta kept to its rows."""
    def forward(x, *args, **kwargs):
        result = base(x, *args, **kwargs)
        for A, B, scaling, mask in parts:
            result = result + F.linear(F.linear(x, A) * mask, B) * scaling
        return result
    return forward


FLOAT32_DELTA_ROWS = 12   # up to this many rows (tokens) a rank-r delta is cheaper in float32 (bench_adapter_decoding)


def _low_precision_row_lora_forward(base, parts):
    """The same under bf16 autocast, for no-grad decoding: the base in bf16; the rank-r delta of a call of at
    most FLOAT32_DELTA_ROWS rows in float32 with autocast off (a rank-8 matmul of a few rows costs ~18 µs in
    bf16 on a CPU and ~6 µs in float32, and a decoding step makes 240 of them), the row mask and the scaling
    as one factor, added into the base output in place; a larger call (a prefill, many rows) in bf16 with A
    and B cast once."""
    f32_parts = [(A, B, mask * scaling) for A, B, scaling, mask in parts]
    bf16_parts = [(A.to(torch.bfloat16), B.to(torch.bfloat16), mask.to(torch.bfloat16), scaling)
                  for A, B, scaling, mask in parts]

    def forward(x, *args, **kwargs):
        result = base(x, *args, **kwargs)
        if x.numel() > FLOAT32_DELTA_ROWS * x.shape[-1]:
            for A, B, mask, scaling in bf16_parts:
                result = result + F.linear(F.linear(x, A) * mask, B) * scaling
            return result
        on = torch.is_autocast_enabled(x.device.type)
        torch.set_autocast_enabled(x.device.type, False)
        try:
            xf = x.float()
            for A, B, row_scaling in f32_parts:
                result.add_(F.linear(F.linear(xf, A) * row_scaling, B))
        finally:
            torch.set_autocast_enabled(x.device.type, on)
        return result
    return forward


def adapter_decoding(host, adapter: str | None, rows: int):
    """No-grad decoding of `rows` rows from one adapter: under bf16 and for at most FLOAT32_DELTA_ROWS rows
    through `masked_adapters` with the adapter on every row (each step's rank-r matmuls in float32 outside
    autocast, ~3× cheaper than bf16 ones for a few rows); otherwise — float32, more rows, the base, a LoRA
    variant (DoRA …) — peft's own forward."""
    if (adapter is None or host.peft is None or host.precision != "bf16" or rows > FLOAT32_DELTA_ROWS
            or _is_variant(host, adapter)):
        return contextlib.nullcontext()
    return masked_adapters(host, {adapter: torch.ones(1, device=host.device)})   # (1,): broadcasts to any rows


def _is_variant(host, adapter: str) -> bool:
    from peft.tuners.lora import LoraLayer
    return any(adapter in getattr(m, "lora_variant", {}) for m in host.model.modules() if isinstance(m, LoraLayer))
