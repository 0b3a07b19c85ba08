"""The job runner: the queue lives in the database, so it outlives the process and serves many.

A submitted run is a `queued` row. Workers — the page's process (unless LAB_WORKER=0) and any number of
`python -m engine worker` processes, on one machine or several — claim the oldest queued run atomically
(`Store.claim_next`) and execute it, one at a time per process. Progress, curves, samples and artifacts go
to storage as they happen, so the page can be reloaded or closed while a run goes on. A run whose runner died
(its pid is gone, or its heartbeat is stale) is marked `interrupted`; the queued runs behind it start in order.
"""
from __future__ import annotations

import atexit
import ctypes
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.errors import LabInputError, RunCancelled
from engine.limits import check_scenario_tokens, token_limit
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

def _process_start(pid: int) -> str:
    """The kernel's start time of `pid` (clock ticks since boot), "" where /proc cannot tell: with the pid it
    names one process, so a new process that reuses a dead one's pid (a restarted container) is not it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


log = logging.getLogger("triangle_lab.jobs")
CHAIN_EDGE = "chain"   # engine/chain.py's parent rows
COMPOSITE_EDGES = (CHAIN_EDGE, "table1")   # parent rows whose steps are runs of their own (engine/table1.py)
OWNER = f"{os.getpid()}.{_process_start(os.getpid())}@{socket.gethostname()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process `owner` ("pid.start@host", or an older "pid@host") still runs; None when it is on
    another machine (then only its heartbeat can tell)."""
    proc, _, host = owner.partition("@")
    if host != socket.gethostname():
        return None
    pid, _, start = proc.partition(".")
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return not start or _process_start(int(pid)) in ("", start)


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
    HEARTBEAT_S = 10.0     # how often a worker tells the database its runs are alive
    POLL_S = 1.0           # how often an idle worker looks for runs queued by another process

    def __init__(self, settings: Settings, store, host_factory, chain_executor=None):
        self.settings, self.store, self._host_factory = settings, store, host_factory
        self.chain_executor = chain_executor     # (run, cancel event) -> None: runs a queued round trip
        self._host = None
        self._cancel: dict[str, threading.Event] = {}
        self._running: set[str] = set()          # runs this process executes now (their heartbeat is ours)
        self._worker: threading.Thread | None = None
        self._beat: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()             # the model host's creation
        self._threads = threading.Lock()          # starting the worker and heartbeat threads
        # one run on the model at a time: the queue's worker, a CLI run and a chain's hops all hold it (a chain
        # for all its hops, so a run submitted meanwhile stays queued until the chain ends); reentrant for that
        self.exclusive = threading.RLock()
        self.recover()

    @property
    def host(self):
        with self._lock:
            if self._host is None:
                self._host = self._host_factory()
            return self._host

    @property
    def loaded_host(self):
        """The model host if this process has loaded it, else None (nothing is loaded to find out)."""
        return self._host

    def check_tokens(self, scenario: Scenario, host) -> None:
        """Every text of the scenario within LAB_MAX_INPUT_TOKENS of this model's tokenizer (engine/limits.py)."""
        check_scenario_tokens(scenario, host.count_tokens,
                              token_limit(self.settings.max_input_tokens, host.context_length))

    def recover(self) -> list[str]:
        """Mark runs whose runner died `interrupted` (queued runs stay queued)."""
        return self.store.recover(is_alive=owner_alive, stale_after_s=self.settings.stale_after_s)

    # ---------- the queue ----------
    def submit(self, request: RunRequest, start_worker: bool = True, visitor: str | None = None) -> str:
        """Queue a run in the database, owned by `visitor`; this process's worker (LAB_WORKER, default on) is
        started or woken for it. `start_worker=False` only queues it (`engine submit`: a process that exits)."""
        run_id = self.store.create_run(request.edge.name, request.method.name, request.scenario.name,
                                       request.stored_config(), status="queued", visitor=visitor)
        self._notify(start_worker)
        return run_id

    def wake(self) -> None:
        """A run was queued here by other means (a round trip's row): start or wake this process's worker."""
        self._notify(True)

    def _notify(self, start_worker: bool) -> None:
        if start_worker and self.settings.worker:
            self.start_worker()
        self._wake.set()

    def rerun(self, run_id: str, start_worker: bool = True, visitor: str | None = None) -> str:
        """Queue a new run with the same edge, method, scenario and settings as `run_id`, owned by `visitor`."""
        run = self.store.get_run(run_id)
        if run is None:
            raise LabInputError(f"no run with id {run_id!r}")
        if run.get("parent_id"):
            raise LabInputError(f"run {run_id} is a hop of round trip {run['parent_id']}: run that one again")
        config = {k: v for k, v in run["config"].items() if k not in ("runtime", "scenario_hash")}
        if run["status"] in ("queued", "running"):
            raise LabInputError(f"run {run_id} is {run['status']}: it has not finished, nothing to run again")
        new_id = self.store.create_run(run["edge"], run["method"], run["scenario"], config | {"rerun_of": run_id},
                                       status="queued", visitor=visitor)
        self._notify(start_worker)
        return new_id

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued run now, or ask the process running it (any process) to stop it."""
        done = self.store.request_cancel(run_id)
        if done and run_id in self._cancel:
            self._cancel[run_id].set()
        return done is not None

    def start_worker(self) -> None:
        with self._threads:
            if self._worker is None or not self._worker.is_alive():
                self._stop.clear()
                self._worker = threading.Thread(target=self.work, name="lab-jobs", daemon=True)
                self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def work(self, until_idle: bool = False, on_finished=None) -> int:
        """Claim and execute queued runs until `stop()` (or, with `until_idle`, until none is left); returns
        how many it executed. `on_finished(run)` is told of each."""
        done, last_recover = 0, time.monotonic()
        while not self._stop.is_set():
            with self.exclusive:   # claim only when the model is free: a claimed run starts at once
                try:
                    run_id = self.store.claim_next(OWNER)
                except Exception:  # the database went away for a moment: the worker lives on and retries
                    log.exception("worker: claiming the next run failed; retrying in %.0f s", 5 * self.POLL_S)
                    run_id = None
                    self._stop.wait(5 * self.POLL_S)
                if run_id:
                    self._execute_claimed(run_id)   # it stores its own failure: nothing escapes
            if run_id:
                done += 1
                if on_finished:
                    on_finished(self.store.get_run(run_id))
                continue
            if until_idle:
                break
            if time.monotonic() - last_recover > self.settings.stale_after_s / 2:
                self.recover()      # a worker elsewhere may have died with a run
                last_recover = time.monotonic()
            self._wake.wait(self.POLL_S)
            self._wake.clear()
        return done

    def wait_idle(self, timeout: float = 600) -> None:
        t0 = time.time()
        while (self.store.queued() or self.store.runs_with_status("running")) and time.time() - t0 < timeout:
            time.sleep(0.2)

    # ---------- one run, in this thread ----------
    def run_now(self, request: RunRequest) -> str:
        """Create and execute a run synchronously (the CLI); returns its id. It is `running` from the start,
        so no queue worker can take it."""
        with self.exclusive:
            run_id = self.store.create_run(request.edge.name, request.method.name, request.scenario.name,
                                           request.stored_config(), status="running", owner=OWNER)
            self._execute_claimed(run_id)
        return run_id

    def execute(self, run_id: str) -> None:
        """Execute a run created outside the queue (a round trip's hop)."""
        with self.exclusive:
            self.store.mark_started(run_id, owner=OWNER)
            self._execute_claimed(run_id)

    def _execute_claimed(self, run_id: str) -> None:
        self._running.add(run_id)
        self._ensure_heartbeat()
        try:
            self._execute(run_id)
        finally:
            self._running.discard(run_id)
            self._cancel.pop(run_id, None)

    def _ensure_heartbeat(self) -> None:
        with self._threads:
            if self._beat is None or not self._beat.is_alive():
                self._beat = threading.Thread(target=self._heartbeat, name="lab-heartbeat", daemon=True)
                self._beat.start()

    def _heartbeat(self) -> None:
        while True:
            time.sleep(self.HEARTBEAT_S)
            try:
                self.store.heartbeat(list(self._running))
            except Exception:   # a database hiccup: the next beat tries again
                pass

    def _execute(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run["edge"] in COMPOSITE_EDGES:   # a round trip, a Table 1: their steps run through execute(), here
            self._execute_chain(run)
            return
        cfg = run["config"]
        out_dir = self.settings.artifacts_dir / run_id
        cancel = self._cancel.setdefault(run_id, threading.Event())
        try:
            edge = get_task(run["edge"])
            spec = get_method(edge, run["method"])
            config = restore_config(spec, cfg["method_config"])
            scenario = parse_scenario(cfg["scenario_data"])
            host = self.host
            self.check_tokens(scenario, host)   # before any work: an oversize input fails the run at once
            out_dir.mkdir(parents=True, exist_ok=True)
            ctx = RunContext(host=host, scenario=scenario, run_id=run_id, out_dir=out_dir,
                             on_progress=self._progress_fn(run_id, cancel), lookup=self.store.get_run)
            with host.run_precision(getattr(config, "precision", "auto")):
                self.store.update_run(run_id, config=cfg | {"runtime": host.runtime()},   # what it ran on
                                      model=host.model_name)
                tokens_before = host.forward_tokens
                result = spec.run(spec.name, config, ctx)
                result.metrics.setdefault("forward_tokens", host.forward_tokens - tokens_before)
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

    def _execute_chain(self, run: dict) -> None:
        if self.chain_executor is None:
            self.store.mark_finished(run["run_id"], "failed", error="this process cannot run round trips")
            return
        try:
            self.chain_executor(run, self._cancel.setdefault(run["run_id"], threading.Event()))
        except LabInputError as e:   # the stored request no longer holds (e.g. its source run was deleted)
            self.store.mark_finished(run["run_id"], "failed", error=str(e))

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
            if points or now - last[0] > 0.5:  # throttle plain progress writes; each also reads the cancel flag
                last[0] = now
                if self.store.report_progress(run_id, round(float(fraction), 4), stage):
                    cancel.set()
                    raise RunCancelled()
        return on_progress


def spawn_worker_process(settings: Settings):
    """A `python -m engine worker` beside this process, on the same database and data directory: the page's process
    then only queues, and the run's Python never waits on the page's (the GIL, its event loop, its handlers). It
    dies with the process that spawned it (Linux: PR_SET_PDEATHSIG), as a worker thread would; a run it had
    under way is then marked interrupted by the next start."""
    def die_with_parent() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        except OSError:   # not Linux: the page's atexit hook stops it instead
            pass
    env = {**os.environ, "LAB_DATA_DIR": str(settings.data_dir), "LAB_DB_URL": settings.db_url,
           "LAB_MODEL": settings.model, "LAB_WORKER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "worker"], env=env, cwd=Path(__file__).resolve().parent.parent,
                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    atexit.register(lambda: proc.poll() is None and proc.kill())
    log.info("worker process %d runs the queue", proc.pid)
    return proc
