"""Storage on in-memory SQLite: runs, points, samples, artifacts, interrupted runs, cleanup."""
from storage import Store


def test_run_life_cycle_and_outputs():
    st = Store("sqlite://")
    rid = st.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {"steps": 3}})
    assert st.get_run(rid)["status"] == "queued"
    st.mark_started(rid, owner="1@h")
    st.add_points(rid, 1, {"loss": 0.5, "kl_heldout": 0.1})
    st.add_points(rid, 2, {"loss": 0.25})
    st.add_samples(rid, [{"policy": "base", "input": "x", "output": "y", "reward": 0.1, "sample_index": 0,
                          "derived": 2.5}])
    aid = st.add_artifact(rid, "adapter", "parameter", "/tmp/a", {"adapter_name": "cd"})
    st.mark_finished(rid, "succeeded", metrics={"kl_before": 0.1, "kl_after": 0.01})
    run = st.get_run(rid)
    assert run["status"] == "succeeded" and run["progress"] == 1.0 and run["metrics"]["kl_after"] == 0.01
    assert run["duration_s"] is not None and run["artifacts"][0]["id"] == aid
    assert [p["value"] for p in st.points(rid) if p["name"] == "loss"] == [0.5, 0.25]
    assert st.samples(rid)[0]["reward"] == 0.1 and st.samples(rid)[0]["derived"] == 2.5
    assert [r["run_id"] for r in st.list_runs(scenario="sentiment")] == [rid]
    assert st.list_runs(scenario="pirate") == []


def test_interrupted_runs_are_marked_except_live_owners():
    st = Store("sqlite://")
    dead = st.create_run("prompt->parameter", "kl", "s", {})
    st.mark_started(dead, owner="999999@gone")
    alive = st.create_run("prompt->parameter", "kl", "s", {})
    st.mark_started(alive, owner="1@here")
    marked = st.mark_interrupted(is_alive=lambda owner: owner == "1@here")
    assert marked == [dead]
    assert st.get_run(dead)["status"] == "interrupted" and "start it again" in st.get_run(dead)["error"]
    assert st.get_run(alive)["status"] == "running"


def test_clear_outputs_and_delete_cascade():
    st = Store("sqlite://")
    rid = st.create_run("prompt->parameter", "kl", "s", {})
    st.add_points(rid, 0, {"loss": 1.0})
    st.add_artifact(rid, "adapter", "parameter", "/x")
    st.clear_run_outputs(rid)
    assert st.points(rid) == [] and st.artifacts(run_id=rid) == []
    st.add_points(rid, 0, {"loss": 1.0})
    st.delete_run(rid)
    assert st.get_run(rid) is None and st.points(rid) == []


def test_file_database_persists(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'lab.sqlite'}"
    rid = Store(url).create_run("prompt->parameter", "kl", "s", {"a": [1, 2]})
    assert Store(url).get_run(rid)["config"] == {"a": [1, 2]}
