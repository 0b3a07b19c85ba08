"""Rewards from their JSON spec; scenario files and their validation messages."""
import json

import pytest

from engine.errors import LabInputError
from engine.rewards import build_reward
from engine.scenarios import builtin_scenarios, load_scenario, parse_scenario


def test_keyword_reward_counts_whole_words_case_insensitively():
    r = build_reward({"kind": "keywords", "words": ["arr", "sea"]})
    assert r(["x", "x"], ["Arr! The SEA, the sea. Arrow season.", "nothing"]) == [3.0, 0.0]


def test_length_reward_is_minus_relative_distance_to_target():
    r = build_reward({"kind": "length", "target_words": 4})
    assert r(["x"] * 3, ["one two three four", "one two", "a b c d e f g h"]) == [0.0, -0.5, -1.0]


def test_sentiment_reward_orders_happy_over_sad():
    r = build_reward({"kind": "sentiment"})
    happy, sad = r(["x", "x"], ["I love this wonderful day!", "This is terrible and I hate it."])
    assert happy > 0.5 and sad < -0.5


@pytest.mark.parametrize("spec, field", [
    ({"kind": "nope"}, "reward.kind"),
    ({"kind": "keywords"}, "reward.words"),
    ({"kind": "keywords", "words": []}, "reward.words"),
    ({"kind": "length", "target_words": -3}, "reward.target_words"),
    ({"kind": "length", "target_words": 5, "extra": 1}, "reward.extra"),
    ({"words": ["a"]}, "reward"),
])
def test_bad_reward_specs_name_the_field(spec, field):
    with pytest.raises(LabInputError, match=field.replace(".", r"\.")):
        build_reward(spec)


def test_builtins_have_enough_varied_inputs_and_both_prompts():
    assert {"sentiment", "concise", "pirate"} <= set(builtin_scenarios())
    for name in ("sentiment", "concise", "pirate"):
        sc = load_scenario(name)
        assert len(sc.train_inputs) >= 48 and len(sc.heldout_inputs) >= 24
        assert len(set(sc.train_inputs)) == len(sc.train_inputs)
        assert not set(sc.train_inputs) & set(sc.heldout_inputs)
        assert sc.prompt and sc.negative_prompt and sc.prompt != sc.negative_prompt


def _valid() -> dict:
    return json.loads(json.dumps(load_scenario("sentiment").to_dict()))


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("prompt"), "scenario.prompt: missing"),
    (lambda d: d.update(prompt="   "), "scenario.prompt: must not be empty"),
    (lambda d: d.update(train_inputs=["a", "b"]), "scenario.train_inputs: needs at least"),
    (lambda d: d.update(heldout_inputs=[]), "scenario.heldout_inputs: needs at least"),
    (lambda d: d.update(heldout_inputs="abc"), "scenario.heldout_inputs: must be a list"),
    (lambda d: d.update(colour="blue"), "scenario.colour: unknown field"),
    (lambda d: d.update(reward={"kind": "bleu"}), "reward.kind: unknown kind"),
])
def test_bad_scenarios_name_the_field(mutate, field):
    d = _valid()
    mutate(d)
    with pytest.raises(LabInputError, match=field.replace(".", r"\.")):
        parse_scenario(d)


def test_scenario_file_round_trip_and_bad_json(tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({**_valid(), "name": "mine"}))
    assert load_scenario(str(good)).name == "mine"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabInputError, match="not valid JSON"):
        load_scenario(str(bad))
    with pytest.raises(LabInputError, match="neither a built-in"):
        load_scenario("no-such-scenario")
