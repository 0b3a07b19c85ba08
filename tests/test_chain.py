"""Round trips: checking a path before anything runs, feeding each hop from the previous one, the storage
migration that adds `parent_id`, and short real chains through the lab."""
import dataclasses
import sqlite3

import pytest

from engine import chain
from engine.errors import LabInputError
from engine.registry import EDGES
from engine.scenarios import load_scenario

TINY_HOPS = {"steps": "2", "batch_size": "4", "n_train": "8", "teacher_samples": "1", "n_heldout": "4",
             "eval_samples": "1", "max_new_tokens": "12",
             "chain.n_heldout": "4", "chain.eval_samples": "1", "chain.max_new_tokens": "12"}


# ---------- checking a request (no model, nothing written) ----------
@pytest.mark.parametrize("path, message", [
    ("prompt,vertex", "vertex 'vertex' is unknown"),
    ("prompt", "give 2 to 4 vertices"),
    ("prompt,parameter,prompt,parameter,prompt", "give 2 to 4 vertices"),
    ("prompt,prompt", "stays at one vertex"),
])
def test_bad_paths_are_refused_with_the_reason(path, message):
    with pytest.raises(LabInputError, match=message):
        chain.parse_path(path)


def test_a_path_with_unbuilt_edges_names_them(monkeypatch):
    for name in ("parameter->prompt", "reward->prompt"):
        monkeypatch.setitem(EDGES, name, dataclasses.replace(EDGES[name], methods={}))
    with pytest.raises(LabInputError, match=r"edge parameter->prompt is not built yet; built: prompt->parameter"):
        chain.parse_path("prompt,parameter,prompt,reward")
    with pytest.raises(LabInputError, match="edges reward->prompt, parameter->prompt are not built yet"):
        chain.parse_path("reward,prompt,parameter,prompt")


def test_settings_go_to_the_hops_that_have_them():
    sc = load_scenario("sentiment")
    req = chain.prepare_chain("prompt,parameter,prompt", sc, None, {"steps": "3", "2.n_tokens": "4",
                                                                     "chain.seed": "5"})
    assert [h.edge.name for h in req.hops] == ["prompt->parameter", "parameter->prompt"]
    assert [h.method.name for h in req.hops] == ["kl", "soft"]
    assert req.hops[0].overrides == {"steps": "3"} and req.hops[1].overrides == {"steps": "3", "n_tokens": "4"}
    assert req.config.seed == 5
    with pytest.raises(LabInputError, match="n_tokens is not a setting of hop 1"):
        chain.prepare_chain("prompt,parameter,prompt", sc, None, {"1.n_tokens": "4"})
    with pytest.raises(LabInputError, match="nope is not a setting of any hop"):
        chain.prepare_chain("prompt,parameter,prompt", sc, None, {"nope": "1"})
    with pytest.raises(LabInputError, match="hop number 1…2"):
        chain.prepare_chain("prompt,parameter,prompt", sc, None, {"3.steps": "1"})
    with pytest.raises(LabInputError, match="steps: 0 is out of range"):
        chain.prepare_chain("prompt,parameter,prompt", sc, None, {"steps": "0"})


def test_a_soft_prompt_cannot_feed_a_hop_that_reads_a_readable_prompt():
    sc = load_scenario("sentiment")
    req = chain.prepare_chain("prompt,parameter,prompt,parameter", sc)
    assert [h.method.name for h in req.hops] == ["kl", "discrete", "kl"]   # discrete by default there
    with pytest.raises(LabInputError, match="makes a soft prompt; use its discrete method"):
        chain.prepare_chain("prompt,parameter,prompt,parameter", sc, ["kl", "soft", "kl"])
    with pytest.raises(LabInputError, match="starts at parameter needs the adapter"):
        chain.prepare_chain("parameter,prompt", sc)


def test_each_hop_is_fed_through_its_input_field():
    sc = load_scenario("sentiment")
    req = chain.prepare_chain("prompt,parameter,prompt,parameter", sc)
    adapter_run = {"run_id": "a1", "artifacts": [{"kind": "adapter", "data": {}}]}
    prompt_run = {"run_id": "p1", "artifacts": [{"kind": "prompt", "data": {"prompt_text": "Be jolly."}}]}
    assert chain.hop_inputs(req, 0, req.hops[0], None) == (sc, {})
    assert chain.hop_inputs(req, 1, req.hops[1], adapter_run) == (sc, {"source_run": "a1"})
    hop3_scenario, feed = chain.hop_inputs(req, 2, req.hops[2], prompt_run)
    assert feed == {} and hop3_scenario.prompt == "Be jolly." and hop3_scenario.train_inputs == sc.train_inputs
    with pytest.raises(LabInputError, match="hop 3 .* starts from a readable prompt, but hop 2 made adapter"):
        chain.hop_inputs(req, 2, req.hops[2], adapter_run)
    assert set(chain.INPUT_FIELD) == set(EDGES)   # every edge knows how it is fed


def test_cli_bad_path_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from storage import Store
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    assert main(["chain", "--scenario", "sentiment", "--path", "prompt,triangle", "--json"]) == 2
    assert "vertex 'triangle' is unknown" in capsys.readouterr().err
    assert main(["chain", "--scenario", "sentiment", "--path", "prompt,parameter", "--set", "1.nope=1"]) == 2
    assert Store(f"sqlite:///{tmp_path / 'lab.sqlite'}").list_runs() == []


# ---------- storage ----------
def test_store_adds_missing_columns_to_an_old_database(tmp_path):
    """A database made before `runs.parent_id` and `samples.extra` existed opens, keeps its rows, and gains them."""
    from storage import Store
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE runs (id VARCHAR(32) PRIMARY KEY, edge VARCHAR(40), method VARCHAR(40), scenario VARCHAR(200),
            config JSON, status VARCHAR(16), progress FLOAT, stage VARCHAR(200), metrics JSON, error TEXT,
            owner VARCHAR(80), created_at DATETIME, started_at DATETIME, finished_at DATETIME);
        CREATE TABLE samples (id INTEGER PRIMARY KEY, run_id VARCHAR(32) REFERENCES runs(id), policy VARCHAR(60),
            input TEXT, output TEXT, reward FLOAT, sample_index INTEGER);
        INSERT INTO runs VALUES ('old1', 'prompt->parameter', 'kl', 'sentiment', '{}', 'succeeded', 1.0, 'done',
            '{"kl_after": 0.1}', NULL, NULL, '2024-01-01 00:00:00', NULL, NULL);
        INSERT INTO samples VALUES (1, 'old1', 'base', 'x', 'y', 0.5, 0);
    """)
    con.close()
    st = Store(f"sqlite:///{path}")
    run = st.get_run("old1")
    assert run["metrics"] == {"kl_after": 0.1} and run["parent_id"] is None
    assert st.samples("old1") == [{"policy": "base", "input": "x", "output": "y", "reward": 0.5, "sample_index": 0}]
    child = st.create_run("parameter->prompt", "soft", "sentiment", {}, parent_id="old1")
    st.add_samples(child, [{"policy": "π*", "input": "x", "output": "y", "reward": 0.1, "sample_index": 0, "k": 2}])
    assert [c["run_id"] for c in st.children("old1")] == [child] and st.samples(child)[0]["k"] == 2
    again = Store(f"sqlite:///{path}")    # idempotent: migrated once, then at head
    from storage.database import current_revision, head_revision
    assert current_revision(again.engine) == head_revision() and again.get_run(child)["parent_id"] == "old1"


# ---------- short real chains ----------
def test_prompt_parameter_prompt_round_trip_reports_every_hop(lab):
    req = chain.prepare_chain("prompt,parameter,prompt", load_scenario("sentiment"), None,
                              {**TINY_HOPS, "lr": "0.003", "steps": "4", "2.lr": "0.05"}, lookup=lab.store.get_run)
    parent_id = chain.run_chain(lab, req)
    run = lab.run(parent_id)
    assert run["status"] == "succeeded", run["error"]
    assert (run["edge"], run["method"]) == ("chain", "prompt,parameter,prompt")
    out = chain.chain_summary(run)
    hops = out["hops"]
    assert [h["edge"] for h in hops] == ["prompt->parameter", "parameter->prompt"]
    children = lab.store.children(parent_id)
    assert [c["run_id"] for c in children] == [h["run_id"] for h in hops]
    assert all(c["parent_id"] == parent_id and c["status"] == "succeeded" for c in children)
    assert children[1]["config"]["method_config"]["source_run"] == children[0]["run_id"]   # hop 2 fed by hop 1
    for h in hops:
        assert 0 <= h["metrics"]["kl_to_origin"] and -1 <= h["metrics"]["reward"] <= 1
    assert hops[0]["metrics"]["kl_to_origin"] < out["origin"]["kl_base_to_origin"]   # distillation moved toward z
    assert {p["step"] for p in lab.points(parent_id) if p["name"] == "kl_to_origin"} == {0, 1, 2}


def test_a_hop_ending_at_the_reward_vertex_reports_agreement_not_kl(lab):
    """Queued from the page (start_chain): the worker rebuilds the request from the stored row and runs it."""
    sets = {"n_heldout": "4", "eval_samples": "1", "max_new_tokens": "12", "chain.n_heldout": "4",
            "chain.eval_samples": "2", "chain.max_new_tokens": "12"}
    request = chain.prepare_chain("prompt,reward", load_scenario("sentiment"), None, sets)
    with lab.jobs.exclusive:          # the worker waits: the row is visible as queued first
        parent_id = chain.start_chain(lab, request)
        assert lab.run(parent_id)["status"] == "queued" and lab.queue() == [parent_id]
        restored = chain.restore_chain(lab.run(parent_id)["config"])
        assert restored.config == request.config and [h.overrides for h in restored.hops] == \
            [h.overrides for h in request.hops] and restored.scenario == request.scenario
    lab.jobs.wait_idle(300)
    run = lab.run(parent_id)
    assert run["status"] == "succeeded", run["error"]
    m = run["metrics"]["hops"][0]["metrics"]
    assert m["kl_to_origin"] is None and m["reward"] is None and 0 <= m["pair_accuracy"] <= 1 and m["n_pairs"] > 0


def test_a_failing_hop_fails_the_chain_and_leaves_no_partial_parent_outputs(lab, monkeypatch):
    edge = EDGES["prompt->reward"]

    def boom(method, config, ctx):
        raise RuntimeError("the hop broke")
    spec = dataclasses.replace(edge.methods["contrastive"], run=boom)
    monkeypatch.setitem(EDGES, "prompt->reward", dataclasses.replace(edge, methods={"contrastive": spec}))
    sets = {"n_heldout": "4", "chain.n_heldout": "4", "chain.eval_samples": "1", "chain.max_new_tokens": "8"}
    parent_id = chain.run_chain(lab, chain.prepare_chain("prompt,reward", load_scenario("sentiment"), None, sets))
    run = lab.run(parent_id)
    assert run["status"] == "failed" and "hop 1 (prompt->reward" in run["error"] and "the hop broke" in run["error"]
    assert lab.samples(parent_id) == [] and lab.points(parent_id) == []
    [child] = lab.store.children(parent_id)
    assert child["status"] == "failed" and lab.samples(child["run_id"]) == []


def test_a_run_submitted_during_a_chain_waits_its_turn(lab):
    import time
    request = lab.prepare_task("best-of-n", "bon", "sentiment", {"n": "1", "n_heldout": 1, "max_new_tokens": 4})
    with lab.jobs.exclusive:          # what a chain holds for all its hops
        run_id = lab.submit(request)
        time.sleep(1.0)
        assert lab.run(run_id)["status"] == "queued"
    lab.jobs.wait_idle(120)
    assert lab.run(run_id)["status"] == "succeeded"
