"""What one run computes that the next would compute again, identically: kept in the worker's memory.

Context distillation's teacher side — the transfer set with its teacher tables, the held-out teacher and base
samples, the KL tables and the KL before — depends on the model, the precision, the scenario and a few sampling
settings, not on what the student trains with (lr, steps, batch, rank, ...). A user who opens a run and changes
its lr, or a class running one scenario with different training settings, gets it from here: the same numbers,
sooner. parameter -> prompt keeps π*'s samples and tables the same way. The key names everything the value
depends on (`ModelHost.memo_key` adds the model, device and precision); the memory is bounded
(`LAB_RUN_MEMO_MB`), least recently used entries go first.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

import torch


def nbytes(value: Any) -> int:
    """The bytes of every tensor inside `value` (dataclasses, lists, tuples, dicts), counted once each."""
    seen: set[int] = set()

    def walk(v) -> int:
        if isinstance(v, torch.Tensor):
            if id(v) in seen:
                return 0
            seen.add(id(v))
            return v.element_size() * v.nelement()
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return sum(walk(getattr(v, f.name)) for f in dataclasses.fields(v))
        if isinstance(v, dict):
            return sum(walk(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return sum(walk(x) for x in v)
        return 0
    return walk(value)


class RunMemo:
    """An LRU of computed values under a byte budget (tensor bytes). A value larger than the budget is
    computed and returned but not kept; budget 0 keeps nothing."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, whether it came from memory). Callers treat the value as read-only."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key][0], True
            self.misses += 1
        value = compute()
        size = nbytes(value)
        with self._lock:
            if 0 < self.budget and size <= self.budget:
                self._entries[key] = (value, size)
                while self.used() > self.budget:
                    self._entries.popitem(last=False)
        return value, False

    def used(self) -> int:
        return sum(size for _, size in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def reuse_text(*reused: bool) -> str:
    """A run's `teacher_side` metric: whether what it needed came from memory (all of it, some) or was computed."""
    return "from memory" if all(reused) else "partly from memory" if any(reused) else "computed"
