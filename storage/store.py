"""Store: every read and write of runs, metric points, samples and artifacts goes through here.

Returns plain dicts so callers (engine, UI, CLI) never hold live ORM objects across threads.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import create_engine, delete, event, inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Artifact, Base, MetricPoint, Run, SampleRow, utcnow

SAMPLE_COLUMNS = ("policy", "input", "output", "reward", "sample_index")
SORT_KEYS = {"created": Run.created_at, "scenario": Run.scenario, "edge": Run.edge, "method": Run.method,
             "status": Run.status, "duration": None}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the page) never block the writer (a run)
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Store:
    def __init__(self, url: str = "sqlite://"):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if url == "sqlite://":  # in-memory: one shared connection so every session sees the same data
            from sqlalchemy.pool import StaticPool
            kwargs = dict(connect_args={"check_same_thread": False}, poolclass=StaticPool)
        elif url.startswith("sqlite"):
            kwargs = dict(connect_args={"check_same_thread": False})
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    # ---------- runs ----------
    def create_run(self, edge: str, method: str, scenario: str, config: dict, status: str = "queued",
                   owner: str | None = None, parent_id: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:12]
        with self.session.begin() as s:
            s.add(Run(id=run_id, edge=edge, method=method, scenario=scenario, config=config, status=status,
                      owner=owner, parent_id=parent_id))
        return run_id

    def update_run(self, run_id: str, **fields) -> None:
        with self.session.begin() as s:
            s.execute(update(Run).where(Run.id == run_id).values(**fields))

    def mark_started(self, run_id: str, owner: str | None = None) -> None:
        self.update_run(run_id, status="running", started_at=utcnow(), stage="starting", owner=owner)

    def mark_finished(self, run_id: str, status: str, metrics: dict | None = None, error: str | None = None) -> None:
        fields = dict(status=status, finished_at=utcnow(), error=error)
        if metrics is not None:
            fields["metrics"] = metrics
        if status == "succeeded":
            fields.update(progress=1.0, stage="done")
        self.update_run(run_id, **fields)

    def get_run(self, run_id: str) -> dict | None:
        with self.session() as s:
            run = s.get(Run, run_id)
            return _run_dict(run, s) if run else None

    def list_runs(self, scenario: str | None = None, edge: str | None = None, limit: int = 500,
                  method: str | None = None, status: str | tuple[str, ...] | None = None, model: str | None = None,
                  order_by: str = "created", descending: bool = True, with_artifacts: bool = False) -> list[dict]:
        """Runs matching every filter given, sorted by `order_by` (one of SORT_KEYS), newest first on ties."""
        if order_by not in SORT_KEYS:
            raise ValueError(f"order_by: {order_by!r} is not one of {', '.join(SORT_KEYS)}")
        q = select(Run)
        for column, value in ((Run.scenario, scenario), (Run.edge, edge), (Run.method, method), (Run.model, model)):
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

    def runs_with_status(self, *statuses: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Run.id).where(Run.status.in_(statuses)).order_by(Run.created_at)))

    def mark_interrupted(self, is_alive=None) -> list[str]:
        """At start-up: any run left `running` or `queued` by a dead process is `interrupted`.

        `is_alive(owner) -> bool` keeps runs of processes that still live (a CLI run beside the page).
        """
        with self.session() as s:
            rows = s.execute(select(Run.id, Run.owner).where(Run.status.in_(("running", "queued")))).all()
        ids = [rid for rid, owner in rows if not (is_alive and owner and is_alive(owner))]
        if ids:
            with self.session.begin() as s:
                s.execute(update(Run).where(Run.id.in_(ids)).values(
                    status="interrupted", finished_at=utcnow(),
                    error="the lab stopped while this run was in progress; start it again"))
        return ids

    def delete_run(self, run_id: str) -> None:
        with self.session.begin() as s:
            run = s.get(Run, run_id)
            if run:
                s.delete(run)

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


def add_missing_columns(engine) -> list[str]:
    """Bring an older database up to the models: ADD every model column (and index) its tables lack.

    Idempotent; new columns are nullable, so old rows read as NULL (e.g. `samples.extra`, `runs.parent_id`)."""
    insp, added = inspect(engine), []
    for table in Base.metadata.sorted_tables:
        if not insp.has_table(table.name):
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:
                kind = col.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}'))
                added.append(f"{table.name}.{col.name}")
        indexed = {i["name"] for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed:
                index.create(engine)
    return added


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
         "duration_s": round(r.duration_s, 1) if r.duration_s is not None else None, "parent_id": r.parent_id}
    if s is not None:
        d["artifacts"] = [_artifact_dict(a) for a in r.artifacts]
    return d
