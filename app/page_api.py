"""The page's scripting endpoints (Gradio API, e.g. `gradio_client`): what `python -m engine submit` and
`show` do, by name. The page's own events are named where a script would call them too (cancel, run_again,
steer, compare, history, export, delete_run, round_trip, cancel_round_trip); its plumbing is private."""
from __future__ import annotations

import gradio as gr

from engine.errors import LabInputError


def register(lab) -> None:
    """Inside a gr.Blocks: /convert and /run."""

    def convert(source: str, target: str, method: str, scenario: str, settings: dict | None = None) -> dict:
        """Queue one edge's run, as `python -m engine submit`: {"run_id", "status": "queued"}. `settings` maps
        config fields to values (`python -m engine edges` lists them); a built-in scenario by name."""
        try:
            request = lab.prepare(source, target, method or None, scenario, settings or {})
        except LabInputError as e:
            raise gr.Error(str(e)) from None
        return {"run_id": lab.submit(request), "status": "queued"}

    def run(run_id: str) -> dict:
        """A stored run as `python -m engine show` prints it, without its curves and samples: status,
        progress, stage, metrics, artifacts, error."""
        found = lab.run(run_id)
        if found is None:
            raise gr.Error(f"no run with id {run_id!r}")
        config = {k: v for k, v in (found.get("config") or {}).items() if k != "scenario_data"}
        return {**found, "config": config}

    gr.api(convert, api_name="convert")
    gr.api(run, api_name="run")
