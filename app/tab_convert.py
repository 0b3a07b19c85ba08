"""Convert tab: pick a scenario and two vertices, a method and its settings, run, watch it train."""
from __future__ import annotations

import json

import gradio as gr

from app import plots, plots_compare, polling, views
from app import plots_reward_parameter as prp
from app.equations import LATEX_DELIMITERS, equation_markdown
from engine.errors import LabInputError

UPLOAD = "(uploaded file)"
DATA_FILE_EDGES = ("prompt->reward", "reward-model", "demonstrations")   # the runs that read a JSONL file
PRESETS = ["default", "quick"]
OPENED_RUN = "opened run"   # the form's third preset while a run of its method is open: that run's settings


TASK_LABELS = {"best-of-n": "best-of-N (a reward at decoding time)",
               "reward-model": "data → reward (outcome model, or discriminator of demonstrations)",
               "demonstrations": "data → parameter (SFT or adversarial imitation of demonstrations)"}


def _edge_choices(lab) -> list[tuple[str, str]]:
    def label(e):
        if e["edge"] in TASK_LABELS:
            return TASK_LABELS[e["edge"]]
        return f"{e['from']} → {e['to']}" + ("" if e["available"] else "  (not built yet)")
    return [(label(e), e["edge"]) for e in lab.tasks()]


def _scenario_markdown(data: dict) -> str:
    demos = "".join(f"\n> **user:** {d['user']}  \n> **assistant:** {d['assistant']}\n"
                    for d in data.get("demonstrations") or [])
    turns = f"demonstration turns after z (rendered in the model's chat format):\n{demos}\n" if demos else ""
    return (f"**{data['name']}** — {data.get('description', '')}\n\n"
            f"prompt z:\n```text\n{data['prompt']}\n```\n{turns}"
            f"contrastive z−:\n```text\n{data.get('negative_prompt') or '—'}\n```\n"
            f"reward: `{_reward_text(data['reward'])}` · inputs: {len(data['train_inputs'])} train, "
            f"{len(data['heldout_inputs'])} held-out")


def _reward_text(spec: dict) -> str:
    """A reward spec in one line; per-input data (golden answers) is counted, not listed."""
    short = {k: (f"… {len(v)} entries" if isinstance(v, dict) and len(v) > 6 else v) for k, v in spec.items()}
    return json.dumps(short, ensure_ascii=False)


def build(lab, selected_run: gr.State, visitor: gr.State) -> None:
    edges = lab.edges()
    with gr.Row():
        with gr.Column(scale=2):
            scenario = gr.Dropdown(lab.scenarios() + [UPLOAD], value="sentiment", label="Scenario",
                                   info="A built-in scenario, or upload a JSON file with the same schema.")
            upload = gr.File(label="Scenario file (JSON)", file_types=[".json"], visible=False)
            data_file = gr.File(label="Data file (JSONL): preference pairs {prompt, chosen, rejected} for "
                                      "prompt → reward (bradley-terry), or expert demonstrations {input, reply} "
                                      "for data → parameter and the discriminator", file_types=[".jsonl"],
                                visible=False, elem_id="data-file")
            scenario_info = gr.Markdown(_scenario_markdown(lab.scenario("sentiment")))
        with gr.Column(scale=2):
            edge = gr.Radio(_edge_choices(lab), value="prompt->parameter", label="Edge (from → to)",
                            info="The six conversions of the triangle, best-of-N decoding with a reward, and a reward "
                                 "model learned from golden-labelled data.",
                            elem_id="edge-radio")
            triangle = gr.Plot(plots.triangle(edges, "prompt->parameter"), show_label=False)
    edge_note = gr.Markdown()
    method = gr.Dropdown([m["method"] for m in lab.methods("prompt", "parameter")], value="kl", label="Method",
                         elem_id="method-dropdown")
    equation = gr.Markdown(_equation(lab, "prompt->parameter", "kl"), latex_delimiters=LATEX_DELIMITERS,
                           elem_id="method-equation")
    if lab.settings.public:
        gr.Markdown(public_note(), elem_id="public-caps")
    status = gr.Markdown(elem_id="convert-status")

    opened = gr.State(None)   # the opened run's settings (follow_run): the form shows them for its method

    @gr.render(inputs=[edge, method, opened])
    def settings(edge_name: str, method_name: str, opened_run: dict | None):
        available = next(e for e in lab.tasks() if e["edge"] == edge_name)["available"]
        if not available or not method_name:
            gr.Markdown("*This edge is not built yet.*")
            return
        if method_name not in {m["method"] for m in lab.task_methods(edge_name)}:
            return   # the edge changed and its method list follows in the next update
        fields = lab.task_fields(edge_name, method_name)
        from_run = opened_run if opened_run and (opened_run["edge"], opened_run["method"]) == (edge_name,
                                                                                           method_name) else None
        shown = run_values(fields, from_run["values"]) if from_run else {f["name"]: f["default"] for f in fields}
        inputs = []
        with gr.Accordion("Settings", open=True):
            preset = gr.Radio(PRESETS + ([OPENED_RUN] if from_run else []), value=OPENED_RUN if from_run else "default",
                              label="Preset", elem_id="preset-radio", interactive=True,
                              info="quick: a short run (about a minute on 2 CPU cores) that still shows the method's "
                                   "effect; default: the full run" + (f"; {OPENED_RUN}: the settings run "
                                   f"`{from_run['run_id']}` (below) ran with" if from_run else "")
                                   + ". Choosing one fills in the settings below.")
            with gr.Row(equal_height=True):
                for f in fields:
                    inputs.append(_field_input(_capped(f) if lab.settings.public else f, shown[f["name"]]))
        run_btn = gr.Button("Run", variant="primary", elem_id="run-button")

        def fill(name):
            values = shown if name == OPENED_RUN else lab.preset_values(edge_name, method_name, name)
            return [gr.update(value=values[f["name"]]) for f in fields]
        preset.change(fill, preset, inputs, api_visibility="private")

        def submit(scen, file, data, who, *values):
            overrides = {f["name"]: v for f, v in zip(fields, values) if v != f["default"]}
            try:
                source, overrides = lab.with_data_file(edge_name, method_name, _scenario_source(scen, file),
                                                       overrides, data)
                request = lab.prepare_task(edge_name, method_name, source, overrides, who)
                run_id = lab.submit(request, who)
            except LabInputError as e:
                return gr.update(), f"<span style='color:#d62728'>**Cannot run:** {e}</span>"
            return run_id, f"Submitted run `{run_id}`; it runs in the background — you can reload or close the page."
        run_btn.click(submit, [scenario, upload, data_file, visitor, *inputs], [selected_run, status],
                      api_visibility="private")   # drawn per method: scripts use /convert (app/page_api.py)

    with gr.Row():
        progress = gr.HTML(views.progress_html(None), elem_id="run-progress", min_width=320)   # wraps on a phone
        cancel_btn = gr.Button("Cancel run", variant="stop", scale=0, visible=False)   # while the run moves
        again_btn = gr.Button("Run again", scale=0, visible=False, elem_id="run-again")
    curves = gr.Plot(plots.training_curves([], empty=views.curves_note(None)), label="Live curves",
                     elem_id="live-curves")
    with gr.Row():
        reward_plot = gr.Plot(label="Result", visible=False, min_width=320)
        kl_plot = gr.Plot(label="Result", visible=False, min_width=320)
        final = gr.Markdown(elem_id="final-metrics", min_width=320)
    generations_note = gr.Markdown(views.generations_note(None, False), elem_id="generations-empty")
    generations = gr.Dataframe(label="Side-by-side generations on held-out inputs (first sample each)",
                               wrap=True, elem_id="generations", max_height=700, visible=False,
                               column_widths=["16%", "28%", "28%", "28%"])
    frontier = gr.Plot(label="Reward vs KL: every RL and best-of-N run of this scenario", visible=False,
                       elem_id="reward-vs-kl")
    token_view = gr.HTML(elem_id="token-view")
    with gr.Group(visible=False) as steer_box:
        gr.Markdown(r"**Decoding-time steering (Eq. 7)**: $\log\pi_2 \propto \log\pi_1 + w\,(\log\pi^* - \log\pi_0)$. "
                    r"Move $w = 1/\beta$; the steered column regenerates from the same seed beside plain $\pi_1$ "
                    r"($w = 0$ gives $\pi_1$ back).", latex_delimiters=LATEX_DELIMITERS)
        with gr.Row():
            w_field = next(f for f in lab.task_fields("parameter->reward", "log-ratio") if f["name"] == "w")
            w_slider = gr.Slider(w_field["lo"], w_field["hi"], value=w_field["default"], step=0.25, label="w = 1/β",
                                 elem_id="steer-w")
            n_steer = gr.Slider(1, 8, value=3, step=1, label="held-out inputs")
        steer_table = gr.Dataframe(wrap=True, elem_id="steer-table", interactive=False)

    # ---- events ----
    def on_scenario(name, file):
        if name == UPLOAD:
            return gr.update(visible=True), on_upload(file)
        return gr.update(visible=False), _scenario_markdown(lab.scenario(name))

    def on_upload(file):
        """An uploaded scenario, checked at once (engine/limits.py: size, counts, lengths), or why it is refused."""
        if not file:
            return "Upload a scenario JSON file."
        try:
            return _scenario_markdown(lab.scenario(file))
        except LabInputError as e:
            return f"<span style='color:#d62728'>**Bad scenario file:** {e}</span>"

    def on_edge(edge_name, wanted_method):
        e = next(e for e in lab.tasks() if e["edge"] == edge_name)
        fig = plots.triangle(lab.edges(), edge_name)
        if not e["available"]:
            return fig, gr.update(choices=[], value=None), "", \
                f"**{e['title']}** ({e['section']}) — not built yet in this version of the lab.", None
        methods = [m["method"] for m in lab.task_methods(edge_name)]
        chosen = wanted_method if wanted_method in methods else methods[0]
        return fig, gr.update(choices=methods, value=chosen), _equation(lab, edge_name, chosen), \
            f"**{e['title']}** ({e['section']})", None

    def follow_run(run_id, current_edge, current_scenario):
        """Opening a run (History, a link, a reload) points scenario, edge and method at the ones that made it,
        and the settings form at the settings it ran with."""
        run = lab.run(run_id) if run_id else None
        if run is None or run["edge"] not in {e["edge"] for e in lab.tasks()}:
            return gr.skip(), gr.skip(), gr.skip(), None, gr.skip()
        scen = run["scenario"] if run["scenario"] in lab.scenarios() and run["scenario"] != current_scenario \
            else gr.skip()
        ran_with = {"run_id": run["run_id"], "edge": run["edge"], "method": run["method"],
                    "values": (run.get("config") or {}).get("method_config") or {}}
        if run["edge"] == current_edge:
            return scen, gr.skip(), gr.update(value=run["method"]), None, ran_with
        return scen, run["edge"], gr.skip(), run["method"], ran_with   # on_edge takes the method once the edge moved

    def on_method(edge_name, method_name):
        return _equation(lab, edge_name, method_name) if method_name else ""

    def refresh(run_id, last_sig, n_inputs):
        return _refresh(lab, run_id, last_sig, n_inputs)

    def steer(run_id, w, n):
        run = lab.run(run_id) if run_id else None
        if not run or run["edge"] != "parameter->reward" or run["status"] != "succeeded":
            return gr.skip()
        try:
            return views.steer_table(lab.steer_preview(run_id, w, int(n)), w)
        except LabInputError as e:
            return views.steer_table([], w, str(e))

    scenario.change(on_scenario, [scenario, upload], [upload, scenario_info], api_visibility="private")
    upload.change(on_upload, upload, scenario_info, api_visibility="private")
    wanted_method = gr.State(None)
    edge.change(on_edge, [edge, wanted_method], [triangle, method, equation, edge_note, wanted_method],
                api_visibility="private")
    edge.change(lambda e: gr.update(visible=e in DATA_FILE_EDGES), edge, data_file, api_visibility="private")
    selected_run.change(follow_run, [selected_run, edge, scenario], [scenario, edge, method, wanted_method, opened],
                        api_visibility="private")
    method.change(on_method, [edge, method], equation, api_visibility="private")
    def cancel_selected(run_id, who):
        try:
            return (run_id and lab.cancel(run_id, who) and f"Cancelling `{run_id}`…") or "Nothing to cancel."
        except LabInputError as e:
            return f"<span style='color:#d62728'>**Cannot cancel:** {e}</span>"
    # the page's button; scripts cancel through /cancel with their token (app/page_api.py)
    cancel_btn.click(cancel_selected, [selected_run, visitor], status, api_visibility="private")

    def run_again(run_id, who):
        try:
            new_id = lab.rerun(run_id, who)
        except LabInputError as e:
            return gr.skip(), f"<span style='color:#d62728'>**Cannot run again:** {e}</span>"
        return new_id, f"Queued run `{new_id}` with the settings of `{run_id}`."
    again_btn.click(run_again, [selected_run, visitor], [selected_run, status], api_name="run_again")
    last_sig = gr.State(None)
    timer = gr.Timer(1.0)
    watched = [progress, curves, reward_plot, kl_plot, final, generations, last_sig, frontier, token_view, steer_box,
               w_slider, steer_table, again_btn, generations_note, timer, cancel_btn]
    w_slider.release(steer, [selected_run, w_slider, n_steer], steer_table, api_name="steer")
    n_steer.release(steer, [selected_run, w_slider, n_steer], steer_table, api_visibility="private")
    timer.tick(refresh, [selected_run, last_sig, n_steer], watched, show_progress="hidden", api_visibility="private")
    selected_run.change(refresh, [selected_run, gr.State(None), n_steer], watched, show_progress="hidden",
                        api_visibility="private")


def _refresh(lab, run_id, last_sig, n_inputs):
    """The 16 outputs of a tick, redrawing only what changed: the progress line when the run moves (its progress,
    stage or place in the queue; the time spent and left come with it), the live curves when a point came,
    everything else when the status changes. The timer ticks every 5 s while the run runs, every 2 s while it
    waits, and stops once it has ended (a new run, or one opened elsewhere, changes `selected_run`, which calls
    this and starts it again)."""
    run = lab.run(run_id) if run_id else None
    if run is None:   # no run (or it was deleted): the empty state, drawn once, and the timer stops
        if last_sig == "empty":
            return (gr.skip(),) * 6 + ("empty",) + (gr.skip(),) * 9
        hidden = gr.update(visible=False)
        return (views.progress_html(None), plots.training_curves([], empty=views.curves_note(None)), hidden,
                hidden, "", hidden, "empty", hidden, "", hidden, gr.skip(), gr.skip(), hidden,
                views.generations_note(None, False), polling.timer_for(None), hidden)
    points = lab.points(run_id)
    eta = lab.queue_estimate(run_id) if run["status"] == "queued" else None
    sig = (run_id, run["status"], run["progress"], run["stage"], len(points), views.eta_text(eta))
    if sig == last_sig:   # nothing moved (its clock did, and shows at the next move): the page redraws nothing
        return (gr.skip(),) * 6 + (last_sig,) + (gr.skip(),) * 9
    if moved_only(last_sig, sig):   # same run, same status: the line, and the curves only when they grew
        grew = sig[4] != last_sig[4]
        curves_fig = (plots.training_curves(points, run["edge"], views.curves_note(run), run["method"]) if grew
                      else gr.skip())
        return (views.progress_html(run, eta), curves_fig) + (gr.skip(),) * 4 + (sig,) + (gr.skip(),) * 9
    done = run["status"] in ("succeeded", "failed", "cancelled", "interrupted")
    m = run.get("metrics") or {}
    samples = lab.samples(run_id) if done else []
    figs = plots.result_figures(run["edge"], m, samples) if m else (None, None)
    again = run["status"] in ("failed", "cancelled", "interrupted") and run["edge"] != "chain"
    table = views.side_by_side(samples) if samples else None
    curves_fig = plots.training_curves(points, run["edge"], views.curves_note(run), run["method"])
    return (views.progress_html(run, eta), curves_fig,
            *(gr.update(value=f, visible=f is not None) for f in figs), views.metrics_markdown(run),
            gr.update(value=table, visible=table is not None), sig,
            *_edge_extras(lab, run, samples if done else [], int(n_inputs)), gr.update(visible=again),
            views.generations_note(run, table is not None), polling.timer_for(run["status"]),
            gr.update(visible=not done))


def moved_only(last_sig, sig: tuple) -> bool:
    """Whether a tick finds the same run in the same unfinished status as the last one drew (only its progress,
    stage, queue place or curve points moved): then the charts of results, the tables and the buttons stay as
    they are. Signatures: (run id, status, progress, stage, curve points, ETA text)."""
    return (isinstance(last_sig, (tuple, list)) and tuple(last_sig[:2]) == sig[:2]
            and sig[1] in ("queued", "running"))


def _edge_extras(lab, run: dict, samples: list[dict], n_inputs: int) -> tuple:
    """(reward-vs-KL chart, per-token view, steering box, w slider, steering table) for the edges that have them.

    A finished parameter->reward run opens its steering box already filled: the slider at the run's own w and the
    table regenerated at that w, so the user sees text before touching the slider."""
    edge, hidden = run["edge"], gr.update(visible=False)
    if edge in ("reward->parameter", "best-of-n"):
        return (gr.update(value=plots_compare.frontier_figure(lab.frontier(run["scenario"])), visible=True), "",
                hidden, gr.skip(), gr.skip())
    if edge == "parameter->reward" and samples and run["status"] == "succeeded":
        w = float(run["config"].get("w", 1.0))
        try:
            table = views.steer_table(lab.steer_preview(run["run_id"], w, n_inputs), w)
        except LabInputError as e:
            table = views.steer_table([], w, str(e))
        return hidden, prp.token_html(samples), gr.update(visible=True), w, table
    return hidden, "", hidden, gr.skip(), gr.skip()


def _equation(lab, edge_name: str, method_name: str) -> str:
    m = next((m for m in lab.task_methods(edge_name) if m["method"] == method_name), None)
    return equation_markdown(edge_name, method_name, m["title"], m["equation"]) if m else ""


def _scenario_source(name: str, file) -> str:
    if name == UPLOAD:
        if not file:
            raise LabInputError("scenario: choose a JSON file to upload, or pick a built-in scenario")
        return file
    return name


def public_note() -> str:
    """The form's note on a public lab (LAB_PUBLIC=1): which settings are capped, and at what."""
    from engine.limits import PUBLIC_CAPS, PUBLIC_TRAIN_ROWS
    caps = ", ".join([f"`{k}` ≤ {v}" for k, v in PUBLIC_CAPS.items()]
                     + [f"`steps × batch_size` ≤ {PUBLIC_TRAIN_ROWS}"])
    return (f"**A public lab:** costly settings are capped so that every visitor's run stays short — {caps} "
            "(`n` = the largest N of best-of-N; `n_train`/`n_heldout` count the inputs a run uses). Run the lab "
            "yourself (`make run`) for more.")


def _capped(f: dict) -> dict:
    """A field with its range cut to the public cap, said in its help."""
    from engine.limits import PUBLIC_CAPS
    cap = PUBLIC_CAPS.get(f["name"])
    if cap is None or f["type"] not in ("int", "float") or (f["hi"] is not None and f["hi"] <= cap):
        return f
    return {**f, "hi": cap, "help": f["help"] + " Capped on this public lab."}


def run_values(fields: list[dict], ran_with: dict) -> dict:
    """Every field's value in a stored run's method config; a field the run does not name (a setting added
    since, a run stored by a script) keeps its default."""
    return {f["name"]: ran_with.get(f["name"], f["default"]) for f in fields}


def _field_input(f: dict, value):
    label, info = f["name"], f["help"]
    if f["type"] == "bool":
        return gr.Checkbox(value=value, label=label, info=info, min_width=160, interactive=True,
                           elem_id=f"set-{f['name']}")
    if f["type"] in ("int", "float"):
        rng = f" Range {f['lo']:g} … {f['hi']:g}." if f["lo"] is not None and f["hi"] is not None else ""
        return gr.Number(value=value, label=label, info=info + rng, precision=0 if f["type"] == "int" else None,
                         min_width=160, elem_id=f"set-{f['name']}", interactive=True)
    return gr.Textbox(value=value, label=label, info=info, min_width=160, elem_id=f"set-{f['name']}", interactive=True)
