"""Round trips tab: run a path of edges (e.g. prompt → parameter → prompt) in the background and watch what
is left of the original prompted behaviour after every hop, drawn on the triangle. The work happens in
engine/chain.py; every hop is an ordinary run (History lists it) with the round trip as its parent."""
from __future__ import annotations

import json

import gradio as gr

from app import plots_chain, polling, views
from engine.errors import LabInputError

INTRO = ("Convert a behaviour around the triangle and measure what survives. Each hop runs one edge with its "
         "default method and settings, fed with what the previous hop made. After every hop the lab compares the "
         "hop's policy with the **original prompted behaviour** π0(·|x,z) on held-out inputs: the arrow shows "
         "KL(π0(·|x,z) ‖ π_hop) in nats per token (0 = nothing lost; the dashed line is π0 without the prompt) "
         "and the mean reference reward r. A hop that ends at the reward vertex makes a reward, not a policy: "
         "its arrow shows how often that reward orders replies like the reference reward.")
PATHS = ["prompt,parameter,prompt", "prompt,parameter,reward,prompt", "prompt,reward,parameter,prompt",
         "prompt,reward,prompt", "prompt,parameter,reward"]


def build(lab, visitor: gr.State) -> None:
    with gr.Tab("Round trips"):
        gr.Markdown(INTRO)
        with gr.Row():
            scenario = gr.Dropdown(lab.scenarios(), value="sentiment", label="Scenario", scale=1)
            path = gr.Dropdown(PATHS, value=PATHS[0], label="Path (vertices, comma separated)",
                               allow_custom_value=True, scale=2, elem_id="chain-path")
            methods = gr.Textbox("", label="Methods per hop (optional)", placeholder="e.g. kl,discrete", scale=1)
        sets = gr.Textbox("", label="Settings (optional)", placeholder="steps=20, 2.rounds=1, chain.n_heldout=8",
                          info="KEY=VALUE: every hop that has KEY · N.KEY=VALUE: hop N · chain.KEY: the measuring")
        with gr.Row():
            run_btn = gr.Button("Run round trip", variant="primary", elem_id="chain-run")
            cancel_btn = gr.Button("Cancel", variant="stop")
        status = gr.HTML(views.progress_html(None))
        figure = gr.Plot(plots_chain.chain_figure(PATHS[0].split(","), []), show_label=False, elem_id="chain-figure")
        numbers = gr.Markdown()
        chain_id, shown = gr.State(None), gr.State(None)
        timer = gr.Timer(polling.RUNNING_S, active=False)   # on while a round trip this visitor started moves

        # ---- events ----
        run_btn.click(lambda *a: _start(lab, *a), [scenario, path, methods, sets, visitor], [chain_id, status],
                      api_name="round_trip")
        cancel_btn.click(lambda cid, who: _cancel(lab, cid, who), [chain_id, visitor], status,
                         api_name="cancel_round_trip")
        path.change(lambda p, cid: gr.skip() if cid else _preview(p), [path, chain_id], [figure], api_visibility="private")
        chain_id.change(lambda cid: polling.timer_for("queued" if cid else None), chain_id, timer,
                        api_visibility="private")
        timer.tick(lambda cid, last: _refresh(lab, cid, last), [chain_id, shown], [status, figure, numbers, shown, timer],
                   api_visibility="private")


def parse_sets(text: str) -> dict[str, str]:
    """"a=1, 2.b=x" -> {"a": "1", "2.b": "x"}; errors name the bad part."""
    out = {}
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise LabInputError(f"settings: {part!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _start(lab, scenario_name: str, path: str, methods: str, sets: str, who):
    from engine.chain import prepare_chain, start_chain
    from engine.scenarios import load_scenario
    try:
        ms = [m.strip() for m in methods.split(",")] if methods.strip() else None
        request = prepare_chain(path, load_scenario(scenario_name), ms, parse_sets(sets), lookup=lab.store.get_run)
        parent_id = start_chain(lab, request, who)
    except LabInputError as e:
        return gr.skip(), f"<div style='color:#d62728'><b>Cannot start:</b> {e}</div>"
    return parent_id, views.progress_html(lab.run(parent_id))


def _cancel(lab, parent_id: str | None, who):
    """Cancel the round trip (queued: at once; running: before its next hop) and the hop running now, when
    it is `who`'s to cancel."""
    if not parent_id:
        return gr.skip()
    try:
        lab.cancel(parent_id, who)
    except LabInputError as e:
        return f"<div style='color:#d62728'><b>Cannot cancel:</b> {e}</div>"
    for child in lab.store.children(parent_id):
        if child["status"] in ("queued", "running"):
            lab.cancel(child["run_id"], who)
    return gr.skip()


def _preview(path: str):
    try:
        from engine.chain import parse_path
        return plots_chain.chain_figure(list(parse_path(path)), [])
    except LabInputError:
        return gr.skip()


def _refresh(lab, parent_id: str | None, last):
    """(status, figure, numbers, what was drawn, timer): the figure redrawn only when a hop's numbers changed;
    the status line while the round trip runs; the timer stops once it has ended."""
    run = lab.run(parent_id) if parent_id else None
    if run is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), polling.timer_for(None)
    m = run.get("metrics") or {}
    status = views.progress_html(run) + _children_html(lab, parent_id)
    drawn = (parent_id, json.dumps(m, sort_keys=True, default=str))
    if drawn == last:
        return status, gr.skip(), gr.skip(), gr.skip(), polling.timer_for(run["status"])
    origin = {"reward": m.get("reward_origin"), "kl_base_to_origin": m.get("kl_base_to_origin")}
    fig = plots_chain.chain_figure(run["method"].split(","), m.get("hops") or [], origin)
    return status, fig, views.metrics_markdown(run), drawn, polling.timer_for(run["status"])


def _children_html(lab, parent_id: str) -> str:
    """One line per hop started so far: its run, status and progress."""
    lines = [f"hop {i + 1}: <code>{c['run_id']}</code> {c['edge']} ({c['method']}) · {c['status']} · "
             f"{100 * (c.get('progress') or 0):.0f}% · {c.get('stage') or ''}"
             for i, c in enumerate(lab.store.children(parent_id))]
    return "<div style='font-size:0.85em;margin-top:6px'>" + "<br>".join(lines) + "</div>" if lines else ""
