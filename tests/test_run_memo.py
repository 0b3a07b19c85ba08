"""engine/run_memo.py on hand-made values: tensor bytes, least recently used first out, the budget."""
from dataclasses import dataclass

import torch

from engine.run_memo import RunMemo, nbytes, reuse_text


@dataclass
class Side:
    tables: list
    number: float


def test_nbytes_counts_every_tensor_inside_once():
    t = torch.zeros(10, dtype=torch.float32)
    value = Side([t, torch.zeros(4, dtype=torch.bfloat16)], 1.0)
    assert nbytes(value) == 40 + 8
    assert nbytes({"a": (t, t), "b": "text"}) == 40   # the same tensor twice is one tensor's memory


def test_a_hit_returns_the_same_value_without_computing_it():
    memo, calls = RunMemo(1 << 20), []
    compute = lambda: calls.append(1) or torch.ones(3)
    first, hit1 = memo.get_or_compute("k", compute)
    second, hit2 = memo.get_or_compute("k", compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1) and second is first
    assert (memo.hits, memo.misses) == (1, 1)


def test_past_the_budget_the_least_recently_used_goes_and_a_value_over_it_is_not_kept():
    memo = RunMemo(100)
    memo.get_or_compute("a", lambda: torch.zeros(10))    # 40 bytes
    memo.get_or_compute("b", lambda: torch.zeros(10))
    memo.get_or_compute("a", lambda: torch.zeros(10))    # a used again: b is now the oldest
    memo.get_or_compute("c", lambda: torch.zeros(10))    # 120 bytes > 100: b leaves
    assert memo.get_or_compute("a", lambda: None)[1] and memo.get_or_compute("c", lambda: None)[1]
    assert not memo.get_or_compute("b", lambda: torch.zeros(1))[1]
    assert memo.used() <= 100
    big, hit = memo.get_or_compute("big", lambda: torch.zeros(26))   # 104 bytes: returned, not kept
    assert big.numel() == 26 and not hit and not memo.get_or_compute("big", lambda: torch.zeros(26))[1]
    assert RunMemo(0).get_or_compute("x", lambda: 1) == (1, False)


def test_reuse_text_says_all_some_or_none():
    assert [reuse_text(True, True), reuse_text(True, False), reuse_text(False, False), reuse_text(True)] == \
        ["from memory", "partly from memory", "computed", "from memory"]
