"""prompt -> reward: exact numbers for Eq. 14, Eq. 15, the Bradley-Terry loss, pair accuracy and Spearman;
bad inputs; one short real run per method on the embedded model through the job runner and storage."""
import json
import math
import os

import pytest
import torch

from engine.errors import LabInputError
from engine.jobs import prepare
from engine.losses import bradley_terry_loss
from engine.policies import Prompt
from engine.edges.prompt_to_reward import DERIVED, PromptPairConfig, prompt_pair
from engine.registry import build_config, config_fields, get_edge, get_method
from engine.reward_models import (contrastive_score, contrastive_token_scores, fill_template, judge_score,
                                  load_head, load_preference_file, preference_accuracy, save_head, train_head)
from engine.reward_models import build_model_reward
from engine.rewards import average_ranks, pair_accuracy, spearman
from engine.scenarios import load_scenario

TINY = {"n_heldout": 4, "eval_samples": 1, "max_new_tokens": 12}


# ---------- Eq. 14: probability-weighted judge score ----------
def test_judge_score_is_the_expected_digit_renormalized_over_score_tokens():
    # vocabulary of 5; tokens 1, 2, 3 are the scores 1, 5, 9; tokens 0 and 4 carry mass that must not count
    p = torch.tensor([[0.2, 0.4, 0.2, 0.2, 0.0], [0.7, 0.1, 0.1, 0.1, 0.0]]).clamp(min=1e-12)
    score = judge_score(p.log(), torch.tensor([1, 2, 3]), torch.tensor([1.0, 5.0, 9.0]))
    # row 0: (0.5, 0.25, 0.25) -> 0.5 + 1.25 + 2.25 = 4; row 1: uniform -> 5
    assert torch.allclose(score, torch.tensor([4.0, 5.0]), atol=1e-5)


def test_judge_template_fills_input_and_output_verbatim():
    assert fill_template("Q: {input} A: {output}", "a {b}", "c}") == "Q: a {b} A: c}"


# ---------- Eq. 15: contrastive scores ----------
def test_contrastive_token_scores_are_log_ratios_of_the_reply_tokens():
    plus = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]).log()
    minus = torch.tensor([[[0.25, 0.5, 0.25], [0.1, 0.2, 0.7], [0.9, 0.05, 0.05]]]).log()
    targets = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[True, True, False]])
    tok = contrastive_token_scores(plus, minus, targets, mask)
    assert torch.allclose(tok, torch.tensor([[math.log(2), math.log(4), 0.0]]), atol=1e-5)
    assert math.isclose(float(contrastive_score(tok, mask, "sum")[0]), math.log(8), rel_tol=1e-5)
    assert math.isclose(float(contrastive_score(tok, mask, "mean")[0]), math.log(8) / 2, rel_tol=1e-5)


# ---------- Bradley-Terry ----------
def test_bradley_terry_loss_and_gradient():
    r_c = torch.tensor([0.0, 1.0], requires_grad=True)
    r_r = torch.tensor([0.0, 0.0])
    loss = bradley_terry_loss(r_c, r_r)
    assert math.isclose(loss.item(), (math.log(2) + math.log(1 + math.exp(-1))) / 2, rel_tol=1e-6)
    loss.backward()  # d/dr+ of −log σ(d) is −σ(−d), averaged over the 2 pairs
    assert torch.allclose(r_c.grad, torch.tensor([-0.5, -1 / (1 + math.e)]) / 2, atol=1e-6)


def test_head_learns_a_separable_preference_and_survives_save_and_load(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, 6, generator=g) * 3 + 10  # large offset: standardization matters
    chosen, rejected = base.clone(), base.clone()
    chosen[:, 2] += 1.0  # the preferred reply is higher along one direction
    head = train_head(chosen, rejected, steps=100, lr=0.05, l2=0.0)
    assert preference_accuracy(head, chosen, rejected) == 1.0
    assert preference_accuracy(head, chosen[:0], rejected[:0]) is None
    loaded = load_head(save_head(head, tmp_path / "h.safetensors", "test"))
    assert torch.equal(loaded(chosen), head(chosen))


# ---------- agreement with the reference ----------
def test_pair_accuracy_compares_only_within_an_input_and_skips_reference_ties():
    groups = ["a", "a", "a", "b", "b"]
    ref = [1.0, 2.0, 2.0, 0.0, 5.0]
    derived = [0.0, 3.0, 1.0, 7.0, 7.0]
    # a: (0,1) right, (0,2) right, (1,2) tied in ref -> skipped; b: (3,4) tied in derived -> half
    acc, n = pair_accuracy(derived, ref, groups)
    assert (acc, n) == (2.5 / 3, 3)
    assert pair_accuracy([1.0, 2.0], [0.0, 0.0], ["x", "x"]) == (None, 0)


def test_average_ranks_share_ties():
    assert average_ranks([10.0, 20.0, 20.0, 5.0]) == [2.0, 3.5, 3.5, 1.0]


def test_spearman_is_pearson_on_average_ranks():
    assert math.isclose(spearman([1, 2, 3, 4], [10, 20, 30, 400]), 1.0)
    assert math.isclose(spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)
    # ranks a = (1, 2.5, 2.5, 4), b = (1, 2, 3, 4): cov 4.5, var_a 4.5, var_b 5 -> 4.5 / sqrt(22.5)
    assert math.isclose(spearman([1, 2, 2, 3], [1, 2, 3, 4]), 4.5 / math.sqrt(22.5), rel_tol=1e-12)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


# ---------- bad input ----------
def _spec(method="contrastive"):
    return get_method(get_edge("prompt", "reward"), method)


def test_prompt_pair_comes_from_the_scenario_or_typed_fields_and_must_differ():
    sc = load_scenario("sentiment")
    assert prompt_pair(PromptPairConfig(), sc) == (sc.z, Prompt(sc.negative_prompt))
    assert prompt_pair(PromptPairConfig(z_plus="nice", z_minus="mean"), sc) == (Prompt("nice"), Prompt("mean"))
    concise = load_scenario("concise")                    # z+ keeps the scenario's demonstration turns
    assert prompt_pair(PromptPairConfig(), concise)[0].turns == concise.demonstrations != ()
    no_negative = sc.__class__(**{**sc.__dict__, "negative_prompt": ""})
    with pytest.raises(LabInputError, match="z_minus: empty, and the scenario has no negative_prompt"):
        prompt_pair(PromptPairConfig(), no_negative)
    with pytest.raises(LabInputError, match="z_minus: identical to z_plus"):
        prompt_pair(PromptPairConfig(z_minus=sc.prompt), sc)


@pytest.mark.parametrize("method, overrides, message", [
    ("contrastive", {"z_plus": "Be kind.", "z_minus": "Be kind."}, "z_minus: identical to z_plus"),
    ("judge", {"judge_template": "  "}, "judge_template: must not be empty"),   # blank only where blank is the default
    ("contrastive", {"aggregate": "max"}, "aggregate: 'max' is not one of sum, mean"),
    ("judge", {"judge_template": "Rate {input}."}, r"judge_template: must contain \{output\}"),
    ("contrastive", {"judge_template": "Rate {input} {output}."}, "judge_template: unknown setting for contrastive"),
])
def test_bad_settings_name_the_field(method, overrides, message):
    with pytest.raises(LabInputError, match=message):
        build_config(_spec(method), overrides)


def test_each_method_shows_only_the_settings_it_reads():
    names = {m: {f["name"] for f in config_fields(_spec(m))} for m in ("judge", "contrastive", "bradley-terry")}
    shared = {"z_plus", "z_minus", "n_heldout", "eval_samples", "eval_temperature", "max_new_tokens", "seed"}
    assert all(shared <= n for n in names.values())
    assert names["judge"] - shared == {"judge_template", "judge_criterion", "precision"}
    assert names["contrastive"] - shared == {"aggregate", "precision"}
    assert {"preference_file", "pairs_per_input", "head_steps", "head_l2", "val_fraction"} <= names["bradley-terry"]
    assert not names["bradley-terry"] & {"judge_template", "aggregate"}


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "x", "chosen": "a", "rejected": "b"}', "{not json"], "line 2: not valid JSON"),
    (['{"prompt": "x", "rejected": "b"}'], "line 1: missing 'chosen'"),
    (['{"prompt": "x", "chosen": "a", "rejected": ""}'], "line 1: 'rejected' must be non-empty text"),
    (['{"prompt": "x", "chosen": "a", "rejected": 3}'], "line 1: 'rejected' must be non-empty text"),
    (['["x", "a", "b"]'], "line 1: expected an object"),
    (['{"prompt": "x", "chosen": "same", "rejected": "same"}'], "line 1: 'chosen' and 'rejected' are the same"),
    (['{"prompt": "x", "chosen": "a", "rejected": "b"}', ""], "holds 1 preference pair"),
])
def test_malformed_preference_files_are_refused_naming_line_and_field(tmp_path, lines, message):
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(LabInputError, match="preference_file"):
        load_preference_file(str(path))
    with pytest.raises(LabInputError, match=message):  # refused before a run is created
        prepare("prompt", "reward", "bradley-terry", "sentiment", {"preference_file": str(path)})


def test_missing_preference_file_and_unknown_model_reward():
    with pytest.raises(LabInputError, match="preference_file: no such file"):
        build_config(_spec("bradley-terry"), {"preference_file": "/nonexistent/prefs.jsonl"})
    with pytest.raises(LabInputError, match="reward.kind: 'sentiment' is not a model reward"):
        build_model_reward({"kind": "sentiment"}, host=None)


# ---------- short real runs ----------
def _run(lab, method, overrides):
    run_id = lab.run_now(lab.prepare("prompt", "reward", method, "sentiment", {**TINY, **overrides}))
    run = lab.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    m = run["metrics"]
    assert 0.0 <= m["pair_accuracy"] <= 1.0 and m["n_pairs"] > 0
    assert -1.0 <= m["spearman"] <= 1.0
    assert m["n_outputs"] == 3 * TINY["n_heldout"] * TINY["eval_samples"]
    art = run["artifacts"][0]
    assert (art["kind"], art["vertex"], art["data"]["kind"]) == ("reward", "reward", method)
    return run_id, run, art


def _check_rows_and_rebuild(lab, host, run_id, art):
    rows = lab.samples(run_id)  # the derived score is stored beside the reference reward of each output
    assert {r["policy"] for r in rows} == {"base", "positive", "negative"}
    assert all(isinstance(r[DERIVED], float) and isinstance(r["reward"], float) for r in rows)
    rebuilt = build_model_reward(art["data"], host)([r["input"] for r in rows[:3]], [r["output"] for r in rows[:3]])
    assert rebuilt == pytest.approx([r[DERIVED] for r in rows[:3]], rel=1e-3, abs=1e-3)


def test_short_contrastive_run(lab, host):
    run_id, run, art = _run(lab, "contrastive", {})
    assert art["path"] is None and art["data"]["z_minus"] == load_scenario("sentiment").negative_prompt
    _check_rows_and_rebuild(lab, host, run_id, art)


def test_short_judge_run(lab, host):
    run_id, run, art = _run(lab, "judge", {})
    assert all(1.0 <= r[DERIVED] <= 9.0 for r in lab.samples(run_id))
    assert "{input}" in art["data"]["template"] and "{criterion}" not in art["data"]["template"]
    _check_rows_and_rebuild(lab, host, run_id, art)


def test_short_bradley_terry_run_on_rlcd_pairs(lab, host):
    run_id, run, art = _run(lab, "bradley-terry", {"n_train": 8, "pairs_per_input": 1, "head_steps": 30,
                                                   "val_fraction": 0.25})
    assert os.path.isfile(art["path"]) and art["data"]["head"] == art["path"]
    m = run["metrics"]
    assert m["n_train_pairs"] == 6 and 0.0 <= m["head_val_accuracy"] <= 1.0
    assert 0.0 <= m["pair_label_accuracy"] <= 1.0
    assert {p["name"] for p in lab.points(run_id)} == {"loss"}
    _check_rows_and_rebuild(lab, host, run_id, art)


def test_bradley_terry_trains_on_a_preference_file(lab, tmp_path):
    pairs = [{"prompt": f"Describe thing {i}.", "chosen": "It is lovely and wonderful!",
              "rejected": "It is awful and boring."} for i in range(6)]
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in pairs), encoding="utf-8")
    _, run, art = _run(lab, "bradley-terry", {"preference_file": str(path), "head_steps": 30})
    assert run["metrics"]["n_train_pairs"] == 5 and art["data"]["source"] == str(path)


def test_a_scenario_without_negative_prompt_fails_naming_the_field(lab):
    data = load_scenario("sentiment").to_dict() | {"negative_prompt": ""}
    run = lab.run(lab.run_now(lab.prepare("prompt", "reward", "contrastive", data, TINY)))
    assert run["status"] == "failed" and run["error"].startswith("z_minus: empty")
    assert run["artifacts"] == [] and lab.samples(run["run_id"]) == []
