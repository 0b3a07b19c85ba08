"""Pseudo-inputs for the transfer set (engine/pseudo_inputs.py): a reply's request, cleaned, and new ones only."""
import pytest

from engine.pseudo_inputs import MAX_WORDS, clean, pseudo_inputs
from engine.scenarios import load_scenario


@pytest.mark.parametrize("reply, want", [
    ("What is your favourite season?", "What is your favourite season?"),
    ("1. Describe a sunny beach.\nThat is my request.", "Describe a sunny beach."),
    ('- "Tell me about trains!"', "Tell me about trains!"),
    ("Sure! Here is one", None),                       # no request: does not end like one
    ("Hi.", None),                                     # one word
    (" ".join(["word"] * (MAX_WORDS + 1)) + "?", None),  # too long
])
def test_a_reply_s_first_line_is_kept_only_when_it_reads_as_a_short_request(reply, want):
    assert clean(reply) == want


def test_the_base_model_writes_new_inputs_none_of_them_train_or_held_out(host):
    sc = load_scenario("sentiment")
    xs = pseudo_inputs(host, sc.train_inputs, sc.heldout_inputs, 6, seed=0, max_new_tokens=24)
    known = {x.lower() for x in sc.train_inputs + sc.heldout_inputs}
    assert 0 < len(xs) <= 6 and len(set(xs)) == len(xs)
    assert all(x.lower() not in known and clean(x) == x for x in xs)
