"""The page's scripting endpoints (Gradio API, e.g. `gradio_client`): what `python -m engine submit`, `show`,
`delete` and a cancel do, by name. The page's own events are named where a script would call them too
(run_again, steer, compare, history, export, round_trip, cancel_round_trip); its plumbing is private.

A script is a visitor like a browser (engine/visitors.py): the `visitor_token` it passes (any random string of
16–128 letters, digits, '-' or '_') owns the runs it queues, and only that token, or `admin_token` (the lab's
LAB_ADMIN_TOKEN), cancels or deletes them on a shared lab."""
from __future__ import annotations

import gradio as gr

from engine.errors import LabInputError
from engine.scenarios import builtin_scenarios
from engine.visitors import api_visitor


def register(lab) -> None:
    """Inside a gr.Blocks: /convert, /run, /cancel and /delete_run."""

    def who(visitor_token: str, admin_token: str = ""):
        try:
            return api_visitor(lab.settings.admin_token, visitor_token or None, admin_token or None)
        except LabInputError as e:
            raise gr.Error(str(e)) from None

    def convert(source: str, target: str, method: str, scenario: str | dict, settings: dict | None = None,
                visitor_token: str = "") -> dict:
        """Queue one edge's run, as `python -m engine submit`: {"run_id", "status": "queued"}. `settings` maps
        config fields to values (`python -m engine edges` lists them); the scenario is a built-in's name or a
        scenario object (the file's JSON). The run belongs to `visitor_token` (pass the same one to /cancel)."""
        caller = who(visitor_token)
        try:
            if isinstance(scenario, str) and scenario not in builtin_scenarios():   # never a path on the server
                raise LabInputError(f"scenario: {scenario!r} is not a built-in ({', '.join(builtin_scenarios())}); "
                                    "pass your own as a scenario object")
            request = lab.prepare(source, target, method or None, scenario, settings or {}, who=caller)
            return {"run_id": lab.submit(request, caller), "status": "queued"}
        except LabInputError as e:
            raise gr.Error(str(e)) from None

    def run(run_id: str) -> dict:
        """A stored run as `python -m engine show` prints it, without its curves and samples: status,
        progress, stage, metrics, artifacts, error."""
        found = lab.run(run_id)
        if found is None:
            raise gr.Error(f"no run with id {run_id!r}")
        config = {k: v for k, v in (found.get("config") or {}).items() if k != "scenario_data"}
        return no_file_objects({**{k: v for k, v in found.items() if k != "visitor"}, "config": config})

    def cancel(run_id: str, visitor_token: str = "", admin_token: str = "") -> dict:
        """Cancel a queued run at once, or ask a running one to stop: {"run_id", "cancelled": true} (false when
        it had already finished). On a shared lab, only with the token that queued it or the admin token."""
        try:
            return {"run_id": run_id, "cancelled": lab.cancel(run_id, who(visitor_token, admin_token))}
        except LabInputError as e:
            raise gr.Error(str(e)) from None

    def delete_run(run_id: str, visitor_token: str = "", admin_token: str = "") -> dict:
        """Delete a finished run with its files, as `python -m engine delete`; on a shared lab only with the token
        that queued it or the admin token."""
        try:
            return lab.delete_run(run_id, who(visitor_token, admin_token))
        except LabInputError as e:
            raise gr.Error(str(e)) from None

    gr.api(convert, api_name="convert")
    gr.api(run, api_name="run")
    gr.api(cancel, api_name="cancel")
    gr.api(delete_run, api_name="delete_run")


def no_file_objects(value):
    """`value` with every dict key "path" (a string) named "file" instead: gradio_client takes any {"path": str}
    in a reply for a file to download, and the lab does not serve its artifacts' folders, so a finished run's
    artifacts ({"kind", "vertex", "path", "data"}) would fail the client's call."""
    if isinstance(value, dict):
        return {("file" if k == "path" and isinstance(v, str) else k): no_file_objects(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_file_objects(v) for v in value]
    return value
