"""The engine as the page and the CLI see it: menus, submitting and watching runs, reading results.

One Lab per process: one model host (loaded on first use), one store, one job runner.
"""
from __future__ import annotations

import threading

from engine.errors import LabInputError
from engine.jobs import JobRunner, RunRequest, prepare, prepare_task
from engine.registry import EDGES, VERTICES, config_fields, get_edge, get_method, get_task
from engine.scenarios import builtin_scenarios, load_scenario
from engine.settings import Settings, load_settings


def _make_host(settings: Settings):
    from engine.model_host import ModelHost
    return ModelHost(settings.model, settings.model_cache_dir, threads=settings.threads)


class Lab:
    def __init__(self, settings: Settings | None = None, store=None, host_factory=None):
        from storage import Store
        self.settings = settings or load_settings()
        self.store = store or Store(self.settings.db_url)
        self.jobs = JobRunner(self.settings, self.store, host_factory or (lambda: _make_host(self.settings)))

    # ---------- menus ----------
    @staticmethod
    def vertices() -> tuple[str, ...]:
        return VERTICES

    @staticmethod
    def edges() -> list[dict]:
        return [{"edge": e.name, "from": e.source, "to": e.target, "title": e.title, "section": e.section,
                 "available": e.available, "methods": list(e.methods)} for e in EDGES.values()]

    @staticmethod
    def methods(source: str, target: str) -> list[dict]:
        edge = get_edge(source, target)
        return [{"method": m.name, "title": m.title, "equation": m.equation, "metrics": list(m.metrics)}
                for m in edge.methods.values()]

    @staticmethod
    def method_fields(source: str, target: str, method: str) -> list[dict]:
        return config_fields(get_method(get_edge(source, target), method))

    @staticmethod
    def scenarios() -> list[str]:
        return builtin_scenarios()

    @staticmethod
    def scenario(name_or_path: str) -> dict:
        return load_scenario(name_or_path).to_dict()

    # ---------- runs ----------
    def prepare(self, source, target, method, scenario, overrides=None) -> RunRequest:
        return prepare(source, target, method, scenario, overrides, lookup=self.store.get_run)

    def prepare_task(self, task, method, scenario, overrides=None) -> RunRequest:
        """Like `prepare`, for a task that is not an edge (e.g. "best-of-n")."""
        return prepare_task(get_task(task), method, scenario, overrides, lookup=self.store.get_run)

    def scenario_of_run(self, run_id: str | None) -> dict:
        """The scenario a stored run used (so `--source-run` alone is enough on the command line)."""
        if not run_id:
            raise LabInputError("--scenario is required (or give --source-run to reuse that run's scenario)")
        run = self.store.get_run(run_id)
        if run is None:
            raise LabInputError(f"source_run: no run with id {run_id!r}; list runs with `python -m engine runs`")
        return run["config"]["scenario_data"]

    def submit(self, request: RunRequest) -> str:
        return self.jobs.submit(request)

    def run_now(self, request: RunRequest) -> str:
        return self.jobs.run_now(request)

    def cancel(self, run_id: str) -> bool:
        return self.jobs.cancel(run_id)

    def run(self, run_id: str) -> dict | None:
        return self.store.get_run(run_id)

    def runs(self, **filters) -> list[dict]:
        return self.store.list_runs(**filters)

    def points(self, run_id: str) -> list[dict]:
        return self.store.points(run_id)

    def samples(self, run_id: str) -> list[dict]:
        return self.store.samples(run_id)


_LAB: Lab | None = None
_LAB_LOCK = threading.Lock()


def get_lab() -> Lab:
    global _LAB
    with _LAB_LOCK:
        if _LAB is None:
            _LAB = Lab()
        return _LAB
