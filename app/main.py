"""The lab's page: Gradio Blocks with one module per tab. Talks to the engine's API, never to torch."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file, e.g. a Hugging Face Space's `app_file: app/main.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr  # noqa: E402

from app import identity, page_api, tab_about, tab_chain, tab_compare, tab_convert, tab_history, tab_table1  # noqa: E402

# Colours from the theme's variables where Gradio has one, so light and dark (?__theme=dark) both read
CSS = (".lab-progress {width: 100%; min-width: 300px; contain: content}"   # a new line lays out only itself
       " .lab-progress-track {background: rgba(128,128,128,0.22); border-radius: 6px; height: 18px; width: 100%}"
       " .caption p {font-size: 0.95em; color: var(--body-text-color-subdued); margin-top: 0}"
       " #lab-intro p {margin: 0.1em 0}"
       " #model-banner {background: #fff4d6; color: #4a3a00; border: 1px solid #e0b04a; border-radius: 6px;"
       " padding: 0 12px}"
       " .dark #model-banner {background: #3a2f0b; color: #f3e3b5; border-color: #a8842f}"
       " .lab-warning {color: #b35900} .dark .lab-warning {color: #f5a35c}"
       " .lab-token small {opacity: 0.85}"
       # plotly writes its own text colour: titles, axes, legends and notes take the theme's instead
       " .js-plotly-plot .main-svg :is(.gtitle, .xtitle, .ytitle, .xtick text, .ytick text, .legendtext,"
       " .legendtitletext, .annotation-text, .bartext-outside, .cbaxis text, .colorbar .cbtitle text)"
       " {fill: var(--body-text-color) !important}")

# The first screen in two lines: what the lab is, and what a run costs (README, Benchmarks: defaults 2-8 min on 2
# cores, RLOO 15-16 min on a CPU without fast bf16; a 2-step distillation through the form 31 s)
INTRO = ("# Triangle Lab\n"
         "Convert one way of adapting a language model into another — a prompt, a LoRA adapter, a reward model — and "
         "measure what survives, live on a small real model.\n\n"
         "A run at its default settings takes **2–8 minutes** on 2 CPU cores (RL up to ≈ 16 min; round trips and Table 1 "
         "chain several runs); the **quick** preset of every method takes about a minute. Runs wait in a queue and "
         "keep going when you close the page.")


MAX_UPLOAD = "5mb"   # any upload (a scenario file; engine/limits.py refuses a scenario over 1 MB by name)


def build_app(lab) -> gr.Blocks:
    with gr.Blocks(title="Triangle Lab") as demo:
        gr.Markdown(INTRO, elem_id="lab-intro")
        problem = lab.model_problem()   # checked without loading: the page stays up with no model at all
        gr.Markdown(banner_text(problem), visible=bool(problem), elem_id="model-banner")
        host_line = gr.Markdown(f"Model: `{lab.model}` · loading…", elem_id="host-line")
        shown = gallery_markdown(lab)
        with gr.Accordion("Examples: finished runs to open now", open=True, visible=bool(shown),
                          elem_id="gallery"):
            gr.Markdown(shown)
        me = identity.build(lab)   # who this browser is: its token, the admin field, the HF login
        selected_run = gr.State(None)
        with gr.Tab("Convert"):
            tab_convert.build(lab, selected_run, me.visitor)
        with gr.Tab("Compare") as compare_tab:
            tab_compare.build(lab, compare_tab)
        with gr.Tab("History"):
            tab_history.build(lab, selected_run, me.visitor)
        tab_chain.build(lab, me.visitor)   # "Round trips"
        tab_table1.build(lab, me.visitor)   # "Table 1" (Sun et al.)
        with gr.Tab("About"):
            tab_about.build(lab)

        def on_load(token, request: gr.Request, profile: gr.OAuthProfile | None):
            token, who = identity.arrive(lab, token, profile)
            wanted = request.query_params.get("run") if request else None
            return token, who, identity.identity_text(lab, who), opening_run(lab, wanted, who), host_text(lab)
        # after a reload: the same visitor (its token survives in the browser), watching its active (or last) run
        demo.load(on_load, me.token, [me.token, me.visitor, me.line, selected_run, host_line],
                  api_visibility="private")
        me.wire()
        page_api.register(lab)   # /convert, /run, /cancel, /delete_run for scripts
    return demo


def banner_text(problem: str | None) -> str:
    """The warning over the page when no model can load: what is missing and what to do."""
    if not problem:
        return ""
    return (f"⚠️ **No model to run on.** {problem[0].upper() + problem[1:]}. New runs fail until then; History, "
            "export and finished runs work.")


def host_text(lab) -> str:
    """The line under the title: which model runs, on what, in which precision (and why)."""
    if lab.model_problem():
        return f"Model: `{lab.settings.model}` · not available (see above)"
    try:
        info = lab.host_info()
    except Exception as e:  # the page still opens: History and finished runs need no model
        return f"⚠️ Model `{lab.settings.model}` could not be loaded: {e}"
    c = info["choice"]
    if c["reason"] in ("measured", "cached"):   # a losing bf16 pass stops early: its time is a lower bound
        timing = f"matmuls fp32 {c['fp32_ms']:g} ms vs bf16 {'≥ ' if c['precision'] == 'fp32' else ''}{c['bf16_ms']:g} ms"
    why = {"measured": f"measured at start-up: {timing}" if c["reason"] == "measured" else "",
           "cached": f"measured on this machine before: {timing}" if c["reason"] == "cached" else "",
           "LAB_PRECISION": "set by LAB_PRECISION"}.get(c["reason"], c["reason"])
    return (f"Model: `{info['model']}` ({info['parameters'] / 1e6:.0f} M parameters), chat format: "
            f"{info['chat_format']} · **{info['label']}** ({why}) · {info['threads']} threads")


def opening_run(lab, wanted: str | None, who=None) -> str | None:
    """The run the page opens on: the one a link names (`/?run=RUN_ID`) if it is stored, else the running
    or queued one, else the newest — on a shared lab (LAB_MULTI_USER) the visitor `who`'s own, never a
    stranger's; a visitor with none opens on the gallery's first example."""
    from engine.gallery import examples
    if wanted and lab.run(wanted.strip()):
        return wanted.strip()
    first_example = next((e["run_id"] for e in examples(lab)), None)
    if lab.settings.multi_user and (who is None or who.id is None):
        return first_example
    runs = lab.runs(visitor=who.id) if lab.settings.multi_user else lab.runs()
    active = [r for r in runs if r["status"] in ("running", "queued")]
    own = [r for r in runs if r.get("visitor") != "example"]
    return (active or own or [{"run_id": first_example}])[0]["run_id"]


def gallery_markdown(lab) -> str:
    """The opening page's list of example runs (links that open each), with where they were made; empty
    when the gallery is not in this lab."""
    from engine.gallery import examples, load_bundle
    shown = examples(lab)
    if not shown:
        return ""
    p = load_bundle()["provenance"]
    lines = [f"- [{e['title']}](?run={e['run_id']}) · {e['run']['duration_s'] or 0:.0f} s" for e in shown]
    return (f"Made by `make gallery` at commit `{p['commit'][:7]}`, each method at that commit's defaults (later "
            f"commits may have changed some: the form shows the settings an opened example ran with), on the "
            f"built-in scenarios ({p['model']}, {p['machine']}, {p['precision']}). Open one; steer, "
            "compare or chain it like your own run (the Compare tab opens on a compare of their policies).\n\n"
            + "\n".join(lines))


def main() -> None:
    if os.environ.get("LAB_MODEL", "embedded").startswith("embedded"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model needs no network at all
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    handler = logging.StreamHandler()   # the engine's own lines (which model loaded) in the server log
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.getLogger("engine").addHandler(handler)
    logging.getLogger("engine").setLevel(logging.INFO)
    mode = os.environ.get("LAB_WORKER_MODE", "process").strip().lower()
    if mode not in ("process", "thread"):
        raise SystemExit(f"LAB_WORKER_MODE: {mode!r} is not process or thread")
    from engine.settings import _flag
    in_process = _flag("LAB_WORKER", True)   # read as the settings read it (a bad value is refused, by name)
    if in_process and mode == "process":
        os.environ["LAB_WORKER"] = "0"   # this process only queues: the worker beside it runs the queue
    from engine.api import get_lab
    from engine.jobs import spawn_worker_process
    lab = get_lab()
    if in_process and mode == "process":
        spawn_worker_process(lab.settings)
    elif lab.settings.worker:     # LAB_WORKER_MODE=thread: a thread of the page's process runs the queue
        lab.jobs.start_worker()
    from starlette.middleware import Middleware

    from app.early_head import EarlyHead
    demo = build_app(lab)
    demo.queue(default_concurrency_limit=8).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), css=CSS, footer_links=["api"],
        max_file_size=MAX_UPLOAD,
        app_kwargs={"middleware": [Middleware(EarlyHead)]})   # app/early_head.py: before Gradio's scripts


if __name__ == "__main__":
    main()
