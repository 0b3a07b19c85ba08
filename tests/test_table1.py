"""Sun et al.'s Table 1 live (engine/table1.py): the row arithmetic on hand-made samples, then a smoke run of
every strategy on the embedded model, whose second call reuses every run behind its rows."""
import json
import math

import pytest

from engine.evaluation import mean_stderr
from engine.table1 import M, per_input

STRATEGIES = ["zero-shot", "few-shot", "prompt-search", "sft", "rl-golden", "rl-learned-rm", "adversarial-imitation",
              "prompt-search+rl-golden", "bon-golden-4", "bon-golden-16", "bon-learned-rm-16", "few-shot+bon-learned-rm-16",
              "prompt-search+bon-learned-rm-16", "sft+bon-learned-rm-16", "rl-golden+bon-learned-rm-16",
              "rl-learned-rm+bon-learned-rm-16", "adversarial-imitation+bon-learned-rm-16",
              "prompt-search+rl-golden+bon-learned-rm-16"]


def _samples(golden: list[float], learned: list[float], x: str = "x") -> list[dict]:
    return [{"input": x, "reward": g, "selection_reward": s, "sample_index": i}
            for i, (g, s) in enumerate(zip(golden, learned))]


def test_rows_are_exact_expectations_over_the_stored_samples():
    rows = _samples([0.0, 1.0, 0.0], [0.9, 0.1, 0.5]) + _samples([1.0, 1.0, 1.0], [0, 0, 0], "y")
    assert per_input(rows, None, 1) == [pytest.approx(1 / 3), 1.0]          # L = 1: the mean
    # best of 2 by the golden metric: 2 of the 3 pairs hold the right reply
    assert per_input(rows, "reward", 2)[0] == pytest.approx(2 / 3)
    # by the learned reward: it prefers the wrong replies (0.9, 0.5) over the right one (0.1): never picks it
    assert per_input(rows, "selection_reward", 2)[0] == 0.0
    mean, se = mean_stderr([0.0, 1.0])
    assert (mean, se) == (0.5, pytest.approx(math.sqrt(0.5 / 2)))


def test_table1_runs_every_strategy_and_a_second_call_reuses_its_runs(engine_cli):
    args = ("table1", "--scenario", "arithmetic", "--preset", "tiny", "--set", "n_heldout=2",
            "--set", "max_new_tokens=8", "--json")
    first = engine_cli(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["metric_name"] == "exact match" and out["scenario"] == "arithmetic"
    rows = {r["strategy"]: r for r in out["rows"]}
    assert [r["strategy"] for r in out["rows"]] == STRATEGIES
    for r in out["rows"]:
        assert 0 <= r["metric"] <= 1 and r["stderr"] >= 0 and r["forward_tokens"] > 0 and r["wall_s"] > 0
        assert not r["reused_run"] and r["L"] in (1, 4, 16) and set(r) >= {"theta", "psi", "kl_to_base"}
    # the oracle at inference can only gain with N (exact expectations over the same 16 samples per input)
    assert rows["zero-shot"]["metric"] <= rows["bon-golden-4"]["metric"] <= rows["bon-golden-16"]["metric"]
    # a strategy costs what made it: 16 replies cost more than 4; selecting by the learned reward pays for the
    # reward model; RL on it is made by three runs (the reward model, RL, its evaluation pool)
    assert rows["bon-golden-16"]["forward_tokens"] > rows["bon-golden-4"]["forward_tokens"]
    assert rows["bon-learned-rm-16"]["forward_tokens"] > rows["bon-golden-16"]["forward_tokens"]
    assert len(rows["rl-learned-rm"]["runs"]) == 3 and rows["bon-learned-rm-16"]["joint"] is False
    assert rows["sft+bon-learned-rm-16"]["joint"] and rows["bon-golden-16"]["kl_bon_bound"] == \
        pytest.approx(math.log(M) - (M - 1) / M)
    assert rows["zero-shot"]["kl_to_base"] > 0 and rows["sft"]["theta"] == "optimized"
    # optimized prompt + RL: the adapter was trained under the searched prompt, and answers under it
    joint = rows["prompt-search+rl-golden"]
    assert joint["joint"] and (joint["theta"], joint["psi"]) == ("optimized", "optimized")
    search, rl, pool = (json.loads(engine_cli("show", rid, "--json").stdout) for rid in joint["runs"])
    z = search["artifacts"][0]["data"]["prompt_text"]
    assert rl["config"]["method_config"]["prompt"] == search["run_id"]
    assert rl["artifacts"][0]["data"]["system"] == z and pool["metrics"]["policy_kl_to_base"] == joint["kl_to_base"]
    n_runs = len(json.loads(engine_cli("runs", "--json").stdout))

    again = json.loads(engine_cli(*args).stdout)
    assert all(r["reused_run"] for r in again["rows"])
    assert [r["metric"] for r in again["rows"]] == [r["metric"] for r in out["rows"]]
    assert len(json.loads(engine_cli("runs", "--json").stdout)) == n_runs + 1   # only the new table's own row


def test_the_table1_tab_opens_on_the_scenarios_newest_table_and_charts_it(settings):
    import gradio as gr

    from app import plots_table1, polling, tab_table1
    from engine.api import Lab
    lab = Lab(settings=settings, host_factory=lambda: None)
    rows = [{"strategy": "zero-shot", "theta": "fixed", "psi": "heuristic", "L": 1, "metric": 0.1, "stderr": 0.03,
             "kl_to_base": 0.07, "wall_s": 7.0, "forward_tokens": 1960, "reused_run": False, "joint": False},
            {"strategy": "sft+bon-learned-rm-16", "theta": "optimized", "psi": "fixed", "L": 16, "metric": 0.6,
             "stderr": 0.1, "kl_to_base": 1.4, "wall_s": 369.0, "forward_tokens": 95892, "reused_run": True,
             "joint": True}]
    skipped = (gr.skip(),) * 5
    assert tab_table1._refresh(lab, None, None, "arithmetic")[:5] == skipped   # nothing stored yet: nothing drawn
    assert tab_table1._refresh(lab, None, None, "arithmetic")[5].value == polling.IDLE_S   # and it looks slowly
    rid = lab.store.create_run("table1", "table1", "arithmetic", {"method_config": {}}, status="running")
    lab.store.mark_finished(rid, "succeeded", metrics={"metric_name": "exact match", "rows": rows})
    status, chart, table, state, shown, timer = tab_table1._refresh(lab, None, None, "arithmetic")
    assert (timer.value, timer.active) == (polling.IDLE_S, True)   # finished: only looks for a newer table
    assert shown == rid and list(table["strategy"]) == ["zero-shot", "sft+bon-learned-rm-16"]
    assert [t.name for t in chart.data] == ["one lever", "joint (two or more levers)"]
    assert chart.data[1].text == ("SFT+BoN16",) and chart.data[1].customdata == ("sft+bon-learned-rm-16",)
    assert [plots_table1.short_label(s) for s in ("bon-golden-4", "prompt-search+rl-golden+bon-learned-rm-16")] == \
        ["BoN4★", "ψ*+RL+BoN16"]
    assert chart.data[1].marker.symbol == "diamond-open" and plots_table1.lever(rows[0]) == "none"
    assert tab_table1._refresh(lab, rid, state, "arithmetic")[:5] == skipped   # unchanged: not redrawn
    assert tab_table1._refresh(lab, None, None, "sentiment")[:5] == skipped    # another scenario has no table
