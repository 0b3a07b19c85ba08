"""History: filtering and sorting runs, exporting them (JSON, CSV) and reading them back, deleting a run
with its files, refusing to delete a running one; the CLI's export and delete."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

from engine.api import Lab
from engine.errors import LabInputError
from engine.export import RUN_COLUMNS
from engine.jobs import OWNER
from engine.settings import REPO_ROOT, Settings


def _no_host():
    raise AssertionError("history and export must not need the model")


@pytest.fixture
def lab(tmp_path, db_url):
    """On SQLite, then on PostgreSQL (db_url)."""
    settings = Settings(model="embedded", data_dir=tmp_path, db_url=db_url, threads=1)
    return Lab(settings=settings, host_factory=_no_host)


@pytest.fixture
def cli_db_url(db_url):
    return db_url


SCENARIO = {"name": "sentiment", "prompt": "Be upbeat.", "train_inputs": ["a"], "heldout_inputs": ["b"]}


def _runs(lab) -> dict[str, str]:
    """Three finished runs and one running, on two scenarios, with curves, samples and artifacts."""
    st = lab.store
    cd = st.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {"steps": 3, "lr": 0.001},
                                                                "scenario_data": SCENARIO})
    st.mark_started(cd)
    st.add_points(cd, 1, {"loss": 0.5, "kl_heldout": 0.1})
    st.add_samples(cd, [{"policy": "base", "input": "Hi, there", "output": 'say "hello"\nbye', "reward": 0.25,
                         "sample_index": 0, "derived": 1.5}])
    folder = lab.settings.artifacts_dir / cd / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    st.add_artifact(cd, "adapter", "parameter", str(folder), {"adapter_name": "cd"})
    st.mark_finished(cd, "succeeded", {"kl_before": 0.2, "kl_after": 0.05})
    search = st.create_run("reward->prompt", "search", "pirate", {"method_config": {"rounds": 2}})
    st.add_artifact(search, "prompt", "prompt", None, {"prompt_text": "Talk like a pirate, matey."})
    st.mark_finished(search, "succeeded", {"reward_best": 1.5})
    bon = st.create_run("best-of-n", "bon", "sentiment", {"method_config": {"n": "1,4"}})
    st.mark_finished(bon, "succeeded", {"results": [{"n": 1, "reward": 0.2, "kl_bound": 0.0}]})
    running = st.create_run("reward->parameter", "rloo", "sentiment", {"method_config": {}})
    st.mark_started(running, owner=OWNER)  # this live process: a CLI's start-up must not mark it interrupted
    return {"cd": cd, "search": search, "bon": bon, "running": running}


def test_the_page_opens_on_a_linked_run_else_the_running_one_else_the_newest(lab):
    from app.main import opening_run
    from app.views import artifact_markdown
    assert opening_run(lab, None) is None                                               # an empty lab
    ids = _runs(lab)
    assert opening_run(lab, ids["cd"]) == ids["cd"]
    assert opening_run(lab, "nosuchrun") == opening_run(lab, None) == ids["running"]
    lab.store.mark_finished(ids["running"], "succeeded", {})
    newest = lab.store.create_run("best-of-n", "bon", "pirate", {"method_config": {}})
    lab.store.mark_finished(newest, "succeeded", {})
    assert opening_run(lab, None) == newest
    assert f"(/?run={ids['cd']})" in artifact_markdown(lab.run(ids["cd"]))


def test_filters_and_sorting(lab):
    ids = _runs(lab)
    ordered = lambda **kw: [r["run_id"] for r in lab.runs(**kw)]
    assert ordered() == [ids["running"], ids["bon"], ids["search"], ids["cd"]]          # newest first
    assert ordered(order_by="created", descending=False) == [ids["cd"], ids["search"], ids["bon"], ids["running"]]
    assert ordered(scenario="sentiment", status="succeeded") == [ids["bon"], ids["cd"]]
    assert ordered(method="search") == [ids["search"]] and ordered(edge="best-of-n") == [ids["bon"]]
    assert ordered(status=("running", "queued")) == [ids["running"]]
    assert ordered(order_by="edge", descending=False)[0] == ids["bon"]                    # "best-of-n" < "prompt->..."
    assert ordered(order_by="duration")[-1] == ids["running"]                              # no duration: last
    with pytest.raises(ValueError, match="order_by"):
        lab.runs(order_by="colour")


def test_json_export_reads_back_as_stored(lab):
    ids = _runs(lab)
    data = json.loads(lab.export([ids["cd"], ids["search"]], "json"))
    assert data["format"].startswith("triangle-lab runs") and len(data["runs"]) == 2
    cd = data["runs"][0]
    assert {k: cd[k] for k in ("run_id", "edge", "method", "scenario", "status", "metrics", "config")} == \
        {k: lab.run(ids["cd"])[k] for k in ("run_id", "edge", "method", "scenario", "status", "metrics", "config")}
    assert cd["points"] == lab.points(ids["cd"]) and cd["samples"] == lab.samples(ids["cd"])
    assert cd["config"]["scenario_data"] == SCENARIO        # stored once by hash, exported whole
    assert data["runs"][1]["artifacts"][0]["data"]["prompt_text"] == "Talk like a pirate, matey."


def test_csv_exports_one_row_per_run_and_per_sample(lab):
    ids = _runs(lab)
    rows = list(csv.DictReader(io.StringIO(lab.export([ids["cd"], ids["search"], ids["bon"]], "csv"))))
    assert [r["run_id"] for r in rows] == [ids["cd"], ids["search"], ids["bon"]]
    header = list(rows[0])
    assert header[:len(RUN_COLUMNS)] == list(RUN_COLUMNS)
    assert header.index("metric.kl_after") < header.index("config.lr") < header.index("artifact.prompt_text")
    cd, search, bon = rows
    assert float(cd["metric.kl_after"]) == 0.05 and int(cd["config.steps"]) == 3 and cd["artifact_kind"] == "adapter"
    assert search["artifact.prompt_text"] == "Talk like a pirate, matey." and search["metric.kl_after"] == ""
    assert json.loads(bon["metric.results"]) == [{"n": 1, "reward": 0.2, "kl_bound": 0.0}]  # nested values as JSON
    samples = list(csv.DictReader(io.StringIO(lab.export([ids["cd"]], "samples-csv"))))
    assert samples == [{"run_id": ids["cd"], "policy": "base", "input": "Hi, there", "output": 'say "hello"\nbye',
                        "reward": "0.25", "sample_index": "0", "derived": "1.5"}]
    with pytest.raises(LabInputError, match="format"):
        lab.export([ids["cd"]], "xml")
    with pytest.raises(LabInputError, match="no run with id 'nope'"):
        lab.export(["nope"], "json")


def test_delete_removes_rows_and_files_and_refuses_running_runs(lab):
    ids = _runs(lab)
    folder = lab.settings.artifacts_dir / ids["cd"]
    assert folder.is_dir()
    out = lab.delete_run(ids["cd"])
    assert out["files_removed"] == str(folder) and not folder.exists()
    assert lab.run(ids["cd"]) is None and lab.points(ids["cd"]) == [] and lab.samples(ids["cd"]) == []
    assert lab.store.artifacts(run_id=ids["cd"]) == []
    assert lab.delete_run(ids["search"])["files_removed"] is None          # a prompt: no files, still deleted
    with pytest.raises(LabInputError, match="is running; cancel it first"):
        lab.delete_run(ids["running"])
    assert lab.run(ids["running"])["status"] == "running"
    with pytest.raises(LabInputError, match="no run with id"):
        lab.delete_run(ids["cd"])


def test_cli_export_and_delete(lab, tmp_path):
    ids = _runs(lab)
    env = {**os.environ, "LAB_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "LAB_DB_URL": lab.settings.db_url}
    cli = lambda *a: subprocess.run([sys.executable, "-m", "engine", *a], cwd=REPO_ROOT, capture_output=True,
                                    text=True, env=env, timeout=120)
    out = tmp_path / "out" / "runs.csv"
    p = cli("export", ids["cd"], ids["bon"], "--format", "csv", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"out": str(out), "format": "csv", "runs": [ids["cd"], ids["bon"]]}
    assert [r["run_id"] for r in csv.DictReader(out.open())] == [ids["cd"], ids["bon"]]
    p = cli("delete", ids["running"])
    assert p.returncode == 2 and "cancel it first" in p.stderr
    p = cli("delete", ids["cd"])
    assert p.returncode == 0 and json.loads(p.stdout)["deleted"] is True and lab.run(ids["cd"]) is None


def test_a_runs_artifact_downloads_as_one_file(lab, tmp_path, monkeypatch, capsys):
    import zipfile

    from engine import cli
    ids = _runs(lab)
    adapter = lab.artifact_file(ids["cd"], tmp_path / "dl")
    with zipfile.ZipFile(adapter) as z:                                      # the PEFT folder, and what made it
        assert sorted(z.namelist()) == [f"{ids['cd']}-adapter/adapter_model.safetensors",
                                        f"{ids['cd']}-adapter/triangle_lab.json"]
        about = json.loads(z.read(f"{ids['cd']}-adapter/triangle_lab.json"))
    assert (about["run_id"], about["edge"], about["data"]) == (ids["cd"], "prompt->parameter", {"adapter_name": "cd"})
    prompt = lab.artifact_file(ids["search"], tmp_path / "dl")
    assert prompt.endswith(".txt") and open(prompt).read() == "Talk like a pirate, matey.\n"
    with pytest.raises(LabInputError, match="made no artifact to download"):
        lab.artifact_file(ids["bon"], tmp_path / "dl")
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))                      # the CLI's `artifact`, in this process
    monkeypatch.setenv("LAB_DB_URL", lab.settings.db_url)
    assert cli.main(["artifact", ids["search"], "--out", str(tmp_path / "cli")]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(tmp_path / "cli" / f"{ids['search']}-prompt.txt")
