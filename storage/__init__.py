"""Storage: the only way into the database (SQLite by default, any SQLAlchemy URL by LAB_DB_URL)."""
from storage.models import RUN_STATUSES, Artifact, Base, MetricPoint, Run, SampleRow
from storage.store import Store

__all__ = ["Store", "Run", "MetricPoint", "SampleRow", "Artifact", "Base", "RUN_STATUSES"]
