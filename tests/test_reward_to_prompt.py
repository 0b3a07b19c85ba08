"""reward -> prompt: exact numbers for Eq. 16's estimate and selection, the edit operators, Eq. 17's levels and
control prompts, Eq. 18; the exact-number reward and the arithmetic scenario; bad inputs; one short real run
per method on the embedded model through the job runner and storage."""
import importlib.util
import json
import math
import os
import random

import pytest
import torch

from engine.errors import LabInputError
from engine.policies import Prompt
from engine.prompt_search import (Candidate, add_demonstration, clean_prompt, drop_sentence, expected_reward,
                                  paired_advantage, per_input_means, pick_best, propose_edits, repeat_sentence,
                                  splice, swap_sentences, top_candidates, trim_reply)
from engine.registry import build_config, get_edge, get_method
from engine.reward_conditioning import (control_prompt, control_reward, level_batches, level_contrast_loss,
                                        level_name, level_of, level_thresholds, other_level, quantile_levels)
from engine.edges.reward_to_prompt import SearchConfig, read_candidates, seed_pool
from engine.rewards import build_reward, final_number
from engine.scenarios import load_scenario, parse_scenario
from engine.settings import ASSETS_DIR


# ---------- Eq. 16: the estimate and the selection ----------
def test_expected_reward_weighs_every_input_the_same():
    # input a: samples 1 and 0 -> 0.5; input b: one sample 4 -> 4; estimate (0.5 + 4) / 2, not 5 / 3
    assert per_input_means([1.0, 0.0, 4.0], ["a", "a", "b"]) == {"a": 0.5, "b": 4.0}
    assert expected_reward([1.0, 0.0, 4.0], ["a", "a", "b"]) == 2.25


def test_paired_advantage_is_mean_and_standard_error_of_per_input_differences():
    # d = (1, 2, 0): mean 1, sample variance 1, standard error sqrt(1/3); input "w" is only in a
    mean, se = paired_advantage({"x": 1.0, "y": 3.0, "z": 2.0, "w": 9.0}, {"x": 0.0, "y": 1.0, "z": 2.0})
    assert mean == 1.0 and math.isclose(se, math.sqrt(1 / 3))
    assert paired_advantage({"x": 2.0}, {"x": 0.5}) == (1.5, 0.0)


def _cand(text, per_input, it=0):
    return Candidate(text, "test", it, dict(per_input))


def test_candidate_score_top_candidates_and_ties():
    pool = [_cand("seed", {"a": 0.5, "b": 0.5}), _cand("x", {"a": 1.0, "b": 0.0}), _cand("y", {"a": 0.9, "b": 0.9})]
    assert [c.score for c in pool] == [0.5, 0.5, 0.9]
    assert [c.text for c in top_candidates(pool, 2)] == ["y", "seed"]  # seed before x at equal score


def test_pick_best_keeps_the_seed_unless_the_gain_clears_the_margin():
    seed = _cand("seed", {"a": 0.0, "b": 0.0, "c": 0.0})
    noisy = _cand("noisy", {"a": 1.0, "b": -0.8, "c": 0.1})   # gain 0.1, se ≈ 0.52
    clear = _cand("clear", {"a": 0.3, "b": 0.4, "c": 0.5})    # gain 0.4, se ≈ 0.058
    assert pick_best(seed, [noisy], margin=1.0) is seed
    assert pick_best(seed, [noisy], margin=0.0) is noisy
    assert pick_best(seed, [noisy, clear], margin=1.0) is clear
    assert pick_best(seed, [], margin=1.0) is seed
    assert pick_best(seed, [_cand("same", {"a": 0.0, "b": 0.0, "c": 0.0})], margin=0.0) is seed


# ---------- prompts: instruction + demonstration turns, edit operators ----------
DEMO = (("Hi", "Hello!"),)


def test_a_prompt_keeps_its_demonstration_turns_apart_from_the_instruction():
    z = Prompt("Be kind. Be brief.", DEMO)
    assert z.policy("p").system == "Be kind. Be brief." and z.policy("p").turns == DEMO
    assert z.quotes("Hi") and z.quotes("brief") and not z.quotes("Bye")
    assert Prompt.from_data(z.data()) == z and z.data()["demonstrations"] == [{"user": "Hi", "assistant": "Hello!"}]


def test_add_demonstration_adds_one_turn_pair_with_the_reply_trimmed():
    z = add_demonstration(Prompt("Be kind. ", DEMO), "Hey", "Hello! Nice to meet you. And then the")
    assert z == Prompt("Be kind.", DEMO + (("Hey", "Hello! Nice to meet you."),))
    assert trim_reply("No sentence end here") == "No sentence end here"
    assert trim_reply("Done. ") == "Done."


def test_edit_operators_on_sentences():
    rng = random.Random(0)
    head = "A one. B two! C three?"
    dropped = drop_sentence(head, "", rng)
    assert len(dropped.split(" ")) == 4 and set(dropped.split(" ")) < set(head.split(" "))
    swapped = swap_sentences(head, "", rng)
    assert sorted(swapped.split(" ")) == sorted(head.split(" ")) and swapped != head
    assert repeat_sentence("Be kind.", "", rng) == "Be kind. Be kind."
    assert splice("Be kind.", "Be kind. Smile!", rng) == "Be kind. Smile!"
    assert drop_sentence("Only one.", "", rng) is None and splice("Be kind.", "Be kind.", rng) is None


def test_propose_edits_keeps_tails_and_skips_repeats():
    out = propose_edits([Prompt("Be kind. Be warm.", DEMO)], [Prompt("Smile a lot.")], 3, random.Random(1))
    assert 1 <= len(out) <= 3 and len({t for t, _ in out}) == len(out)
    assert all(t.turns == DEMO and t.text != "Be kind. Be warm." and o.startswith("edit: ") for t, o in out)


def test_clean_prompt_takes_the_first_paragraph_without_labels_or_quotes():
    assert clean_prompt('New instruction: "Be warm and kind."\n\nThis rewrite adds warmth.') == "Be warm and kind."
    assert clean_prompt("ok") is None
    long = " ".join(["This is a sentence."] * 40)
    assert len(clean_prompt(long)) <= 400 and clean_prompt(long).endswith(".")


# ---------- Eq. 17 and 18: levels and control prompts ----------
def test_quantile_levels_are_equal_count_bins_and_ties_share_a_level():
    assert quantile_levels([0.1, 0.5, 0.3, 0.9], 2) == [1, 2, 1, 2]
    assert quantile_levels([5.0, 1.0, 3.0, 2.0, 4.0, 0.0], 3) == [3, 1, 2, 2, 3, 1]
    # ranks (2, 2, 2, 4): ceil(2 · 1.5 / 4) = 1, ceil(2 · 3.5 / 4) = 2
    assert quantile_levels([0.0, 0.0, 0.0, 1.0], 2) == [1, 1, 1, 2]


def test_level_thresholds_place_new_rewards_in_the_training_bins():
    rewards = [0.1, 0.5, 0.3, 0.9]
    thresholds = level_thresholds(rewards, [1, 2, 1, 2], 2)
    assert thresholds == [0.5]
    assert [level_of(r, thresholds) for r in (-1.0, 0.4, 0.5, 2.0)] == [1, 1, 2, 2]
    assert level_thresholds([0.0, 1.0], [1, 3], 3) == [None, 1.0]  # an empty level has no edge
    assert level_of(0.5, [None, 1.0]) == 1 and level_of(1.0, [None, 1.0]) == 2


def test_control_prompt_level_names_and_eq18():
    assert control_prompt("Reward level {level} of {levels}.", 3, 5) == "Reward level 3 of 5."
    assert control_prompt("Reward level {level} of {levels} ({name}).", 4, 4) == "Reward level 4 of 4 (very high)."
    assert [level_name(s, 4) for s in (1, 2, 3, 4)] == ["very low", "fairly low", "fairly high", "very high"]
    assert [level_name(s, 5) for s in (1, 3, 5)] == ["very low", "medium", "very high"]
    assert control_reward(4, 2) == -2 and control_reward(2, 2) == 0


def test_level_contrast_loss_and_its_gradient():
    own = torch.tensor([0.0, -1.0], requires_grad=True)
    other = torch.tensor([0.0, -2.0])
    loss = level_contrast_loss(own, other)   # −log σ(0) = log 2; −log σ(1) = log(1 + e^−1)
    assert math.isclose(loss.item(), (math.log(2) + math.log(1 + math.exp(-1))) / 2, rel_tol=1e-6)
    loss.backward()   # d/d own of −log σ(d) is −σ(−d), averaged over the 2 replies
    assert torch.allclose(own.grad, torch.tensor([-0.5, -1 / (1 + math.e)]) / 2, atol=1e-6)
    rng = random.Random(0)
    assert {other_level(2, 3, rng) for _ in range(50)} == {1, 3}


def test_level_batches_hold_one_level_and_cover_every_sample_once():
    levels = [1, 2, 1, 2, 2, 1, 3]
    batches = level_batches(levels, 2, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len(b) <= 2 and len({levels[i] for i in b}) == 1 for b in batches)


# ---------- the exact-number reward and the arithmetic scenario ----------
def test_final_number_reads_the_last_number():
    assert final_number("12 + 5 = 17.\nAnswer: 17") == 17.0
    assert final_number("That makes 1,200 apples.") == 1200.0
    assert final_number("It is -3, or 3.50 in total") == 3.5
    assert final_number("no numbers here") is None


def test_exact_number_reward_matches_golden_answers_per_input():
    r = build_reward({"kind": "exact-number", "answers": {"2+3?": 5, "7-1?": 6}})
    assert r(["2+3?", "2+3?", "7-1?", "7-1?"], ["Answer: 5", "5 or 6", "It is 6.", "6 apples, 7 pears"]) == \
        [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(LabInputError, match="reward.answers: no golden answer for input 'other'"):
        r(["other"], ["5"])


@pytest.mark.parametrize("spec", [{"kind": "exact-number"}, {"kind": "exact-number", "answers": {}},
                                  {"kind": "exact-number", "answers": {"a": "five"}},
                                  {"kind": "exact-number", "answers": ["a", 5]}])
def test_bad_exact_number_specs_name_the_field(spec):
    with pytest.raises(LabInputError, match=r"reward\.answers"):
        build_reward(spec)


def _make_arithmetic():
    path = ASSETS_DIR / "scenarios" / "make_arithmetic.py"
    spec = importlib.util.spec_from_file_location("make_arithmetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arithmetic_scenario_is_shipped_as_generated_and_answers_every_input():
    shipped = json.loads((ASSETS_DIR / "scenarios" / "arithmetic.json").read_text(encoding="utf-8"))
    assert _make_arithmetic().scenario() == shipped   # the generator is deterministic
    sc = load_scenario("arithmetic")
    assert len(sc.train_inputs) >= 64 and len(sc.heldout_inputs) >= 32
    assert not set(sc.train_inputs) & set(sc.heldout_inputs)
    answers = sc.reward_spec["answers"]
    assert set(answers) == set(sc.train_inputs + sc.heldout_inputs)
    x = sc.train_inputs[0]
    assert sc.reward()([x, x], [f"Answer: {answers[x]}", f"Answer: {answers[x] + 1}"]) == [1.0, 0.0]


def test_a_scenario_missing_a_golden_answer_names_the_field():
    data = load_scenario("arithmetic").to_dict()
    data["heldout_inputs"] = data["heldout_inputs"] + ["What is 1 plus 1?"]
    with pytest.raises(LabInputError, match="reward.answers: no golden answer for input 'What is 1 plus 1"):
        parse_scenario(data)


# ---------- seeds and bad input ----------
def test_seed_pool_puts_the_scenario_prompt_first_then_yours_then_the_list(tmp_path):
    sc = load_scenario("sentiment")
    f = tmp_path / "c.txt"
    f.write_text("# a comment\n\nListed one.\nTyped one.\n", encoding="utf-8")
    pool = seed_pool(SearchConfig(seed_prompts="Typed one. | " + sc.prompt, candidates_file=str(f)), sc)
    assert pool == [(Prompt(sc.prompt), "seed"), (Prompt("Typed one."), "yours"), (Prompt("Listed one."), "candidate list")]
    concise = seed_pool(SearchConfig(), load_scenario("concise"))
    assert len(concise) > 1                                                 # its own list in assets/prompts
    assert concise[0] == (load_scenario("concise").z, "seed") and concise[0][0].turns   # z with its turns


def _spec(method):
    return get_method(get_edge("reward", "prompt"), method)


def test_registry_lists_both_methods_with_their_metrics():
    edge = get_edge("reward", "prompt")
    assert set(edge.methods) == {"search", "conditioned"}
    assert edge.methods["search"].metrics == ("reward_none", "reward_seed", "reward_best")
    assert edge.methods["conditioned"].metrics == ("levels", "reward_by_level", "spearman_level_vs_reward")


@pytest.mark.parametrize("method, overrides, message", [
    ("search", {"budget": "0"}, "budget: 0 is out of range"),
    ("search", {"budget": "10"}, r"budget: 10 model calls cannot score one prompt .* at least 24"),
    ("search", {"candidates_file": "/nonexistent/prompts.txt"}, "candidates_file: no such file"),
    ("conditioned", {"levels": "1"}, "levels: 1 is out of range"),
    ("conditioned", {"control_format": "Be good."}, r"control_format: must contain \{level\}"),
    ("conditioned", {"lora_targets": "q_proj,nope"}, "nope is not a module"),
    ("conditioned", {"data_policies": "base,teacher"}, "data_policies: teacher is not a data policy"),
])
def test_bad_settings_name_the_field(method, overrides, message):
    with pytest.raises(LabInputError, match=message):
        build_config(_spec(method), overrides)


def test_empty_candidate_list_is_refused(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(LabInputError, match="candidates_file: empty.txt holds no prompts"):
        read_candidates(str(f))
    with pytest.raises(LabInputError, match="candidates_file: empty.txt holds no prompts"):
        build_config(_spec("search"), {"candidates_file": str(f)})


def test_a_reward_reference_to_a_missing_run_is_refused_before_the_run(lab):
    with pytest.raises(LabInputError, match="reward: no run with id 'nosuchrun'"):
        lab.prepare("reward", "prompt", "search", "sentiment", {"reward": "nosuchrun"})


# ---------- short real runs ----------
TINY_SEARCH = {"budget": 30, "search_inputs": 3, "search_samples": 1, "rewrites": 1, "edits": 1,
               "demonstrations": 1, "finalists": 1, "n_heldout": 4, "eval_samples": 1, "max_new_tokens": 12}
TINY_CONDITIONED = {"levels": 2, "n_train": 8, "steps": 3, "batch_size": 4, "n_heldout": 4, "eval_samples": 1,
                    "max_new_tokens": 12}


def _succeeded(lab, method, overrides, scenario="sentiment"):
    run_id = lab.run_now(lab.prepare("reward", "prompt", method, scenario, overrides))
    run = lab.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    return run_id, run


def test_short_search_run_spends_its_budget_and_stores_the_best_prompt(lab):
    run_id, run = _succeeded(lab, "search", TINY_SEARCH)
    m, art = run["metrics"], run["artifacts"][0]
    assert {"reward_none", "reward_seed", "reward_best"} <= set(m) and m["model_calls"] <= 30
    assert (art["kind"], art["vertex"]) == ("prompt", "prompt") and art["data"]["prompt_text"].strip()
    rows = lab.samples(run_id)
    candidates = [r for r in rows if r["policy"] == "candidate"]
    assert len(candidates) == m["n_candidates"] >= 6 and candidates[0]["output"] == "seed"
    assert art["data"]["prompt_text"] in {r["input"] for r in candidates}
    assert {r["policy"] for r in rows} == {"base", "seed", "best", "candidate"}
    if art["data"]["prompt_text"] == load_scenario("sentiment").prompt:
        assert m["reward_best"] == m["reward_seed"]   # the same prompt and seed: the same samples
    assert {"candidate_reward", "best_reward"} <= {p["name"] for p in lab.points(run_id)}


def test_short_conditioned_run_reports_every_level_and_saves_the_adapter(lab):
    run_id, run = _succeeded(lab, "conditioned", TINY_CONDITIONED)
    m, art = run["metrics"], run["artifacts"][0]
    assert m["levels"] == 2 and len(m["reward_by_level"]) == 2 and len(m["train_reward_by_level"]) == 2
    assert m["train_reward_by_level"][0] <= m["train_reward_by_level"][1]
    assert m["spearman_level_vs_reward"] in (-1.0, 1.0, None)   # two levels: a sign, or a tie
    assert (art["kind"], art["vertex"]) == ("prompt", "prompt")              # z(s) of the top level ...
    assert os.path.isfile(os.path.join(art["path"], "adapter_model.safetensors"))   # ... with its adapter
    assert art["data"]["control_format"] == "Reward level {level} of {levels} ({name})."
    assert art["data"]["prompt_text"] == "Reward level 2 of 2 (very high)."
    assert {r["policy"] for r in lab.samples(run_id)} == {"base", "level 1", "level 2"}
    assert [p["step"] for p in lab.points(run_id) if p["name"] == "loss"] == [1, 2, 3]
    assert m["n_train_samples"] == 8 * 3   # base, prompt and negative, one sample each per input


def test_a_reward_that_never_varies_fails_the_conditioned_run_and_leaves_nothing(lab):
    data = load_scenario("sentiment").to_dict() | {"reward": {"kind": "keywords", "words": ["xyzzyplugh"]}}
    overrides = TINY_CONDITIONED | {"data_policies": "base"}
    run = lab.run(lab.run_now(lab.prepare("reward", "prompt", "conditioned", data, overrides)))
    assert run["status"] == "failed" and run["error"].startswith("reward: all 8 training samples scored the same")
    assert run["artifacts"] == [] and lab.samples(run["run_id"]) == [] and lab.points(run["run_id"]) == []


def test_negative_data_policy_needs_a_negative_prompt(lab):
    data = load_scenario("sentiment").to_dict() | {"negative_prompt": ""}
    run = lab.run(lab.run_now(lab.prepare("reward", "prompt", "conditioned", data, TINY_CONDITIONED)))
    assert run["status"] == "failed" and run["error"] == "data_policies: the scenario has no negative_prompt; " \
                                                         "drop 'negative'"


# ---------- result charts ----------
def test_result_figures_for_search_and_conditioned():
    from app import plots
    from app.plots_reward_prompt import best_so_far
    rows = [{"policy": "candidate", "input": "z0", "output": "seed", "reward": 0.5, "iteration": 0, "candidate": 0},
            {"policy": "candidate", "input": "z1", "output": "edit: splice", "reward": 0.4, "iteration": 1,
             "candidate": 1},
            {"policy": "candidate", "input": "z2", "output": "model rewrite", "reward": 0.7, "iteration": 2,
             "candidate": 2},
            {"policy": "base", "input": "x", "output": "y", "reward": 0.1, "sample_index": 0}]
    assert best_so_far(rows[:3]) == [(0, 0.5), (1, 0.5), (2, 0.7)]
    bars, trajectory = plots.result_figures("reward->prompt", {"reward_none": 0.1, "reward_seed": 0.5,
                                                               "reward_best": 0.6}, rows)
    assert list(bars.data[0].x) == ["no prompt", "seed prompt", "best prompt"]
    assert [t.name for t in trajectory.data] == ["seed", "edit", "model rewrite", "best so far"]
    levels = [{"policy": f"level {s}", "input": "x", "output": "y", "reward": r, "sample_index": 0}
              for s, r in ((1, 0.1), (2, 0.3), (10, 0.9))]
    curve, spread = plots.result_figures("reward->prompt", {"levels": 2, "reward_by_level": [0.1, 0.3],
                                                            "train_reward_by_level": [0.0, 0.5],
                                                            "spearman_level_vs_reward": 1.0, "reward_base": 0.2},
                                         levels)
    assert list(curve.data[0].y) == [0.1, 0.3] and list(curve.data[1].y) == [0.0, 0.5]
    assert [t.name for t in spread.data] == ["level 1", "level 2", "level 10"]
