"""The chat format comes from the tokenizer (engine/chat_format.py): template, folded system, or plain text."""
import copy

import pytest

from engine.chat_format import PLAIN_STOP, discover
from engine.model_host import ModelHost
from engine.policies import Policy
from engine.scenarios import load_scenario

NO_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
             "supported') }}{% endif %}<turn>{{ m['role'] }}\n{{ m['content'] }}<end>\n{% endfor %}"
             "{% if add_generation_prompt %}<turn>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tok(host):
    return host.tok


def variant(tok, template):
    t = copy.deepcopy(tok)
    t.chat_template = template
    return t


def test_smollm2_uses_its_template_and_ends_turns_with_im_end(host):
    assert host.chat.kind == "template"
    assert host.tok.convert_ids_to_tokens(host.eos_id) == "<|im_end|>" and host.eos_id in host.chat.end_ids


def test_structured_demonstrations_render_exactly_as_the_old_chatml_prompt_did(host):
    """The built-in scenarios used to carry ChatML turns inside z; the same chat comes out of the template."""
    sc = load_scenario("concise")
    old = "".join([sc.prompt] + [f"<|im_end|>\n<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n{a}"
                                 for u, a in sc.demonstrations])
    x = "Describe a cat."
    assert host.prefix_ids(sc.prompt_policy(), x) == host.prefix_ids(Policy(system=old), x)


def test_the_soft_prompt_slot_is_where_the_system_text_starts(host):
    before, after = host.chat.prefix_ids_with_slot("Be kind.", "Hi")
    assert before + after == host.chat.prefix_ids("Be kind.", "Hi")
    assert host.tok.decode(after).startswith("Be kind.")


def test_a_model_without_a_chat_template_gets_a_plain_dialogue_that_stops_at_the_next_turn(tok):
    plain = discover(variant(tok, None))
    assert (plain.kind, plain.stop_texts, plain.end_id) == ("plain", (PLAIN_STOP,), tok.eos_token_id)
    assert plain.text("Be kind.", "Hi", (("Q?", "A."),)) == "Be kind.\n\nUser: Q?\nAssistant: A.\nUser: Hi\nAssistant:"
    before, after = plain.prefix_ids_with_slot("Be kind.", "Hi")
    assert before + after == plain.prefix_ids("Be kind.", "Hi")
    host = ModelHost.__new__(ModelHost)         # the host's end-of-reply logic over this format, no model needed
    host.tok, host.chat, host.eos_id = plain.tok, plain, plain.end_id
    said = plain.tok(" I am happy.\nUser: and you?", add_special_tokens=False)["input_ids"]
    assert host.finish_rows([said]) == [plain.reply_ids("I am happy.")]
    assert host.decode(host.finish_rows([said])[0]) == "I am happy."


def test_a_template_without_a_system_role_gets_the_system_text_in_the_first_user_turn(tok):
    folded = discover(variant(tok, NO_SYSTEM))
    assert folded.kind == "folded"
    assert folded.text("Be kind.", "Hi") == "<turn>user\nBe kind.\n\nHi<end>\n<turn>assistant\n"
    assert folded.tok.decode(folded.end_id) == "<"   # the first token the template writes after a reply


def test_the_judge_finds_its_score_tokens_from_the_tokenizer(host):
    prefix, ids = host.token_after("Score: ", [str(s) for s in range(1, 10)])
    assert prefix == host.tok("Score: ", add_special_tokens=False)["input_ids"]
    assert ids == [host.tok.convert_tokens_to_ids(str(s)) for s in range(1, 10)]
    with pytest.raises(ValueError, match="more than one token"):
        host.token_after("Score: ", ["1", "banana split"])


def test_lora_targets_default_to_the_models_attention_projections(host):
    from engine.lora import resolve_targets
    from engine.errors import LabInputError
    assert resolve_targets(host.model, "attention") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert resolve_targets(host.model, "mlp") == ["gate_proj", "up_proj", "down_proj"]
    with pytest.raises(LabInputError, match="this model has no c_attn module; its projections are q_proj"):
        resolve_targets(host.model, "c_attn")


def test_old_scenario_files_with_chatml_in_the_prompt_still_load():
    from engine.scenarios import parse_scenario
    data = load_scenario("concise").to_dict()
    turns = data.pop("demonstrations")
    data["prompt"] += "".join(f"<|im_end|>\n<|im_start|>user\n{t['user']}<|im_end|>\n<|im_start|>assistant\n"
                              f"{t['assistant']}" for t in turns)
    assert parse_scenario(data) == load_scenario("concise")
