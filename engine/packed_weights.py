"""fp32 decoding on a CPU through oneDNN-packed copies of the frozen linear weights.

A decoding step multiplies a few rows (one per sequence: 1 for the w slider on one input, 3 for one steered
input, 32 for an RL group) by every weight of the model. aten's fp32 linear hands them to MKL's sgemm, which on
the AMD EPYC (AVX2) this lab is developed on is slow for a few rows: 3 rows through SmolLM2's 49152×576 lm_head
take 29–33 ms, 3.5× one row (8.8 ms), where reading the weight once takes about 5. oneDNN's matmul on a weight
reordered once into its own blocked layout (`torch.ops.mkldnn._reorder_linear_weight`, the kernel of
torch.compile's CPU freezing path) does the same product in 6.1 ms, and 3 rows through a 576×1536 MLP
projection in 0.10 ms against 0.29–0.33. Plain decoding of 3 rows then costs about what 1 row does, so Eq. 7's
three policies stop costing three times one (bench/bench_steering.py).

Only no-grad float32 CPU forwards of 2–MAX_ROWS rows use the packed copies, and single rows only through
weights of the lm_head's size (a one-row MKL gemv of a small weight is faster than oneDNN's call). Training
forwards, bf16 regions (which read their own copies, engine/precision.py), prefills of many rows and other
devices keep aten's F.linear. A copy is made at a weight's first packed call and costs 4 bytes per frozen
weight (SmolLM2-135M: 0.54 GB, its tied lm_head included). Whether oneDNN wins is measured once per machine,
as the precision is, and cached beside it; LAB_FP32_LINEAR=aten|onednn overrides.
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from engine.errors import LabInputError
from engine.precision import machine_key, measuring, model_shapes, read_cache, write_cache

KERNELS = ("auto", "aten", "onednn")
FEW_ROWS = 3                   # rows of the measured matmuls: one steered input (π1, π*, π0)
MAX_ROWS = 64                  # above it (prefills, scoring) MKL's sgemm is as fast or faster
ONE_ROW_MIN_WEIGHT = 4_000_000  # one row: only weights this large (the lm_head) are worth oneDNN's call
ONEDNN_MARGIN = 0.9            # oneDNN must be at least 10 % faster to be used


@dataclass(frozen=True)
class Fp32Linear:
    """Which kernel a few-row fp32 linear runs on, and why."""
    kernel: str                 # "onednn" or "aten"
    reason: str                 # "measured", "cached", "LAB_FP32_LINEAR", "not a CPU", "no oneDNN", "oneDNN failed"
    aten_ms: float | None = None
    onednn_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A (out, in) float32 weight reordered into oneDNN's layout (an opaque mkldnn tensor)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach())


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (rows, in) @ W.T + bias with W packed by `pack`: (rows, out)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def decode_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of the projections a decoding step runs through: attention, MLP and the lm_head."""
    h = getattr(config, "hidden_size", None) or 576
    return model_shapes(config) + [(h, getattr(config, "vocab_size", None) or 49152)]


def few_row_timings(shapes: list[tuple[int, int]], rows: int = FEW_ROWS, repeats: int = 5) -> tuple[float, float]:
    """(aten seconds, oneDNN seconds) for one pass of FEW_ROWS-row fp32 linears through `shapes`, the best of
    `repeats` passes each, taken in turn so a moment of load slows one pass, not one kernel."""
    gen = torch.Generator().manual_seed(0)
    mats = [(torch.randn(rows, k, generator=gen), torch.randn(n, k, generator=gen)) for k, n in shapes]
    packed = [pack(w) for _, w in mats]

    def aten_pass() -> float:
        t0 = time.perf_counter()
        for x, w in mats:
            F.linear(x, w)
        return time.perf_counter() - t0

    def onednn_pass() -> float:
        t0 = time.perf_counter()
        for (x, _), p in zip(mats, packed):
            packed_linear(x, p, None)
        return time.perf_counter() - t0

    aten_pass(), onednn_pass()                 # warm-up: allocator, MKL, oneDNN primitives
    t_aten = t_onednn = float("inf")
    for _ in range(repeats):
        t_aten, t_onednn = min(t_aten, aten_pass()), min(t_onednn, onednn_pass())
    return t_aten, t_onednn


def choose_fp32_linear(device: torch.device, requested: str = "auto", shapes: list[tuple[int, int]] = (),
                       cache_file: Path | None = None,
                       timer: Callable[[list[tuple[int, int]]], tuple[float, float]] = few_row_timings
                       ) -> Fp32Linear:
    """The kernel of few-row fp32 linears on this machine. `requested` is LAB_FP32_LINEAR: auto, aten, onednn."""
    if requested not in KERNELS:
        raise LabInputError(f"LAB_FP32_LINEAR: {requested!r} is not one of {', '.join(KERNELS)}")
    if device.type != "cpu":
        return Fp32Linear("aten", "not a CPU")
    if not onednn_available():
        return Fp32Linear("aten", "no oneDNN in this torch")
    if requested != "auto":
        return Fp32Linear(requested, "LAB_FP32_LINEAR")
    shapes = list(shapes) or [(576, 1536), (1536, 576), (576, 576), (576, 49152)]
    key = machine_key(device, shapes) + ":fp32-linear"
    with measuring(cache_file):
        cached = read_cache(cache_file).get(key)
        if cached:
            return Fp32Linear(cached["kernel"], "cached", cached["aten_ms"], cached["onednn_ms"])
        try:
            aten_s, onednn_s = timer(shapes)
        except RuntimeError as e:   # a oneDNN build without these kernels (some non-x86 CPUs): aten, as before
            return Fp32Linear("aten", f"oneDNN failed: {str(e).splitlines()[0][:120]}")
        choice = Fp32Linear("onednn" if onednn_s < ONEDNN_MARGIN * aten_s else "aten", "measured",
                            round(aten_s * 1e3, 2), round(onednn_s * 1e3, 2))
        write_cache(cache_file, key, {"kernel": choice.kernel, "aten_ms": choice.aten_ms,
                                      "onednn_ms": choice.onednn_ms})
    return choice


class PackedFp32Weights:
    """oneDNN-packed copies of a model's frozen linear weights, read by few-row no-grad fp32 CPU forwards.

    Each frozen nn.Linear (LoRA's own are left alone: trained, or tiny) gets a forward that takes the packed
    path where it pays and its own forward otherwise. A copy is made at the weight's first packed call and made
    again if the weight is replaced or changed in place. `enabled` turns the packed path off and on (the
    benchmark's baseline is aten)."""

    def __init__(self, model: torch.nn.Module, enabled: bool = True):
        self.enabled = enabled
        self._copies: dict[int, tuple[tuple[int, int], torch.Tensor, int]] = {}  # id(module) -> (key, copy, bytes)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and "lora_" not in name and not module.weight.requires_grad:
                inner = module.__dict__.get("forward") or functools.partial(type(module).forward, module)
                module.forward = self._forward(module, inner)

    @property
    def nbytes(self) -> int:
        """Bytes held by the packed copies (0 before the first packed forward)."""
        return sum(size for _, _, size in self._copies.values())

    def _forward(self, module: torch.nn.Linear, inner):
        def forward(x: torch.Tensor) -> torch.Tensor:
            rows = x.numel() // x.shape[-1]
            if not self._takes(module, x, rows):
                return inner(x)
            y = packed_linear(x.reshape(rows, x.shape[-1]), self._copy(module), module.bias)
            return y.view(*x.shape[:-1], y.shape[-1])
        return forward

    def _takes(self, module: torch.nn.Linear, x: torch.Tensor, rows: int) -> bool:
        w = module.weight
        few = 2 <= rows <= MAX_ROWS or (rows == 1 and w.numel() >= ONE_ROW_MIN_WEIGHT)
        return (self.enabled and few and x.dtype == w.dtype == torch.float32 and x.device.type == "cpu"
                and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu"))

    def _copy(self, module: torch.nn.Linear) -> torch.Tensor:
        w = module.weight
        key = (w.data_ptr(), w._version)     # the weight it was packed from, as it was then
        held = self._copies.get(id(module))
        if held is None or held[0] != key:
            held = (key, pack(w), w.numel() * w.element_size())
            self._copies[id(module)] = held
        return held[1]
