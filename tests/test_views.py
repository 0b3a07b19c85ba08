"""The page's pure helpers: tables and figures built from stored rows."""
from app import plots, views

SAMPLES = [
    {"policy": "base", "input": "a", "output": "meh", "reward": 0.1, "sample_index": 0},
    {"policy": "base", "input": "a", "output": "meh 2", "reward": 0.3, "sample_index": 1},
    {"policy": "student", "input": "a", "output": "yay", "reward": 0.9, "sample_index": 0},
    {"policy": "teacher", "input": "a", "output": "wow", "reward": 0.8, "sample_index": 0, "derived": 1.25},
]


def test_side_by_side_orders_policies_and_shows_means_and_rewards():
    t = views.side_by_side(SAMPLES)
    assert list(t.columns) == ["input", "base π0 · mean r=0.200", "π0 + prompt (teacher) · mean r=0.800",
                               "π0 + adapter (student) · mean r=0.900"]
    row = t.iloc[0].tolist()
    assert row == ["a", "meh  [r=0.10]", "wow  [r=0.80, derived=1.25]", "yay  [r=0.90]"]


def test_progress_and_metrics_views():
    run = {"run_id": "r1", "edge": "prompt->parameter", "method": "kl", "scenario": "s", "status": "running",
           "progress": 0.42, "stage": "training step 3/10", "metrics": {}, "error": None, "duration_s": None}
    html = views.progress_html(run)
    assert "width:42%" in html and "training step 3/10" in html
    queued = {**run, "status": "queued", "progress": 0.0, "stage": ""}
    assert "next in line" in views.progress_html(queued, {"position": 1})
    assert "number 3 in line (2 runs ahead)" in views.progress_html(queued, {"position": 3})
    eta = {"position": 3, "wait_s": 400.0, "run_s": 150.0, "unknown": 0}
    assert "number 3 in line (2 runs ahead) · starts in ≈ 7 min, takes ≈ 2 min" in views.progress_html(queued, eta)
    assert views.eta_text({**eta, "unknown": 1}).startswith("starts in ≥ 7 min (1 run ahead not timed yet)")
    assert views.eta_text({**eta, "wait_s": None, "run_s": None, "unknown": 2}) == (
        "starts in: unknown (no finished run of the runs ahead to time them by), its length: unknown (no finished "
        "run of this method yet)")
    assert "Run again" in views.progress_html({**run, "status": "interrupted"})
    failed = {**run, "status": "failed", "error": "ValueError: boom\nTraceback (most recent call last): ..."}
    assert views.metrics_markdown(failed) == "**Run failed.** ValueError: boom"
    done = {**run, "status": "succeeded", "metrics": {"kl_after": 0.01}, "duration_s": 12.0}
    assert "| `kl_after` | 0.0100 |" in views.metrics_markdown(done)
    levels = {**done, "metrics": {"levels": 4, "reward_by_level": [0.31, 0.3333333]}}
    table = views.metrics_markdown(levels)
    assert "| `levels` | 4 |" in table and "| `reward_by_level` | [0.3100, 0.3333] |" in table


def test_figures_follow_the_edge():
    a, b = plots.result_figures("prompt->parameter", {"reward_base": 0.1, "reward_teacher": 0.5,
                                                      "reward_student": 0.4, "kl_before": 0.2, "kl_after": 0.05}, [])
    assert list(a.data[0].x) == ["base", "teacher", "student"] and list(b.data[0].y) == [0.2, 0.05]
    a, b = plots.result_figures("prompt->reward", {"pair_accuracy": 0.7, "spearman": 0.5}, SAMPLES)
    assert list(a.data[0].x) == ["pair_accuracy", "spearman"] and len(b.data) == 1  # only rows with a derived score
    curves = plots.training_curves([{"name": "loss", "step": 1, "value": 0.5}, {"name": "kl_heldout", "step": 0, "value": 0.1}])
    assert len(curves.data) == 3 and list(curves.data[0].y) == [0.5]


def test_reward_model_figures_show_each_selection_rule_and_the_score_split():
    bon = [{"n": 1, "reward_orm": 0.2, "reward_confidence": 0.2, "reward_oracle": 0.2},
           {"n": 4, "reward_orm": 0.3, "reward_confidence": 0.4, "reward_oracle": 0.5}]
    samples = [{"policy": "p", "input": "x", "output": "7", "reward": 1.0, "derived": 1.5},
               {"policy": "p", "input": "x", "output": "8", "reward": 0.0, "derived": -0.5},
               {"policy": "p", "input": "x", "output": "9", "reward": 0.0, "derived": 0.1}]
    a, b = plots.result_figures("reward-model", {"bon": bon, "auc": 1.0, "threshold": 0.5}, samples)
    by_name = {t.name: list(t.y) for t in a.data}
    assert by_name["learned reward"] == [0.2, 0.3] and by_name["oracle (the golden metric)"] == [0.2, 0.5]
    assert by_name["policy confidence (mean log π)"] == [0.2, 0.4] and by_name["no selection (N = 1)"] == [0.2, 0.2]
    assert [list(t.x) for t in b.data] == [[1.5], [-0.5, 0.1]]      # right replies, then wrong ones
