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


def test_adversarial_imitation_bars_show_the_reward_it_maximized_beside_the_reference():
    sft, _ = plots.result_figures("demonstrations", {"reward_base": 0.3, "reward_sft": 0.6}, [])
    assert [list(t.y) for t in sft.data] == [[0.3, 0.6]]
    m = {"reference_reward_before": 0.35, "reference_reward_after": 0.34, "discriminator_reward_before": -3.3,
         "discriminator_reward_after": -0.7, "rounds": [{"round": 1, "d_accuracy": 0.9}]}
    bars, fit = plots.result_figures("demonstrations", m, [])
    assert [list(t.y) for t in bars.data] == [[0.35, 0.34], [-3.3, -0.7]]   # two panels: r and r_ω
    assert list(fit.data[0].y) == [0.9]


def test_learning_from_demonstrations_charts_the_curves_of_its_own_method():
    points = [{"name": "loss", "step": 1, "value": 0.5}, {"name": "d_accuracy", "step": 0, "value": 0.9},
              {"name": "reference_reward", "step": 0, "value": 0.35}]
    titles = lambda fig: [a.text.replace("<br>", " ") for a in fig.layout.annotations]
    adversarial = plots.training_curves(points, "demonstrations", method="adversarial")
    assert not any("−log π(y*|x)" in t for t in titles(adversarial))            # no SFT panel that never fills
    assert [list(t.y) for t in adversarial.data][2:] == [[0.35], [0.9]]         # its own round-by-round points
    sft = plots.training_curves(points, "demonstrations", method="sft")
    assert any("−log π(y*|x)" in t for t in titles(sft)) and not any("D_ω" in t for t in titles(sft))


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


def test_progress_line_names_the_stage_with_time_spent_and_left():
    from datetime import datetime
    run = {"run_id": "r1", "edge": "prompt->parameter", "method": "kl", "scenario": "s", "status": "running",
           "progress": 0.25, "stage": "training step 3/10", "started_at": "2024-05-01T10:00:00", "duration_s": None}
    now = datetime(2024, 5, 1, 10, 1, 40)                     # 100 s in, a quarter done: 300 s left
    assert "running · 25% · training step 3/10 · 1 min 40 s so far, ≈ 5 min left" in views.progress_html(run, now=now)
    early = views.progress_html({**run, "progress": 0.02, "stage": "starting"}, now=now)
    assert "starting: loading the model and the scenario · 1 min 40 s so far, estimating the time left…" in early
    assert views.stage_text("held-out: KL before") == "evaluating held-out: KL before"
    assert views.stage_text("sampling the teacher on train inputs") == "sampling the teacher on train inputs"
    done = {**run, "status": "succeeded", "progress": 1.0, "stage": "done", "duration_s": 250.4}
    assert "succeeded · 100% · done · took 4 min 10 s" in views.progress_html(done, now=now)
    assert views.clock(3725) == "1 h 02 min" and views.clock(42.4) == "42 s"


def test_empty_states_say_what_comes_instead_of_blank_charts_and_tables():
    empty = plots.training_curves([], empty=views.curves_note(None))
    assert len(empty.data) == 0 and empty.layout.annotations[0].text.startswith("no run yet")
    assert not empty.layout.xaxis.visible
    assert views.generations_note(None, False).startswith("*No run yet.* Press **Run**")
    running = {"status": "running"}
    assert "when the run finishes" in views.generations_note(running, False)
    assert views.generations_note({"status": "succeeded"}, True) == ""
    assert views.curves_note(running).startswith("no point yet")


def test_charts_have_a_transparent_background_and_grey_grid_for_light_and_dark_themes():
    for fig in (*plots.result_figures("prompt->parameter", {"kl_before": 0.2, "kl_after": 0.05}, []),
                plots.training_curves([{"name": "loss", "step": 1, "value": 0.5}]), plots.triangle([])):
        layout = fig.to_plotly_json()["layout"]["template"]["layout"]
        assert layout["paper_bgcolor"] == layout["plot_bgcolor"] == "rgba(0,0,0,0)"
        assert layout["xaxis"]["gridcolor"] == "rgba(128,128,128,0.28)"


def test_token_view_prints_each_value_in_a_colour_blind_safe_palette():
    from app import plots_reward_parameter as prp
    rows = [{"policy": "π*", "input": "hi", "tokens": ["Great", " day", "\n"], "token_log_ratios": [1.0, -0.5, 0.0],
             "log_ratio": 0.5}]
    html = prp.token_html(rows)
    assert "<small style='font-size:0.72em'>+1.00</small>" in html and ">-0.50</small>" in html  # no hover needed
    assert "↵" in html and "> day</span>" in html
    assert f"rgba({prp.PREFERS_STAR},0.60)" in html and f"rgba({prp.PREFERS_BASE},0.30)" in html
    assert "46,160,44" not in html and "214,39,40" not in html       # not the old green / red


def test_every_registered_method_has_its_equation_in_latex():
    from app import equations
    from engine.registry import EDGES, TASKS
    registered = {(task, m) for task, e in {**EDGES, **TASKS}.items() for m in e.methods}
    assert registered - set(equations.LATEX) == set()
    for key, latex in equations.LATEX.items():
        assert latex.count("$") % 2 == 0 and latex.count("{") == latex.count("}"), key
    assert equations.equation_markdown("prompt->reward", "contrastive", "T", "plain").startswith(
        r"**T** — $R(x,y) = \log\frac{\pi_0(y\mid x,z^+)}")
    assert equations.equation_markdown("new-task", "new", "New", "a = b") == "**New** — `a = b`"


def test_every_bar_chart_leaves_room_for_its_value_labels_above_the_tallest_bar():
    m = {"reward_pi0": 0.475, "reward_star": 0.744, "reward_pi1": 0.475, "reward_steered": 0.744, "gap_closed": 1.0,
         "pair_accuracy": 0.686, "reward_before": 0.35, "reward_after": 0.69, "kl_to_base": 0.39}
    for fig in (*plots.result_figures("parameter->reward", m, []), *plots.result_figures("reward->parameter", m, [])):
        tallest = max(y for trace in fig.data for y in trace.y if isinstance(y, (int, float)))
        assert fig.layout.yaxis.range[1] > 1.1 * tallest, fig.layout.title.text
