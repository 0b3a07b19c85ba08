"""Storage on SQLite and on a real PostgreSQL server: runs, points, samples, artifacts, the durable queue's
atomic claim, cancel flags, recovery of dead runners, scenarios stored once, migrations from the previous
release's schema, and SQLite's journal on local vs network filesystems."""
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text, update

from storage import Run, Store
from storage.database import (
    current_revision,
    filesystem_type,
    head_revision,
    journal_mode,
    migrate,
    schema_differences,
    sqlite_journal_mode,
)
from storage.models import utcnow
from storage.scenario_store import scenario_hash

SCENARIO = {"name": "sentiment", "prompt": "Be upbeat.", "train_inputs": ["a", "b"], "heldout_inputs": ["c"]}
RELEASE_DUMP = Path(__file__).parent / "data" / "lab_release_a080209.sql"


def test_run_life_cycle_and_outputs(db_url):
    st = Store(db_url)
    rid = st.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {"steps": 3}})
    assert st.get_run(rid)["status"] == "queued"
    st.mark_started(rid, owner="1@h")
    st.add_points(rid, 1, {"loss": 0.5, "kl_heldout": 0.1})
    st.add_points(rid, 2, {"loss": 0.25})
    st.add_samples(rid, [{"policy": "base", "input": "x", "output": "y", "reward": 0.1, "sample_index": 0,
                          "derived": 2.5}])
    aid = st.add_artifact(rid, "adapter", "parameter", "/tmp/a", {"adapter_name": "cd"})
    st.mark_finished(rid, "succeeded", metrics={"kl_before": 0.1, "kl_after": 0.01, "stderr": float("nan")})
    run = st.get_run(rid)
    assert run["status"] == "succeeded" and run["progress"] == 1.0 and run["metrics"]["kl_after"] == 0.01
    assert run["duration_s"] is not None and run["artifacts"][0]["id"] == aid
    assert [p["value"] for p in st.points(rid) if p["name"] == "loss"] == [0.5, 0.25]
    assert st.samples(rid)[0]["reward"] == 0.1 and st.samples(rid)[0]["derived"] == 2.5
    assert [r["run_id"] for r in st.list_runs(scenario="sentiment")] == [rid]
    assert st.list_runs(scenario="pirate") == []
    st.update_run(rid, stage="x" * 500)                     # PostgreSQL's VARCHAR(200) would refuse it
    assert st.get_run(rid)["stage"] == "x" * 200


def test_interrupted_runs_are_marked_except_live_owners(db_url):
    st = Store(db_url)
    dead = st.create_run("prompt->parameter", "kl", "s", {})
    st.mark_started(dead, owner="999999@gone")
    alive = st.create_run("prompt->parameter", "kl", "s", {})
    st.mark_started(alive, owner="1@here")
    queued = st.create_run("prompt->parameter", "kl", "s", {})
    marked = st.recover(is_alive=lambda owner: owner == "1@here")
    assert marked == [dead]
    assert st.get_run(dead)["status"] == "interrupted" and "Run again" in st.get_run(dead)["error"]
    assert st.get_run(alive)["status"] == "running"
    assert st.get_run(queued)["status"] == "queued"        # the queue outlives the process


def test_a_runner_elsewhere_is_judged_by_its_heartbeat(db_url):
    st = Store(db_url)
    fresh, stale = (st.create_run("prompt->parameter", "kl", "s", {}) for _ in range(2))
    for rid in (fresh, stale):
        st.mark_started(rid, owner="7@other-machine")
    with st.session.begin() as s:
        s.execute(update(Run).where(Run.id == stale).values(heartbeat_at=utcnow() - timedelta(seconds=300)))
    assert st.recover(is_alive=lambda owner: None, stale_after_s=90) == [stale]
    st.heartbeat([fresh])
    assert st.get_run(fresh)["status"] == "running"


def test_clear_outputs_and_delete_cascade(db_url):
    st = Store(db_url)
    rid = st.create_run("prompt->parameter", "kl", "s", {})
    st.add_points(rid, 0, {"loss": 1.0})
    st.add_artifact(rid, "adapter", "parameter", "/x")
    st.clear_run_outputs(rid)
    assert st.points(rid) == [] and st.artifacts(run_id=rid) == []
    st.add_points(rid, 0, {"loss": 1.0})
    st.delete_run(rid)
    assert st.get_run(rid) is None and st.points(rid) == []


def test_database_persists_across_stores(db_url):
    rid = Store(db_url).create_run("prompt->parameter", "kl", "s", {"a": [1, 2]})
    assert Store(db_url).get_run(rid)["config"] == {"a": [1, 2]}


# ---------- the queue ----------
def test_claims_are_atomic_in_order_and_never_shared(db_url):
    st = Store(db_url)
    ids = [st.create_run("prompt->parameter", "kl", "s", {}) for _ in range(39)]
    ids.append(st.create_run("chain", "prompt,parameter", "s", {}))           # a round trip is queued work too
    st.create_run("prompt->parameter", "kl", "s", {}, parent_id=ids[0])       # its hops are not: it runs them
    assert st.queued() == ids
    claimed, errors = [], []
    lock = threading.Lock()

    def worker(name):
        try:
            other = Store(db_url)    # its own engine and connections, as another process would have
            while (rid := other.claim_next(name)) is not None:
                with lock:
                    claimed.append(rid)
            other.engine.dispose()
        except Exception as e:       # noqa: BLE001 — reported below, a thread's error would be lost
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(f"w{i}@h",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(claimed) == sorted(ids)                                     # each exactly once
    assert {st.get_run(r)["status"] for r in ids} == {"running"}
    assert st.queued() == [] and st.claim_next("late@h") is None


def test_cancel_a_queued_run_now_and_flag_a_running_one(db_url):
    st = Store(db_url)
    queued, running, done = (st.create_run("prompt->parameter", "kl", "s", {}) for _ in range(3))
    st.mark_started(running, owner="1@h")
    st.mark_finished(done, "succeeded", {})
    assert st.request_cancel(queued) == "cancelled" and st.get_run(queued)["status"] == "cancelled"
    assert st.claim_next("w@h") is None                                       # the other is no longer queued
    assert st.report_progress(running, 0.5, "step 1/4") is False
    assert st.request_cancel(running) == "requested"
    assert st.report_progress(running, 0.6, "step 2/4") is True               # the runner learns it here
    assert st.request_cancel(done) is None


# ---------- scenarios stored once ----------
def test_a_scenario_is_stored_once_and_comes_back_with_its_runs(db_url):
    st = Store(db_url)
    a = st.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}, "scenario_data": SCENARIO})
    b = st.create_run("best-of-n", "bon", "sentiment", {"method_config": {}, "scenario_data": dict(SCENARIO)})
    digest, size = scenario_hash(SCENARIO)
    assert st.scenario_rows() == [{"hash": digest, "name": "sentiment", "size": size}]
    with st.engine.connect() as conn:
        raw = conn.execute(text("SELECT config FROM runs WHERE id = :id"), {"id": a}).scalar()
    assert "Be upbeat" not in str(raw) and digest in str(raw)                  # the run holds the hash only
    assert Store(db_url).get_run(b)["config"]["scenario_data"] == SCENARIO    # a fresh store reads it back
    st.delete_run(a)
    assert len(st.scenario_rows()) == 1                                       # b still uses it
    st.delete_run(b)
    assert st.scenario_rows() == []


# ---------- migrations ----------
def test_a_new_database_is_at_head_and_matches_the_models(db_url):
    st = Store(db_url)
    assert current_revision(st.engine) == head_revision() and schema_differences(st.engine) == []


def test_the_migrations_from_the_first_revision_give_the_models_schema(db_url):
    """0001 (the previous release's tables) with that release's rows, then every later migration."""
    from storage.database import make_engine
    engine = make_engine(db_url)
    assert migrate(engine, "0001") == "0001"
    config = {"method_config": {"steps": 3}, "scenario_data": SCENARIO}
    with engine.begin() as conn:
        for rid, status in (("r1", "succeeded"), ("r2", "queued")):
            conn.execute(text("INSERT INTO runs (id, edge, method, scenario, config, status, progress, stage, "
                              "metrics, created_at) VALUES (:id, 'prompt->parameter', 'kl', 'sentiment', :c, :s, "
                              "0, '', '{}', :t)"), {"id": rid, "c": _json(config), "s": status, "t": utcnow()})
    assert migrate(engine) == head_revision() and schema_differences(engine) == []
    st = Store(db_url)
    assert st.get_run("r1")["config"]["scenario_data"] == SCENARIO and len(st.scenario_rows()) == 1
    assert st.claim_next("w@h") == "r2"


def test_a_database_of_the_previous_release_is_migrated_at_start_up(tmp_path):
    """The SQLite file that release's own storage code wrote (tests/data: its dump), opened by this one."""
    path = tmp_path / "lab.sqlite"
    con = sqlite3.connect(path)
    con.executescript(RELEASE_DUMP.read_text())
    con.close()
    st = Store(f"sqlite:///{path}")
    assert current_revision(st.engine) == head_revision() and schema_differences(st.engine) == []
    cd = st.list_runs(edge="prompt->parameter")[0]
    run = st.get_run(cd["run_id"])
    assert run["metrics"] == {"kl_before": 0.2, "kl_after": 0.05} and run["model"] == "embedded:smollm2-135m"
    assert run["config"]["scenario_data"]["name"] == "sentiment" and st.points(cd["run_id"])[0]["value"] == 0.5
    assert st.samples(cd["run_id"])[0]["derived"] == 1.5 and run["artifacts"][0]["data"] == {"adapter_name": "cd"}
    assert [r["name"] for r in st.scenario_rows()] == ["sentiment", "pirate"]  # 3 runs, 2 distinct scenarios
    search = st.list_runs(edge="reward->prompt")[0]["run_id"]
    assert st.queued() == [search]                                            # its queued run is still queued


def _json(obj) -> str:
    import json
    return json.dumps(obj)


# ---------- SQLite's journal ----------
MOUNTS = """overlay / overlay rw 0 0
/dev/sda1 /work ext4 rw 0 0
s3fs /data fuse.s3fs rw 0 0
server:/export /mnt/nfs nfs4 rw 0 0
"""


def test_wal_on_a_local_disk_and_the_rollback_journal_on_network_or_fuse_mounts(tmp_path):
    assert filesystem_type(Path("/work/x/lab.sqlite"), MOUNTS) == "ext4"
    assert sqlite_journal_mode(Path("/work/x/lab.sqlite"), MOUNTS) == "wal"
    assert sqlite_journal_mode(Path("/data/lab.sqlite"), MOUNTS) == "delete"
    assert sqlite_journal_mode(Path("/mnt/nfs/a/lab.sqlite"), MOUNTS) == "delete"
    assert sqlite_journal_mode(Path("/database/lab.sqlite"), MOUNTS) == "wal"       # /data is not its parent
    assert journal_mode(Store(f"sqlite:///{tmp_path / 'lab.sqlite'}").engine) == "wal"


def test_a_network_mount_opens_with_the_rollback_journal(tmp_path, monkeypatch, caplog):
    import storage.database as database
    monkeypatch.setattr(database, "filesystem_type", lambda path, mounts=None: "fuse.s3fs")
    with caplog.at_level("WARNING", logger="triangle_lab.storage"):
        st = Store(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    assert journal_mode(st.engine) == "delete" and "rollback journal" in caplog.text


# ---------- a fair queue and run owners (a class on one lab) ----------
def _queue(st, *visitors):
    """One queued run per visitor named, a second apart (created_at decides the order within a visitor)."""
    ids = []
    for i, v in enumerate(visitors):
        rid = st.create_run("prompt->parameter", "kl", "s", {}, visitor=v)
        with st.session.begin() as s:
            s.execute(update(Run).where(Run.id == rid).values(created_at=utcnow() + timedelta(seconds=i)))
        ids.append(rid)
    return ids


def test_the_queue_goes_round_robin_between_visitors(db_url):
    st = Store(db_url)
    a1, a2, a3, b1, none1, b2, c1 = _queue(st, "v:a", "v:a", "v:a", "v:b", None, "v:b", "v:c")
    # every visitor's first waiting run before anyone's second; runs without an owner are one visitor
    assert st.queued() == [a1, b1, none1, c1, a2, b2, a3]
    assert st.claim_next("w@h") == a1
    # a was served just now: b, nobody and c go first, then a again
    assert st.queued() == [b1, none1, c1, a2, b2, a3]
    assert [st.claim_next("w@h") for _ in range(6)] == [b1, none1, c1, a2, b2, a3]
    assert st.queued_count("v:a") == 0


def test_a_visitor_served_least_recently_goes_first_and_queued_runs_are_counted(db_url):
    st = Store(db_url)
    (old,) = _queue(st, "v:a")
    st.claim_next("w@h")
    a2, b1 = _queue(st, "v:a", "v:b")          # a queues again first, but was served; b never was
    assert st.queued() == [b1, a2]
    assert (st.queued_count("v:a"), st.queued_count("v:b"), st.queued_count(None)) == (1, 1, 0)
    assert [r["run_id"] for r in st.list_runs(visitor="v:a")] == [a2, old]
    assert st.get_run(old)["visitor"] == "v:a"


def test_durations_of_finished_runs_feed_the_eta(db_url):
    st = Store(db_url)
    rid = st.create_run("prompt->parameter", "kl", "s", {"method_config": {"steps": 3}})
    st.mark_started(rid, owner="1@h")
    with st.session.begin() as s:
        s.execute(update(Run).where(Run.id == rid).values(started_at=utcnow() - timedelta(seconds=90)))
    st.mark_finished(rid, "succeeded", {})
    ((config, seconds),) = st.durations("prompt->parameter", "kl")
    assert config == {"steps": 3} and 89 < seconds < 100
    assert st.durations("prompt->parameter", "imitation") == []
