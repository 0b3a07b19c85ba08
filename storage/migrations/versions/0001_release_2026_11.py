"""The schema of the release before migrations (2026-11, commit a080209): runs, metric_points, samples,
artifacts. A database made by that release (no alembic_version table) is adopted as it is; one made by an
even older release gets the columns and indexes it lacks (they are all nullable), as start-up did then.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables(meta: sa.MetaData) -> list[sa.Table]:
    runs = sa.Table(
        "runs", meta,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("edge", sa.String(40), nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("scenario", sa.String(200), nullable=False),
        sa.Column("model", sa.String(300), index=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("owner", sa.String(80)),
        sa.Column("parent_id", sa.String(32), index=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
    )
    points = sa.Table(
        "metric_points", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
    )
    samples = sa.Table(
        "samples", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("policy", sa.String(60), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("reward", sa.Float),
        sa.Column("sample_index", sa.Integer, nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
    )
    artifacts = sa.Table(
        "artifacts", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("vertex", sa.String(20), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    return [runs, points, samples, artifacts]


def upgrade() -> None:
    bind = op.get_bind()
    for table in _tables(sa.MetaData()):
        insp = sa.inspect(bind)
        if not insp.has_table(table.name):
            table.create(bind)
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:   # a release older than this one: the column is nullable there
                op.add_column(table.name, sa.Column(col.name, col.type, nullable=True))
        indexed = {i["name"] for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed:
                index.create(bind)


def downgrade() -> None:
    for name in ("artifacts", "samples", "metric_points", "runs"):
        op.drop_table(name)
