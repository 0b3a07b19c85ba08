"""History tab: every stored run; pick one to watch it in the Convert tab."""
from __future__ import annotations

import gradio as gr

from app import views


def build(lab, selected_run: gr.State) -> None:
    gr.Markdown("All runs, newest first. Click a row to open it in the **Convert** tab's results view.")
    table = gr.Dataframe(views.runs_table(lab.runs()), interactive=False, elem_id="history-table", wrap=True)
    with gr.Row():
        refresh_btn = gr.Button("Refresh", scale=0)
        picked = gr.Markdown()

    def pick(evt: gr.SelectData, df):
        run_id = df.iloc[evt.index[0]]["run_id"]
        return run_id, f"Selected run `{run_id}`."

    def poll(last):
        runs = lab.runs()
        sig = tuple((r["run_id"], r["status"], r["progress"]) for r in runs)
        return (gr.skip(), last) if sig == last else (views.runs_table(runs), sig)

    last = gr.State(None)
    table.select(pick, table, [selected_run, picked])
    refresh_btn.click(lambda: views.runs_table(lab.runs()), None, table)
    gr.Timer(3.0).tick(poll, last, [table, last], show_progress="hidden")
