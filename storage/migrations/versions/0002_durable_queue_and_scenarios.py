"""The durable queue and scenarios stored once.

runs.heartbeat_at (its runner is alive), runs.cancel_requested (a cancel reaches the process that runs it);
scenarios(hash, name, data, size) with runs.scenario_hash: every run's copied `scenario_data` moves into one
row per distinct scenario, and the run's config keeps only the hash.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

from storage.scenario_store import scenario_hash

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    scenarios = op.create_table(
        "scenarios",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    # plain ADD COLUMNs, never a batch copy: on SQLite, dropping the old `runs` would cascade into its points
    op.add_column("runs", sa.Column("scenario_hash", sa.String(64), nullable=True))
    op.add_column("runs", sa.Column("heartbeat_at", sa.DateTime, nullable=True))
    op.add_column("runs", sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_runs_scenario_hash", "runs", ["scenario_hash"])
    _move_scenarios(scenarios)


def _move_scenarios(scenarios: sa.Table) -> None:
    """One scenarios row per distinct scenario_data; each run's config refers to it by hash."""
    bind = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("config", sa.JSON),
                    sa.column("scenario_hash", sa.String), sa.column("created_at", sa.DateTime))
    stored: set[str] = set()
    for run_id, config, created in bind.execute(sa.select(runs.c.id, runs.c.config, runs.c.created_at)).all():
        if not isinstance(config, dict) or not isinstance(config.get("scenario_data"), dict):
            continue
        data = config["scenario_data"]
        digest, size = scenario_hash(data)
        if digest not in stored:
            bind.execute(sa.insert(scenarios).values(hash=digest, name=str(data.get("name", ""))[:200], data=data,
                                                     size=size, created_at=created))
            stored.add(digest)
        rest = {k: v for k, v in config.items() if k != "scenario_data"} | {"scenario_hash": digest}
        bind.execute(sa.update(runs).where(runs.c.id == run_id).values(config=rest, scenario_hash=digest))


def downgrade() -> None:
    bind = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("config", sa.JSON),
                    sa.column("scenario_hash", sa.String))
    scenarios = sa.table("scenarios", sa.column("hash", sa.String), sa.column("data", sa.JSON))
    data = dict(bind.execute(sa.select(scenarios.c.hash, scenarios.c.data)).all())
    for run_id, config, digest in bind.execute(sa.select(runs.c.id, runs.c.config, runs.c.scenario_hash)).all():
        if digest in data:
            rest = {k: v for k, v in (config or {}).items() if k != "scenario_hash"}
            bind.execute(sa.update(runs).where(runs.c.id == run_id).values(config=rest | {"scenario_data": data[digest]}))
    op.drop_index("ix_runs_scenario_hash", "runs")
    for column in ("cancel_requested", "heartbeat_at", "scenario_hash"):   # SQLite ≥ 3.35 drops columns in place
        op.drop_column("runs", column)
    op.drop_table("scenarios")
