"""The job runner: runs execute in a background thread, one at a time by default, queued beyond that.

Progress, curves, samples and artifacts go to storage as they happen, so the page can be reloaded or
closed while a run goes on. A run left `running` by a dead process is marked `interrupted` at start-up.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import socket
import threading
import time
import traceback

from engine.errors import LabInputError, RunCancelled
from engine.methods import check_artifact
from engine.references import check_references
from engine.registry import (
    EdgeSpec,
    MethodSpec,
    build_config,
    get_edge,
    get_method,
    get_task,
    restore_config,
)
from engine.run_types import RunContext
from engine.scenarios import Scenario, load_scenario, parse_scenario
from engine.settings import Settings

OWNER = f"{os.getpid()}@{socket.gethostname()}"


def owner_alive(owner: str) -> bool:
    pid, _, host = owner.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """A validated request: everything needed to start a run, checked before anything is written."""
    edge: EdgeSpec
    method: MethodSpec
    scenario: Scenario
    config: object

    def stored_config(self) -> dict:
        return {"method_config": dataclasses.asdict(self.config), "scenario_data": self.scenario.to_dict()}


def prepare(source: str, target: str, method: str | None, scenario: str | dict | Scenario,
            overrides: dict | None = None, lookup=None) -> RunRequest:
    """Validate a request; raises LabInputError naming the bad part, writes nothing.

    With `lookup` (run id -> stored run), references to other runs' artifacts are checked too."""
    return prepare_task(get_edge(source, target), method, scenario, overrides, lookup)


def prepare_task(edge: EdgeSpec, method: str | None, scenario: str | dict | Scenario,
                 overrides: dict | None = None, lookup=None) -> RunRequest:
    """`prepare` for any task of the registry: an edge or, e.g., best-of-N."""
    spec = get_method(edge, method)
    if isinstance(scenario, Scenario):
        sc = scenario
    elif isinstance(scenario, dict):
        sc = parse_scenario(scenario)
    else:
        sc = load_scenario(scenario)
    config = build_config(spec, overrides or {})
    if lookup is not None:
        check_references(config, sc, lookup)
    return RunRequest(edge, spec, sc, config)


class JobRunner:
    def __init__(self, settings: Settings, store, host_factory):
        self.settings, self.store, self._host_factory = settings, store, host_factory
        self._host = None
        self._queue: queue.Queue[str] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        # one run on the model at a time: the queue's worker, a CLI run and a chain's hops all hold it (a chain
        # for all its hops, so a run submitted meanwhile stays queued until the chain ends); reentrant for that
        self.exclusive = threading.RLock()
        store.mark_interrupted(is_alive=owner_alive)

    @property
    def host(self):
        with self._lock:
            if self._host is None:
                self._host = self._host_factory()
            return self._host

    # ---------- background ----------
    def _create(self, request: RunRequest) -> str:
        run_id = self.store.create_run(request.edge.name, request.method.name, request.scenario.name,
                                       request.stored_config(), status="queued", owner=OWNER)
        self._cancel[run_id] = threading.Event()
        return run_id

    def submit(self, request: RunRequest) -> str:
        run_id = self._create(request)
        self._queue.put(run_id)
        self._ensure_worker()
        return run_id

    def cancel(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        if run is None or run["status"] not in ("queued", "running"):
            return False
        if run_id in self._cancel:
            self._cancel[run_id].set()
        if run["status"] == "queued":
            self.store.mark_finished(run_id, "cancelled", error="cancelled before it started")
        return True

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="lab-jobs", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            run = self.store.get_run(run_id)
            if run and run["status"] == "queued":
                self.execute(run_id)
            self._cancel.pop(run_id, None)

    def wait_idle(self, timeout: float = 600) -> None:
        t0 = time.time()
        # a run the worker has taken off the queue can still be waiting for its turn (status queued)
        while (not self._queue.empty() or self.store.runs_with_status("running", "queued")) \
                and time.time() - t0 < timeout:
            time.sleep(0.2)

    # ---------- one run, in this thread ----------
    def run_now(self, request: RunRequest) -> str:
        """Create and execute a run synchronously (the CLI); returns its id."""
        run_id = self._create(request)
        self.execute(run_id)
        return run_id

    def execute(self, run_id: str) -> None:
        with self.exclusive:
            self._execute(run_id)

    def _execute(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        cfg = run["config"]
        out_dir = self.settings.artifacts_dir / run_id
        cancel = self._cancel.setdefault(run_id, threading.Event())
        self.store.mark_started(run_id, owner=OWNER)
        try:
            edge = get_task(run["edge"])
            spec = get_method(edge, run["method"])
            config = restore_config(spec, cfg["method_config"])
            scenario = parse_scenario(cfg["scenario_data"])
            out_dir.mkdir(parents=True, exist_ok=True)
            host = self.host
            ctx = RunContext(host=host, scenario=scenario, run_id=run_id, out_dir=out_dir,
                             on_progress=self._progress_fn(run_id, cancel), lookup=self.store.get_run)
            with host.run_precision(getattr(config, "precision", "auto")):
                self.store.update_run(run_id, config=cfg | {"runtime": host.runtime()},   # what it ran on
                                      model=host.model_name)
                result = spec.run(spec.name, config, ctx)
            check_artifact(spec, result.artifact)   # the artifact sits at the edge's target vertex
            self.store.add_samples(run_id, result.samples)
            a = result.artifact
            if a is not None:
                self.store.add_artifact(run_id, **a.row())
            self.store.mark_finished(run_id, "succeeded", metrics=result.metrics)
        except RunCancelled:
            self._discard(run_id, out_dir)
            self.store.mark_finished(run_id, "cancelled", error="cancelled by the user")
        except LabInputError as e:
            self._discard(run_id, out_dir)
            self.store.mark_finished(run_id, "failed", error=str(e))
        except Exception as e:  # a failed run keeps its error, never half its outputs
            self._discard(run_id, out_dir)
            self.store.mark_finished(run_id, "failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")

    def _discard(self, run_id: str, out_dir) -> None:
        self.store.clear_run_outputs(run_id)
        shutil.rmtree(out_dir, ignore_errors=True)

    def _progress_fn(self, run_id: str, cancel: threading.Event):
        last = [0.0]

        def on_progress(fraction: float, stage: str, step: int | None = None,
                        points: dict[str, float] | None = None) -> None:
            if cancel.is_set():
                raise RunCancelled()
            if points:
                self.store.add_points(run_id, step or 0, points)
            now = time.monotonic()
            if points or now - last[0] > 0.5:  # throttle plain progress writes
                last[0] = now
                self.store.update_run(run_id, progress=round(float(fraction), 4), stage=stage)
        return on_progress
