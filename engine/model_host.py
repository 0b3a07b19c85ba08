"""One copy of the base weights serving every policy: base, base + prompt, base + named LoRA adapter,
base + named soft prompt. The host owns the device, the precision and the chat format (engine/chat_format.py):
nothing else knows a chat-control token.

Scoring pads on the right (positions stay natural); generation pads on the left (pad = the end-of-turn token).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import packed_weights, precision as prec
from engine.adapter_rows import adapter_decoding
from engine.chat_format import discover
from engine.kl import sequence_logprob
from engine.model_loading import canonical_model, effective_model, hub_id, load_model_and_tokenizer
from engine.policies import Policy
from engine.run_memo import RunMemo

log = logging.getLogger(__name__)


@dataclass
class Samples:
    """Generations for a list of inputs: texts[i][k] is sample k for input i."""
    inputs: list[str]
    texts: list[list[str]]
    token_ids: list[list[list[int]]]  # same shape as texts, reply tokens incl. the final eos
    n_new_tokens: int

    def flat(self) -> tuple[list[str], list[str], list[list[int]]]:
        xs, ys, ids = [], [], []
        for x, row, row_ids in zip(self.inputs, self.texts, self.token_ids):
            for y, t in zip(row, row_ids):
                xs.append(x), ys.append(y), ids.append(t)
        return xs, ys, ids


class ModelHost:
    def __init__(self, model: str, cache_root: Path, threads: int | None = None, device: str = "auto",
                 precision: str = "auto", precision_cache: Path | None = None, max_adapters: int = 16,
                 fp32_linear: str = "auto", memo_mb: int = 1536):
        if threads:
            torch.set_num_threads(threads)
        loaded = effective_model(model)   # an embedded model without its package: the same model by hub id
        self.model_name = canonical_model(loaded)  # what runs record; "embedded" = "embedded:smollm2-135m"
        self.model_cache_root = Path(cache_root)
        self.model, self.tok, self.load_seconds = load_model_and_tokenizer(loaded, cache_root)
        if loaded != model:
            log.warning("LAB_MODEL=%s: its package is not installed; loaded %s from the Hugging Face cache instead "
                        "(the original weights, not the embedded quantized copy)", model, loaded)
        log.info("model %s loaded in %.1f s", self.model_name, self.load_seconds)
        self.model.requires_grad_(False)   # the base never trains (adapters and soft prompts hold the grads)
        read_rows_as_matrix(self.model.get_output_embeddings())
        self.device = prec.resolve_device(device)
        self.model.to(self.device)
        cache = precision_cache if precision_cache is not None else Path(cache_root).parent / "precision.json"
        self.choice = prec.choose_precision(self.device, precision, prec.model_shapes(self.model.config), cache)
        self._precision = threading.local()   # a run's own precision setting, per thread (run_precision)
        self.fp32_linear = packed_weights.choose_fp32_linear(
            self.device, fp32_linear, packed_weights.decode_shapes(self.model.config), cache)
        self.packed_weights = (packed_weights.PackedFp32Weights(self.model) if self.fp32_linear.kernel == "onednn"
                               else None)       # few-row fp32 decoding through oneDNN (engine/packed_weights.py)
        self.chat = discover(self.tok, getattr(self.model, "generation_config", None))
        self.eos_id = self.chat.end_id            # closes every teacher-forced reply
        self.end_ids = torch.tensor(sorted(self.chat.end_ids))   # any of these ends a sampled reply
        self.pad_id = self.eos_id
        self.adapters: dict[str, dict] = {}  # name -> {"path": saved dir or None, "used": last use (monotonic)}
        self.max_adapters = max_adapters      # saved, frozen adapters kept loaded (LRU past it)
        self.evicted: dict[str, str] = {}     # name -> saved dir, of adapters unloaded to stay under the limit
        self.lock = threading.RLock()
        self._bf16_weights = prec.FrozenBf16Weights(self.model, self.lock)
        self.soft_prompts: dict[str, dict] = {}  # name -> {"embeds": (n, d), "first_id": int, "path": ...}
        self._soft_local = threading.local()     # virtual ids of the embedding call in flight (per thread)
        self._next_virtual_id: int | None = None  # hooks are installed with the first soft prompt
        self.forward_tokens = 0   # token positions embedded by every forward (prefill, decode, scoring, training)
        self.memo = RunMemo(memo_mb << 20)   # what a later run would compute again (engine/run_memo.py)
        self.model.get_input_embeddings().register_forward_hook(self._count_tokens)

    def _count_tokens(self, module, args, out) -> None:
        """The compute a run cost, in the unit Table 1 reports: every position any forward embeds (padding
        included: it is computed), whichever policy, adapter or caller."""
        self.forward_tokens += args[0].numel()

    # ---------- device and precision ----------
    @property
    def precision(self) -> str:
        """"fp32" or "bf16": the run's own setting while one is in force, else the start-up choice."""
        return getattr(self._precision, "value", None) or self.choice.precision

    def autocast(self):
        """The one precision context: every forward of every policy runs inside it (in bf16 with the frozen
        weights' bf16 copies: `prec.FrozenBf16Weights`)."""
        return self._bf16_weights.region(self.device, self.precision)

    def memo_key(self, *parts) -> tuple:
        """A `self.memo` key: `parts` (what a value depends on besides the model) with the model, device and the
        precision in force, whose numbers it would be."""
        return (self.model_name, str(self.device), self.precision) + parts

    @contextlib.contextmanager
    def run_precision(self, requested: str = "auto"):
        """A run's `precision` setting for its duration: auto keeps the host's choice; fp32/bf16 force one."""
        if requested not in prec.PRECISIONS:
            raise prec.LabInputError(f"precision: {requested!r} is not one of {', '.join(prec.PRECISIONS)}")
        before = getattr(self._precision, "value", None)
        self._precision.value = None if requested == "auto" else requested
        try:
            yield self.precision
        finally:
            self._precision.value = before

    def runtime(self) -> dict:
        """What a run records about where it ran: model, device, capability and the precision in force."""
        return {"model": self.model_name, "device": self.device.type, "capability": self.choice.capability,
                "precision": self.precision}

    def describe(self) -> dict:
        """What the page and `python -m engine info` show about the host."""
        return {"model": self.model_name, "chat_format": self.chat.describe(), "device": self.device.type,
                "precision": self.precision,
                "label": dataclasses.replace(self.choice, precision=self.precision).label,
                "choice": self.choice.to_dict(), "fp32_linear": self.fp32_linear.to_dict(),
                "threads": torch.get_num_threads(),
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "load_seconds": round(self.load_seconds, 2)}

    # ---------- prompts ----------
    @property
    def context_length(self) -> int | None:
        """The longest sequence the model was trained on (None where its config does not say)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text, as plain text (engine/limits.py checks a scenario's lengths with it)."""
        return [len(ids) for ids in self.tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []

    def prefix_ids(self, policy: Policy, x: str) -> list[int]:
        """Token ids of the chat up to the assistant turn: system z (or neutral), its demonstration turns, user x."""
        if policy.soft:
            return self._soft_prefix_ids(policy, x)
        return self.chat.prefix_ids(policy.system_text, x, policy.turns)

    def reply_ids(self, y: str) -> list[int]:
        """Tokens of a reply as the model would emit them, closed by the end-of-turn token."""
        return self.chat.reply_ids(y)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in self.chat.end_ids], skip_special_tokens=True).strip()

    def token_after(self, prefix: str, labels: list[str]) -> tuple[list[int], list[int]]:
        """(prefix ids, one id per label) such that prefix + label tokenizes as prefix ids + that one id, for
        every label (e.g. "Score: " and the digits 1..9). A label that takes more than one token is an error."""
        prefix = self.chat.reply_lead + prefix
        full = [self.tok(prefix + s, add_special_tokens=False)["input_ids"] for s in labels]
        n = min(len(f) for f in full) - 1
        while n > 0 and any(f[:n] != full[0][:n] for f in full):
            n -= 1
        bad = [s for s, f in zip(labels, full) if len(f) != n + 1]
        if bad or n == 0:
            raise ValueError(f"the tokenizer writes {prefix!r} + {bad[0] if bad else labels[0]!r} as more than "
                             f"one token after the prefix; choose single-token labels")
        return full[0][:n], [f[n] for f in full]

    # ---------- adapters ----------
    @property
    def peft(self):
        from peft import PeftModel
        return self.model if isinstance(self.model, PeftModel) else None

    def add_lora(self, name: str, lora_config) -> None:
        """Attach a fresh trainable LoRA adapter under `name` (the base weights stay frozen). Target groups
        such as `attention` become this model's own module names (engine/lora.py)."""
        from peft import get_peft_model

        from engine.lora import resolve_targets
        lora_config.target_modules = resolve_targets(self.model, ",".join(sorted(lora_config.target_modules)))
        with self.lock:
            if name in self.adapters:
                self.delete_adapter(name)
            with self._trainable_kept():
                if self.peft is None:
                    self.model = get_peft_model(self.model, lora_config, adapter_name=name)
                else:
                    self.model.add_adapter(name, lora_config)
            self.adapters[name] = {"path": None, "used": time.monotonic()}
            for p in self.trainable_parameters(name):  # trainable whichever adapter peft left active
                p.requires_grad_(True)

    def load_adapter(self, name: str, path: str | Path, trainable: bool = False, keep: tuple = ()) -> None:
        """Load a saved adapter (safetensors) under `name`, frozen (or trainable: a warm start)."""
        from peft import PeftModel
        with self.lock:
            if name in self.adapters:
                return
            with self._trainable_kept():
                if self.peft is None:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name,
                                                           is_trainable=trainable)
                else:
                    self.model.load_adapter(str(path), adapter_name=name, is_trainable=trainable)
            self.adapters[name] = {"path": str(path), "used": time.monotonic()}
            self.evicted.pop(name, None)
            for p in self.trainable_parameters(name):
                p.requires_grad_(trainable)
            self._evict_beyond_limit(keep={name, *keep})

    def save_adapter(self, name: str, path: str | Path) -> Path:
        path = Path(path)
        with self.lock:
            self.model.save_pretrained(str(path), selected_adapters=[name], safe_serialization=True)
            out = path / name if (path / name / "adapter_model.safetensors").exists() else path
            self._name_hub_model(out / "adapter_config.json")
            self.adapters[name]["path"] = str(out)
            for p in self.trainable_parameters(name):   # saved = done training: later runs read it frozen
                p.requires_grad_(False)
            return out

    def ensure_loaded(self, names) -> None:
        """Make these adapters loaded at once (a batch that mixes adapters per row), reloading evicted ones."""
        names = [n for n in dict.fromkeys(names) if n]
        with self.lock:
            for name in names:
                if name in self.evicted:
                    self.load_adapter(name, self.evicted[name], keep=tuple(names))
                if name in self.adapters:
                    self.adapters[name]["used"] = time.monotonic()

    def _evict_beyond_limit(self, keep: set[str]) -> None:
        """Unload the least recently used saved, frozen adapters past `max_adapters` (never one in `keep`, one
        in training, or one never saved); `use` and `ensure_loaded` load an evicted one again from its files."""
        def evictable(name: str) -> bool:
            return (name not in keep and self.adapters[name]["path"] is not None
                    and not any(p.requires_grad for p in self.trainable_parameters(name)))
        saved = [n for n, a in self.adapters.items() if a["path"] is not None]
        for name in sorted(filter(evictable, saved), key=lambda n: self.adapters[n].get("used", 0.0)):
            if len(saved) <= self.max_adapters:
                break
            path = self.adapters[name]["path"]
            self.delete_adapter(name)
            self.evicted[name] = path
            saved.remove(name)

    def _name_hub_model(self, config_file: Path) -> None:
        """An exported adapter names its base by the hub id (not this machine's cache path), so
        PeftModel.from_pretrained finds the model anywhere. Written after saving: peft would look the id up."""
        hub = hub_id(self.model_name)
        if hub and config_file.exists():
            config = json.loads(config_file.read_text())
            config["base_model_name_or_path"] = hub
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True))

    @contextlib.contextmanager
    def removed_on_failure(self, name: str):
        """Around a run that trains adapter (or soft prompt) `name`: when the block raises — a failure, a
        cancel — `name` is taken off the host, so nothing half-trained stays loaded; a finished run keeps it."""
        try:
            yield
        except BaseException:
            if name in self.soft_prompts:
                self.delete_soft_prompt(name)
            else:
                self.delete_adapter(name)
            raise

    def delete_adapter(self, name: str) -> None:
        with self.lock:
            if self.peft is not None and name in self.peft.peft_config:
                if len(self.peft.peft_config) == 1:
                    self.model = self.peft.unload()  # back to the bare base model
                else:
                    with self._trainable_kept():
                        if self.peft.active_adapter == name:
                            other = next(a for a in self.peft.peft_config if a != name)
                            self.peft.set_adapter(other)
                        self.peft.delete_adapter(name)
            self.adapters.pop(name, None)
            self.evicted.pop(name, None)

    def trainable_parameters(self, name: str) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if f".{name}." in n and "lora_" in n]

    @contextlib.contextmanager
    def use(self, policy: Policy):
        """Make `policy`'s adapter (or none) the active one for the duration."""
        with self.lock:
            if policy.adapter is None:
                ctx = self.peft.disable_adapter() if self.peft is not None else contextlib.nullcontext()
                with self._trainable_kept(), ctx:   # re-enabling adapters on exit calls set_adapter too
                    yield self.model
                return
            self.ensure_loaded([policy.adapter])       # an evicted adapter is loaded again from its files
            if policy.adapter not in self.adapters:
                raise KeyError(f"adapter {policy.adapter!r} is not loaded")
            with self._trainable_kept():
                self.peft.set_adapter(policy.adapter)
            yield self.model

    @contextlib.contextmanager
    def _trainable_kept(self):
        """peft's set_adapter (also inside add/load/delete and on leaving disable_adapter) makes the active
        adapter trainable and freezes every other one. Which adapters train is decided once, by add_lora
        (trainable) and load_adapter (frozen); switching, loading or deleting another adapter, or running the
        base with adapters off, must not change it."""
        flags = [(p, p.requires_grad) for n, p in self.model.named_parameters() if "lora_" in n]
        try:
            yield
        finally:
            for p, trainable in flags:
                p.requires_grad_(trainable)

    # ---------- soft prompts ----------
    # A soft prompt is n learned vectors that sit in the system turn in place of the neutral text (before z
    # if the policy has one). Each registered soft prompt owns n virtual token ids past the vocabulary; a hook
    # on the input embedding swaps those ids' rows for the learned vectors. So every path that feeds token ids
    # (scoring, KV-cached sampling, steering's mixed rows) serves soft prompts per row, exactly, with no
    # change of its own (peft's prompt tuning would apply one soft prompt to every row of a batch).
    def add_soft_prompt(self, name: str, embeds: torch.Tensor, path: str | Path | None = None) -> None:
        """Register (n, d) virtual-token embeddings under `name`; pass an nn.Parameter to train them."""
        with self.lock:
            self._install_soft_hooks()
            if name in self.soft_prompts:
                self.delete_soft_prompt(name)
            first, self._next_virtual_id = self._next_virtual_id, self._next_virtual_id + embeds.shape[0]
            self.soft_prompts[name] = {"embeds": embeds, "first_id": first, "path": str(path) if path else None}

    def load_soft_prompt(self, name: str, path: str | Path) -> None:
        """Load a saved soft prompt (safetensors, tensor "embeds") under `name`, frozen."""
        from safetensors.torch import load_file
        with self.lock:
            if name not in self.soft_prompts:
                self.add_soft_prompt(name, load_file(str(path))["embeds"].float(), path)

    def save_soft_prompt(self, name: str, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        from safetensors.torch import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            save_file({"embeds": self.soft_prompts[name]["embeds"].detach().float().contiguous()}, str(path),
                      metadata=metadata)
            self.soft_prompts[name]["path"] = str(path)
        return path

    def delete_soft_prompt(self, name: str) -> None:
        with self.lock:
            self.soft_prompts.pop(name, None)   # its virtual ids are never handed out again

    def soft_prompt_ids(self, name: str) -> list[int]:
        sp = self.soft_prompts[name]
        return list(range(sp["first_id"], sp["first_id"] + sp["embeds"].shape[0]))

    def _soft_prefix_ids(self, policy: Policy, x: str) -> list[int]:
        """The chat prefix with the soft prompt's virtual ids where the system text starts (before z, if any)."""
        if policy.soft not in self.soft_prompts:
            raise KeyError(f"soft prompt {policy.soft!r} is not loaded")
        before, after = self.chat.prefix_ids_with_slot(policy.system or "", x, policy.turns)
        return before + self.soft_prompt_ids(policy.soft) + after

    def _install_soft_hooks(self) -> None:
        if self._next_virtual_id is not None:
            return
        emb = self.model.get_input_embeddings()
        self._next_virtual_id = emb.num_embeddings
        emb.register_forward_pre_hook(self._soft_pre_hook)
        emb.register_forward_hook(self._soft_hook)

    def _soft_pre_hook(self, module, args):
        """Virtual ids (>= the vocabulary size) become pad for the table lookup; the hook fills their rows."""
        ids = args[0]
        virtual = ids >= module.num_embeddings
        self._soft_local.ids = ids if bool(virtual.any()) else None
        return None if self._soft_local.ids is None else (ids.masked_fill(virtual, self.pad_id), *args[1:])

    def _soft_hook(self, module, args, out: torch.Tensor):
        ids, self._soft_local.ids = getattr(self._soft_local, "ids", None), None
        if ids is None:
            return None
        missing = ids >= module.num_embeddings            # (B, L) virtual positions not yet filled
        for sp in list(self.soft_prompts.values()):
            table = sp["embeds"]                          # (n, d)
            rel = ids - sp["first_id"]                    # (B, L)
            hit = (rel >= 0) & (rel < table.shape[0])
            if bool(hit.any()):
                rows = table.to(out.dtype)[rel.clamp(0, table.shape[0] - 1)]   # (B, L, d)
                out = torch.where(hit.unsqueeze(-1), rows, out)
                missing &= ~hit
        if bool(missing.any()):
            raise KeyError("a soft prompt in this batch was deleted from the model host")
        return out

    # ---------- scoring ----------
    def batch_logits(self, policy: Policy, xs: list[str], ys_ids: list[list[int]], grad: bool = False,
                     share_prefixes: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced next-token logits at every reply position, in float32 unless the caller opens
        `self.autocast()` (training forwards do; reported metrics stay float32).

        Returns (logits (B, T, V) float32, targets (B, T) long, mask (B, T) bool), where position t
        predicts reply token t given x and y<t under `policy`. Rows that share a prompt (k replies to one
        input: best-of-N pools, RL groups, held-out samples) run its prefix once and give its KV cache to
        each of their replies (`share_prefixes=False`: every row its own prefix, the benchmark's baseline);
        gradients flow through the shared prefix as through k copies of it.
        """
        prefixes = [self.prefix_ids(policy, x) for x in xs]
        targets = torch.full((len(xs), max(len(y) for y in ys_ids)), self.pad_id, dtype=torch.long)
        mask = torch.zeros(targets.shape, dtype=torch.bool)
        for i, y in enumerate(ys_ids):
            targets[i, :len(y)] = torch.tensor(y)
            mask[i, :len(y)] = True
        distinct, rows = share_prefix_rows(prefixes) if share_prefixes else (prefixes, list(range(len(xs))))
        with self.use(policy) as model, torch.set_grad_enabled(grad):
            if len(distinct) < len(prefixes):
                logits = self._logits_after_shared_prefixes(model, distinct, rows, ys_ids)
            else:
                logits = self._logits_one_pass(model, prefixes, ys_ids)
        return logits, targets.to(self.device), mask.to(self.device)

    def _logits_one_pass(self, model, prefixes: list[list[int]], ys_ids: list[list[int]]) -> torch.Tensor:
        """(B, T, V) float32: one forward over every row's prefix + reply (right padding)."""
        input_ids, attn = right_pad([p + y for p, y in zip(prefixes, ys_ids)], self.pad_id)
        L, T = input_ids.shape[1], max(len(y) for y in ys_ids)
        # logits at position j predict token j+1: reply token t sits at len(prefix)+t. Only positions
        # from the shortest prefix on are computed (the lm_head over the prompt is wasted work).
        first = min(len(p) for p in prefixes) - 1
        index = torch.zeros((len(prefixes), T), dtype=torch.long)
        for i, (p, y) in enumerate(zip(prefixes, ys_ids)):
            index[i, :len(y)] = torch.arange(len(p) - 1, len(p) - 1 + len(y)) - first
        keep = torch.arange(first, L, device=self.device)
        out = model(input_ids=input_ids.to(self.device), attention_mask=attn.to(self.device), use_cache=False,
                    logits_to_keep=keep)
        logits = out.logits.float()  # (B, L - first, V)
        return torch.gather(logits, 1, index.to(self.device).unsqueeze(-1).expand(-1, -1, logits.size(-1)))

    def _logits_after_shared_prefixes(self, model, distinct: list[list[int]], rows: list[int],
                                      ys_ids: list[list[int]]) -> torch.Tensor:
        """(B, T, V) float32 over `_after_shared_prefixes`: the prefix's last position predicts reply token 0,
        reply position t (fed y_t) predicts token t + 1, so the replies are fed without their last token."""
        first, out = self._after_shared_prefixes(model, distinct, rows, [y[:-1] for y in ys_ids])
        return first[:, None] if out is None else torch.cat([first[:, None], out.logits.float()], 1)

    def _after_shared_prefixes(self, model, distinct: list[list[int]], rows: list[int], tails: list[list[int]],
                               **kw):
        """Each distinct prefix once (left padding, KV cached), its cache indexed out to its rows, then one
        forward over every row's `tails` tokens (right padding) on top of it. Returns (the logits after each
        row's prefix (B, V) float32, the tails' model output, or None when every tail is empty)."""
        from transformers import DynamicCache
        ids_u, attn_u = (t.to(self.device) for t in left_pad(distinct, self.pad_id))
        pos_u = (attn_u.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = model(input_ids=ids_u, attention_mask=attn_u, position_ids=pos_u, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        index = torch.tensor(rows, device=self.device)
        first = out.logits[:, -1].float()[index]
        T = max(len(t) for t in tails)
        if T == 0:
            return first, None
        ids, attn = right_pad(tails, self.pad_id, T)
        cache.reorder_cache(index)
        attn = torch.cat([attn_u[index], attn.to(self.device)], 1)
        pos = pos_u[index][:, -1:] + 1 + torch.arange(T, device=self.device)
        return first, model(input_ids=ids.to(self.device), attention_mask=attn, position_ids=pos,
                            past_key_values=cache, use_cache=True, **kw)

    @torch.no_grad()
    def reply_hidden_states(self, policy: Policy, xs: list[str], ys_ids: list[list[int]]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states at each reply token (B, T, H) float32, 1.0 where a row has a reply token (B, T)),
        after the final norm. The prompts run first (each distinct one once, as in `batch_logits`), the replies
        on their KV cache: the same forward whether or not rows share a prompt."""
        distinct, rows = share_prefix_rows([self.prefix_ids(policy, x) for x in xs])
        reply = right_pad(ys_ids, self.pad_id)[1].float()
        with self.use(policy) as model:
            _, out = self._after_shared_prefixes(model, distinct, rows, ys_ids, output_hidden_states=True)
        h = out.hidden_states[-1].float()
        return h, reply.to(self.device)

    def sequence_logprobs(self, policy: Policy, xs: list[str], ys_ids: list[list[int]],
                          batch_size: int = 16) -> list[float]:
        """log π(y|x) summed over reply tokens, for each pair."""
        out: list[float] = []
        for i in range(0, len(xs), batch_size):
            logits, targets, mask = self.batch_logits(policy, xs[i:i + batch_size], ys_ids[i:i + batch_size])
            out += sequence_logprob(logits, targets, mask).tolist()
        return out

    # ---------- generation ----------
    @torch.no_grad()
    def generate(self, policy: Policy, inputs: list[str], n_samples: int = 1, max_new_tokens: int = 48,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 32,
                 on_batch=None, share_prefixes: bool = True) -> Samples:
        """Sample `n_samples` replies per input; deterministic for a given seed, batch size and precision.

        A plain KV-cached loop (1.4x faster than `generate()` here), in the host's precision. The samples of one
        input share its prompt's prefill (`share_prefixes=False`: each row its own, the benchmark's baseline).
        A few rows from an adapter under bf16 decode with its rank-r matmuls in float32 (`adapter_decoding`).
        """
        flat = [x for x in inputs for _ in range(n_samples)]
        texts, ids, n_new = [], [], 0
        gen = torch.Generator().manual_seed(seed)
        for b in range(0, len(flat), batch_size):
            prefixes = [self.prefix_ids(policy, x) for x in flat[b:b + batch_size]]
            with self.use(policy) as model, adapter_decoding(self, policy.adapter, len(prefixes)):
                rows = self._sample_batch(model, prefixes, max_new_tokens, temperature, top_p, gen, share_prefixes)
            for reply in rows:
                ids.append(reply)
                texts.append(self.decode(reply))
                n_new += len(reply)
            if on_batch:
                on_batch(min(b + batch_size, len(flat)), len(flat))
        shape = lambda xs: [xs[i * n_samples:(i + 1) * n_samples] for i in range(len(inputs))]
        return Samples(inputs=list(inputs), texts=shape(texts), token_ids=shape(ids), n_new_tokens=n_new)

    def _sample_batch(self, model, prefixes: list[list[int]], max_new_tokens: int, temperature: float,
                      top_p: float, gen: torch.Generator, share: bool = True) -> list[list[int]]:
        from engine.kv_cache import BufferedCache
        distinct, rows = share_prefix_rows(prefixes) if share else (prefixes, list(range(len(prefixes))))
        input_ids, attn_u = (t.to(self.device) for t in left_pad(distinct, self.pad_id))
        rows = torch.tensor(rows, device=self.device)                         # (B,) each row's distinct prompt
        attn, pos_u = attn_u[rows], (attn_u.cumsum(-1) - 1).clamp(min=0)
        state = {"attn": attn, "pos": pos_u[rows], "cache": BufferedCache()}   # appends in place (kv_cache.py)

        def step(tokens):   # one KV-cached forward: each distinct prompt once, then one token per row
            if tokens is None:
                out = model(input_ids=input_ids, attention_mask=attn_u, position_ids=pos_u,
                            past_key_values=state["cache"], use_cache=True, logits_to_keep=1)
                if len(distinct) < len(prefixes):   # the k samples of one prompt share its prefill
                    state["cache"].reorder_cache(rows)
                return out.logits[:, -1][rows]                                  # (B, V)
            state["attn"] = torch.cat([state["attn"], attn.new_ones((len(prefixes), 1))], 1)
            state["pos"] = state["pos"][:, -1:] + 1
            out = model(input_ids=tokens[:, None], attention_mask=state["attn"], position_ids=state["pos"],
                        past_key_values=state["cache"], use_cache=True, logits_to_keep=1)
            return out.logits[:, -1]                                            # (B, V)
        return self.decode_loop(step, len(prefixes), max_new_tokens,
                                lambda logits: sample_next(logits.float(), temperature, top_p, gen))

    # ---------- the decode loop and the end of a reply (shared by plain and steered sampling) ----------
    def decode_loop(self, step, B: int, max_new_tokens: int, next_token) -> list[list[int]]:
        """The one sampling loop: `step(None)` prefills and `step(tokens)` feeds the last tokens (B,), each
        returning next-token logits; `next_token(logits) -> (B,)` picks. Rows stop at the end of a reply."""
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        out_tokens = []
        with self.autocast():
            logits = step(None)
            for _ in range(max_new_tokens):
                nxt = next_token(logits)
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                out_tokens.append(nxt)
                done |= self.ends_reply(nxt, out_tokens)
                if bool(done.all()):
                    break
                logits = step(nxt)
        return self.finish_rows(torch.stack(out_tokens, 1).tolist())

    def ends_reply(self, nxt: torch.Tensor, out_tokens: list[torch.Tensor]) -> torch.Tensor:
        """(B,) True where the token just sampled ends the reply: an end-of-turn token or, for a plain-text
        chat, the start of the next turn written out (e.g. "\nUser:")."""
        done = torch.isin(nxt, self.end_ids.to(nxt.device))
        if self.chat.stop_texts:
            tails = torch.stack(out_tokens[-8:], 1).tolist()          # the last few tokens of every row
            hit = [any(s in self.tok.decode(t) for s in self.chat.stop_texts) for t in tails]
            done |= torch.tensor(hit, device=nxt.device)
        return done

    def finish_rows(self, rows: list[list[int]]) -> list[list[int]]:
        """Sampled rows cut after their end-of-turn token; a row that wrote out a stop text ends before it,
        closed by the end-of-turn token (so teacher forcing scores what the policy meant to say)."""
        out = []
        for row in rows:
            end = next((i for i, t in enumerate(row) if t in self.chat.end_ids), None)
            row = row[:end + 1] if end is not None else row
            if self.chat.stop_texts:
                row = self._cut_at_stop(row)
            out.append(row)
        return out

    def _cut_at_stop(self, row: list[int]) -> list[int]:
        for i in range(len(row)):
            if any(s in self.tok.decode(row[:i + 1]) for s in self.chat.stop_texts):
                j = i
                while j > 0 and not any(s in self.tok.decode(row[j:i + 1]) for s in self.chat.stop_texts):
                    j -= 1
                return row[:j] + [self.eos_id]
        return row


def read_rows_as_matrix(linear: torch.nn.Linear) -> None:
    """Make `linear` (the lm_head) multiply its input as one (rows, features) matrix. transformers feeds it
    the last position sliced out of the prefill (`logits_to_keep=1`): a (B, 1, d) view with the prompt's
    strides, for which aten's matmul takes its batched path and copies the whole (V, d) weight, transposed,
    at every call (bf16, this model, one prefill of 25 tokens: 133 ms of a 213 ms forward; from the
    reshaped rows, 3 ms)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.linear(x.reshape(-1, x.shape[-1]), linear.weight, linear.bias)
        return out.view(*x.shape[:-1], out.shape[-1])
    linear.forward = forward


def share_prefix_rows(prefixes: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """(the distinct prompts in first-seen order, each row's index into them): k samples of one input are k
    rows with one prompt, whose prefill is computed once and its KV cache given to all k."""
    index: dict[tuple[int, ...], int] = {}
    rows = [index.setdefault(tuple(p), len(index)) for p in prefixes]
    return [list(p) for p in index], rows


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s)
        attn[i, L - len(s):] = 1
    return ids, attn


def right_pad(seqs: list[list[int]], pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    L = length or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, :len(s)] = 1
    return ids, attn


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> torch.Tensor:
    """One token per row from (B, V) logits by the Gumbel-max trick; temperature 0 is greedy.

    argmax(log p + g) with g ~ Gumbel(0, 1) is an exact sample from p. Drawing g from a seeded generator
    couples policies: with the same seed, two close policies pick the same tokens wherever their
    distributions agree, so differences in their rewards are measured with far less noise.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    logp = torch.log_softmax(logits / temperature, -1)
    if top_p < 1.0:
        logp = top_p_filter(logp.exp(), top_p).log()
    # the noise comes from the host's CPU generator on every device: the same seed draws the same samples
    u = torch.rand(logp.shape, generator=gen).to(logp.device).clamp_(min=1e-20)
    return (logp - torch.log(-torch.log(u))).argmax(-1)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose mass reaches top_p (always the top one); renormalize."""
    sorted_p, order = probs.sort(-1, descending=True)
    mass_before = sorted_p.cumsum(-1) - sorted_p  # (B, V): mass of strictly more likely tokens
    sorted_p = sorted_p.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return kept / kept.sum(-1, keepdim=True)
