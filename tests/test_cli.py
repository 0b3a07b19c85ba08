"""`python -m engine` as a user scripts it: JSON on stdout, exit codes 0 / 2 / 1. A real process for a run
and for a failing model load; the rest through the same `main` in this process (conftest `engine_cli`).
Every test runs on SQLite and on PostgreSQL (`LAB_DB_URL`, conftest `db_url`)."""
import json
import os

import pytest

from conftest import TINY


@pytest.fixture
def cli_db_url(db_url):
    return db_url


def _sets(cfg: dict) -> list[str]:
    return [a for k, v in cfg.items() for a in ("--set", f"{k}={v}")]


def test_convert_prints_the_documented_json_then_runs_and_show_find_it(cli):
    p = cli("convert", "--from", "prompt", "--to", "parameter", "--scenario", "sentiment", "--method", "imitation",
            *_sets({**TINY, "steps": 2}), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert set(out) >= {"run_id", "status", "edge", "method", "scenario", "duration_s", "metrics", "artifact"}
    assert (out["status"], out["edge"], out["method"], out["scenario"]) == \
        ("succeeded", "prompt->parameter", "imitation", "sentiment")
    assert set(out["metrics"]) >= {"kl_before", "kl_after", "reward_base", "reward_teacher", "reward_student"}
    assert out["artifact"]["kind"] == "adapter" and os.path.isdir(out["artifact"]["path"])
    runs = json.loads(cli("runs", "--json").stdout)
    assert [r["run_id"] for r in runs] == [out["run_id"]]
    shown = json.loads(cli("show", out["run_id"], "--json").stdout)
    assert shown["metrics"] == out["metrics"] and len(shown["samples"]) == 3 * TINY["n_heldout"]


@pytest.mark.parametrize("args, message", [
    (["--scenario", "nosuch"], "neither a built-in"),
    (["--scenario", "sentiment", "--method", "sgd"], "method 'sgd' is unknown"),
    (["--scenario", "sentiment", "--set", "steps=-1"], "steps: -1 is out of range"),
    (["--scenario", "sentiment", "--set", "lr=fast"], "lr: 'fast' is not a number"),
    (["--scenario", "sentiment", "--set", "colour=red"], "colour: unknown setting"),
    (["--scenario", "sentiment", "--set", "steps"], "expected key=value"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(engine_cli, args, message):
    p = engine_cli("convert", "--from", "prompt", "--to", "parameter", *args, "--json")
    assert p.returncode == 2 and message in p.stderr and p.stdout == ""
    assert json.loads(engine_cli("runs", "--json").stdout) == []


def test_empty_prompt_in_a_scenario_file_is_bad_input(engine_cli, tmp_path):
    from engine.scenarios import load_scenario
    data = load_scenario("sentiment").to_dict() | {"prompt": ""}
    f = tmp_path / "empty.json"
    f.write_text(json.dumps(data))
    p = engine_cli("convert", "--from", "prompt", "--to", "parameter", "--scenario", str(f), "--json")
    assert p.returncode == 2 and "scenario.prompt: must not be empty" in p.stderr


def test_a_run_that_fails_exits_1_and_is_stored_as_failed(cli):
    p = cli("convert", "--from", "prompt", "--to", "parameter", "--scenario", "sentiment",
            *_sets(TINY), "--json", LAB_MODEL="/nonexistent/model-dir")
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["status"] == "failed" and out["error"]
    assert json.loads(cli("runs", "--json").stdout)[0]["status"] == "failed"


@pytest.mark.parametrize("args, field, quick", [
    (("submit", "--from", "reward", "--to", "parameter", "--method", "rloo", "--scenario", "sentiment"), "steps", 10),
    (("submit", "--from", "prompt", "--to", "parameter", "--scenario", "sentiment", "--set", "steps=12"), "steps", 12),
])
def test_preset_quick_fills_the_short_runs_settings_and_set_still_wins(engine_cli, args, field, quick):
    queued = engine_cli(*args, "--preset", "quick")
    assert queued.returncode == 0, queued.stderr
    run = json.loads(engine_cli("show", json.loads(queued.stdout)["run_id"], "--json").stdout)
    config = run["config"]["method_config"]
    assert config[field] == quick and config["n_heldout"] == 8 and run["status"] == "queued"


def test_unknown_run_id_is_bad_input(engine_cli):
    p = engine_cli("show", "doesnotexist", "--json")
    assert p.returncode == 2 and "no run with id" in p.stderr


def test_bon_prints_reward_and_kl_bound_per_n(engine_cli):
    p = engine_cli("bon", "--scenario", "sentiment", "--n", "1,2", "--set", "n_heldout=2", "--set",
                   "max_new_tokens=8", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [r["n"] for r in out["results"]] == [1, 2] and out["status"] == "succeeded"
    assert out["results"][0]["kl_bound"] == 0.0 and out["results"][1]["kl_bound"] > 0
    assert all(-1 <= r["reward"] <= 1 for r in out["results"])     # VADER compound of the kept reply


@pytest.mark.parametrize("args, message", [
    (["bon", "--scenario", "sentiment", "--n", "0,4"], "n: 0 is out of range"),
    (["bon", "--scenario", "sentiment", "--reward", "nosuchrun"], "reward: no run with id 'nosuchrun'"),
    (["bon", "--scenario", "sentiment", "--set", "policy=nosuchrun"], "no run with id 'nosuchrun'"),  # --set counts
    (["convert", "--from", "parameter", "--to", "reward", "--source-run", "nosuchrun"], "no run with id"),
    (["convert", "--from", "parameter", "--to", "reward", "--scenario", "sentiment", "--source-run", "prompt",
      "--w", "20"], "w: 20.0 is out of range"),
    (["convert", "--from", "parameter", "--to", "reward", "--scenario", "sentiment"], "source_run: empty"),
])
def test_reward_parameter_bad_input_exits_2(engine_cli, args, message):
    p = engine_cli(*args, "--json")
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert json.loads(engine_cli("runs", "--json").stdout) == []


def test_compare_prints_rewards_and_the_kl_matrix(engine_cli):
    p = engine_cli("compare", "--scenario", "sentiment", "--policies", "prompt", "--set", "n_inputs=2",
                   "--set", "n_samples=1", "--set", "max_new_tokens=6", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [q["choice"] for q in out["policies"]] == ["base", "prompt"] and out["n_samples"] == 4
    M = out["kl"]["matrix"]
    assert M[0][0] == M[1][1] == 0.0 and M[1][0] > 0                # exact KL, zero on the diagonal
    bad = engine_cli("compare", "--scenario", "sentiment", "--policies", "nosuchrun", "--json")
    assert bad.returncode == 2 and "no run with id 'nosuchrun'" in bad.stderr
