"""The outcome reward model (Sun et al. §4.3): Eq. 8 and Eq. 9 on hand-made tensors, the pooling, best-of-N
under a learned reward, and a short real run whose reward artifact best-of-N then uses."""
import json
import math

import pytest
import torch

from engine.losses import outcome_loss
from engine.tasks.reward_from_data import OutcomeRMConfig, auc, bon_curves, correctness, within_input_pairs
from engine.reward_models import pool_hidden, train_outcome_head

log_sigmoid = lambda v: math.log(1 / (1 + math.exp(-v)))


def test_eq8_is_class_balanced_cross_entropy_on_the_logit():
    logits, right = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    expected = -log_sigmoid(2.0) - (log_sigmoid(1.0) + log_sigmoid(-0.5)) / 2
    assert outcome_loss(logits, right).item() == pytest.approx(expected, abs=1e-6)
    # each class is its own expectation: repeating a right reply changes nothing
    assert outcome_loss(torch.tensor([2.0, 2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, 0.0])).item() == \
        pytest.approx(expected, abs=1e-6)
    assert outcome_loss(torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0])).item() == pytest.approx(2 * math.log(2))
    assert outcome_loss(torch.tensor([0.3]), torch.tensor([1.0])).item() == pytest.approx(-log_sigmoid(0.3))


def test_eq9_labels_replies_by_the_golden_metric():
    assert correctness([1.0, 0.0, 0.49, 0.5], 0.5).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_auc_counts_right_over_wrong_pairs_with_half_ties():
    assert auc([0.9, 0.1, 0.5, 0.5], [1, 0, 1, 0]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert auc([0.3, 0.2], [1, 1]) is None


def test_bon_curves_select_by_the_learned_reward_and_by_the_oracle():
    # one input, 3 replies: references 1, 0, 0; the learned reward prefers reply 2 (wrong), then reply 0
    reference, learned = [1.0, 0.0, 0.0], [0.5, 0.0, 0.9]
    c = bon_curves({"orm": learned, "oracle": reference}, reference, 3, [1, 2, 3])
    assert [x["reward_orm"] for x in c] == pytest.approx([1 / 3, 1 / 3, 0.0])   # pairs: {0,1}→0, {0,2}→2, {1,2}→2
    assert [x["reward_oracle"] for x in c] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_golden_labels_become_within_input_preference_pairs():
    win, lose = within_input_pairs(["a", "a", "b", "a", "b"], [1, 0, 1, 0, 1])
    assert sorted(zip(win, lose)) == [(0, 1), (0, 3)]          # input b has no wrong reply: no pair


def test_pooling_reads_the_reply_tokens_only():
    h = torch.arange(2 * 4 * 2, dtype=torch.float32).view(2, 4, 2)
    reply = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)   # right padding after row 0's reply
    assert pool_hidden(h, reply, "last").tolist() == [h[0, 2].tolist(), h[1, 3].tolist()]
    assert pool_hidden(h, reply, "reply-mean")[0].tolist() == ((h[0, 1] + h[0, 2]) / 2).tolist()
    assert pool_hidden(h, reply, "mean+last").shape == (2, 4)


def test_outcome_head_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 6, generator=g)
    right = (feats[:, 0] + 0.5 * feats[:, 3] > 0.3).float()
    losses = []
    head = train_outcome_head(feats, right, steps=200, lr=0.05, l2=0.0, on_step=lambda s, l: losses.append(l))
    assert losses[0] == pytest.approx(2 * math.log(2)) and losses[-1] < 0.2
    with torch.no_grad():
        assert auc(head(feats).tolist(), right.tolist()) == 1.0


def test_best_of_n_cannot_ask_for_more_than_it_samples():
    from engine.errors import LabInputError
    with pytest.raises(LabInputError, match="more than heldout_samples"):
        OutcomeRMConfig(n="1,16", heldout_samples=8).validate()


def test_reward_model_run_then_best_of_n_with_its_reward(engine_cli):
    tiny = {"n_train": 6, "samples_per_input": 4, "n_heldout": 3, "heldout_samples": 4, "n": "1,2,4",
            "max_new_tokens": 20, "head_steps": 50}
    sets = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    p = engine_cli("reward-model", "--scenario", "arithmetic", *sets, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["status"], out["edge"], out["method"]) == ("succeeded", "reward-model", "outcome")
    m = out["metrics"]
    assert m["n_train_replies"] == 24 and 0 < m["positive_rate_train"] < 1
    assert [c["n"] for c in m["bon"]] == [1, 2, 4]
    for c in m["bon"]:
        assert max(c["reward_orm"], c["reward_confidence"]) <= c["reward_oracle"] + 1e-9
    first = m["bon"][0]                                                   # N = 1: nothing to select
    assert first["reward_orm"] == pytest.approx(first["reward_oracle"]) == pytest.approx(first["reward_confidence"])
    assert out["artifact"]["kind"] == "reward" and out["artifact"]["data"]["kind"] == "outcome"
    shown = json.loads(engine_cli("show", out["run_id"], "--json").stdout)
    assert len(shown["samples"]) == 12 and all(isinstance(s["derived"], float) for s in shown["samples"])
    b = engine_cli("bon", "--scenario", "arithmetic", "--n", "1,2", "--reward", out["run_id"], "--policy", "prompt",
                   "--set", "n_heldout=2", "--set", "max_new_tokens=16", "--json")
    assert b.returncode == 0, b.stderr
    assert [r["n"] for r in json.loads(b.stdout)["results"]] == [1, 2]
    p = engine_cli("reward-model", "--scenario", "arithmetic", "--method", "pairwise", "--set", "context=policy",
                   *sets, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["method"] == "pairwise" and out["artifact"]["data"]["objective"] == "pairwise"
    assert out["artifact"]["data"]["context_system"].startswith("Solve the math problem")   # read as z was
    assert [c["n"] for c in out["metrics"]["bon"]] == [1, 2, 4]


@pytest.mark.parametrize("sets, message", [
    (["--set", "pooling=max"], "pooling: 'max' is not one of"),
    (["--set", "n=1,32"], "more than heldout_samples"),
    (["--set", "samples_per_input=0"], "samples_per_input: 0 is out of range"),
])
def test_reward_model_bad_input_exits_2(engine_cli, sets, message):
    p = engine_cli("reward-model", "--scenario", "arithmetic", *sets, "--json")
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert json.loads(engine_cli("runs", "--json").stdout) == []
