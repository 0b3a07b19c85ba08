"""The durable queue with real processes, on SQLite and on PostgreSQL: `engine submit` queues (the CLI run in
this process: it never loads the model), `engine worker` processes run; a worker killed with SIGKILL leaves its run to be marked interrupted by the next start, the runs queued
behind it start in order, two workers on one database never run the same run, and Run again re-queues."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.settings import REPO_ROOT
from storage import Store

BON = ["--set", "n=1", "--set", "n_heldout=1", "--set", "max_new_tokens=4"]


@pytest.fixture
def cli_db_url(db_url):
    return db_url


def _env(tmp_path, db_url) -> dict:
    return {**os.environ, "LAB_DATA_DIR": str(tmp_path), "LAB_DB_URL": db_url, "HF_HUB_OFFLINE": "1",
            "LAB_THREADS": "1"}


def _worker(tmp_path, db_url, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "worker", *args], cwd=REPO_ROOT, text=True,
                            env=_env(tmp_path, db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (value := predicate()):
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_sigkill_a_worker_then_two_workers_finish_the_queue_in_order(tmp_path, db_url, engine_cli):
    # a long run, queued from the command line
    out = engine_cli("submit", "--from", "prompt", "--to", "parameter", "--scenario", "sentiment", "--set", "steps=400",
              "--set", "n_train=8", "--set", "n_heldout=2", "--set", "eval_samples=1", "--set", "max_new_tokens=8")
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    assert set(submitted) == {"run_id", "status"} and submitted["status"] == "queued"
    long_run = submitted["run_id"]
    store = Store(db_url)
    assert store.get_run(long_run)["status"] == "queued"      # nobody runs it yet: submit starts no worker

    a = _worker(tmp_path, db_url)
    _wait_for(lambda: (store.get_run(long_run)["progress"] or 0) > 0, 180, "the first worker to start the long run")
    small = []
    for _ in range(4):    # queued behind it while it runs
        o = engine_cli("submit", "--from", "prompt", "--to", "reward", "--scenario", "sentiment", "--method", "judge",
                "--set", "n_heldout=1", "--set", "eval_samples=1", "--set", "max_new_tokens=4")
        assert o.returncode == 0, o.stderr
        small.append(json.loads(o.stdout)["run_id"])
    a.send_signal(signal.SIGKILL)
    a.wait(30)
    before = {rid: store.get_run(rid)["status"] for rid in [long_run, *small]}
    assert before == {long_run: "running", **{rid: "queued" for rid in small}}

    b, c = _worker(tmp_path, db_url, "--until-idle"), _worker(tmp_path, db_url, "--until-idle")
    outputs = [p.communicate(timeout=400) for p in (b, c)]
    assert [p.returncode for p in (b, c)] == [0, 0], [e for _, e in outputs]
    finished = [json.loads(line) for o, _ in outputs for line in o.splitlines() if '"status"' in line]
    ran = [f["run_id"] for f in finished]
    assert sorted(ran) == sorted(small)                              # every queued run, once, by one worker
    after = {rid: store.get_run(rid) for rid in [long_run, *small]}
    assert after[long_run]["status"] == "interrupted" and "Run again" in after[long_run]["error"]
    assert all(after[rid]["status"] == "succeeded" for rid in small), {r: after[r]["error"] for r in small}
    starts = [after[rid]["started_at"] for rid in small]
    assert starts == sorted(starts)                                  # taken in the order they were queued

    again = engine_cli("rerun", long_run)
    assert again.returncode == 0, again.stderr
    new = json.loads(again.stdout)
    assert new["status"] == "queued" and new["rerun_of"] == long_run
    rerun = store.get_run(new["run_id"])
    assert rerun["config"]["method_config"] == after[long_run]["config"]["method_config"]
    assert rerun["config"]["scenario_data"] == after[long_run]["config"]["scenario_data"]
    assert store.queued() == [new["run_id"]]
