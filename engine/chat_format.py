"""How a model's chat is written, discovered from its tokenizer: the one place that knows chat-control tokens.

Three kinds, chosen once by the model host:
  template   the tokenizer's own chat template, with a system role (ChatML for SmolLM2, Llama, Qwen, ...);
  folded     a template without a system role (Gemma): the system text opens the first user turn, as the
             template itself does when it folds a system message;
  plain      no chat template at all (a base model, e.g. the Gemma 3 270M GGUF): a plain-text dialogue
             "{system}\\n\\nUser: {x}\\nAssistant:", where a reply also ends where the model starts the next
             "\\nUser:" turn.
The end of a reply is the token the template writes after an assistant message (`<|im_end|>`,
`<end_of_turn>`), else the model's eos; every eos of the generation config ends a reply too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SENTINEL = "\u2063lab-sentinel\u2063"    # a text no template alters: finds where a part of the chat sits
PLAIN_STOP = "\nUser:"


@dataclass
class ChatFormat:
    tok: object
    kind: str                                  # "template", "folded" or "plain"
    end_id: int                                # closes every teacher-forced reply
    end_ids: frozenset[int] = field(default_factory=frozenset)   # any of these ends a sampled reply
    stop_texts: tuple[str, ...] = ()           # a sampled reply also ends before any of these texts

    # ---------- rendering ----------
    def text(self, system: str, x: str, turns: tuple[tuple[str, str], ...] = ()) -> str:
        """The chat up to the start of the assistant's reply, as text."""
        if self.kind == "plain":
            lines = [f"{system}\n"] if system else []
            lines += [f"User: {u}\nAssistant: {a}" for u, a in turns] + [f"User: {x}\nAssistant:"]
            return "\n".join(lines)
        msgs = self.messages(system, x, turns)
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def messages(self, system: str, x: str, turns: tuple[tuple[str, str], ...] = ()) -> list[dict]:
        dialogue = [m for u, a in turns for m in ({"role": "user", "content": u},
                                                   {"role": "assistant", "content": a})]
        dialogue.append({"role": "user", "content": x})
        if self.kind == "folded":
            if system:
                dialogue[0] = {"role": "user", "content": f"{system}\n\n{dialogue[0]['content']}"}
            return dialogue
        return [{"role": "system", "content": system}] + dialogue

    def prefix_ids(self, system: str, x: str, turns: tuple[tuple[str, str], ...] = ()) -> list[int]:
        """Token ids of the chat up to the assistant turn."""
        if self.kind == "plain":
            return self._bos() + self._encode(self.text(system, x, turns))
        ids = self.tok.apply_chat_template(self.messages(system, x, turns), tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def prefix_ids_with_slot(self, system: str, x: str, turns: tuple[tuple[str, str], ...] = ()
                             ) -> tuple[list[int], list[int]]:
        """(before, after): the chat's ids split where the system text starts (a soft prompt sits there)."""
        text = self.text(SENTINEL + system, x, turns)
        at = text.index(SENTINEL)
        head = self._bos() if self.kind == "plain" else []
        return head + self._encode(text[:at]), self._encode(text[at + len(SENTINEL):])

    @property
    def reply_lead(self) -> str:
        """What a reply starts with: in a plain dialogue "Assistant:" is followed by a space."""
        return " " if self.kind == "plain" else ""

    def reply_ids(self, y: str) -> list[int]:
        """Tokens of a reply as the model would emit them, closed by the end-of-turn token."""
        return self._encode(self.reply_lead + y) + [self.end_id]

    def describe(self) -> str:
        return {"template": "the model's chat template",
                "folded": "the model's chat template (no system role: the system text opens the first user turn)",
                "plain": 'plain-text dialogue "{system}\\n\\nUser: {x}\\nAssistant:" (the model has no chat template)',
                }[self.kind]

    # ---------- helpers ----------
    def _encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) if text else []

    def _bos(self) -> list[int]:
        bos = getattr(self.tok, "bos_token_id", None)
        return [bos] if bos is not None and getattr(self.tok, "add_bos_token", True) else []


def discover(tok, generation_config=None) -> ChatFormat:
    """The chat format of a tokenizer (and the model's generation config), see the module docstring."""
    eos = _ids(getattr(tok, "eos_token_id", None)) | _ids(getattr(generation_config, "eos_token_id", None))
    if not getattr(tok, "chat_template", None):
        end = tok.eos_token_id if tok.eos_token_id is not None else min(eos)
        return ChatFormat(tok, "plain", end, frozenset(eos | {end}), (PLAIN_STOP,))
    kind = "template" if _has_system_role(tok) else "folded"
    probe = ChatFormat(tok, kind, -1)
    end = _end_of_turn(probe) if _end_of_turn(probe) is not None else tok.eos_token_id
    return ChatFormat(tok, kind, end, frozenset(eos | {end}))


def _has_system_role(tok) -> bool:
    msgs = [{"role": "system", "content": SENTINEL}, {"role": "user", "content": "x"}]
    try:
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    except Exception:  # templates without a system role raise (e.g. "System role not supported")
        return False
    return SENTINEL in text


def _end_of_turn(fmt: ChatFormat) -> int | None:
    """The first token the template writes after an assistant message: its end-of-turn marker."""
    msgs = fmt.messages("", "x", ((("u", SENTINEL),))) + [{"role": "assistant", "content": "y"}]
    text = fmt.tok.apply_chat_template(msgs, tokenize=False)
    after = text[text.index(SENTINEL) + len(SENTINEL):]
    ids = fmt._encode(after)
    return ids[0] if ids else None


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}
