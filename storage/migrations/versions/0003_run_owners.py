"""Runs record the visitor who queued them (a class on one lab: engine/visitors.py).

runs.visitor: "v:" + the SHA-256 of the visitor's browser token, or "hf:" + a Hugging Face account; rows
written before it have none (only an admin may cancel or delete them when the lab serves many visitors).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN, never a batch copy (see 0002): existing rows keep NULL, "no owner"
    op.add_column("runs", sa.Column("visitor", sa.String(120), nullable=True))
    op.create_index("ix_runs_visitor", "runs", ["visitor"])


def downgrade() -> None:
    op.drop_index("ix_runs_visitor", "runs")
    op.drop_column("runs", "visitor")
