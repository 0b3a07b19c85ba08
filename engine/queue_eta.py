"""How long a queued run waits: pure functions from stored durations to an estimate (no I/O).

A run's own length is the median wall time of finished runs of the same method with the same settings (the
seed aside); without one, of the same method with any settings; without that, unknown. Its wait is the time
left of the runs running now plus the length of every run ahead of it, as one worker serves them (more
workers only shorten it).
"""
from __future__ import annotations

import statistics
from datetime import datetime

IGNORED = ("seed",)   # settings that do not change how long a run takes


def _same_settings(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k not in IGNORED} == {k: v for k, v in b.items() if k not in IGNORED}


def run_length(method_config: dict, history: list[tuple[dict, float]]) -> float | None:
    """Median seconds of the finished runs in `history` ((method_config, seconds) of one method) that share
    these settings; else of all of them; None when there are none."""
    same = [s for c, s in history if _same_settings(c, method_config)]
    pool = same or [s for _, s in history]
    return float(statistics.median(pool)) if pool else None


def time_left(length: float | None, elapsed: float, progress: float) -> float | None:
    """A running run's remaining seconds: its expected length less what it has run, or, without one, its
    pace so far (elapsed / progress) once it has made some progress."""
    if length is not None:
        return max(length - elapsed, 0.0)
    if progress >= 0.05:
        return elapsed * (1 - progress) / progress
    return None


def elapsed_s(started_at: str | None, now: datetime) -> float:
    return max((now - datetime.fromisoformat(started_at)).total_seconds(), 0.0) if started_at else 0.0


def queue_eta(run: dict, ahead: list[dict], running: list[dict], history, now: datetime) -> dict:
    """{"wait_s", "run_s", "unknown"}: seconds until `run` starts (a lower bound when `unknown` > 0 runs in
    front of it could not be timed; None when none could), its own expected length (None: unknown).
    `history(edge, method)` gives (method_config, seconds) of that method's finished runs."""
    cache: dict[tuple[str, str], list] = {}

    def length(r: dict) -> float | None:
        key = (r["edge"], r["method"])
        if key not in cache:
            cache[key] = history(*key)
        return run_length(((r.get("config") or {}).get("method_config") or {}), cache[key])

    parts = [time_left(length(r), elapsed_s(r.get("started_at"), now), r.get("progress") or 0.0) for r in running]
    parts += [length(r) for r in ahead]
    known = [p for p in parts if p is not None]
    unknown = len(parts) - len(known)
    wait = sum(known) if known or not parts else None
    return {"wait_s": wait, "run_s": length(run), "unknown": unknown}
