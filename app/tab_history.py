"""History tab: every stored run. Filter and sort, open one (config, curves, samples, artifact), delete it
with its files, export a selection as JSON and CSV."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from app import plots, polling, views
from engine.errors import LabInputError
from engine.visitors import ANONYMOUS, owner_label

ALL = "(all)"
SORTS = [("newest first", "created:desc"), ("oldest first", "created:asc"), ("longest first", "duration:desc"),
         ("scenario", "scenario:asc"), ("edge", "edge:asc"), ("method", "method:asc"), ("status", "status:asc")]
FILTERS = ("scenario", "edge", "method", "model", "status")
COLUMN_WIDTHS = ["9%", "12%", "11%", "7%", "8%", "10%", "7%", "5%", "6%", "25%"]  # views.runs_table's columns
OWNED_WIDTHS = COLUMN_WIDTHS[:-1] + ["18%", "7%"]                                   # ... with the owner column
WHOSE = ["mine", "everyone"]
HISTORY_MOVING_S = 3.0   # the table's refresh while a listed run is queued or running
EXPORTS = (("json", "everything: config, metrics, artifacts, curves, samples"), ("csv", "one row per run"),
           ("samples-csv", "one row per generation"))


def build(lab, selected_run: gr.State, visitor: gr.State) -> None:
    gr.Markdown("Every run of the lab. Filter and sort; click a row to open the run below (and in the **Convert** "
                "tab). Clicked runs join the export selection.")
    everything = lab.runs(limit=100_000)
    shared = lab.settings.multi_user
    with gr.Row():
        whose = gr.Radio(WHOSE, value="everyone", label="runs of", elem_id="history-whose", min_width=160, scale=0)
        filters = [gr.Dropdown([ALL] + _distinct(everything, name), value=ALL, label=name, elem_id=f"history-{name}",
                               min_width=140) for name in FILTERS]
        sort = gr.Dropdown(SORTS, value="created:desc", label="sort", min_width=140, elem_id="history-sort")
        refresh_btn = gr.Button("Refresh", scale=0)
    table = gr.Dataframe(_table(lab, everything[:500], ANONYMOUS), interactive=False, elem_id="history-table",
                         wrap=True, max_height=420, column_widths=OWNED_WIDTHS if shared else COLUMN_WIDTHS)
    with gr.Row():
        selection = gr.Dropdown([], value=[], multiselect=True, label="Export selection (click rows to add)",
                                elem_id="history-selection", scale=3)
        select_all_btn = gr.Button("Select all shown", scale=0, min_width=170)
        clear_btn = gr.Button("Clear", scale=0, min_width=100)
        export_btn = gr.Button("Export selection", variant="primary", scale=0, min_width=170,
                               elem_id="history-export")
    files = gr.File(label="Exported files: " + "; ".join(f"{k} = {v}" for k, v in EXPORTS), file_count="multiple",
                    visible=False, interactive=False, elem_id="history-files")
    message = gr.Markdown(elem_id="history-message")
    opened = gr.State(None)
    with gr.Column(visible=False) as detail:
        header = gr.HTML(elem_id="history-run")
        with gr.Row():
            numbers = gr.Markdown()
            artifact = gr.Markdown(elem_id="history-artifact")
        curves = gr.Plot(label="Curves")
        with gr.Row():
            fig_a, fig_b = gr.Plot(label="Result"), gr.Plot(label="Result")
        samples = gr.Dataframe(label="Generations on held-out inputs (first sample each)", wrap=True,
                               interactive=False, max_height=500)
        with gr.Accordion("Config (JSON)", open=False):
            config = gr.Code(language="json")
        with gr.Row():
            download_btn = gr.Button("Download artifact", scale=0, min_width=200, elem_id="history-download")
            download = gr.File(label="The run's artifact: an adapter as a zip of its PEFT folder, a prompt as text, "
                                     "a reward spec as JSON", visible=False, interactive=False,
                               elem_id="history-artifact-file")
        with gr.Row():
            delete_btn = gr.Button("Delete this run…", variant="stop", scale=0, min_width=200,
                                   elem_id="history-delete")
            confirm_btn = gr.Button("Yes, delete it and its files", variant="stop", visible=False, scale=0,
                                    elem_id="history-confirm")
            keep_btn = gr.Button("Keep it", visible=False, scale=0)

    # ---- events ----
    def show(*args):
        *values, order, mine, sel, who = args
        runs = _runs(lab, values, order, mine, who)
        everything = lab.runs(limit=100_000)
        menus = [gr.update(choices=[ALL] + _distinct(everything, name)) for name in FILTERS]
        existing = {r["run_id"] for r in everything}
        sel = [s for s in sel or [] if s in existing]  # deleted runs leave the selection
        return (_table(lab, runs, who), *menus, gr.update(choices=_union([r["run_id"] for r in runs], sel), value=sel),
                f"{len(runs)} of {len(everything)} runs shown.")

    def show_keeping_message(*args):
        """The table after a delete, under the delete's own message (what was deleted, or why it was not)."""
        return (*show(*args)[:-1], gr.skip())

    def open_run(evt: gr.SelectData, df, sel):
        # the row's own value: right even when the user sorted the table by a column header
        run_id = str(evt.row_value[0] if evt.row_value else df.iloc[evt.index[0]]["run_id"])
        sel = list(dict.fromkeys((sel or []) + [run_id]))
        return (run_id, run_id, gr.update(choices=_union(list(df["run_id"]), sel), value=sel), *_detail(lab, run_id))

    def export(sel, opened_id):
        ids = sel or ([opened_id] if opened_id else [])
        try:
            return gr.update(value=_export_files(lab, ids), visible=True), f"Exported {len(ids)} run(s)."
        except LabInputError as e:
            return gr.update(visible=False), f"<span style='color:#d62728'>**Cannot export:** {e}</span>"

    def download_file(run_id):
        try:
            path = lab.artifact_file(run_id, tempfile.mkdtemp(prefix="artifact-"))
        except LabInputError as e:
            return gr.update(visible=False), f"<span style='color:#d62728'>**Cannot download:** {e}</span>"
        return gr.update(value=path, visible=True), f"The artifact of `{run_id}`: `{Path(path).name}`."

    def delete(run_id, watched, who):
        try:
            out = lab.delete_run(run_id, who)
        except LabInputError as e:
            return (f"<span style='color:#d62728'>**Cannot delete:** {e}</span>", gr.skip(), gr.skip(), gr.skip(),
                    *_confirm(False))
        return (_deleted_message(out), gr.update(visible=False), None, None if watched == run_id else gr.skip(),
                *_confirm(False))

    view_inputs = [*filters, sort, whose, selection, visitor]
    view_outputs = [table, *filters, selection, message]
    for c in (*filters, sort, whose):
        c.input(show, view_inputs, view_outputs, api_visibility="private")
    refresh_btn.click(show, view_inputs, view_outputs, api_name="history")
    table.select(open_run, [table, selection],
                 [selected_run, opened, selection, detail, header, numbers, artifact, curves, fig_a, fig_b, samples,
                  config], api_visibility="private")
    select_all_btn.click(lambda df, sel: gr.update(value=_union(sel or [], list(df["run_id"]))), [table, selection],
                         selection, api_visibility="private")
    clear_btn.click(lambda: gr.update(value=[]), None, selection, api_visibility="private")
    export_btn.click(export, [selection, opened], [files, message], api_name="export")
    download_btn.click(download_file, opened, [download, message], api_visibility="private")
    delete_btn.click(lambda: _confirm(True), None, [delete_btn, confirm_btn, keep_btn], api_visibility="private")
    keep_btn.click(lambda: _confirm(False), None, [delete_btn, confirm_btn, keep_btn], api_visibility="private")
    # the page's button; scripts delete through /delete_run with their token (app/page_api.py)
    confirm_btn.click(delete, [opened, selected_run, visitor],
                      [message, detail, opened, selected_run, delete_btn, confirm_btn, keep_btn],
                      api_visibility="private").then(show_keeping_message, view_inputs, view_outputs,
                                                     api_visibility="private")
    last = gr.State(None)
    timer = gr.Timer(HISTORY_MOVING_S)
    timer.tick(_poll(lab), [*filters, sort, whose, visitor, last], [table, last, timer], show_progress="hidden",
               api_visibility="private")


def _query(values: list[str], order: str) -> dict:
    """Filter dropdown values and the sort choice as `Lab.runs` keyword arguments."""
    key, _, direction = (order or "created:desc").partition(":")
    q = {name: v for name, v in zip(FILTERS, values) if v and v != ALL}
    return q | {"order_by": key, "descending": direction != "asc"}


def _runs(lab, values: list[str], order: str, mine: str, who) -> list[dict]:
    """The runs under the filters; "mine": only those `who` queued (none, for a visitor not known yet)."""
    if mine == "mine" and who.id is None:
        return []
    return lab.runs(**_query(values, order), **({"visitor": who.id} if mine == "mine" else {}))


def _table(lab, runs: list[dict], who):
    """The runs table; on a shared lab with an owner column (you, an account, a visitor)."""
    return views.runs_table(runs, (lambda r: owner_label(r, who)) if lab.settings.multi_user else None)


def _poll(lab):
    """Redraw the table only when a run changed (status or progress) under the filters shown (per page); look
    every 5 s while a listed run moves, every 10 s (for new runs) while none does."""
    def tick(*args):
        *values, order, mine, who, last = args
        runs = _runs(lab, values, order, mine, who)
        sig = (tuple(values), order, mine, who.id, tuple((r["run_id"], r["status"], r["progress"]) for r in runs))
        if sig == last:   # nothing changed: nor did whether a run moves
            return gr.skip(), last, gr.skip()
        moving = any(r["status"] in ("queued", "running") for r in runs)
        return _table(lab, runs, who), sig, gr.Timer(HISTORY_MOVING_S if moving else polling.IDLE_S, active=True)
    return tick


def _detail(lab, run_id: str) -> tuple:
    """The opened run: header, numbers, artifact, curves, result figures, generations, config."""
    run = lab.run(run_id)
    if run is None:
        return (gr.update(visible=False),) + (gr.skip(),) * 8
    samples = lab.samples(run_id)
    m = run.get("metrics") or {}
    figs = plots.result_figures(run["edge"], m, samples) if m else (None, None)
    queue = lab.queue_estimate(run_id) if run["status"] == "queued" else None
    return (gr.update(visible=True), views.progress_html(run, queue), views.metrics_markdown(run),
            views.artifact_markdown(run), plots.training_curves(lab.points(run_id), run["edge"], views.curves_note(run),
                                                             run["method"]),
            *figs,
            _generations(samples), json.dumps(run["config"], indent=1, ensure_ascii=False))


def _generations(samples: list[dict]):
    """The run's generations, the policy columns sharing the width beside the inputs."""
    table = views.side_by_side(samples)
    n = max(len(table.columns) - 1, 1)
    return gr.update(value=table, column_widths=["16%"] + [f"{84 / n:.1f}%"] * n)


def _export_files(lab, run_ids: list[str]) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="runs-export-"))
    stem = run_ids[0] if len(run_ids) == 1 else f"{len(run_ids)}-runs"
    out = []
    for fmt, _ in EXPORTS:
        path = folder / f"{stem}.{'samples.csv' if fmt == 'samples-csv' else fmt}"
        path.write_text(lab.export(run_ids, fmt), encoding="utf-8")
        out.append(str(path))
    return out


def _deleted_message(out: dict) -> str:
    files = f" and its files (`{out['files_removed']}`)" if out["files_removed"] else ""
    users = out["referenced_by"]
    note = (f" Runs {', '.join(f'`{u}`' for u in users)} referred to it: they keep their numbers, but cannot be "
            "re-run from it." if users else "")
    return f"Deleted run `{out['run_id']}`{files}.{note}"


def _confirm(asking: bool) -> tuple:
    return gr.update(visible=not asking), gr.update(visible=asking), gr.update(visible=asking)


def _distinct(runs: list[dict], name: str) -> list[str]:
    return sorted({r[name] for r in runs if r.get(name)})


def _union(a: list[str], b: list[str]) -> list[str]:
    return list(dict.fromkeys(list(a) + list(b)))
