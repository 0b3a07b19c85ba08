"""The one held-out measurement every method makes (engine/evaluation.py `held_out`), on a recording host."""
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from engine.config_pieces import Compute, HeldOut
from engine.evaluation import held_out, kl_concentration
from engine.policies import Policy


class RecordingHost:
    def __init__(self):
        self.calls = []
        self.model = SimpleNamespace(eval=lambda: self.calls.append("eval"))

    def generate(self, policy, inputs, n_samples, max_new_tokens, temperature, seed, batch_size, on_batch):
        self.calls.append((policy.label, list(inputs), n_samples, max_new_tokens, temperature, seed))
        if on_batch:
            on_batch(1, 1)
        return SimpleNamespace(flat=lambda: ([x for x in inputs for _ in range(n_samples)],
                                             [f"reply to {x}" for x in inputs for _ in range(n_samples)],
                                             [[1, 2] for _ in inputs for _ in range(n_samples)]))


@dataclass(frozen=True)
class Config(HeldOut, Compute):
    pass


def test_held_out_reads_the_heldout_piece_and_couples_policies_by_seed():
    host, stages = RecordingHost(), []
    ctx = SimpleNamespace(host=host, scenario=SimpleNamespace(heldout_inputs=["a", "b", "c", "d"]),
                          on_progress=lambda f, stage: stages.append((f, stage)))
    config = Config(n_heldout=3, eval_samples=2, eval_temperature=0.5, max_new_tokens=7, seed=10)
    reward = lambda xs, ys: [float(len(y)) for y in ys]
    s = held_out(ctx, config, Policy(label="trained"), reward, span=(0.2, 0.4))
    assert host.calls[:2] == ["eval", ("trained", ["a", "b", "c"], 2, 7, 0.5, 11)]   # seed + 1, first n_heldout
    assert s.sample_index == [0, 1] * 3 and s.rewards == [len("reply to a")] * 2 + [len("reply to b")] * 4
    assert stages == [(0.4, "held-out: trained generations")]
    held_out(ctx, config, Policy(label="base"), reward, seed_offset=7, n_inputs=2, n_samples=1)
    assert host.calls[-1] == ("base", ["a", "b"], 1, 7, 0.5, 17)                  # the live curves' slice


def test_kl_concentration_is_the_share_of_the_kl_its_largest_tokens_carry():
    spread = [torch.full((10,), 0.1), torch.full((10,), 0.1)]
    assert kl_concentration(spread, top=0.05) == pytest.approx(0.05)      # 1 token of 20 carries 1/20
    tail = [torch.tensor([0.0] * 9 + [3.0]), torch.tensor([0.1] * 10)]      # one token of 20 carries 3 of 4
    assert kl_concentration(tail, top=0.05) == pytest.approx(0.75)
    assert kl_concentration(tail, top=0.55) == pytest.approx(1.0)             # 11 tokens: all of it
    assert kl_concentration([torch.zeros(4)]) == 0.0
