"""The engine as the page and the CLI see it: menus, submitting and watching runs, reading results.

One Lab per process: one model host (loaded on first use), one store, one job runner.
"""
from __future__ import annotations

import functools
import json
import shutil
import threading

from engine.errors import LabInputError
from engine.jobs import JobRunner, RunRequest, prepare_task
from engine.registry import (
    EDGES,
    TASKS,
    VERTICES,
    config_fields,
    get_edge,
    get_method,
    get_task,
    preset_settings,
)
from engine.scenarios import builtin_scenarios, load_scenario
from engine.settings import Settings, load_settings
from engine.visitors import OPERATOR, Visitor, check_manage, may_manage, visitor


def _make_host(settings: Settings):
    from engine.model_host import ModelHost
    return ModelHost(settings.model, settings.model_cache_dir, threads=settings.threads, device=settings.device,
                     precision=settings.precision, precision_cache=settings.data_dir / "precision.json",
                     max_adapters=settings.max_adapters, fp32_linear=settings.fp32_linear, memo_mb=settings.memo_mb)


class Lab:
    def __init__(self, settings: Settings | None = None, store=None, host_factory=None):
        from storage import Store
        self.settings = settings or load_settings()
        self.store = store or Store(self.settings.db_url)
        self.jobs = JobRunner(self.settings, self.store, host_factory or (lambda: _make_host(self.settings)),
                              chain_executor=self._execute_chain_row)
        if self.settings.gallery:   # an empty database starts with the shipped example runs (engine/gallery.py)
            from engine.gallery import import_gallery
            import_gallery(self)

    @functools.cached_property
    def model(self) -> str:
        """The model this lab runs, as runs record it (known without loading it): an embedded model without its
        package runs by its hub id."""
        from engine.model_loading import canonical_model, effective_model
        try:
            return canonical_model(effective_model(self.settings.model))
        except LabInputError:
            return canonical_model(self.settings.model)

    def model_problem(self) -> str | None:
        """Why no model can load (the page's banner says it), or None: checked without loading anything."""
        from engine.model_loading import effective_model
        try:
            effective_model(self.settings.model)
        except LabInputError as e:
            return str(e)
        return None

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
    def prepare(self, source, target, method, scenario, overrides=None, who: Visitor = OPERATOR) -> RunRequest:
        return self.prepare_task(get_edge(source, target).name, method, scenario, overrides, who)

    def prepare_task(self, task, method, scenario, overrides=None, who: Visitor = OPERATOR) -> RunRequest:
        """Validate a run of any task (an edge, or e.g. "best-of-n") for `who`; raises LabInputError naming the
        bad part. A visitor of a shared lab may not name files on this machine; where the model is loaded,
        the scenario's texts are checked in tokens too (a worker checks them again before it starts)."""
        if self.settings.multi_user and not who.admin:
            from engine.limits import check_visitor_overrides
            check_visitor_overrides(overrides or {}, uploads=self.uploads_dir)
        request = prepare_task(get_task(task), method, scenario, overrides, lookup=self.store.get_run)
        if self.jobs.loaded_host is not None:
            self.jobs.check_tokens(request.scenario, self.jobs.loaded_host)
        return request

    @property
    def uploads_dir(self):
        """Where the lab keeps its own copy of files visitors uploaded (by content hash)."""
        return self.settings.data_dir / "uploads"

    def with_data_file(self, task: str, method: str, scenario, overrides: dict, path: str | None):
        """(scenario, overrides) with a JSONL file a user uploaded: preference pairs for a method that has a
        `preference_file` setting (the Bradley-Terry reward, Eq. 4), else expert demonstrations replacing the
        scenario's (SFT, adversarial imitation, the discriminator). Pairs are copied into the data dir under
        their content's hash, so the run and any rerun read the same bytes; demonstrations travel inside the
        run's stored scenario. A bad file is refused naming its line, before anything is written."""
        import dataclasses
        import hashlib
        from pathlib import Path

        from engine.demonstrations import load_demonstration_file
        if not path:
            return scenario, overrides
        fields = {f["name"] for f in self.task_fields(task, method)}
        if "preference_file" in fields:
            from engine.reward_models import load_preference_file
            load_preference_file(path)
            raw = Path(path).read_bytes()
            kept = self.uploads_dir / f"{hashlib.sha256(raw).hexdigest()[:16]}.jsonl"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(raw)
            return scenario, overrides | {"preference_file": str(kept)}
        if task not in ("demonstrations", "reward-model"):
            raise LabInputError(f"data file: {task} ({method}) reads no file; preference pairs go to prompt → reward "
                                "(bradley-terry), demonstrations to data → parameter or the discriminator")
        sc = scenario if not isinstance(scenario, str) else load_scenario(scenario)
        return dataclasses.replace(sc, expert_demonstrations=load_demonstration_file(path, "data file")), overrides

    def scenario_of_run(self, run_id: str | None) -> dict:
        """The scenario a stored run used (so `--source-run` alone is enough on the command line)."""
        if not run_id:
            raise LabInputError("--scenario is required (or give --source-run to reuse that run's scenario)")
        run = self.store.get_run(run_id)
        if run is None:
            raise LabInputError(f"source_run: no run with id {run_id!r}; list runs with `python -m engine runs`")
        return run["config"]["scenario_data"]

    def host_info(self) -> dict:
        """The model host's model, device and precision (loads the model on first use)."""
        return self.jobs.host.describe()

    def steer_preview(self, run_id: str, w: float, n_inputs: int = 4) -> list[dict]:
        """Regenerate a parameter->reward run's steered text at strength w (Eq. 7), beside plain π1."""
        from engine.edges.parameter_to_reward import preview
        from engine.scenarios import parse_scenario
        run = self.store.get_run(run_id)
        artifact = next((a for a in (run or {}).get("artifacts") or [] if a["kind"] == "reward"), None)
        if artifact is None:
            raise LabInputError(f"run {run_id!r} made no reward to steer with")
        scenario = parse_scenario(run["config"]["scenario_data"])
        return preview(self.jobs.host, artifact["data"], scenario, float(w), n_inputs)

    def tasks(self) -> list[dict]:
        """Everything the Convert tab can run: the six edges, then tasks such as best-of-N."""
        return self.edges() + [{"edge": t.name, "from": t.source, "to": t.target, "title": t.title,
                                "section": t.section, "available": True, "methods": list(t.methods)}
                               for t in TASKS.values()]

    @staticmethod
    def task_methods(task: str) -> list[dict]:
        return [{"method": m.name, "title": m.title, "equation": m.equation, "metrics": list(m.metrics)}
                for m in get_task(task).methods.values()]

    @staticmethod
    def task_fields(task: str, method: str) -> list[dict]:
        return config_fields(get_method(get_task(task), method))

    @staticmethod
    def preset_values(task: str, method: str, preset: str = "quick") -> dict:
        """Every setting of the method under a size preset: `default` or `quick` (what the form fills in)."""
        return preset_settings(get_method(get_task(task), method), preset)

    def submit(self, request: RunRequest, who: Visitor = OPERATOR) -> str:
        """Queue a run owned by `who`; this process's worker takes it (unless LAB_WORKER=0: another's)."""
        self.check_may_queue(who, request)
        return self.jobs.submit(request, visitor=who.id)

    def enqueue(self, request: RunRequest) -> str:
        """Queue a run for any worker, starting none here (`python -m engine submit`)."""
        return self.jobs.submit(request, start_worker=False)

    def run_now(self, request: RunRequest) -> str:
        return self.jobs.run_now(request)

    # ---------- visitors (engine/visitors.py) ----------
    def visitor(self, token: object = None, credential: object = None, account: str | None = None) -> Visitor:
        """Who presents this browser token, admin credential or Hugging Face account."""
        return visitor(self.settings.admin_token, token, credential, account)

    def may_manage(self, run: dict, who: Visitor) -> bool:
        """Whether `who` may cancel or delete `run` (LAB_MULTI_USER: its owner or an admin)."""
        return may_manage(self.settings.multi_user, who, run)

    def check_may_queue(self, who: Visitor, request: RunRequest | None = None) -> None:
        """A visitor of a shared lab queues at most LAB_MAX_QUEUED_PER_VISITOR runs at once, and under LAB_PUBLIC
        only settings within the public caps; an admin and the CLI are held to neither."""
        if who.admin:
            return
        if self.settings.public and request is not None:
            from engine.limits import check_public_caps
            check_public_caps(request.config, request.scenario)
        limit = self.settings.max_queued_per_visitor
        if self.settings.multi_user and self.store.queued_count(who.id) >= limit:
            raise LabInputError(f"you already have {limit} runs waiting in the queue (the limit per visitor, "
                                "LAB_MAX_QUEUED_PER_VISITOR): wait for one to start, or cancel one, then run this "
                                "again — your settings stay in the form")

    def cancel(self, run_id: str, who: Visitor = OPERATOR) -> bool:
        """Cancel a queued or running run; refused (LabInputError) when it is not `who`'s to cancel."""
        run = self.store.get_run(run_id)
        if run is None:
            return False
        check_manage(self.settings.multi_user, who, run, "cancel")
        return self.jobs.cancel(run_id)

    def queue_estimate(self, run_id: str) -> dict | None:
        """A queued run's place in line and ETA (engine/queue_eta.py): {"position", "wait_s", "run_s",
        "unknown"}; None when it is not queued."""
        from engine.queue_eta import queue_eta
        from storage.models import utcnow
        order = self.store.queued()
        if run_id not in order:
            return None
        active = {r["run_id"]: r for r in self.store.list_runs(status=("queued", "running"), limit=100_000)}
        position = order.index(run_id)
        running = [r for r in active.values() if r["status"] == "running" and not r["parent_id"]]
        ahead = [active[rid] for rid in order[:position] if rid in active]
        eta = queue_eta(active[run_id], ahead, running, self.store.durations, utcnow())
        return {"position": position + 1, **eta}

    def _execute_chain_row(self, run: dict, cancel) -> None:
        """A worker took a queued round trip or Table 1: rebuild its request from the row and run its steps."""
        if run["edge"] == "table1":
            from engine.table1 import execute_table1, restore_table1
            execute_table1(self, restore_table1(run["config"]), run["run_id"], cancel)
            return
        from engine.chain import execute_chain, restore_chain
        execute_chain(self, restore_chain(run["config"], lookup=self.store.get_run), run["run_id"], cancel)

    def table1(self, scenario, overrides: dict | None = None) -> str:
        """Sun et al.'s Table 1 on `scenario`, run in this thread (engine/table1.py); the parent run's id."""
        from engine.table1 import prepare_table1, run_table1
        sc = scenario if not isinstance(scenario, str) else load_scenario(scenario)
        return run_table1(self, prepare_table1(sc, overrides))

    def start_table1(self, scenario, overrides: dict | None = None, who: Visitor = OPERATOR) -> str:
        """Queue a Table 1 for this process's worker (the page), owned by `who`; its run id. A public lab runs
        only the quick preset."""
        from engine.table1 import create_table1_run, prepare_table1
        sc = scenario if not isinstance(scenario, str) else load_scenario(scenario)
        request = prepare_table1(sc, overrides)
        if self.settings.public and not who.admin and request.config.preset == "default":
            raise LabInputError("preset: `default` runs every method at its full size; this public lab runs the "
                                "quick or tiny preset (LAB_PUBLIC=1)")
        self.check_may_queue(who)
        run_id = create_table1_run(self.store, request, visitor=who.id)
        self.jobs.wake()
        return run_id

    def rerun(self, run_id: str, who: Visitor = OPERATOR) -> str:
        """Queue a new run with the settings of `run_id` (e.g. one interrupted by a restart), owned by `who`."""
        self.check_may_queue(who, self._stored_request(run_id) if self.settings.public and not who.admin else None)
        return self.jobs.rerun(run_id, visitor=who.id)

    def _stored_request(self, run_id: str) -> RunRequest | None:
        """A stored run's settings as a request (to hold a rerun to the public caps); None for a round trip."""
        run = self.store.get_run(run_id)
        if run is None or run["edge"] in ("chain", "table1"):
            return None
        from engine.registry import restore_config
        from engine.scenarios import parse_scenario
        spec = get_method(get_task(run["edge"]), run["method"])
        return RunRequest(get_task(run["edge"]), spec, parse_scenario(run["config"]["scenario_data"]),
                          restore_config(spec, run["config"]["method_config"]))

    def enqueue_rerun(self, run_id: str) -> str:
        return self.jobs.rerun(run_id, start_worker=False)

    def queue(self) -> list[str]:
        """Queued run ids, in the order workers will take them."""
        return self.store.queued()

    def run(self, run_id: str) -> dict | None:
        return self.store.get_run(run_id)

    def runs(self, **filters) -> list[dict]:
        return self.store.list_runs(**filters)

    def points(self, run_id: str) -> list[dict]:
        return self.store.points(run_id)

    def samples(self, run_id: str) -> list[dict]:
        return self.store.samples(run_id)

    # ---------- compare (engine/compare.py) ----------
    def compare_scenarios(self) -> list[str]:
        """Built-in scenarios, then any other scenario a stored run used (e.g. an uploaded file)."""
        builtin = builtin_scenarios()
        return builtin + sorted({r["scenario"] for r in self.runs(limit=10_000)} - set(builtin))

    def compare_scenario(self, name: str):
        """A scenario by name: a built-in, or the one the newest stored run of that name used."""
        from engine.scenarios import parse_scenario
        if name in builtin_scenarios():
            return load_scenario(name)
        runs = self.runs(scenario=name, limit=1)
        if not runs:
            raise LabInputError(f"scenario: {name!r} is neither built in nor used by a stored run")
        return parse_scenario(self.store.get_run(runs[0]["run_id"])["config"]["scenario_data"])

    def compare_choices(self, scenario: str) -> list[dict]:
        """The policies a compare of `scenario` can tick: base, its prompt, and every stored policy run made on
        this lab's model (another model's adapter does not fit this one; `frontier` counts those left out)."""
        from engine.compare import choice_label, policy_runs
        from engine.references import same_model
        runs = [r for r in policy_runs(self.runs(scenario=scenario, with_artifacts=True)) if same_model(r, self.model)]
        by_id = {r["run_id"]: r for r in runs}
        out = [{"value": "base", "label": "π0 (base)", "edge": "base"},
               {"value": "prompt", "label": "π0 + z (the scenario's prompt)", "edge": "prompt"}]
        return out + [{"value": r["run_id"], "label": f"{choice_label(r['run_id'], by_id.get)} · {r['edge']}",
                       "edge": r["edge"]} for r in runs]

    def reward_choices(self, scenario: str) -> list[dict]:
        """Stored rewards of `scenario` (runs whose artifact is a reward), to score the compare with too."""
        from engine.references import same_model
        runs = self.runs(scenario=scenario, status="succeeded", with_artifacts=True)
        return [{"value": r["run_id"], "label": f"{r['edge']} ({r['method']}) {r['run_id'][:6]}"}
                for r in runs if any(a["kind"] == "reward" for a in r.get("artifacts") or [])
                and same_model(r, self.model)]

    @staticmethod
    def compare_fields() -> list[dict]:
        from engine.compare import COMPARE_SPEC
        return config_fields(COMPARE_SPEC)

    def compare(self, scenario: str, policies: list[str], reward: str = "", overrides: dict | None = None,
                on_progress=None) -> dict:
        """Sample the chosen policies on the same held-out inputs and seed; rewards and exact KL matrix."""
        from engine.compare import CompareContext, compare_config, run_compare
        config = compare_config(overrides)
        ctx = CompareContext(scenario=self.compare_scenario(scenario), host=self.jobs.host, lookup=self.store.get_run)
        return run_compare(ctx, list(policies), config, reward or "", on_progress)

    def frontier(self, scenario: str, compare: dict | None = None) -> dict:
        """The reward-vs-KL chart's data: every stored run of `scenario` with a KL to π0, and a compare's."""
        from engine.compare import frontier
        runs = self.runs(scenario=scenario, limit=10_000, with_artifacts=True)
        return frontier(runs, self.points, compare if (compare or {}).get("scenario") == scenario else None,
                        model=self.model)

    # ---------- history: delete, export ----------
    def delete_run(self, run_id: str, who: Visitor = OPERATOR) -> dict:
        """Delete a finished run with its curves, samples, artifacts and files (data/artifacts/<run_id>/); refused
        when it is not `who`'s to delete."""
        run = self.store.get_run(run_id)
        if run is None:
            raise LabInputError(f"no run with id {run_id!r}; list runs with `python -m engine runs`")
        check_manage(self.settings.multi_user, who, run, "delete")
        if run["status"] in ("running", "queued"):
            raise LabInputError(f"run {run_id} is {run['status']}; cancel it first, then delete it")
        folder = self.settings.artifacts_dir / run_id
        had_files = folder.is_dir()
        shutil.rmtree(folder, ignore_errors=True)
        self.store.delete_run(run_id)
        users = [r["run_id"] for r in self.runs(limit=100_000)
                 if run_id in json.dumps((r.get("config") or {}).get("method_config") or {})]
        return {"run_id": run_id, "deleted": True, "files_removed": str(folder) if had_files else None,
                "referenced_by": users}

    def run_bundles(self, run_ids: list[str]) -> list[dict]:
        """Runs with their curves and samples, in the order given; unknown ids are refused."""
        out = []
        for rid in run_ids:
            run = self.store.get_run(rid)
            if run is None:
                raise LabInputError(f"no run with id {rid!r}; list runs with `python -m engine runs`")
            out.append(run | {"points": self.store.points(rid), "samples": self.store.samples(rid)})
        return out

    def artifact_file(self, run_id: str, out_dir) -> str:
        """The run's artifact as one file in `out_dir` (engine/artifact_files.py): a PEFT adapter as a zip,
        a prompt as text, a reward spec as JSON. Its path."""
        from engine.artifact_files import artifact_file
        run = self.store.get_run(run_id)
        if run is None:
            raise LabInputError(f"no run with id {run_id!r}; list runs with `python -m engine runs`")
        return str(artifact_file(run, out_dir))

    def export(self, run_ids: list[str], fmt: str = "json") -> str:
        """Runs as text: `json` (everything), `csv` (one row per run) or `samples-csv` (engine/export.py)."""
        from engine.export import export
        if not run_ids:
            raise LabInputError("export: no runs selected")
        return export(self.run_bundles(run_ids), fmt)


_LAB: Lab | None = None
_LAB_LOCK = threading.Lock()


def get_lab() -> Lab:
    global _LAB
    with _LAB_LOCK:
        if _LAB is None:
            _LAB = Lab()
        return _LAB
