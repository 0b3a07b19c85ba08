"""How often a page asks the server: each second while the run it watches moves, slowly or not at all otherwise.

Every tab that follows a run polls it with a `gr.Timer`; each tick is a request the server answers and a redraw
the browser may do. The functions here give the timer's next setting from what the tab watches, so a page that
shows a finished run (or none) costs nothing, and one waiting in the queue asks every few seconds.
"""
from __future__ import annotations

import gradio as gr

RUNNING_S = 5.0    # the progress line and the live curves. Each tick costs the browser even when it redraws nothing:
                   # on the lab's page a headless Chromium took 0.017 of a core idle, 0.044 with a tick every 3 s
                   # that changed nothing, 0.061 with the progress line redrawn each time; the run loses more
                   # than that (its 2 threads wait for the one the browser took)
QUEUED_S = 2.0     # the queue position and its ETA
IDLE_S = 10.0      # a tab that looks for something new (History, the newest Table 1) while nothing moves


def interval(status: str | None, idle_s: float | None = None, running_s: float = RUNNING_S) -> float | None:
    """Seconds to the next tick while a watched run is in `status`; `idle_s` (None: stop) once it moves no more."""
    return {"running": running_s, "queued": QUEUED_S}.get(status or "", idle_s)


def timer_for(status: str | None, idle_s: float | None = None, running_s: float = RUNNING_S) -> gr.Timer:
    """The timer update for `interval`: active at that interval, or off."""
    every = interval(status, idle_s, running_s)
    return gr.Timer(every, active=True) if every else gr.Timer(active=False)
