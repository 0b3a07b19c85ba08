"""Store: every read and write of runs, metric points, samples and artifacts goes through here.

Returns plain dicts so callers (engine, UI, CLI) never hold live ORM objects across threads.
"""
from __future__ import annotations

import uuid

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.database import make_engine, migrate
from storage.models import Artifact, MetricPoint, Run, SampleRow, ScenarioData, utcnow
from storage.scenario_store import scenario_hash

SAMPLE_COLUMNS = ("policy", "input", "output", "reward", "sample_index")
SORT_KEYS = {"created": Run.created_at, "scenario": Run.scenario, "edge": Run.edge, "method": Run.method,
             "status": Run.status, "duration": None}
STAGE_CHARS = 200      # runs.stage is VARCHAR(200): PostgreSQL refuses longer, SQLite would keep it
INTERRUPTED = "the lab stopped while this run was in progress; use Run again to start it anew"


class Store:
    def __init__(self, url: str = "sqlite://"):
        self.url = url
        self.engine = make_engine(url)
        self.revision = migrate(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        self._scenarios: dict[str, dict] = {}   # hash -> data: content-addressed, so never stale

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ---------- runs ----------
    def create_run(self, edge: str, method: str, scenario: str, config: dict, status: str = "queued",
                   owner: str | None = None, parent_id: str | None = None, visitor: str | None = None) -> str:
        """A new run. A `scenario_data` in `config` is stored once in `scenarios` and the run keeps its hash;
        `get_run` gives it back in the config. A run created `running` belongs to `owner` at once (the queue
        never claims it). `visitor` is who queued it (engine/visitors.py)."""
        run_id = uuid.uuid4().hex[:12]
        config, digest = self._split_scenario(config)
        now = utcnow() if status == "running" else None
        with self.session.begin() as s:
            s.add(Run(id=run_id, edge=edge, method=method, scenario=scenario[:200], config=config, status=status,
                      owner=owner, parent_id=parent_id, visitor=visitor, scenario_hash=digest, started_at=now, heartbeat_at=now,
                      stage="starting" if now else ""))
        return run_id

    def import_run(self, bundle: dict, visitor: str | None) -> None:
        """A finished run from an exported bundle (`Lab.run_bundles`), under its own id, with its curves,
        samples and artifacts, owned by `visitor` (the gallery's runs: engine/gallery.py)."""
        config, digest = self._split_scenario(bundle["config"])
        when = {k: datetime.fromisoformat(bundle[k]) if bundle.get(k) else None
                for k in ("created_at", "started_at", "finished_at")}
        with self.session.begin() as s:
            s.add(Run(id=bundle["run_id"], edge=bundle["edge"], method=bundle["method"], scenario=bundle["scenario"],
                      scenario_hash=digest, model=bundle.get("model"), config=config, status=bundle["status"],
                      progress=1.0, stage="done", metrics=bundle.get("metrics") or {}, error=bundle.get("error"),
                      visitor=visitor, parent_id=bundle.get("parent_id"), **when))
            s.flush()
            s.add_all(MetricPoint(run_id=bundle["run_id"], name=p["name"], step=p["step"], value=p["value"])
                      for p in bundle.get("points") or [])
            s.add_all(SampleRow(run_id=bundle["run_id"], **{k: r[k] for k in SAMPLE_COLUMNS if k in r},
                                extra={k: v for k, v in r.items() if k not in SAMPLE_COLUMNS})
                      for r in bundle.get("samples") or [])
            s.add_all(Artifact(run_id=bundle["run_id"], kind=a["kind"], vertex=a["vertex"], path=a.get("path"),
                               data=a.get("data") or {}) for a in bundle.get("artifacts") or [])

    def update_run(self, run_id: str, **fields) -> None:
        if isinstance(fields.get("stage"), str):
            fields["stage"] = fields["stage"][:STAGE_CHARS]
        if "config" in fields:
            fields["config"], digest = self._split_scenario(fields["config"])
            if digest:
                fields["scenario_hash"] = digest
        with self.session.begin() as s:
            s.execute(update(Run).where(Run.id == run_id).values(**fields))

    def report_progress(self, run_id: str, progress: float, stage: str) -> bool:
        """Write a running run's progress and heartbeat; True when a cancel was asked for it (by any process)."""
        stmt = (update(Run).where(Run.id == run_id)
                .values(progress=progress, stage=stage[:STAGE_CHARS], heartbeat_at=utcnow())
                .returning(Run.cancel_requested))
        with self.session.begin() as s:
            return bool(s.execute(stmt).scalar_one_or_none())

    def heartbeat(self, run_ids: list[str]) -> None:
        if run_ids:
            with self.session.begin() as s:
                s.execute(update(Run).where(Run.id.in_(run_ids), Run.status == "running")
                          .values(heartbeat_at=utcnow()))

    def mark_started(self, run_id: str, owner: str | None = None) -> None:
        now = utcnow()
        self.update_run(run_id, status="running", started_at=now, heartbeat_at=now, stage="starting", owner=owner)

    def mark_finished(self, run_id: str, status: str, metrics: dict | None = None, error: str | None = None) -> None:
        fields = dict(status=status, finished_at=utcnow(), error=error)
        if metrics is not None:
            fields["metrics"] = metrics
        if status == "succeeded":
            fields.update(progress=1.0, stage="done")
        self.update_run(run_id, **fields)

    def get_run(self, run_id: str) -> dict | None:
        """The run with its artifacts; its config carries `scenario_data` again (read-only: shared by runs)."""
        with self.session() as s:
            run = s.get(Run, run_id)
            d = _run_dict(run, s) if run else None
        if d and d["config"].get("scenario_hash") and "scenario_data" not in d["config"]:
            d["config"] = {**d["config"], "scenario_data": self.scenario_data(d["config"]["scenario_hash"])}
        return d

    def list_runs(self, scenario: str | None = None, edge: str | None = None, limit: int = 500,
                  method: str | None = None, status: str | tuple[str, ...] | None = None, model: str | None = None,
                  order_by: str = "created", descending: bool = True, with_artifacts: bool = False,
                  visitor: str | None = None) -> list[dict]:
        """Runs matching every filter given, sorted by `order_by` (one of SORT_KEYS), newest first on ties.
        `visitor`: only the runs that visitor queued."""
        if order_by not in SORT_KEYS:
            raise ValueError(f"order_by: {order_by!r} is not one of {', '.join(SORT_KEYS)}")
        q = select(Run)
        for column, value in ((Run.scenario, scenario), (Run.edge, edge), (Run.method, method), (Run.model, model),
                              (Run.visitor, visitor)):
            if value:
                q = q.where(column == value)
        if status:
            q = q.where(Run.status.in_((status,) if isinstance(status, str) else tuple(status)))
        if order_by != "duration":  # a duration is computed from two columns: sorted below, in Python
            key = SORT_KEYS[order_by]
            q = q.order_by(key.desc() if descending else key.asc(), Run.created_at.desc()).limit(limit)
        with self.session() as s:
            runs = [_run_dict(r, s if with_artifacts else None) for r in s.scalars(q)]
        if order_by == "duration":
            runs.sort(key=lambda r: (r["duration_s"] is None, (-1 if descending else 1) * (r["duration_s"] or 0)))
            runs = runs[:limit]
        return runs

    def children(self, run_id: str) -> list[dict]:
        """The runs made as steps of `run_id` (a chain's hops), oldest first, with their artifacts."""
        q = select(Run).where(Run.parent_id == run_id).order_by(Run.created_at, Run.started_at)
        with self.session() as s:
            return [_run_dict(r, s) for r in s.scalars(q)]

    # ---------- the queue ----------
    def claim_next(self, owner: str) -> str | None:
        """Take the next queued run in fair order (`_queue_order`) for `owner`, atomically: two processes never
        get the same run.

        One UPDATE … WHERE status='queued' … RETURNING; on PostgreSQL the candidate row is picked with
        FOR UPDATE OF runs SKIP LOCKED, so concurrent workers take different rows instead of waiting on one."""
        candidate = _queue_order().limit(1)
        if self.dialect == "postgresql":
            candidate = candidate.with_for_update(skip_locked=True, of=Run)
        now = utcnow()
        stmt = (update(Run).where(Run.id == candidate.scalar_subquery(), Run.status == "queued")
                .values(status="running", owner=owner, started_at=now, heartbeat_at=now, stage="starting",
                        progress=0.0).returning(Run.id))
        with self.session.begin() as s:
            return s.execute(stmt).scalar_one_or_none()

    def queued(self) -> list[str]:
        """Run ids waiting for a worker, in the order they will start."""
        with self.session() as s:
            return list(s.scalars(_queue_order()))

    def queued_count(self, visitor: str | None) -> int:
        """How many runs `visitor` has waiting (None: the runs queued by nobody known, one visitor together)."""
        who = Run.visitor.is_(None) if visitor is None else Run.visitor == visitor
        q = select(func.count()).select_from(Run).where(Run.status == "queued", Run.parent_id.is_(None), who)
        with self.session() as s:
            return int(s.scalar(q) or 0)

    def durations(self, edge: str, method: str, limit: int = 200) -> list[tuple[dict, float]]:
        """(method_config, wall seconds) of the newest succeeded runs of one method: what a queued run's ETA
        is estimated from."""
        q = (select(Run.config, Run.started_at, Run.finished_at)
             .where(Run.edge == edge, Run.method == method, Run.status == "succeeded",
                    Run.started_at.is_not(None), Run.finished_at.is_not(None))
             .order_by(Run.finished_at.desc()).limit(limit))
        with self.session() as s:
            return [((config or {}).get("method_config") or {}, (end - start).total_seconds())
                    for config, start, end in s.execute(q)]

    def request_cancel(self, run_id: str) -> str | None:
        """Cancel a queued run at once; flag a running one for the process running it. Returns what it did
        ("cancelled", "requested"), or None when the run is not queued or running."""
        with self.session.begin() as s:
            done = s.execute(update(Run).where(Run.id == run_id, Run.status == "queued").values(
                status="cancelled", finished_at=utcnow(), error="cancelled before it started").returning(Run.id))
            if done.scalar_one_or_none():
                return "cancelled"
            flagged = s.execute(update(Run).where(Run.id == run_id, Run.status == "running")
                                .values(cancel_requested=True).returning(Run.id))
            return "requested" if flagged.scalar_one_or_none() else None

    def cancel_requested(self, run_id: str) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(Run.cancel_requested).where(Run.id == run_id)))

    def runs_with_status(self, *statuses: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Run.id).where(Run.status.in_(statuses)).order_by(Run.created_at)))

    def recover(self, is_alive=None, stale_after_s: float = 90.0) -> list[str]:
        """Runs whose runner is gone become `interrupted`; queued runs stay queued for the next worker.

        A running run is gone when `is_alive(owner)` says False (an owner on this machine), or, for an owner
        `is_alive` cannot judge (None: another machine), when its heartbeat is older than `stale_after_s`.
        A queued round-trip hop (made by its chain's runner just before it runs) goes with its owner too."""
        stale = utcnow() - timedelta(seconds=stale_after_s)
        with self.session() as s:
            rows = s.execute(select(Run.id, Run.status, Run.owner, Run.heartbeat_at, Run.started_at, Run.parent_id)
                             .where(Run.status.in_(("running", "queued")))).all()
        gone = []
        for rid, status, owner, beat, started, parent in rows:
            if status == "queued" and parent is None:
                continue
            verdict = is_alive(owner) if (is_alive and owner) else None
            if verdict is None:
                verdict = status == "queued" or (beat or started or stale) > stale
            if not verdict:
                gone.append(rid)
        if gone:
            with self.session.begin() as s:
                s.execute(update(Run).where(Run.id.in_(gone), Run.status.in_(("running", "queued"))).values(
                    status="interrupted", finished_at=utcnow(), error=INTERRUPTED))
        return gone

    def delete_run(self, run_id: str) -> None:
        with self.session.begin() as s:
            run = s.get(Run, run_id)
            if run:
                digest = run.scenario_hash
                s.delete(run)
                s.flush()
                if digest and not s.scalar(select(exists().where(Run.scenario_hash == digest))):
                    s.execute(delete(ScenarioData).where(ScenarioData.hash == digest))

    # ---------- scenarios ----------
    def put_scenario(self, data: dict) -> str:
        """Store a scenario's data once; its hash."""
        digest, size = scenario_hash(data)
        if digest in self._scenarios:
            with self.session() as s:
                if s.get(ScenarioData, digest) is not None:
                    return digest
        try:
            with self.session.begin() as s:
                if s.get(ScenarioData, digest) is None:
                    s.add(ScenarioData(hash=digest, name=str(data.get("name", ""))[:200], data=data, size=size))
        except IntegrityError:   # another process stored the same scenario a moment ago
            pass
        self._scenarios[digest] = data
        return digest

    def scenario_data(self, digest: str) -> dict | None:
        if digest not in self._scenarios:
            with self.session() as s:
                row = s.get(ScenarioData, digest)
                if row is None:
                    return None
                self._scenarios[digest] = row.data
        return self._scenarios[digest]

    def scenario_rows(self) -> list[dict]:
        q = select(ScenarioData.hash, ScenarioData.name, ScenarioData.size).order_by(ScenarioData.created_at)
        with self.session() as s:
            return [{"hash": h, "name": n, "size": z} for h, n, z in s.execute(q)]

    def _split_scenario(self, config: dict) -> tuple[dict, str | None]:
        data = (config or {}).get("scenario_data")
        if not isinstance(data, dict):
            return config, (config or {}).get("scenario_hash")
        digest = self.put_scenario(data)
        return {k: v for k, v in config.items() if k != "scenario_data"} | {"scenario_hash": digest}, digest

    # ---------- metric points ----------
    def add_points(self, run_id: str, step: int, values: dict[str, float]) -> None:
        with self.session.begin() as s:
            s.add_all(MetricPoint(run_id=run_id, name=k, step=step, value=float(v)) for k, v in values.items())

    def points(self, run_id: str) -> list[dict]:
        q = select(MetricPoint).where(MetricPoint.run_id == run_id).order_by(MetricPoint.step, MetricPoint.id)
        with self.session() as s:
            return [{"name": p.name, "step": p.step, "value": p.value} for p in s.scalars(q)]

    # ---------- samples ----------
    def add_samples(self, run_id: str, rows: list[dict]) -> None:
        """Rows with policy, input, output, reward, sample_index; any other keys go to `extra`."""
        with self.session.begin() as s:
            s.add_all(SampleRow(run_id=run_id, **{k: r[k] for k in SAMPLE_COLUMNS if k in r},
                                extra={k: v for k, v in r.items() if k not in SAMPLE_COLUMNS}) for r in rows)

    def samples(self, run_id: str) -> list[dict]:
        q = select(SampleRow).where(SampleRow.run_id == run_id).order_by(SampleRow.id)
        with self.session() as s:
            return [{"policy": r.policy, "input": r.input, "output": r.output, "reward": r.reward,
                     "sample_index": r.sample_index, **(r.extra or {})} for r in s.scalars(q)]

    # ---------- artifacts ----------
    def add_artifact(self, run_id: str, kind: str, vertex: str, path: str | None = None,
                     data: dict | None = None) -> int:
        with self.session.begin() as s:
            a = Artifact(run_id=run_id, kind=kind, vertex=vertex, path=path, data=data or {})
            s.add(a)
            s.flush()
            return a.id

    def artifacts(self, run_id: str | None = None, kind: str | None = None) -> list[dict]:
        q = select(Artifact).order_by(Artifact.created_at.desc())
        if run_id:
            q = q.where(Artifact.run_id == run_id)
        if kind:
            q = q.where(Artifact.kind == kind)
        with self.session() as s:
            return [_artifact_dict(a) for a in s.scalars(q)]

    def clear_run_outputs(self, run_id: str) -> None:
        """Remove what a failed or cancelled run wrote, keeping the run row and its error."""
        with self.session.begin() as s:
            for model in (MetricPoint, SampleRow, Artifact):
                s.execute(delete(model).where(model.run_id == run_id))


def _queue_order():
    """Queued work in fair order, round-robin between visitors (runs without an owner count as one visitor).

    Every visitor's 1st waiting run comes before anyone's 2nd (`turn`); within a turn, the visitor served least
    recently goes first (the latest start of its runs; never served: first of all), ties by who queued first.
    One visitor alone gets plain oldest-first. Top-level runs only: a round trip's hops are run by their chain.
    One SELECT with window functions, the same on SQLite (≥ 3.25) and PostgreSQL."""
    who = func.coalesce(Run.visitor, "")
    top = Run.parent_id.is_(None)
    served = (select(who.label("who"), func.max(Run.started_at).label("last"))
              .where(top, Run.started_at.is_not(None)).group_by(who).subquery())
    waiting = (select(Run.id.label("id"), Run.created_at.label("created"), who.label("who"),
                      func.row_number().over(partition_by=who, order_by=(Run.created_at, Run.id)).label("turn"),
                      func.min(Run.created_at).over(partition_by=who).label("first"))
               .where(Run.status == "queued", top).subquery())
    return (select(Run.id).join(waiting, waiting.c.id == Run.id).outerjoin(served, served.c.who == waiting.c.who)
            .order_by(waiting.c.turn, served.c.last.is_not(None), served.c.last, waiting.c.first, waiting.c.created,
                      Run.id))


def _artifact_dict(a: Artifact) -> dict:
    return {"id": a.id, "run_id": a.run_id, "kind": a.kind, "vertex": a.vertex, "path": a.path, "data": a.data}


def _run_dict(r: Run, s: Session | None = None) -> dict:
    model = r.model or ((r.config or {}).get("runtime") or {}).get("model")   # rows from before the column
    d = {"run_id": r.id, "edge": r.edge, "method": r.method, "scenario": r.scenario, "model": model,
         "config": r.config,
         "status": r.status, "progress": r.progress, "stage": r.stage, "metrics": r.metrics, "error": r.error,
         "created_at": r.created_at.isoformat(timespec="seconds") if r.created_at else None,
         "started_at": r.started_at.isoformat(timespec="seconds") if r.started_at else None,
         "finished_at": r.finished_at.isoformat(timespec="seconds") if r.finished_at else None,
         "duration_s": round(r.duration_s, 1) if r.duration_s is not None else None, "parent_id": r.parent_id,
         "visitor": r.visitor}
    if s is not None:
        d["artifacts"] = [_artifact_dict(a) for a in r.artifacts]
    return d
