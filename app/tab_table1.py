"""Table 1 tab: Sun et al.'s strategies side by side on one task (engine/table1.py) — zero-shot, few-shot,
prompt search, SFT, RL with the golden or a learned reward, best-of-N and the joint ones — with one metric,
its standard error, KL to π0 and the compute each cost. Every row's runs are ordinary runs (History lists them)
and are reused when one with the same settings exists."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from app import plots_table1, polling, views
from engine.errors import LabInputError

INTRO = ("**Sun et al. 2024, Table 1, run live.** Three levers move a language model's answers: its weights θ "
         "(fine-tuning), its prompt ψ and the number L of replies sampled at inference, of which a reward picks "
         "the best. Each row moves one lever or two; all rows are measured on the same held-out inputs and seeds. "
         "`quick` takes about 20 minutes on 2 CPU cores the first time; a second run reuses every stored run.")
COLUMNS = ["strategy", "theta", "psi", "L", "metric", "stderr", "kl_to_base", "wall_s", "forward_tokens", "reused_run"]


def build(lab, visitor: gr.State) -> None:
    with gr.Tab("Table 1"):
        gr.Markdown(INTRO)
        with gr.Row():
            scenario = gr.Dropdown(lab.scenarios(), value="arithmetic", label="Scenario", scale=1)
            preset = gr.Radio(["quick", "default", "tiny"], value="quick", label="Preset", scale=2,
                              info="quick: short training · default: each method's defaults · tiny: a smoke run")
        with gr.Row():
            run_btn = gr.Button("Run Table 1", variant="primary", elem_id="table1-run")
            cancel_btn = gr.Button("Cancel", variant="stop")
        status = gr.HTML(views.progress_html(None))
        chart = gr.Plot(show_label=False, elem_id="table1-chart")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="table1-rows")
        run_id, shown = gr.State(None), gr.State(None)
        timer = gr.Timer(polling.IDLE_S)   # every 5 s while a table runs, every 10 s while it looks for the newest

        # ---- events ----
        run_btn.click(lambda s, p, who: _start(lab, s, p, who), [scenario, preset, visitor], [run_id, status],
                      api_name="table1") \
            .then(lambda: polling.timer_for("queued"), None, timer, api_visibility="private")   # watch it at once
        cancel_btn.click(lambda rid, who: _cancel(lab, rid, who), [run_id, visitor], [status], api_visibility="private")
        timer.tick(lambda rid, last, sc: _refresh(lab, rid, last, sc), [run_id, shown, scenario],
                   [status, chart, table, shown, run_id, timer], api_visibility="private")
        # another scenario: show its newest table at once, not the last one's
        scenario.change(lambda _: (None, None), scenario, [run_id, shown], api_visibility="private") \
            .then(lambda sc: _refresh(lab, None, None, sc), scenario, [status, chart, table, shown, run_id, timer],
                  api_visibility="private")


def _start(lab, scenario: str, preset: str, who):
    try:
        rid = lab.start_table1(scenario, {"preset": preset}, who)
    except LabInputError as e:
        return gr.skip(), f"<div style='color:#d62728'><b>Cannot start:</b> {e}</div>"
    return rid, views.progress_html(lab.run(rid))


def _cancel(lab, run_id: str | None, who):
    """Cancel the table (queued: at once; running: before its next run) and the run it is running now."""
    if not run_id:
        return gr.skip()
    try:
        lab.cancel(run_id, who)
        for child in lab.store.children(run_id):
            if child["status"] in ("queued", "running"):
                lab.cancel(child["run_id"], who)
    except LabInputError as e:
        return f"<div style='color:#d62728'><b>Cannot cancel:</b> {e}</div>"
    return gr.skip()


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as the table shows them, numbers rounded for reading."""
    df = pd.DataFrame(rows or [], columns=COLUMNS)
    for col, digits in (("metric", 3), ("stderr", 3), ("kl_to_base", 4)):
        df[col] = df[col].astype(float).round(digits)
    return df


def newest_table(lab, scenario: str | None) -> str | None:
    """The newest Table 1 of `scenario` (anyone's: finished tables are for everyone to read), or None."""
    runs = lab.runs(edge="table1", scenario=scenario, limit=1) if scenario else []
    return runs[0]["run_id"] if runs else None


def _refresh(lab, run_id: str | None, last, scenario: str | None = None):
    """Redraw only when the run moved: the status line while it runs, the chart and table once it has rows.
    Before this visitor starts one, the tab shows the scenario's newest table."""
    run_id = run_id or newest_table(lab, scenario)
    run = lab.run(run_id) if run_id else None
    # the timer's setting goes out each tick (every 5 s while the table runs, 2 s while it waits, 10 s otherwise): a Run
    # click that was refused had set it faster
    timer = polling.timer_for(run["status"] if run else None, polling.IDLE_S)
    if run is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), timer
    state = (run_id, run["status"], run.get("progress"), run.get("stage"))
    if state == last:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), timer
    m = run.get("metrics") or {}
    if not m.get("rows"):
        return views.progress_html(run), gr.skip(), gr.skip(), state, run_id, timer
    return (views.progress_html(run), plots_table1.metric_vs_compute(m["rows"], m.get("metric_name") or "metric"),
            rows_frame(m["rows"]), state, run_id, timer)
