"""The lab's page: Gradio Blocks with one module per tab. Talks to the engine's API, never to torch."""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file, e.g. a Hugging Face Space's `app_file: app/main.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr  # noqa: E402

from app import tab_about, tab_chain, tab_compare, tab_convert, tab_history  # noqa: E402

CSS = (".lab-progress {width: 100%; min-width: 300px}"
       " .caption p {font-size: 0.95em; color: #444; margin-top: 0}")


def build_app(lab) -> gr.Blocks:
    with gr.Blocks(title="Triangle Lab") as demo:
        gr.Markdown("# Triangle Lab\nPrompt ⇄ parameter ⇄ reward: convert one way of adapting a language "
                    f"model into another and measure what survives. Model: `{lab.settings.model}`.")
        selected_run = gr.State(None)
        with gr.Tab("Convert"):
            tab_convert.build(lab, selected_run)
        with gr.Tab("Compare") as compare_tab:
            tab_compare.build(lab, compare_tab)
        with gr.Tab("History"):
            tab_history.build(lab, selected_run)
        tab_chain.build(lab)   # "Round trips"
        with gr.Tab("About"):
            tab_about.build(lab)

        def on_load(request: gr.Request):
            return opening_run(lab, request.query_params.get("run") if request else None)
        demo.load(on_load, None, selected_run)  # after a reload, watch the active (or last) run
    return demo


def opening_run(lab, wanted: str | None) -> str | None:
    """The run the page opens on: the one a link names (`/?run=RUN_ID`) if it is stored, else the running
    or queued one, else the newest."""
    if wanted and lab.run(wanted.strip()):
        return wanted.strip()
    runs = lab.runs()
    active = [r for r in runs if r["status"] in ("running", "queued")]
    return (active or runs or [{"run_id": None}])[0]["run_id"]


def main() -> None:
    if os.environ.get("LAB_MODEL", "embedded") == "embedded":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model needs no network at all
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from engine.api import get_lab
    lab = get_lab()
    demo = build_app(lab)
    demo.queue(default_concurrency_limit=8).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), css=CSS, footer_links=["api"])


if __name__ == "__main__":
    main()
