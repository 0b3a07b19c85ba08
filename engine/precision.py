"""Which device and which precision the model host computes in, decided once at start-up.

On CUDA bf16 where the GPU supports it. On a CPU bf16 only where it is measured faster: CPUs without
native bf16 (AVX2 only, no avx512_bf16 / AMX) emulate it, and a bf16 matmul there is many times slower than
fp32 (31× for one 256×576 @ 576×1536 matmul on an AVX2 EPYC). The micro-benchmark times a few matmuls of
the model's own shapes in fp32 and under bf16 autocast, well under a second, and its verdict is cached per
machine (CPU, capability, threads, torch version) in the data directory.

LAB_DEVICE=auto|cpu|cuda|mps and LAB_PRECISION=auto|fp32|bf16 override the choice.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.errors import LabInputError

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
BF16_MARGIN = 0.9        # bf16 must be at least 10% faster to be worth its rounding
ROWS = 256               # tokens in one micro-benchmark matmul: a training micro-batch's worth
CHUNK = 64               # rows per matmul call: the bf16 pass can stop between calls
STOP_RATIO = 10          # an emulated bf16 pass stops once it is this many times slower than fp32


@dataclass(frozen=True)
class Precision:
    """The host's choice: what it computes in, on what, and why."""
    device: str          # "cpu", "cuda", "mps"
    precision: str       # "fp32" or "bf16"
    reason: str          # "measured", "cached", "LAB_PRECISION", "cuda", ...
    capability: str      # CPU: torch's ISA level ("AVX2", "AVX512", ...); GPU: its name
    fp32_ms: float | None = None
    bf16_ms: float | None = None

    @property
    def label(self) -> str:
        """What the page shows, e.g. "CPU AVX2 · fp32"."""
        return f"{self.device.upper()} {self.capability} · {self.precision}"

    def to_dict(self) -> dict:
        return asdict(self) | {"label": self.label}


def resolve_device(requested: str = "auto") -> torch.device:
    if requested not in DEVICES:
        raise LabInputError(f"LAB_DEVICE: {requested!r} is not one of {', '.join(DEVICES)}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise LabInputError("LAB_DEVICE=cuda, but torch sees no CUDA device (this torch build: "
                         f"{torch.__version__}); use LAB_DEVICE=cpu or auto")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise LabInputError("LAB_DEVICE=mps, but MPS is not available here; use LAB_DEVICE=cpu or auto")
    return torch.device(requested)


def capability(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple"
    return torch.backends.cpu.get_cpu_capability()


def bf16_wins(fp32_s: float, bf16_s: float, margin: float = BF16_MARGIN) -> bool:
    """bf16 is chosen only where it is clearly faster than fp32."""
    return bf16_s < margin * fp32_s


def matmul_timings(shapes: list[tuple[int, int]], repeats: int = 5) -> tuple[float, float]:
    """(fp32 seconds, bf16 seconds) for one pass of the (ROWS, k) @ (k, n) matmuls of `shapes`, done in
    CHUNK-row slices in both precisions: the best of `repeats` passes each, taken in turn (fp32, bf16, fp32, …),
    so a moment of load from another process (a browser opening the page) slows one pass, not one precision.

    An emulated bf16 is tens of times slower, so its pass stops once it has cost STOP_RATIO × fp32: the
    bf16 figure is then a lower bound, which is all the verdict needs, and the check stays well under a second."""
    gen = torch.Generator().manual_seed(0)
    fp32 = [(torch.randn(ROWS, k, generator=gen), torch.randn(k, n, generator=gen)) for k, n in shapes]
    bf16 = [(a.bfloat16(), b.bfloat16()) for a, b in fp32]

    def one_pass(mats, stop_after: float = float("inf")) -> float:
        t0 = time.perf_counter()
        for a, b in mats:
            for r in range(0, ROWS, CHUNK):
                a[r:r + CHUNK] @ b
                if time.perf_counter() - t0 > stop_after:
                    return time.perf_counter() - t0
        return time.perf_counter() - t0

    one_pass(fp32)                            # warm-up: allocator, kernels, oneDNN primitives
    for a, b in bf16:
        a[:CHUNK] @ b
    t_fp32 = t_bf16 = float("inf")
    for _ in range(repeats):
        t_fp32 = min(t_fp32, one_pass(fp32))
        stop = STOP_RATIO * t_fp32
        t_bf16 = min(t_bf16, one_pass(bf16, stop_after=stop))
        if t_bf16 > stop:                     # emulated: the lower bound already decides
            break
    return t_fp32, t_bf16


def machine_key(device: torch.device, shapes: list[tuple[int, int]]) -> str:
    """What the verdict depends on: CPU model and ISA, thread count, torch version and the shapes."""
    cpu = cpu_model()
    parts = [cpu, capability(device), str(torch.get_num_threads()), torch.__version__, repr(shapes)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose_precision(device: torch.device, requested: str = "auto", shapes: list[tuple[int, int]] = (),
                     cache_file: Path | None = None,
                     timer: Callable[[list[tuple[int, int]]], tuple[float, float]] = matmul_timings) -> Precision:
    """The precision the host computes in. `requested` is LAB_PRECISION: auto, fp32 or bf16."""
    if requested not in PRECISIONS:
        raise LabInputError(f"LAB_PRECISION: {requested!r} is not one of {', '.join(PRECISIONS)}")
    cap = capability(device)
    if requested != "auto":
        return Precision(device.type, requested, "LAB_PRECISION", cap)
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return Precision(device.type, "bf16" if ok else "fp32", "cuda" if ok else "cuda without bf16", cap)
    if device.type != "cpu":
        return Precision(device.type, "fp32", f"{device.type}: fp32 by default", cap)
    shapes = list(shapes) or [(576, 1536), (1536, 576), (576, 576)]
    key = machine_key(device, shapes)
    with measuring(cache_file):   # two processes starting at once (the page and its worker): one measures
        cached = read_cache(cache_file).get(key)
        if cached:
            return Precision(device.type, cached["precision"], "cached", cap, cached["fp32_ms"], cached["bf16_ms"])
        fp32_s, bf16_s = timer(shapes)
        choice = Precision(device.type, "bf16" if bf16_wins(fp32_s, bf16_s) else "fp32", "measured", cap,
                           round(fp32_s * 1e3, 2), round(bf16_s * 1e3, 2))
        write_cache(cache_file, key, {"precision": choice.precision, "fp32_ms": choice.fp32_ms,
                                      "bf16_ms": choice.bf16_ms, "capability": choice.capability})
    return choice


@contextlib.contextmanager
def measuring(cache_file: Path | None):
    """An exclusive lock beside the cache while one process reads or measures: measured side by side, each
    would time the other's matmuls too (two at once here made a bf16 machine pick fp32, ×1.4 slower)."""
    if cache_file is None:
        yield
        return
    try:
        import fcntl
    except ImportError:   # not POSIX: no lock, as before
        yield
        return
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_file.with_name(cache_file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_cache(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}          # a damaged cache is measured again, not trusted


def write_cache(path: Path | None, key: str, record: dict) -> None:
    """Add one verdict to the machine's cache (atomically: a reader never sees half a file)."""
    if path is None:
        return
    data = read_cache(path) | {key: record}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def autocast(device: torch.device, precision: str):
    """The one precision context of the host: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class FrozenBf16Weights:
    """bf16 copies of a model's frozen linear weights, made once, read in place of the float32 ones inside a
    bf16 region.

    Autocast casts a weight to bf16 at every call unless it is a leaf that requires grad, so a frozen base
    is cast again at every forward: for one decoding step of SmolLM2-135M (batch 1, AVX512-bf16 CPU) the
    casts cost more than the matmuls (its tied 49152×576 lm_head: 22 ms under autocast, 2.3 ms from a bf16
    copy). The copies are what autocast would make (round to nearest), so every result is the same; the
    price is 2 bytes per frozen weight, held from the first bf16 region on. LoRA weights (trained in float32,
    or small) and the embedding (its rows stay float32 in the residual stream) are left to autocast; a tied
    lm_head gets its own copy while the embedding keeps the float32 tensor they share.

    The swap is global to the model, so a region holds `lock` (the host's) from its outermost entry to its
    exit: a float32 forward on another thread waits rather than meeting bf16 weights."""

    def __init__(self, model: torch.nn.Module, lock):
        self.model, self.lock = model, lock
        self._copies: list[tuple[torch.nn.Module, torch.nn.Parameter, torch.nn.Parameter]] | None = None
        self._depth = 0

    def _frozen_linears(self):
        for name, module in self.model.named_modules():
            if isinstance(module, torch.nn.Linear) and "lora_" not in name and module.weight.dtype == torch.float32 \
                    and not module.weight.requires_grad:
                yield module

    @property
    def nbytes(self) -> int:
        """Bytes held by the bf16 copies (0 before the first bf16 region makes them)."""
        return sum(half.numel() * half.element_size() for _, _, half in self._copies or ())

    def _swap(self, inside: bool) -> None:
        if self._copies is None:
            self._copies = [(m, m.weight, torch.nn.Parameter(m.weight.detach().to(torch.bfloat16), requires_grad=False))
                            for m in self._frozen_linears()]
        for module, full, half in self._copies:
            module.weight = half if inside else full

    @contextlib.contextmanager
    def region(self, device: torch.device, precision: str):
        if precision != "bf16":
            yield
            return
        with self.lock, torch.autocast(device.type, dtype=torch.bfloat16):
            if self._depth == 0:
                self._swap(inside=True)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._swap(inside=False)


def model_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of the attention and MLP projections, read from a transformers config."""
    h = getattr(config, "hidden_size", None) or 576
    i = getattr(config, "intermediate_size", None) or 4 * h
    return [(h, i), (i, h), (h, h)]
