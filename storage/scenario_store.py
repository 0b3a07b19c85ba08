"""A scenario is stored once, by the SHA-256 of its canonical JSON: runs refer to it by that hash."""
from __future__ import annotations

import hashlib
import json


def canonical_json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def scenario_hash(data: dict) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of a scenario's canonical JSON."""
    raw = canonical_json(data)
    return hashlib.sha256(raw).hexdigest(), len(raw)
