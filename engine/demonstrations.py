"""Expert demonstrations D_demo = {(x_i, y_i*)} (Sun et al. 2024, §3.1.1 and §4.2): the data supervised
fine-tuning imitates and the adversarial discriminator tells apart from a policy's own replies.

A scenario carries them as `"expert_demonstrations": [{"input": x, "reply": y*}, ...]`; a JSONL file with one
such object a line replaces them for a run (`--demonstrations FILE` on the CLI, an upload in the page). They
are data, not prompt: a scenario's `"demonstrations"` are the worked examples inside its prompt z (turns the
chat renders after the system text), which Table 1's few-shot row is made of.

Demonstrations of held-out inputs are kept for measuring (the discriminator's held-out accuracy, SFT's
held-out likelihood); training only ever sees the others.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LabInputError
from engine.limits import MAX_DEMONSTRATION_BYTES as MAX_FILE_BYTES
from engine.limits import MAX_DEMONSTRATION_CHARS as MAX_TEXT_CHARS
from engine.limits import MAX_EXPERT_DEMONSTRATIONS as MAX_DEMONSTRATIONS

FIELD = "expert_demonstrations"


@dataclass(frozen=True)
class Demonstration:
    input: str
    reply: str

    def to_dict(self) -> dict:
        return {"input": self.input, "reply": self.reply}


def parse_demonstration(row: object, where: str) -> Demonstration:
    """One {"input", "reply"} object; every error names `where` (e.g. "line 3") and the key."""
    if not isinstance(row, dict):
        raise LabInputError(f'{where}: expected an object {{"input": ..., "reply": ...}}')
    extra = set(row) - {"input", "reply"}
    if extra:
        raise LabInputError(f"{where}: unknown key {sorted(extra)[0]!r} (allowed: input, reply)")
    for key in ("input", "reply"):
        if key not in row:
            raise LabInputError(f"{where}: missing {key!r}")
        if not isinstance(row[key], str) or not row[key].strip():
            raise LabInputError(f"{where}.{key}: must be non-empty text")
        if len(row[key]) > MAX_TEXT_CHARS:
            raise LabInputError(f"{where}.{key}: {len(row[key]):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    return Demonstration(row["input"].strip(), row["reply"].strip())


def parse_demonstrations(raw: object, field: str = f"scenario.{FIELD}") -> tuple[Demonstration, ...]:
    """A scenario's list of demonstrations, checked item by item."""
    if not isinstance(raw, list):
        raise LabInputError(f'{field}: must be a list of {{"input": ..., "reply": ...}} objects')
    _check_count(len(raw), field)
    return tuple(parse_demonstration(row, f"{field}[{i}]") for i, row in enumerate(raw))


def load_demonstration_file(path: str | Path, field: str = "demonstrations") -> tuple[Demonstration, ...]:
    """A JSONL file of {"input", "reply"} objects (blank lines skipped). Nothing is returned unless every
    line is good: an error names the line and the key."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LabInputError(f'{field}: no such file {str(path)!r}; give a JSONL file with one {{"input": ..., '
                            '"reply": ...}} per line')
    if p.stat().st_size > MAX_FILE_BYTES:
        raise LabInputError(f"{field}: {p.name} is {p.stat().st_size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise LabInputError(f"{field}: {p.name} is not UTF-8 text") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabInputError(f"{field}, line {n}: not valid JSON ({e.msg})") from None
        out.append(parse_demonstration(row, f"{field}, line {n}"))
        _check_count(len(out), field)
    if not out:
        raise LabInputError(f"{field}: {p.name} holds no demonstration")
    return tuple(out)


def _check_count(n: int, field: str) -> None:
    if n > MAX_DEMONSTRATIONS:
        raise LabInputError(f"{field}: more than {MAX_DEMONSTRATIONS:,} demonstrations; the limit is "
                            f"{MAX_DEMONSTRATIONS:,}")


def split_heldout(demos: tuple[Demonstration, ...], heldout_inputs: list[str]
                  ) -> tuple[list[Demonstration], list[Demonstration]]:
    """(train, held-out): demonstrations of the scenario's held-out inputs are only ever measured on."""
    held = set(heldout_inputs)
    return [d for d in demos if d.input not in held], [d for d in demos if d.input in held]


def require(demos: tuple[Demonstration, ...], scenario: str, minimum: int = 2) -> None:
    """A method that learns from demonstrations refuses a scenario without enough of them, saying how to add them."""
    if len(demos) < minimum:
        raise LabInputError(f"{FIELD}: scenario {scenario!r} has {len(demos)} expert demonstration(s) outside its "
                            f"held-out inputs, at least {minimum} are needed; add \"{FIELD}\" to the scenario or "
                            "give a JSONL file (--demonstrations FILE, or upload one in the page)")
