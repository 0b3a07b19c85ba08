"""A class on one lab, without a model: visitors own their runs, each queues a bounded number, a public lab caps
the costly settings, no input can outgrow the machine, and a queued run knows its ETA."""
import dataclasses
import json
from datetime import datetime, timedelta

import pytest

from engine import limits
from engine.api import Lab
from engine.errors import LabInputError
from engine.queue_eta import queue_eta, run_length, time_left
from engine.registry import EDGES, TASKS, build_config
from engine.scenarios import load_scenario, parse_scenario
from engine.settings import Settings
from engine.visitors import OPERATOR, Visitor, api_visitor, token_id, valid_token, visitor

ADMIN = "admin-token-for-tests-0123"
TOKEN_A, TOKEN_B = "a" * 24, "b" * 24


def _no_host():
    raise AssertionError("owners, limits and queue positions must not need the model")


def _lab(tmp_path, **settings) -> Lab:
    s = Settings(model="embedded", data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'lab.sqlite'}", threads=1,
                 worker=False, **settings)
    return Lab(settings=s, host_factory=_no_host)


def _submit(lab, who: Visitor, **overrides) -> str:
    return lab.submit(lab.prepare("prompt", "parameter", "kl", "sentiment", overrides, who=who), who=who)


# ---------- identities ----------
def test_a_visitor_is_known_by_the_hash_of_its_token_or_by_its_account():
    a = visitor(ADMIN, TOKEN_A)
    assert a.id == token_id(TOKEN_A) and TOKEN_A not in a.id and not a.admin
    assert visitor(ADMIN, "short").id is None and not valid_token("with space and long enough")
    assert visitor(ADMIN, TOKEN_A, account="ada").id == "hf:ada"          # a signed-in account wins
    assert visitor(ADMIN, None, credential=ADMIN).admin and not visitor("", None, credential="").admin
    with pytest.raises(LabInputError, match="admin_token: not this lab's admin token"):
        api_visitor(ADMIN, TOKEN_A, "guess")
    with pytest.raises(LabInputError, match="visitor_token: must be 16–128"):
        api_visitor(ADMIN, "x", "")


def test_only_the_owner_or_an_admin_cancels_or_deletes_a_run_when_the_lab_is_shared(tmp_path):
    lab = _lab(tmp_path, multi_user=True, admin_token=ADMIN)
    a, b, admin = lab.visitor(TOKEN_A), lab.visitor(TOKEN_B), lab.visitor(None, ADMIN)
    mine, legacy = _submit(lab, a), lab.store.create_run("prompt->parameter", "kl", "sentiment", {})
    assert lab.run(mine)["visitor"] == a.id and lab.run(legacy)["visitor"] is None
    for act in (lambda: lab.cancel(mine, b), lambda: lab.delete_run(mine, b)):
        with pytest.raises(LabInputError, match=f"run {mine} belongs to another visitor: only its owner or an admin"):
            act()
    with pytest.raises(LabInputError, match="has no owner"):
        lab.cancel(legacy, a)
    assert lab.cancel(mine, a) and lab.delete_run(mine, a)["deleted"]
    assert lab.cancel(legacy, admin) and lab.delete_run(legacy, OPERATOR)["deleted"]   # the CLI may


def test_in_single_user_mode_anyone_may_as_before(tmp_path):
    lab = _lab(tmp_path)
    a, b = lab.visitor(TOKEN_A), lab.visitor(TOKEN_B)
    runs = [_submit(lab, a) for _ in range(5)]                         # no queue limit either
    assert lab.cancel(runs[0], b) and lab.delete_run(runs[0], b)["deleted"]


def test_a_visitor_queues_at_most_the_limit_and_nothing_is_lost(tmp_path):
    lab = _lab(tmp_path, multi_user=True, admin_token=ADMIN, max_queued_per_visitor=2)
    a, b = lab.visitor(TOKEN_A), lab.visitor(TOKEN_B)
    first = [_submit(lab, a) for _ in range(2)]
    with pytest.raises(LabInputError, match="you already have 2 runs waiting .*LAB_MAX_QUEUED_PER_VISITOR"):
        _submit(lab, a)
    with pytest.raises(LabInputError, match="you already have 2 runs waiting"):
        lab.rerun(first[0], a)
    _submit(lab, b), _submit(lab, lab.visitor(None, ADMIN))            # others, and an admin, still may
    lab.cancel(first[0], a)
    _submit(lab, a)                                                    # a place is free again
    assert lab.store.queued_count(a.id) == 2


def test_a_visitor_of_a_shared_lab_may_not_name_files_on_its_machine(tmp_path):
    lab = _lab(tmp_path, multi_user=True)
    with pytest.raises(LabInputError, match="preference_file: reads a file on the lab's machine"):
        lab.prepare("prompt", "reward", "bradley-terry", "sentiment", {"preference_file": "/etc/passwd"},
                    who=lab.visitor(TOKEN_A))


# ---------- LAB_PUBLIC caps ----------
def test_every_default_fits_the_public_caps_and_more_is_refused_by_name(tmp_path):
    sentiment = load_scenario("sentiment")
    for spec in [m for e in list(EDGES.values()) + list(TASKS.values()) for m in e.methods.values()]:
        limits.check_public_caps(build_config(spec, {}), sentiment)
    lab = _lab(tmp_path, public=True)
    with pytest.raises(LabInputError, match="steps: 500 is over this public lab's cap of 160"):
        _submit(lab, lab.visitor(TOKEN_A), steps=500)
    with pytest.raises(LabInputError, match="steps × batch_size: 2,560 training examples is over"):
        _submit(lab, lab.visitor(TOKEN_A), steps=160, batch_size=16)
    bon = lab.prepare_task("best-of-n", "bon", "sentiment", {"n": "1,4,64"})
    with pytest.raises(LabInputError, match="n: 64 is over"):
        lab.submit(bon, lab.visitor(TOKEN_A))
    big = {**sentiment.to_dict(), "heldout_inputs": [f"Say {i}." for i in range(100)]}
    with pytest.raises(LabInputError, match="n_heldout: 100 is over this public lab's cap of 32"):   # 0 = all 100
        lab.submit(lab.prepare_task("best-of-n", "bon", big, {}), lab.visitor(TOKEN_A))
    assert _submit(lab, lab.visitor(None, ""), steps=60, batch_size=32)   # 1,920 examples: at the cap
    lab_admin = _lab(tmp_path / "x", public=True, admin_token=ADMIN)
    assert _submit(lab_admin, lab_admin.visitor(None, ADMIN), steps=500)   # an admin is not capped


# ---------- no input can take the lab down ----------
def _scenario(**changes) -> dict:
    return {**load_scenario("sentiment").to_dict(), **changes}


def test_huge_inputs_are_refused_before_any_work_naming_the_field_and_the_limit():
    words = " ".join(["word"] * 200_000)
    with pytest.raises(LabInputError, match=r"scenario\.train_inputs\[0\]: 999,999 characters long; the limit "
                                            r"is 32,000 characters"):
        parse_scenario(_scenario(train_inputs=[words] * 8))
    with pytest.raises(LabInputError, match=r"scenario\.heldout_inputs: 2,001 inputs; the limit is 2,000"):
        parse_scenario(_scenario(heldout_inputs=["Hi."] * 2001))
    with pytest.raises(LabInputError, match=r"scenario\.prompt: 40,000 characters"):
        parse_scenario(_scenario(prompt="x" * 40_000))
    with pytest.raises(LabInputError, match=r"scenario\.demonstrations: 33 demonstrations; the limit is 32"):
        parse_scenario(_scenario(demonstrations=[{"user": "a", "assistant": "b"}] * 33))
    with pytest.raises(LabInputError, match=r"scenario\.demonstrations\[1\]\.assistant: 32,001 characters"):
        parse_scenario(_scenario(demonstrations=[{"user": "a", "assistant": "b"}, {"user": "a", "assistant": "y" * 32_001}]))
    with pytest.raises(LabInputError, match=r"scenario \(its inputs together\): 1,60.,... bytes; the limit is "
                                            "1,000,000 bytes"):
        parse_scenario(_scenario(train_inputs=["z" * 20_000] * 80))


def test_a_scenario_or_preference_file_too_large_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(_scenario(description="d" * 1_100_000)))
    with pytest.raises(LabInputError, match="scenario file big.json: 1,1.* bytes; the limit is 1,000,000 bytes"):
        load_scenario(str(big))
    from engine.reward_models import load_preference_file
    row = json.dumps({"prompt": "p", "chosen": "good", "rejected": "bad"})
    (tmp_path / "many.jsonl").write_text("\n".join([row] * 5001))
    with pytest.raises(LabInputError, match="many.jsonl: 5,001 preference pairs; the limit is 5,000"):
        load_preference_file(str(tmp_path / "many.jsonl"))
    (tmp_path / "long.jsonl").write_text(row + "\n" + json.dumps({"prompt": "p", "chosen": "c" * 40_000,
                                                                  "rejected": "r"}))
    with pytest.raises(LabInputError, match="line 2: 'chosen': 40,000 characters"):
        load_preference_file(str(tmp_path / "long.jsonl"))
    (tmp_path / "huge.jsonl").write_text("x" * 5_000_001)
    with pytest.raises(LabInputError, match="huge.jsonl: 5,000,001 bytes; the limit is 5,000,000"):
        load_preference_file(str(tmp_path / "huge.jsonl"))


def test_texts_over_the_token_limit_are_refused_by_field():
    def words(texts):   # a stand-in tokenizer: one token per word
        return [len(t.split()) for t in texts]
    ok = parse_scenario(_scenario())
    limits.check_scenario_tokens(ok, words, 64)
    long_input = parse_scenario(_scenario(heldout_inputs=ok.heldout_inputs[:3] + ["w " * 65]))
    with pytest.raises(LabInputError, match=r"scenario\.heldout_inputs\[3\]: 65 tokens long; the limit is 64 tokens"):
        limits.check_scenario_tokens(long_input, words, 64)
    demos = parse_scenario(_scenario(demonstrations=[{"user": "u " * 40, "assistant": "a " * 40}] * 2))
    with pytest.raises(LabInputError, match="prompt z with its demonstrations is .* tokens; the limit is 128"):
        limits.check_scenario_tokens(demos, words, 64)
    assert limits.token_limit(512, 8192) == 512 and limits.token_limit(4096, 8192) == 2048


# ---------- queue position and ETA ----------
def test_a_runs_length_is_the_median_of_its_method_with_the_same_settings_else_any():
    history = [({"steps": 3, "seed": 1}, 30.0), ({"steps": 3}, 50.0), ({"steps": 3}, 40.0), ({"steps": 40}, 600.0)]
    assert run_length({"steps": 3, "seed": 9}, history) == 40.0        # the seed does not count
    assert run_length({"steps": 20}, history) == 45.0                  # no such settings: the method's median
    assert run_length({"steps": 3}, []) is None
    assert time_left(100.0, 30.0, 0.5) == 70.0 and time_left(None, 30.0, 0.25) == 90.0
    assert time_left(None, 30.0, 0.0) is None and time_left(10.0, 30.0, 0.9) == 0.0


def test_a_queued_run_waits_for_what_runs_and_what_is_ahead():
    now = datetime(2026, 12, 2, 12, 0, 0)
    cd = {"edge": "prompt->parameter", "method": "kl", "config": {"method_config": {"steps": 3}}}
    running = [{**cd, "started_at": (now - timedelta(seconds=20)).isoformat(), "progress": 0.2}]
    history = {("prompt->parameter", "kl"): [({"steps": 3}, 60.0)]}.get
    eta = queue_eta(cd, [cd, {**cd, "method": "imitation"}], running, lambda e, m: history((e, m), []), now)
    assert eta == {"wait_s": 40.0 + 60.0, "run_s": 60.0, "unknown": 1}    # the imitation run has no timing
    assert queue_eta(cd, [], [], lambda e, m: [], now) == {"wait_s": 0, "run_s": None, "unknown": 0}


def test_the_lab_tells_a_queued_run_its_place_and_eta(tmp_path):
    lab = _lab(tmp_path, multi_user=True)
    done = _submit(lab, lab.visitor(TOKEN_A), steps=3)
    lab.store.claim_next("w@h")
    lab.store.mark_finished(done, "succeeded", {})
    a, b = _submit(lab, lab.visitor(TOKEN_A), steps=3), _submit(lab, lab.visitor(TOKEN_B), steps=3)
    assert lab.queue() == [b, a]                                        # a was served already
    eta = lab.queue_estimate(a)
    assert eta["position"] == 2 and eta["unknown"] == 0 and eta["run_s"] == pytest.approx(lab.run(done)["duration_s"], abs=0.1)
    assert lab.queue_estimate(done) is None


def test_settings_default_to_single_user_and_turn_multi_user_on_a_space_or_with_an_admin_token(monkeypatch):
    from engine.settings import load_settings
    for name in ("SPACE_ID", "LAB_ADMIN_TOKEN", "LAB_MULTI_USER", "LAB_PUBLIC"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert not s.multi_user and not s.public and s.max_queued_per_visitor == 3 and s.max_input_tokens == 512
    monkeypatch.setenv("SPACE_ID", "me/lab")
    assert load_settings().multi_user
    monkeypatch.setenv("LAB_MULTI_USER", "0")
    assert not load_settings().multi_user
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.setenv("LAB_MULTI_USER", "auto")
    monkeypatch.setenv("LAB_ADMIN_TOKEN", ADMIN)
    assert dataclasses.replace(load_settings()).multi_user


def test_the_page_opens_on_the_visitors_own_run_never_a_strangers(tmp_path):
    from app.main import opening_run
    lab = _lab(tmp_path, multi_user=True)
    a, b = lab.visitor(TOKEN_A), lab.visitor(TOKEN_B)
    run_a = _submit(lab, a)
    assert opening_run(lab, None, a) == run_a and opening_run(lab, None, b) is None
    run_b = _submit(lab, b)
    assert opening_run(lab, None, b) == run_b and opening_run(lab, run_a, b) == run_a   # a link opens any run
    assert opening_run(_lab(tmp_path), None, b) == run_b          # single-user: the active run, whoever's


def test_an_input_over_the_token_limit_is_refused_with_the_models_tokenizer(settings, host):
    """The real tokenizer: refused when the run is prepared in a process that has the model, and by the worker
    before any work when it was queued elsewhere (e.g. `python -m engine submit`)."""
    lab = Lab(settings=dataclasses.replace(settings, max_input_tokens=64, worker=False), host_factory=lambda: host)
    long = _scenario(heldout_inputs=["Tell me about trains. " * 30] + load_scenario("sentiment").heldout_inputs[1:])
    queued = lab.enqueue(lab.prepare("prompt", "parameter", "kl", long))   # no model loaded here yet: queued
    assert lab.jobs.work(until_idle=True) == 1
    run = lab.run(queued)
    assert run["status"] == "failed" and run["error"].startswith("scenario.heldout_inputs[0]: 150 tokens long; the "
                                                                 "limit is 64 tokens")
    with pytest.raises(LabInputError, match=r"scenario\.heldout_inputs\[0\]: 150 tokens long"):
        lab.prepare("prompt", "parameter", "kl", long)                       # the model is loaded now
